"""``AuthorizationPolicy``: who may call whom, in the shape and with the semantics of Istio's
``security.istio.io/v1`` AuthorizationPolicy (also accepted as ``meshfed.io/v1alpha1``)::

    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata:
      name: echo-callers
      namespace: demo                      # meshfed-system: the root namespace (mesh-wide)
      annotations: {istio.io/dry-run: "true"}   # optional: log what it would do, enforce nothing
    spec:
      selector: {matchLabels: {app: echo}} # the workloads (WorkloadEntry labels); none: all
      action: ALLOW                        # ALLOW (default) | DENY | AUDIT
      rules:
      - from:
        - source:
            principals: ["example.org/ns/demo/sa/frontend"]   # or spiffe://..., * globs
            namespaces: ["demo"]
            clusters: ["aws-us-east-1"]    # meshfed: the cluster whose CA issued the SVID
        to:
        - operation: {ports: ["8080"], methods: ["GET"], paths: ["/api/*"]}
        when:
        - key: request.headers[x-tenant]   # Istio's condition keys: see Condition
          values: ["blue-*"]

Rules, as Istio has them (https://istio.io/latest/docs/reference/config/security/
authorization-policy/, read 2026-11-27): a request is denied when any DENY policy matches it;
else allowed when no ALLOW policy selects the workload; else allowed when an ALLOW policy
matches, and denied otherwise. Items of ``from`` and of ``to`` are ORed, the fields inside
one item ANDed, ``from`` and ``to`` of a rule ANDed; an absent ``from`` or ``to`` matches
anything; a policy without rules matches nothing (an ALLOW policy without rules denies every
request: Istio's "deny all"). ``AUDIT`` only marks requests for the access log. Strings
accept Istio's ``*`` globs: ``*`` (any), ``prefix*``, ``*suffix``. A principal is the
caller's SPIFFE ID with or without ``spiffe://``; its trust domain ``cluster.local`` means
the federation's own, as in Istio (:func:`for_trust_domain`), and one that is neither gets a
warning when applied (:func:`trust_domain_warnings`). Ports are the workload's service or
target port numbers. The caller's identity is its X.509-SVID, checked by mTLS at the
destination sidecar, so it survives east-west gateways (they pass TLS through). ``clusters``
(and ``notClusters``), meshfed's addition, match the cluster claim of that SVID: the DNS SAN
``<cluster>.cluster.meshfed.internal`` that its cluster's CA adds and that the name
constraints on that CA's intermediate make unforgeable by other clusters
(:mod:`trust.pki`); an SVID without a claim (a CA issued without name constraints) matches
no ``clusters`` value, and every ``notClusters``.

:func:`evaluate` is the decision in Python (for ``explain`` and tests); the control plane
enforces the same with Envoy's RBAC filter (``controlplane/generate/rbac.py``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from federation.model.istio_networking import not_supported
from federation.model.workload import ObjectMeta, _Strict

#: Workloads in every namespace are selected by policies in this namespace (Istio's root
#: namespace, ``istio-system`` there).
ROOT_NAMESPACE = "meshfed-system"
DRY_RUN_ANNOTATIONS = ("istio.io/dry-run", "meshfed.io/dry-run")
_METHOD = re.compile(r"^[A-Z]+$|^\*$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_CLUSTER_GLOB = re.compile(r"^\*?[a-z0-9-]*\*?$")
_HEADER_KEY = re.compile(r"^request\.headers\[([A-Za-z0-9!#$%&'*+.^_`|~-]+)\]$")
#: ``when`` keys meshfed checks besides ``request.headers[<name>]``.
CONDITION_KEYS = (
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
    "connection.sni",
)
_NotYet = Annotated[Any, not_supported()]
_NoJwt = Annotated[
    Any, not_supported("JWT (RequestAuthentication) is not supported yet: no request principal")
]


def condition_key(key: str) -> str:
    """``key`` if meshfed checks it (see :class:`Condition`).

    Raises:
        ValueError: an Istio key meshfed does not check (JWT ``request.auth.*``,
            ``remote.ip``, ``experimental.*``) or not an Istio key, with the reason.
    """
    if key in CONDITION_KEYS or _HEADER_KEY.match(key):
        return key
    if key.startswith("request.auth."):
        raise ValueError(
            f"{key!r}: not supported by meshfed: JWT (RequestAuthentication) is not supported yet"
        )
    if key in ("remote.ip",) or key.startswith("experimental."):
        raise ValueError(f"{key!r}: not supported by meshfed yet")
    known = ", ".join([*CONDITION_KEYS, "request.headers[<name>]"])
    raise ValueError(f"{key!r} is not a condition key (meshfed checks {known})")


def _ip_block(value: str) -> str:
    """An IP address or CIDR block (``10.0.0.1``, ``10.0.0.0/16``, IPv6 too)."""
    try:
        ip_network(value, strict=False)
    except ValueError as err:
        raise ValueError(f"{value!r} is not an IP address or CIDR block") from err
    return value


def _glob(value: str, what: str) -> str:
    if not value or "*" in value.strip("*") or (value.count("*") > 1 and value != "*"):
        raise ValueError(f"{what} {value!r}: use *, prefix*, *suffix or an exact string")
    return value


def glob_match(pattern: str, text: str) -> bool:
    """Istio's string match: ``*``, ``prefix*``, ``*suffix`` or exact."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return text.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return text.endswith(pattern[1:])
    return text == pattern


#: Istio's default trust domain. In a principal it stands for the mesh's own trust domain,
#: whatever that is, as in Istio (istio/istio ``pkg/config/security/trustdomain``,
#: ``ReplaceTrustDomainAliases``: "cluster.local ... is a pointer to the local trust
#: domain"), so Istio's policies, written for ``cluster.local/ns/NS/sa/SA``, keep meaning
#: what they meant in a federation whose trust domain is another.
LOCAL_TRUST_DOMAIN = "cluster.local"


def principal_trust_domain(value: str) -> str | None:
    """The trust domain a principal names (``example.org`` of
    ``[spiffe://]example.org/ns/x/sa/y``); None when a glob covers it (``*``, ``*/ns/...``)."""
    td = value.removeprefix("spiffe://").split("/", 1)[0]
    return None if not td or "*" in td else td


def localized_principal(value: str, trust_domain: str) -> str:
    """``value`` with :data:`LOCAL_TRUST_DOMAIN` replaced by ``trust_domain``; other
    principals unchanged."""
    if principal_trust_domain(value) != LOCAL_TRUST_DOMAIN:
        return value
    scheme = "spiffe://" if value.startswith("spiffe://") else ""
    return scheme + trust_domain + value.removeprefix(scheme)[len(LOCAL_TRUST_DOMAIN) :]


def principal_pattern(value: str) -> str:
    """A principal as matched against the SVID's URI SAN: ``spiffe://`` added when absent
    (Istio writes ``<trust-domain>/ns/<ns>/sa/<sa>``); ``*`` stays ``*``."""
    if value == "*" or value.startswith(("spiffe://", "*")):
        return value
    return "spiffe://" + value


class Source(_Strict):
    """``from[].source``: who calls (fields ANDed; each list ORed)."""

    principals: list[str] | None = None
    not_principals: list[str] | None = Field(default=None, alias="notPrincipals")
    namespaces: list[str] | None = None
    not_namespaces: list[str] | None = Field(default=None, alias="notNamespaces")
    clusters: list[str] | None = None
    not_clusters: list[str] | None = Field(default=None, alias="notClusters")
    ip_blocks: list[str] | None = Field(default=None, alias="ipBlocks")
    not_ip_blocks: list[str] | None = Field(default=None, alias="notIpBlocks")
    remote_ip_blocks: _NotYet = Field(default=None, alias="remoteIpBlocks")
    not_remote_ip_blocks: _NotYet = Field(default=None, alias="notRemoteIpBlocks")
    request_principals: _NoJwt = Field(default=None, alias="requestPrincipals")
    not_request_principals: _NoJwt = Field(default=None, alias="notRequestPrincipals")

    @field_validator("ip_blocks", "not_ip_blocks")
    @classmethod
    def _blocks(cls, value: list[str] | None) -> list[str] | None:
        for v in value or []:
            _ip_block(v)
        return value

    @field_validator("principals", "not_principals", "namespaces", "not_namespaces")
    @classmethod
    def _globs(cls, value: list[str] | None) -> list[str] | None:
        for v in value or []:
            _glob(v, "value")
        return value

    @field_validator("clusters", "not_clusters")
    @classmethod
    def _cluster_globs(cls, value: list[str] | None) -> list[str] | None:
        for v in value or []:
            _glob(v, "cluster")
            if not _CLUSTER_GLOB.match(v):
                raise ValueError(
                    f"cluster {v!r}: a cluster name is a DNS label (lower case letters,"
                    " digits and '-'), optionally with a * glob"
                )
        return value


class From(_Strict):
    """One ``from`` item."""

    source: Source = Field(default_factory=Source)


class Operation(_Strict):
    """``to[].operation``: what is called (fields ANDed; each list ORed)."""

    ports: list[str] | None = None
    methods: list[str] | None = None
    paths: list[str] | None = None
    not_paths: list[str] | None = Field(default=None, alias="notPaths")
    not_methods: list[str] | None = Field(default=None, alias="notMethods")
    not_ports: list[str] | None = Field(default=None, alias="notPorts")
    hosts: _NotYet = None
    not_hosts: _NotYet = Field(default=None, alias="notHosts")

    @field_validator("ports", "not_ports")
    @classmethod
    def _ports(cls, value: list[str] | None) -> list[str] | None:
        for v in value or []:
            if not _PORT.match(str(v)) or not 0 < int(v) < 65536:
                raise ValueError(f"port {v!r} must be a number 1-65535 (as a string)")
        return value

    @field_validator("methods", "not_methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        for v in value or []:
            if not _METHOD.match(v):
                raise ValueError(f"method {v!r} must be upper case, e.g. GET")
        return value

    @field_validator("paths", "not_paths")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        for v in value or []:
            _glob(v, "path")
            if not (v.startswith("/") or v.startswith("*")):
                raise ValueError(f"path {v!r} must start with / (or be a * glob)")
        return value


class To(_Strict):
    """One ``to`` item."""

    operation: Operation = Field(default_factory=Operation)


class Condition(_Strict):
    """One ``when`` condition: ``key`` has one of ``values`` and none of ``notValues`` (at
    least one given). Keys meshfed checks (Istio's names,
    istio.io/latest/docs/reference/config/security/conditions/): :data:`CONDITION_KEYS`
    and ``request.headers[<name>]``."""

    key: str
    values: list[str] | None = None
    not_values: list[str] | None = Field(default=None, alias="notValues")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return condition_key(value)

    @model_validator(mode="after")
    def _values(self) -> Condition:
        if not self.values and not self.not_values:
            raise ValueError("give values, notValues or both")
        for v in [*(self.values or []), *(self.not_values or [])]:
            if self.key in ("source.ip", "destination.ip"):
                _ip_block(v)
            elif self.key == "destination.port" and (not _PORT.match(v) or not 0 < int(v) < 65536):
                raise ValueError(f"port {v!r} must be a number 1-65535 (as a string)")
            else:
                _glob(v, "value")
        return self

    @property
    def header(self) -> str | None:
        """The header name of a ``request.headers[<name>]`` key (lower case), else None."""
        m = _HEADER_KEY.match(self.key)
        return m.group(1).lower() if m else None


class Rule(_Strict):
    """One rule: ``from`` AND ``to`` AND every ``when`` condition (absent: anything)."""

    from_: list[From] | None = Field(default=None, alias="from")
    to: list[To] | None = None
    when: list[Condition] | None = None


class Selector(_Strict):
    """``selector``: the workloads a policy applies to, by their labels."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")


class AuthorizationPolicySpec(_Strict):
    """``spec`` of an AuthorizationPolicy."""

    selector: Selector | None = None
    action: Literal["ALLOW", "DENY", "AUDIT"] = "ALLOW"
    rules: list[Rule] = Field(default_factory=list)
    provider: Annotated[
        Any, not_supported("action CUSTOM (an external authorizer) is not supported yet")
    ] = None
    target_ref: Annotated[Any, not_supported("select workloads with selector.matchLabels")] = Field(
        default=None, alias="targetRef"
    )
    target_refs: Annotated[Any, not_supported("select workloads with selector.matchLabels")] = (
        Field(default=None, alias="targetRefs")
    )

    @field_validator("action", mode="before")
    @classmethod
    def _custom(cls, value: Any) -> Any:
        if value == "CUSTOM":
            raise PydanticCustomError(
                "not_supported",
                "not supported by meshfed: 'CUSTOM': an external authorizer is not supported"
                " yet (use ALLOW, DENY or AUDIT)",
            )
        return value


class AuthorizationPolicy(_Strict):
    """An ``AuthorizationPolicy`` document (see the module docstring)."""

    api_version: Literal[
        "security.istio.io/v1", "security.istio.io/v1beta1", "meshfed.io/v1alpha1"
    ] = Field(alias="apiVersion")
    kind: Literal["AuthorizationPolicy"]
    metadata: ObjectMeta
    spec: AuthorizationPolicySpec = Field(default_factory=AuthorizationPolicySpec)

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``."""
        return (self.metadata.namespace, self.metadata.name)

    @property
    def dry_run(self) -> bool:
        """True with the annotation ``istio.io/dry-run`` (or ``meshfed.io/dry-run``) "true"."""
        return any(
            self.metadata.annotations.get(a, "").lower() == "true" for a in DRY_RUN_ANNOTATIONS
        )

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether this policy applies to a workload in ``namespace`` with ``labels``."""
        if self.metadata.namespace not in (namespace, ROOT_NAMESPACE):
            return False
        wanted = self.spec.selector.match_labels if self.spec.selector else {}
        return all(labels.get(k) == v for k, v in wanted.items())


def _sources(policy: AuthorizationPolicy) -> Iterable[tuple[str, Source]]:
    """``(path, source)`` of every ``from`` item (``spec.rules[0].from[1].source``)."""
    for r, rule in enumerate(policy.spec.rules):
        for f, item in enumerate(rule.from_ or []):
            yield f"spec.rules[{r}].from[{f}].source", item.source


def for_trust_domain(policy: AuthorizationPolicy, trust_domain: str) -> AuthorizationPolicy:
    """``policy`` as a mesh of ``trust_domain`` enforces it: principals naming
    :data:`LOCAL_TRUST_DOMAIN` name ``trust_domain`` (the same object when none does; the
    stored document stays as written)."""
    if not any(
        principal_trust_domain(p) == LOCAL_TRUST_DOMAIN
        for _, s in _sources(policy)
        for p in [*(s.principals or []), *(s.not_principals or [])]
    ):
        return policy

    def local(values: list[str] | None) -> list[str] | None:
        return None if values is None else [localized_principal(v, trust_domain) for v in values]

    rules = [
        rule.model_copy(
            update={
                "from_": [
                    item.model_copy(
                        update={
                            "source": item.source.model_copy(
                                update={
                                    "principals": local(item.source.principals),
                                    "not_principals": local(item.source.not_principals),
                                }
                            )
                        }
                    )
                    for item in rule.from_
                ]
            }
        )
        if rule.from_ is not None
        else rule
        for rule in policy.spec.rules
    ]
    return policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": rules})})


def trust_domain_warnings(
    policy: AuthorizationPolicy, trust_domain: str, federated: Collection[str] = ()
) -> list[str]:
    """Principals that name a trust domain other than ``trust_domain`` (and
    :data:`LOCAL_TRUST_DOMAIN`) and the ``federated`` ones (SPIFFE federation): no SVID this
    federation accepts carries them, so they match no caller -- in an ALLOW policy, every
    caller they were meant to let in is denied. One message per principal, naming its
    field."""
    out = []
    for where, source in _sources(policy):
        for name, values in (("principals", source.principals),
                             ("notPrincipals", source.not_principals)):  # fmt: skip
            for k, value in enumerate(values or []):
                td = principal_trust_domain(value)
                if td is not None and td not in (trust_domain, LOCAL_TRUST_DOMAIN, *federated):
                    out.append(
                        f"{where}.{name}[{k}]: {value!r} names trust domain {td!r}, not this"
                        f" federation's {trust_domain!r}: no caller carries it (write"
                        f" {trust_domain}/... or Istio's {LOCAL_TRUST_DOMAIN}/..., which means"
                        f" this federation's; or trust {td}'s SVIDs: meshfed trust federate"
                        f" --with {td})"
                    )
    return out


@dataclass(frozen=True, slots=True)
class Request:
    """What :func:`evaluate` decides on: the caller's SPIFFE ID (None: no mTLS), the ports of
    the workload it reached (service and target port), the method, the path, the cluster
    its SVID claims (None: no claim), the request's headers (lower-case names), the
    connection's peer and local addresses and its TLS SNI."""

    principal: str | None
    ports: tuple[int, ...] = ()
    method: str = "GET"
    path: str = "/"
    cluster: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    source_ip: str | None = None
    destination_ip: str | None = None
    sni: str | None = None


def _namespace_of(principal: str | None) -> str | None:
    m = re.match(r"^spiffe://[^/]+/ns/([^/]+)/sa/[^/]+$", principal or "")
    return m.group(1) if m else None


def _any(patterns: Iterable[str], text: str | None, *, principal: bool = False) -> bool:
    if text is None:
        return False
    return any(glob_match(principal_pattern(p) if principal else p, text) for p in patterns)


def _in_blocks(blocks: Iterable[str], address: str | None) -> bool:
    if address is None:
        return False
    return any(ip_address(address) in ip_network(b, strict=False) for b in blocks)


def source_matches(
    source: Source, principal: str | None, cluster: str | None = None, source_ip: str | None = None
) -> bool:
    """Whether the caller ``principal`` (whose SVID claims ``cluster``, connecting from
    ``source_ip``) is this source."""
    ns = _namespace_of(principal)
    checks = [
        source.ip_blocks is None or _in_blocks(source.ip_blocks, source_ip),
        source.not_ip_blocks is None or not _in_blocks(source.not_ip_blocks, source_ip),
        source.principals is None or _any(source.principals, principal, principal=True),
        source.not_principals is None or not _any(source.not_principals, principal, principal=True),
        source.namespaces is None or _any(source.namespaces, ns),
        source.not_namespaces is None or not _any(source.not_namespaces, ns),
        source.clusters is None or _any(source.clusters, cluster),
        source.not_clusters is None or not _any(source.not_clusters, cluster),
    ]
    return all(checks)


def operation_matches(op: Operation, request: Request) -> bool:
    """Whether the request is this operation."""
    checks = [
        op.ports is None or any(int(p) in request.ports for p in op.ports),
        op.not_ports is None or not any(int(p) in request.ports for p in op.not_ports),
        op.methods is None or _any(op.methods, request.method),
        op.not_methods is None or not _any(op.not_methods, request.method),
        op.paths is None or _any(op.paths, request.path),
        op.not_paths is None or not _any(op.not_paths, request.path),
    ]
    return all(checks)


def _condition_value(key: str, request: Request) -> str | None:
    if key.startswith("request.headers["):
        m = _HEADER_KEY.match(key)
        assert m is not None
        return request.headers.get(m.group(1).lower())
    return {
        "source.ip": request.source_ip,
        "source.namespace": _namespace_of(request.principal),
        "source.principal": request.principal,
        "destination.ip": request.destination_ip,
        "connection.sni": request.sni,
    }.get(key)


def condition_matches(cond: Condition, request: Request) -> bool:
    """Whether ``request`` has one of ``values`` (if given) and none of ``notValues``."""

    def hit(patterns: list[str]) -> bool:
        if cond.key == "destination.port":
            return any(int(p) in request.ports for p in patterns)
        value = _condition_value(cond.key, request)
        if cond.key in ("source.ip", "destination.ip"):
            return _in_blocks(patterns, value)
        return _any(patterns, value, principal=cond.key == "source.principal")

    return (cond.values is None or hit(cond.values)) and (
        cond.not_values is None or not hit(cond.not_values)
    )


def rule_matches(rule: Rule, request: Request) -> bool:
    """``from`` (any item) AND ``to`` (any item) AND every ``when``; absent means anything."""
    from_ok = rule.from_ is None or any(
        source_matches(f.source, request.principal, request.cluster, request.source_ip)
        for f in rule.from_
    )
    to_ok = rule.to is None or any(operation_matches(t.operation, request) for t in rule.to)
    when_ok = all(condition_matches(c, request) for c in rule.when or [])
    return from_ok and to_ok and when_ok


def policy_matches(policy: AuthorizationPolicy, request: Request) -> bool:
    """Any rule matches (a policy without rules matches nothing)."""
    return any(rule_matches(r, request) for r in policy.spec.rules)


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed``, and why: the deciding policy (``namespace/name``) or the default."""

    allowed: bool
    reason: str
    would_deny_dry_run: tuple[str, ...] = ()


def evaluate(
    policies: Sequence[AuthorizationPolicy], request: Request, *, default_allow: bool = True
) -> Decision:
    """Istio's decision for ``request`` under the ``policies`` that select the workload.

    Dry-run policies never change the decision; ``would_deny_dry_run`` names those that
    would have denied it. ``default_allow=False`` is the mesh-wide default deny (as an ALLOW
    policy without rules in the root namespace).
    """
    enforced = [p for p in policies if not p.dry_run]
    shadow = [p for p in policies if p.dry_run]
    would = tuple(
        f"{p.metadata.namespace}/{p.metadata.name}"
        for p in shadow
        if (p.spec.action == "DENY" and policy_matches(p, request))
        or (p.spec.action == "ALLOW" and not policy_matches(p, request))
    )
    for p in enforced:
        if p.spec.action == "DENY" and policy_matches(p, request):
            return Decision(
                False, f"denied by DENY policy {p.metadata.namespace}/{p.metadata.name}", would
            )
    allows = [p for p in enforced if p.spec.action == "ALLOW"]
    if not allows:
        if default_allow:
            return Decision(True, "allowed: no ALLOW policy selects the workload", would)
        return Decision(
            False, "denied: mesh-wide default is deny and no ALLOW policy matched", would
        )
    for p in allows:
        if policy_matches(p, request):
            return Decision(
                True, f"allowed by ALLOW policy {p.metadata.namespace}/{p.metadata.name}", would
            )
    names = ", ".join(f"{p.metadata.namespace}/{p.metadata.name}" for p in allows)
    return Decision(False, f"denied: no rule of the ALLOW policies ({names}) matched", would)


#: The name of the policy ``meshfed controller serve --authz-default deny`` adds.
DEFAULT_DENY_NAME = "mesh-default-deny"


def default_deny_policy() -> AuthorizationPolicy:
    """The mesh-wide default deny: an ALLOW policy without rules in the root namespace (Istio's
    idiom), which every workload then needs another ALLOW policy to be called."""
    return AuthorizationPolicy.model_validate(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {
                "name": DEFAULT_DENY_NAME,
                "namespace": ROOT_NAMESPACE,
                "annotations": {"meshfed.io/generated": "controller --authz-default deny"},
            },
            "spec": {"action": "ALLOW"},
        }
    )
