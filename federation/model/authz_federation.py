"""AuthorizationPolicies in a mesh that trusts other trust domains (SPIFFE federation,
:mod:`federation.controller.trust_federation`): a foreign SVID passes the TLS handshake (its
domain's bundle verifies it), and then matches **only rules that name its trust domain**.
Pure.

Istio's rule semantics let ``principals: ["*"]``, ``namespaces: [...]`` and a rule with no
``from`` match any authenticated caller, whatever its trust domain -- with federation that
would hand every foreign workload what local ones get (the multi-trust-domain surprises of
istio/istio#58511 and #55529). So, for one workload's policies:

- every ALLOW rule source (``from[].source``; a rule without ``from`` gets one) that does not
  name a foreign domain in its ``principals`` gets ``notPrincipals: spiffe://<domain>/*`` for
  each such domain: ``namespaces: [demo]`` means the local ``demo``;
- a DENY policy (:data:`GUARD_NAME`) refuses a foreign principal that no enforced ALLOW rule
  of the workload names (exactly, or by a glob inside its domain such as
  ``b.example/ns/shop/*``): with no ALLOW policy at all (Istio's default allow) a foreign
  workload is still refused;
- DENY and AUDIT rules are left as written (they may only take away).

A principal names a domain as Istio writes it (``b.example/ns/x/sa/y``) or as a SPIFFE ID.
"""

from __future__ import annotations

from collections.abc import Sequence

from federation.model.authz import (
    AuthorizationPolicy,
    From,
    Rule,
    Source,
    principal_pattern,
    principal_trust_domain,
)

#: The name of the DENY policy that refuses foreign principals no ALLOW rule names.
GUARD_NAME = "foreign-trust-domains"
GUARD_NAMESPACE = "meshfed-system"


def _prefix(domain: str) -> str:
    return f"spiffe://{domain}/*"


def _named(values: Sequence[str] | None, foreign: frozenset[str]) -> set[str]:
    return {d for v in values or [] if (d := principal_trust_domain(v)) in foreign}


def _scoped_source(source: Source, foreign: frozenset[str]) -> Source:
    unnamed = sorted(foreign - _named(source.principals, foreign))
    if not unnamed:
        return source
    extra = [_prefix(d) for d in unnamed]
    return source.model_copy(update={"not_principals": [*(source.not_principals or []), *extra]})


def _scoped_rule(rule: Rule, foreign: frozenset[str]) -> Rule:
    items = rule.from_ if rule.from_ is not None else [From()]
    scoped = [i.model_copy(update={"source": _scoped_source(i.source, foreign)}) for i in items]
    return rule.model_copy(update={"from_": scoped})


def _scoped(policy: AuthorizationPolicy, foreign: frozenset[str]) -> AuthorizationPolicy:
    if policy.spec.action != "ALLOW":
        return policy
    rules = [_scoped_rule(r, foreign) for r in policy.spec.rules]
    return policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": rules})})


def named_foreign_principals(
    selected: Sequence[AuthorizationPolicy], foreign: frozenset[str]
) -> list[str]:
    """The principals of enforced ALLOW rules in ``selected`` that name a domain of
    ``foreign``, as SPIFFE ID patterns, sorted."""
    return sorted(
        {
            principal_pattern(v)
            for p in selected
            if p.spec.action == "ALLOW" and not p.dry_run
            for rule in p.spec.rules
            for item in rule.from_ or []
            for v in item.source.principals or []
            if principal_trust_domain(v) in foreign
        }
    )


def guard_policy(foreign: frozenset[str], named: Sequence[str]) -> AuthorizationPolicy:
    """The DENY policy refusing principals of ``foreign`` domains but ``named`` ones."""
    source: dict[str, object] = {"principals": [_prefix(d) for d in sorted(foreign)]}
    if named:
        source["notPrincipals"] = list(named)
    return AuthorizationPolicy.model_validate(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": GUARD_NAME, "namespace": GUARD_NAMESPACE},
            "spec": {"action": "DENY", "rules": [{"from": [{"source": source}]}]},
        }
    )


def scoped_to_trust_domains(
    selected: Sequence[AuthorizationPolicy], foreign: Sequence[str]
) -> list[AuthorizationPolicy]:
    """One workload's policies as a mesh trusting the ``foreign`` domains enforces them (see
    the module docstring); ``selected`` unchanged (as a list) when there is none."""
    domains = frozenset(foreign)
    if not domains:
        return list(selected)
    named = named_foreign_principals(selected, domains)
    return [*(_scoped(p, domains) for p in selected), guard_policy(domains, named)]
