"""AuthorizationPolicies as Envoy RBAC filters on a sidecar's inbound listener (and as gRPC's
RBAC on proxyless servers). Pure.

For one workload and one of its ports (an inbound filter chain), the policies that select the
workload (:meth:`~federation.model.authz.AuthorizationPolicy.selects`) become, in order:

1. ``rbac-deny``: action DENY, one Envoy policy per DENY rule (evaluated first);
2. ``rbac-allow``: action ALLOW, one Envoy policy per ALLOW rule -- present only when some
   enforced ALLOW policy selects the workload (Istio: no ALLOW policy means allow), or when the
   mesh-wide default is deny;
3. ``rbac-audit``: action LOG for AUDIT rules (marks the request for the access log).

Dry-run policies go into the same filters' ``shadow_rules`` (stats
``http.inbound_<port>.rbac.<deny_|allow_>shadow_denied``, and the inbound access log's
``rbac=`` field), never into ``rules``. Envoy fields: ``extensions.filters.http.rbac.v3.RBAC``,
``config.rbac.v3.{RBAC, Policy, Permission, Principal}``. Rule semantics: see
:mod:`federation.model.authz`; ``ports`` are resolved here, per filter chain. ``clusters``
match the caller's cluster claim, a DNS SAN, with the ``envoy.rbac.principals.mtls_authenticated``
principal (``extensions.rbac.principals.mtls_authenticated.v3.Config.san_matcher``, SAN type
DNS): ``Authenticated.principal_name`` would test the URI SAN only.

Variants: :func:`network_rbac_filters` (TCP ports: ``envoy.filters.network.rbac``, HTTP
fields removed towards denial), :func:`rbac_per_route` (the SNI-less inbound chain that
serves several ports), :func:`grpc_rbac_filters` (proxyless gRPC servers, gRFC A41).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any, Literal

from envoy.config.core.v3 import address_pb2 as core_address
from envoy.config.core.v3 import extension_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac
from envoy.extensions.rbac.principals.mtls_authenticated.v3 import mtls_authenticated_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2 as tls_common
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2
from google.protobuf import any_pb2, wrappers_pb2

from federation.controlplane.generate.common import pack
from federation.model.authz import (
    AuthorizationPolicy,
    Condition,
    From,
    Operation,
    Rule,
    principal_pattern,
)
from trust.pki import CLUSTER_NAME_DOMAIN

FILTER = "envoy.filters.http.rbac"
NETWORK_FILTER = "envoy.filters.network.rbac"


def string_matcher(pattern: str) -> string_pb2.StringMatcher:
    """Istio's glob (``*``, ``prefix*``, ``*suffix``, exact) as an Envoy StringMatcher."""
    if pattern == "*":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".*"))
    if pattern.endswith("*"):
        return string_pb2.StringMatcher(prefix=pattern[:-1])
    if pattern.startswith("*"):
        return string_pb2.StringMatcher(suffix=pattern[1:])
    return string_pb2.StringMatcher(exact=pattern)


def _any_principal() -> rbac.Principal:
    return rbac.Principal(any=True)


def _any_permission() -> rbac.Permission:
    return rbac.Permission(any=True)


def _principal_name(pattern: str) -> rbac.Principal:
    return rbac.Principal(
        authenticated=rbac.Principal.Authenticated(
            principal_name=string_matcher(principal_pattern(pattern))
        )
    )


def _segment_regex(pattern: str, separator: str) -> str:
    """Istio's glob for one segment of a name (no ``separator`` inside) as a regex."""
    other = f"[^{re.escape(separator)}]"
    if pattern == "*":
        return other + "+"
    if pattern.endswith("*"):
        return re.escape(pattern[:-1]) + other + "*"
    if pattern.startswith("*"):
        return other + "*" + re.escape(pattern[1:])
    return re.escape(pattern)


def _namespace(pattern: str) -> rbac.Principal:
    """The caller's namespace, read from its SPIFFE ID (``spiffe://<td>/ns/<ns>/sa/<sa>``)."""
    regex = f"spiffe://[^/]+/ns/{_segment_regex(pattern, '/')}/sa/[^/]+"
    return rbac.Principal(
        authenticated=rbac.Principal.Authenticated(
            principal_name=string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex))
        )
    )


def _cluster(pattern: str) -> rbac.Principal:
    """The caller's cluster claim: its SVID's DNS SAN ``<cluster>.cluster.meshfed.internal``."""
    regex = f"{_segment_regex(pattern, '.')}\\.{re.escape(CLUSTER_NAME_DOMAIN)}"
    config = mtls_authenticated_pb2.Config(
        san_matcher=tls_common.SubjectAltNameMatcher(
            san_type=tls_common.SubjectAltNameMatcher.DNS,
            matcher=string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex)),
        )
    )
    return rbac.Principal(
        custom=extension_pb2.TypedExtensionConfig(
            name="envoy.rbac.principals.mtls_authenticated", typed_config=pack(config)
        )
    )


def _or_ids(ids: list[rbac.Principal]) -> rbac.Principal:
    return ids[0] if len(ids) == 1 else rbac.Principal(or_ids=rbac.Principal.Set(ids=ids))


def _or_rules(rules: list[rbac.Permission]) -> rbac.Permission:
    return (
        rules[0] if len(rules) == 1 else rbac.Permission(or_rules=rbac.Permission.Set(rules=rules))
    )


def _source(item: From) -> rbac.Principal:
    s = item.source
    parts: list[rbac.Principal] = []
    if s.principals is not None:
        parts.append(_or_ids([_principal_name(p) for p in s.principals]))
    if s.not_principals:
        parts.append(rbac.Principal(not_id=_or_ids([_principal_name(p) for p in s.not_principals])))
    if s.namespaces is not None:
        parts.append(_or_ids([_namespace(n) for n in s.namespaces]))
    if s.not_namespaces:
        parts.append(rbac.Principal(not_id=_or_ids([_namespace(n) for n in s.not_namespaces])))
    if s.clusters is not None:
        parts.append(_or_ids([_cluster(c) for c in s.clusters]))
    if s.not_clusters:
        parts.append(rbac.Principal(not_id=_or_ids([_cluster(c) for c in s.not_clusters])))
    if s.ip_blocks is not None:
        parts.append(_or_ids([_remote_ip(b) for b in s.ip_blocks]))
    if s.not_ip_blocks:
        parts.append(rbac.Principal(not_id=_or_ids([_remote_ip(b) for b in s.not_ip_blocks])))
    if not parts:
        return _any_principal()
    return parts[0] if len(parts) == 1 else rbac.Principal(and_ids=rbac.Principal.Set(ids=parts))


def _cidr(block: str) -> core_address.CidrRange:
    net = ip_network(block, strict=False)
    return core_address.CidrRange(
        address_prefix=str(net.network_address),
        prefix_len=wrappers_pb2.UInt32Value(value=net.prefixlen),
    )


def _remote_ip(block: str) -> rbac.Principal:
    """The connection's peer address (``direct_remote_ip``: through a gateway, the
    gateway's)."""
    return rbac.Principal(direct_remote_ip=_cidr(block))


def _header(name: str, pattern: str) -> rbac.Principal:
    return rbac.Principal(
        header=route_components_pb2.HeaderMatcher(name=name, string_match=string_matcher(pattern))
    )


def _condition_principal(cond: Condition, values: list[str]) -> rbac.Principal | None:
    """A principal-side ``when`` condition (headers, source.*) as one Principal (values
    ORed); None for a permission-side key."""
    header = cond.header
    if header is not None:
        return _or_ids([_header(header, v) for v in values])
    makers = {
        "source.ip": _remote_ip,
        "source.namespace": _namespace,
        "source.principal": _principal_name,
    }
    make = makers.get(cond.key)
    return _or_ids([make(v) for v in values]) if make else None


def _condition_permission(cond: Condition, values: list[str]) -> rbac.Permission | None:
    """A permission-side ``when`` condition (destination.ip, connection.sni) as one
    Permission (values ORed); None for another key."""
    if cond.key == "destination.ip":
        return _or_rules([rbac.Permission(destination_ip=_cidr(v)) for v in values])
    if cond.key == "connection.sni":
        return _or_rules([rbac.Permission(requested_server_name=string_matcher(v)) for v in values])
    return None


def _conditions(
    conditions: Sequence[Condition], ports: Sequence[int]
) -> tuple[list[rbac.Principal], list[rbac.Permission]] | None:
    """The ``when`` conditions of a rule, for a chain serving ``ports``: the principals and
    permissions each request must also match (ANDed); None when a ``destination.port``
    condition cannot hold on this chain (the rule cannot match here)."""
    principals: list[rbac.Principal] = []
    permissions: list[rbac.Permission] = []
    for cond in conditions:
        if cond.key == "destination.port":
            here = {str(p) for p in ports}
            if cond.values is not None and not here & set(cond.values):
                return None
            if cond.not_values is not None and here & set(cond.not_values):
                return None
            continue
        for values, negate in ((cond.values, False), (cond.not_values, True)):
            if values is None:
                continue
            principal = _condition_principal(cond, values)
            if principal is not None:
                principals.append(rbac.Principal(not_id=principal) if negate else principal)
            permission = _condition_permission(cond, values)
            if permission is not None:
                permissions.append(rbac.Permission(not_rule=permission) if negate else permission)
    return principals, permissions


def _method(method: str) -> rbac.Permission:
    return rbac.Permission(
        header=route_components_pb2.HeaderMatcher(
            name=":method", string_match=string_matcher(method)
        )
    )


def _path(pattern: str) -> rbac.Permission:
    return rbac.Permission(url_path=path_pb2.PathMatcher(path=string_matcher(pattern)))


def _operation(op: Operation) -> rbac.Permission:
    parts: list[rbac.Permission] = []
    if op.methods is not None:
        parts.append(_or_rules([_method(m) for m in op.methods]))
    if op.not_methods:
        parts.append(rbac.Permission(not_rule=_or_rules([_method(m) for m in op.not_methods])))
    if op.paths is not None:
        parts.append(_or_rules([_path(p) for p in op.paths]))
    if op.not_paths:
        parts.append(rbac.Permission(not_rule=_or_rules([_path(p) for p in op.not_paths])))
    if not parts:
        return _any_permission()
    return (
        parts[0] if len(parts) == 1 else rbac.Permission(and_rules=rbac.Permission.Set(rules=parts))
    )


def _on_ports(op: Operation, ports: Sequence[int]) -> bool:
    """Whether ``op``'s ``ports`` and ``notPorts`` let it match on a chain serving ``ports``."""
    return (op.ports is None or any(int(p) in ports for p in op.ports)) and (
        op.not_ports is None or not any(int(p) in ports for p in op.not_ports)
    )


def envoy_policy(rule: Rule, ports: Sequence[int]) -> rbac.Policy | None:
    """One rule as an Envoy Policy for a filter chain serving ``ports`` (service and target
    port); None when the rule cannot match there (its every ``to`` names other ports, or a
    ``when`` on ``destination.port`` does not hold). ``when`` conditions are ANDed onto the
    ORed principals (headers, source.*) or permissions (destination.ip, connection.sni)."""
    conditions = _conditions(rule.when or [], ports)
    if conditions is None:
        return None
    if rule.to is None:
        permissions = [_any_permission()]
    else:
        ops = [t.operation for t in rule.to if _on_ports(t.operation, ports)]
        if not ops:
            return None
        permissions = [_operation(op) for op in ops]
    principals = [_any_principal()] if rule.from_ is None else [_source(f) for f in rule.from_]
    when_principals, when_permissions = conditions
    if when_principals:
        principals = [
            rbac.Principal(and_ids=rbac.Principal.Set(ids=[_or_ids(principals), *when_principals]))
        ]
    if when_permissions:
        permissions = [
            rbac.Permission(
                and_rules=rbac.Permission.Set(rules=[_or_rules(permissions), *when_permissions])
            )
        ]
    return rbac.Policy(permissions=permissions, principals=principals)


def _policies(
    selected: Sequence[AuthorizationPolicy], action: str, ports: Sequence[int]
) -> dict[str, rbac.Policy]:
    out: dict[str, rbac.Policy] = {}
    for p in selected:
        if p.spec.action != action:
            continue
        for i, rule in enumerate(p.spec.rules):
            policy = envoy_policy(rule, ports)
            if policy is not None:
                out[f"{p.metadata.namespace}.{p.metadata.name}[{i}]"] = policy
    return out


@dataclass(frozen=True, slots=True)
class _Engine:
    """One RBAC filter's content: its name suffix, action, rules and shadow rules."""

    name: str
    action: rbac.RBAC.Action.ValueType
    enforced: dict[str, rbac.Policy] | None
    shadow: dict[str, rbac.Policy] | None

    @property
    def prefix(self) -> str:
        return f"{self.name}_"

    def fields(self) -> dict[str, Any]:
        """``rules``, ``shadow_rules`` (when present) and ``shadow_rules_stat_prefix``: the
        fields the HTTP and the network RBAC filter configurations share."""
        out: dict[str, Any] = {"shadow_rules_stat_prefix": self.prefix}
        if self.enforced is not None:
            out["rules"] = rbac.RBAC(action=self.action, policies=self.enforced)
        if self.shadow is not None:
            out["shadow_rules"] = rbac.RBAC(action=self.action, policies=self.shadow)
        return out


def _engines(
    selected: Sequence[AuthorizationPolicy], ports: Sequence[int], *, default_allow: bool
) -> list[_Engine]:
    ordered = sorted(selected, key=lambda p: p.key)
    enforced = [p for p in ordered if not p.dry_run]
    shadow = [p for p in ordered if p.dry_run]
    engines: list[_Engine] = []
    deny, deny_shadow = _policies(enforced, "DENY", ports), _policies(shadow, "DENY", ports)
    if deny or deny_shadow:
        engines.append(_Engine("deny", rbac.RBAC.Action.DENY, deny or None, deny_shadow or None))
    has_allow = any(p.spec.action == "ALLOW" for p in enforced) or not default_allow
    allow_shadow = (
        _policies(shadow, "ALLOW", ports) if any(p.spec.action == "ALLOW" for p in shadow) else None
    )
    if has_allow or allow_shadow is not None:
        allow = _policies(enforced, "ALLOW", ports) if has_allow else None
        engines.append(_Engine("allow", rbac.RBAC.Action.ALLOW, allow, allow_shadow))
    audit = _policies(enforced, "AUDIT", ports)
    if audit:
        engines.append(_Engine("audit", rbac.RBAC.Action.LOG, audit, None))
    return engines


def rbac_filters(
    selected: Sequence[AuthorizationPolicy], ports: Sequence[int], *, default_allow: bool = True
) -> list[hcm.HttpFilter]:
    """The RBAC HTTP filters (before the router) for one inbound filter chain; ``[]`` when
    no policy selects the workload and the default is allow.

    Args:
        selected: the policies that select the workload (any order; sorted here).
        ports: the chain's service port and target port.
        default_allow: False for the mesh-wide default deny.
    """
    return [
        hcm.HttpFilter(
            name=f"{FILTER}.{engine.name}", typed_config=pack(rbac_filter.RBAC(**engine.fields()))
        )
        for engine in _engines(selected, ports, default_allow=default_allow)
    ]


def _towards_denial(
    policy: AuthorizationPolicy,
    side: Literal["from_", "to"],
    part: Literal["source", "operation"],
    fields: tuple[str, ...],
) -> AuthorizationPolicy:
    """``policy`` without ``fields`` (of each rule's ``from[].source`` or ``to[].operation``),
    which some enforcement point cannot check, erring towards denial: an ALLOW rule drops
    the items that name them (it allows less; a rule left without items is dropped, and an
    ALLOW policy left without rules allows nothing), a DENY or AUDIT rule's items lose them
    (they match more)."""
    rules: list[Rule] = []
    for rule in policy.spec.rules:
        items = getattr(rule, side)
        if items is None:
            rules.append(rule)
            continue
        if policy.spec.action == "ALLOW":
            kept = [i for i in items if all(getattr(getattr(i, part), f) is None for f in fields)]
        else:
            kept = [
                i.model_copy(
                    update={part: getattr(i, part).model_copy(update=dict.fromkeys(fields))}
                )
                for i in items
            ]
        if kept:
            rules.append(rule.model_copy(update={side: kept}))
    return policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": rules})})


def _conditions_towards_denial(
    policy: AuthorizationPolicy, unseen: Callable[[Condition], bool]
) -> AuthorizationPolicy:
    """``policy`` without the ``when`` conditions an enforcement point cannot check
    (``unseen``), erring towards denial as :func:`_towards_denial` does: an ALLOW rule with
    one is dropped, a DENY or AUDIT rule loses it (it matches more)."""
    if not any(unseen(c) for r in policy.spec.rules for c in r.when or []):
        return policy
    rules: list[Rule] = []
    for rule in policy.spec.rules:
        if not any(unseen(c) for c in rule.when or []):
            rules.append(rule)
        elif policy.spec.action != "ALLOW":
            rules.append(
                rule.model_copy(update={"when": [c for c in rule.when or [] if not unseen(c)]})
            )
    return policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": rules})})


def tcp_only(policy: AuthorizationPolicy) -> AuthorizationPolicy:
    """``policy`` for a TCP port, where methods, paths and headers cannot be seen (Istio's
    rule): :func:`_towards_denial` of them."""
    return _conditions_towards_denial(
        _towards_denial(
            policy, "to", "operation", ("methods", "not_methods", "paths", "not_paths")
        ),
        lambda c: c.header is not None,
    )


def network_rbac_filters(
    selected: Sequence[AuthorizationPolicy], ports: Sequence[int], stat_prefix: str
) -> list[listener_components_pb2.Filter]:
    """The network RBAC filters (``envoy.filters.network.rbac``, before ``tcp_proxy``) for an
    inbound TCP chain: the same engines as :func:`rbac_filters` on the policies made TCP-only
    (:func:`tcp_only`). A denied connection is closed when its first bytes arrive (the
    filter's default ``ONE_TIME_ON_FIRST_BYTE``)."""
    tcp = [tcp_only(p) for p in selected]
    return [
        listener_components_pb2.Filter(
            name=f"{NETWORK_FILTER}.{engine.name}",
            typed_config=pack(
                network_rbac.RBAC(stat_prefix=f"{stat_prefix}.{engine.prefix}", **engine.fields())
            ),
        )
        for engine in _engines(tcp, ports, default_allow=True)
    ]


def rbac_per_route(
    selected: Sequence[AuthorizationPolicy], port_sets: Sequence[Sequence[int]]
) -> tuple[list[hcm.HttpFilter], list[dict[str, any_pb2.Any]]]:
    """RBAC for one HTTP connection manager whose routes serve different ports (the inbound
    authority chain): the filters (every name any port needs, in the order deny, allow,
    audit), and per route -- ``port_sets[i]`` -- the ``typed_per_filter_config`` that gives
    each filter that port's rules (``RBACPerRoute.rbac``) or disables it there (an empty
    ``RBACPerRoute``: Envoy then skips the filter for the route)."""
    per_port = [
        {e.name: rbac_filter.RBAC(**e.fields()) for e in _engines(selected, p, default_allow=True)}
        for p in port_sets
    ]
    names = [n for n in ("deny", "allow", "audit") if any(n in configs for configs in per_port)]
    filters = [
        hcm.HttpFilter(
            name=f"{FILTER}.{n}",
            typed_config=pack(next(c[n] for c in per_port if n in c)),
        )
        for n in names
    ]
    overrides = [
        {
            f"{FILTER}.{n}": pack(
                rbac_filter.RBACPerRoute(rbac=configs[n])
                if n in configs
                else rbac_filter.RBACPerRoute()
            )
            for n in names
        }
        for configs in per_port
    ]
    return filters, overrides


def _without_clusters(policy: AuthorizationPolicy) -> AuthorizationPolicy:
    """``policy`` without the cluster claim, which gRPC's RBAC cannot check (gRFC A41 has no
    ``custom`` principal), nor ``connection.sni`` conditions (A41 matches
    ``requested_server_name`` only when empty): :func:`_towards_denial` of them."""
    return _conditions_towards_denial(
        _towards_denial(policy, "from_", "source", ("clusters", "not_clusters")),
        lambda c: c.key == "connection.sni",
    )


def grpc_rbac_filters(
    selected: Sequence[AuthorizationPolicy], ports: Sequence[int]
) -> list[hcm.HttpFilter]:
    """The RBAC filters for a proxyless gRPC server (gRFC A41): the enforced ALLOW and DENY
    policies as :func:`rbac_filters` makes them, with ``clusters`` removed towards denial
    (:func:`_without_clusters`); dry-run and AUDIT policies are left out (gRPC has neither
    shadow rules nor the LOG action)."""
    enforced = [
        _without_clusters(p)
        for p in selected
        if not p.dry_run and p.spec.action in ("ALLOW", "DENY")
    ]
    return rbac_filters(enforced, ports)
