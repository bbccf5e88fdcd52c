"""AuthorizationPolicies with federated trust domains
(:mod:`federation.model.authz_federation`): a foreign SVID matches only rules that name its
domain; local callers see no difference. Checked with the Python evaluator of Istio's
semantics and on the Envoy RBAC filters made from the same policies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from federation.controlplane.generate.rbac import rbac_filters
from federation.model.authz import AuthorizationPolicy, Request, evaluate
from federation.model.authz_federation import GUARD_NAME, scoped_to_trust_domains
from federation.model.documents import load_documents

LOCAL = "spiffe://example.org/ns/demo/sa/frontend"
NAMED = "spiffe://b.example/ns/demo/sa/client"
UNNAMED = "spiffe://b.example/ns/demo/sa/other"
THIRD = "spiffe://c.example/ns/demo/sa/client"
FOREIGN = ("b.example", "c.example")


def _policies(text: str) -> list[AuthorizationPolicy]:
    docs = load_documents(text)
    assert all(isinstance(d, AuthorizationPolicy) for d in docs)
    return docs  # type: ignore[return-value]


MIXED = _policies("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo, namespace: demo}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: ["b.example/ns/demo/sa/client"]}}]
    to: [{operation: {paths: ["/public"]}}]
  - from: [{source: {namespaces: ["demo"]}}]
  - from: [{source: {principals: ["*"]}}]
    to: [{operation: {paths: ["/health"]}}]
  - to: [{operation: {paths: ["/open"]}}]
""")


def test_a_foreign_principal_matches_only_rules_naming_its_domain() -> None:
    scoped = scoped_to_trust_domains(MIXED, FOREIGN)
    assert scoped[-1].metadata.name == GUARD_NAME
    assert evaluate(scoped, Request(NAMED, path="/public")).allowed
    # the namespace, "*" and source-less rules do not let foreign callers in
    for path in ("/", "/health", "/open"):
        assert not evaluate(scoped, Request(NAMED, path=path)).allowed, path
        assert not evaluate(scoped, Request(UNNAMED, path=path)).allowed, path
        assert not evaluate(scoped, Request(THIRD, path=path)).allowed, path
    assert not evaluate(scoped, Request(UNNAMED, path="/public")).allowed
    # local callers: the same decisions as without federation
    for path in ("/", "/health", "/open", "/public"):
        assert evaluate(scoped, Request(LOCAL, path=path)).allowed
    assert evaluate(scoped, Request(None, path="/open")).allowed  # plain text, no principal


def test_with_no_allow_policy_a_foreign_principal_is_still_refused() -> None:
    deny_admin = _policies("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: demo}
spec: {action: DENY, rules: [{to: [{operation: {paths: ["/admin"]}}]}]}
""")
    scoped = scoped_to_trust_domains(deny_admin, FOREIGN)
    assert evaluate(scoped, Request(LOCAL)).allowed  # Istio's default allow, for locals
    decision = evaluate(scoped, Request(NAMED))
    assert not decision.allowed and GUARD_NAME in decision.reason
    assert scoped_to_trust_domains(deny_admin, ()) == deny_admin  # no federation: unchanged


def test_the_guard_and_scopes_reach_envoy_rbac() -> None:
    filters = rbac_filters(scoped_to_trust_domains(MIXED, FOREIGN), (8080,))
    text = "".join(str(f) for f in filters)
    assert "spiffe://b.example/" in text and "spiffe://c.example/" in text
    assert [f.name for f in filters] == [
        "envoy.filters.http.rbac.deny",
        "envoy.filters.http.rbac.allow",
    ]


PATHS = st.sampled_from(["/", "/public", "/health", "/open", "/admin"])
PRINCIPALS = st.sampled_from([LOCAL, NAMED, UNNAMED, THIRD, None])


@settings(max_examples=200, deadline=None)
@given(principal=PRINCIPALS, path=PATHS, domains=st.sets(st.sampled_from(FOREIGN)))
def test_scoping_never_widens_and_never_changes_a_local_decision(
    principal: str | None, path: str, domains: set[str]
) -> None:
    before = evaluate(MIXED, Request(principal, path=path)).allowed
    after = evaluate(scoped_to_trust_domains(MIXED, sorted(domains)), Request(principal, path=path))
    assert not (after.allowed and not before)  # never allows what was refused
    foreign = principal is not None and not principal.startswith("spiffe://example.org/")
    if not foreign or principal.split("/")[2] not in domains:
        assert after.allowed == before  # locals, plain text and non-federated domains alike
    elif after.allowed:
        assert principal == NAMED and path == "/public"  # only the rule naming it
