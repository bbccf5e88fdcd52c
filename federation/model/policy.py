"""``TrafficPolicy`` and ``PriceTable`` (``meshfed.io/v1alpha1``): global traffic policy.

A TrafficPolicy targets one service by its global name and says how callers everywhere reach
it::

    apiVersion: meshfed.io/v1alpha1
    kind: TrafficPolicy
    metadata: {name: echo, namespace: demo}
    spec:
      host: echo.demo.svc.clusterset.local
      locality:                      # Istio LocalityLoadBalancerSetting semantics
        failoverPriority: [topology.kubernetes.io/region, topology.kubernetes.io/zone]
        failover: [{from: aws/us-east-1, to: aws/eu-west-1}]
        distribute: [{from: "aws/us-east-1/*", to: {"aws/us-east-1/*": 80, "aws/eu-west-1/*": 20}}]
      cost: {mode: prefer-cheaper, latencyBudgetMs: 50, maxCostPerGB: 0.05}
      split: {aws-us-east-1: 80, gcp-europe-west1: 20}   # percent per member cluster
      healthCheck: {intervalMs: 1000, timeoutMs: 1000, unhealthyThreshold: 2, healthyThreshold: 1}
      outlierDetection: {consecutive5xx: 3, intervalMs: 1000, baseEjectionTimeMs: 5000,
                         maxEjectionPercent: 100}
      retries: {attempts: 2, perTryTimeoutMs: 2000, retryOn: "connect-failure,reset,503"}
      timeoutMs: 15000

Defaults make failover happen (outlier detection on, 100 % max ejection, retries to another
priority). ``failover`` and ``distribute`` exclude each other (as in Istio). Checks that need
the federation (every ``split`` cluster is a member) are made by the controller.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from federation.model.workload import DNS_LABEL, ObjectMeta, _Strict

#: failoverPriority labels meshfed understands, and the locality part each one compares.
FAILOVER_LABELS: dict[str, str] = {
    "meshfed.io/cloud": "cloud",
    "topology.kubernetes.io/region": "region",
    "topology.kubernetes.io/zone": "zone",
    "topology.istio.io/subzone": "sub_zone",
    "meshfed.io/cluster": "cluster",
}
_GLOBAL_NAME = re.compile(
    r"^(?P<svc>[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)\.(?P<ns>[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)"
    r"\.svc\.clusterset\.local$"
)
_LOCALITY_PATTERN = re.compile(r"^[a-z0-9-]+(/[a-z0-9-]+){0,3}(/\*)?$|^\*$")
_DNS = re.compile(DNS_LABEL)


def _locality_pattern(value: str) -> str:
    if not _LOCALITY_PATTERN.match(value):
        raise ValueError(
            f"{value!r} must be a locality <cloud>/<region>[/<zone>[/<subzone>]], optionally"
            " ending in /* (or * alone)"
        )
    return value


def locality_matches(pattern: str, locality: str) -> bool:
    """True when ``locality`` (``aws/us-east-1/us-east-1a``) is ``pattern`` or under it
    (``aws/us-east-1/*``, ``aws/us-east-1``, ``*``)."""
    if pattern == "*":
        return True
    base = pattern.removesuffix("/*")
    return locality == base or locality.startswith(base + "/")


class Failover(_Strict):
    """When callers in region ``from`` fail over, go to region ``to`` first."""

    from_: str = Field(alias="from")
    to: str

    @field_validator("from_", "to")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _locality_pattern(value)


class Distribute(_Strict):
    """Callers matching ``from`` send ``to[pattern]`` percent to the localities matching it."""

    from_: str = Field(alias="from")
    to: dict[str, int]

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        return _locality_pattern(value)

    @field_validator("to")
    @classmethod
    def _to(cls, value: dict[str, int]) -> dict[str, int]:
        for pattern, weight in value.items():
            _locality_pattern(pattern)
            if not 0 <= weight <= 100:
                raise ValueError(f"{pattern}: weight {weight} must be 0-100")
        if sum(value.values()) != 100:
            raise ValueError(f"weights must sum to 100, not {sum(value.values())}")
        return value


class LocalitySettings(_Strict):
    """Locality load balancing (Istio ``LocalityLoadBalancerSetting``)."""

    failover_priority: list[str] = Field(default_factory=list, alias="failoverPriority")
    failover: list[Failover] = Field(default_factory=list)
    distribute: list[Distribute] = Field(default_factory=list)

    @field_validator("failover_priority")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if label not in FAILOVER_LABELS:
                raise ValueError(f"unknown label {label!r} (known: {', '.join(FAILOVER_LABELS)})")
        return value

    @model_validator(mode="after")
    def _exclusive(self) -> LocalitySettings:
        if self.failover and self.distribute:
            raise ValueError("failover and distribute cannot be used together (as in Istio)")
        return self


class CostSettings(_Strict):
    """What traffic may cost.

    ``mode``: ``off`` (locality rules only), ``prefer-cheaper`` (the cheapest path first, the
    locality rules break ties), ``optimize`` (the controller splits each caller locality's
    measured demand over the serving localities by a linear program -- egress dollars plus a
    latency charge of :data:`federation.lb.decision.OPTIMIZE_USD_PER_GB_PER_MS` per ms of
    RTT, within declared capacity x ``headroom`` (:mod:`federation.lb.optimizer`); until a
    locality's demand is measured, and behind the split for health failover, the priority
    order of price plus latency charge).
    ``latencyBudgetMs``: never prefer a locality whose RTT exceeds it while one within the
    budget has capacity. ``maxCostPerGB``: localities dearer than this (US$/GB) only as a last
    resort. Both apply in every mode. ``headroom`` (``optimize``; 0-1): the share of a
    locality's declared capacity (``WorkloadEntry spec.capacity.rps``) planned before its
    reserve; unset, each zone's is learned from 0.8 (:mod:`federation.lb.headroom`).
    """

    mode: Literal["off", "prefer-cheaper", "optimize"] = "off"
    latency_budget_ms: float | None = Field(default=None, gt=0, alias="latencyBudgetMs")
    max_cost_per_gb: float | None = Field(default=None, ge=0, alias="maxCostPerGB")
    headroom: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _headroom_needs_optimize(self) -> CostSettings:
        if self.headroom is not None and self.mode != "optimize":
            raise ValueError(f"headroom applies to mode optimize only (mode is {self.mode})")
        return self


class HealthCheckSettings(_Strict):
    """Envoy active health checks of the service's endpoints (``core.v3.HealthCheck``)."""

    interval_ms: int = Field(default=1000, ge=100, le=60000, alias="intervalMs")
    timeout_ms: int = Field(default=2000, ge=50, le=60000, alias="timeoutMs")
    unhealthy_threshold: int = Field(default=3, ge=1, le=10, alias="unhealthyThreshold")
    healthy_threshold: int = Field(default=1, ge=1, le=10, alias="healthyThreshold")


class OutlierDetectionSettings(_Strict):
    """Passive ejection (``cluster.v3.OutlierDetection``); on by default, 100 % may be ejected."""

    consecutive_5xx: int = Field(default=3, ge=1, le=100, alias="consecutive5xx")
    interval_ms: int = Field(default=1000, ge=100, le=60000, alias="intervalMs")
    base_ejection_time_ms: int = Field(default=5000, ge=100, le=600000, alias="baseEjectionTimeMs")
    max_ejection_percent: int = Field(default=100, ge=0, le=100, alias="maxEjectionPercent")


class RetrySettings(_Strict):
    """Route retries (``route.v3.RetryPolicy``); retries prefer another priority."""

    attempts: int = Field(default=2, ge=0, le=10)
    #: 0: none, each attempt has the route's timeout (Istio's ``perTryTimeout`` left out)
    per_try_timeout_ms: int = Field(default=2000, ge=0, le=600000, alias="perTryTimeoutMs")

    @field_validator("per_try_timeout_ms")
    @classmethod
    def _not_tiny(cls, value: int) -> int:
        if 0 < value < 10:
            raise ValueError("must be 0 (none) or at least 10 ms")
        return value

    retry_on: str = Field(
        default="connect-failure,reset,refused-stream,unavailable,503", alias="retryOn"
    )


def _cluster_names(value: list[str]) -> list[str]:
    """Member cluster names (DNS labels), as ``sourceClusters`` lists them."""
    for cluster in value:
        if not _DNS.match(cluster):
            raise ValueError(f"{cluster!r} is not a cluster name (DNS label)")
    return value


class StringMatch(_Strict):
    """Istio ``StringMatch``: exactly one of ``exact``, ``prefix`` or ``regex`` (RE2, as
    Envoy's ``safe_regex``; checked here with Python's ``re``, which accepts a superset)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of exact, prefix, regex (got {given or 'none'})")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as err:
                raise ValueError(f"regex {self.regex!r}: {err}") from err
        return self

    def key(self) -> tuple[str, str]:
        """``(kind, value)``: how two matches are compared."""
        for kind in ("exact", "prefix", "regex"):
            value = getattr(self, kind)
            if value is not None:
                return (kind, value)
        raise AssertionError("validated: one is set")


_HEADER_NAME = re.compile(r"^:?[a-z0-9!#$%&'*+.^_`|~-]+$")


class HTTPMatchRequest(_Strict):
    """Istio ``HTTPMatchRequest``; every condition given must hold. ``sourceClusters``
    (meshfed's, in place of Istio's ``sourceLabels``): the route applies only to callers in
    those member clusters (the control plane of each cluster leaves it out elsewhere)."""

    name: str | None = None
    uri: StringMatch | None = None
    method: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)
    query_params: dict[str, StringMatch] = Field(default_factory=dict, alias="queryParams")
    source_clusters: list[str] = Field(default_factory=list, alias="sourceClusters")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, StringMatch]) -> dict[str, StringMatch]:
        for name in value:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a lower-case HTTP header name")
        return value

    @field_validator("source_clusters")
    @classmethod
    def _clusters(cls, value: list[str]) -> list[str]:
        return _cluster_names(value)

    def key(self) -> tuple[object, ...]:
        """What the match selects, comparable (two equal keys match the same requests)."""
        return (
            self.uri.key() if self.uri else None,
            self.method.key() if self.method else None,
            tuple(sorted((k, v.key()) for k, v in self.headers.items())),
            tuple(sorted((k, v.key()) for k, v in self.query_params.items())),
            tuple(sorted(self.source_clusters)),
        )


class ConnectionPoolSettings(_Strict):
    """Circuit breaking per calling sidecar and outbound cluster (Istio
    ``ConnectionPoolSettings``; Envoy ``CircuitBreakers.Thresholds``). Unset: Envoy's
    defaults (1024 each), and no cap on retries (what keeps failover lossless).
    ``maxRequestsPerConnection``: requests per upstream connection before it is closed
    (Envoy ``HttpProtocolOptions.common_http_protocol_options.max_requests_per_connection``;
    0 or unset: no limit, as in Istio)."""

    max_connections: int | None = Field(default=None, ge=1, le=10**6, alias="maxConnections")
    http1_max_pending_requests: int | None = Field(
        default=None, ge=1, le=10**6, alias="http1MaxPendingRequests"
    )
    http2_max_requests: int | None = Field(default=None, ge=1, le=10**6, alias="http2MaxRequests")
    max_retries: int | None = Field(default=None, ge=0, le=10**6, alias="maxRetries")
    max_requests_per_connection: int | None = Field(
        default=None, ge=0, le=10**6, alias="maxRequestsPerConnection"
    )


class SubsetTrafficPolicy(_Strict):
    """Istio ``Subset.trafficPolicy``, as far as meshfed goes: the subset's own circuit
    breaking and outlier detection, in place of the policy's."""

    connection_pool: ConnectionPoolSettings | None = Field(default=None, alias="connectionPool")
    outlier_detection: OutlierDetectionSettings | None = Field(
        default=None, alias="outlierDetection"
    )


class Subset(_Strict):
    """Istio ``DestinationRule`` ``Subset``: the service's workloads whose WorkloadEntry (or
    pod) labels include every one of ``labels``, named for routes; ``trafficPolicy``
    overrides the policy's ``connectionPool`` / ``outlierDetection`` for it."""

    name: str = Field(pattern=DNS_LABEL)
    labels: dict[str, str] = Field(min_length=1)
    traffic_policy: SubsetTrafficPolicy | None = Field(default=None, alias="trafficPolicy")


class Destination(_Strict):
    """Where a route sends requests: the service's workloads in member cluster ``cluster``
    and/or of subset ``subset`` (``spec.subsets``). With ``cluster`` only, that cluster's
    healthy localities first, then the service's failover order (as a ``split`` share); with
    ``subset``, only the subset's workloads (in ``cluster`` when given; remote ones through
    their cluster's gateway, which picks them by the subset's labels); neither: the whole
    service. ``host`` (a global name ``<svc>.<ns>.svc.clusterset.local``): another service
    instead, whole, on ``port`` (default: the routed port's number) -- as Gateway API
    backendRefs name other Services; its endpoints are chosen as its own policy says."""

    cluster: str | None = None
    subset: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str | None) -> str | None:
        if value is not None and not _DNS.match(value):
            raise ValueError(f"{value!r} is not a cluster name (DNS label)")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not _GLOBAL_NAME.match(value):
            raise ValueError(f"{value!r} must be a global name <svc>.<ns>.svc.clusterset.local")
        return value

    @model_validator(mode="after")
    def _whole_other_service(self) -> Destination:
        if self.host is not None and (self.cluster is not None or self.subset is not None):
            raise ValueError(
                "a destination on another host takes that service whole (no cluster or subset)"
            )
        if self.port is not None and self.host is None:
            raise ValueError("port goes with host (another service)")
        return self

    def key(self) -> tuple[str | None, str | None]:
        """``(cluster, subset)``: how a destination of the service's own names its Envoy
        cluster (``host`` destinations name another service's)."""
        return (self.cluster, self.subset)

    def ident(self) -> tuple[str | None, int | None, str | None, str | None]:
        """``(host, port, cluster, subset)``: equal idents are the same destination."""
        return (self.host, self.port, self.cluster, self.subset)


class RouteDestination(_Strict):
    """Istio ``HTTPRouteDestination``: a destination and its share of the route (percent)."""

    destination: Destination = Field(default_factory=Destination)
    weight: int = Field(default=100, ge=0, le=100)


class Percent(_Strict):
    """Istio ``Percent``: ``value`` in 0-100 (fractions allowed, to 0.0001 %)."""

    value: float = Field(ge=0, le=100)


class FaultDelay(_Strict):
    """Istio ``HTTPFaultInjection.Delay``: hold ``percentage`` of requests ``fixedDelayMs``."""

    fixed_delay_ms: int = Field(ge=1, le=600000, alias="fixedDelayMs")
    percentage: Percent = Field(default_factory=lambda: Percent(value=100))


class FaultAbort(_Strict):
    """Istio ``HTTPFaultInjection.Abort``: answer ``percentage`` of requests ``httpStatus``
    without calling the service."""

    http_status: int = Field(ge=200, le=599, alias="httpStatus")
    percentage: Percent = Field(default_factory=lambda: Percent(value=100))


class FaultInjection(_Strict):
    """Istio ``HTTPFaultInjection`` (Envoy ``envoy.filters.http.fault``)."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None

    @model_validator(mode="after")
    def _some(self) -> FaultInjection:
        if self.delay is None and self.abort is None:
            raise ValueError("give delay, abort or both")
        return self


def _destinations(value: list[RouteDestination]) -> list[RouteDestination]:
    """A route's destinations: at least one, weights summing to 100, none twice."""
    if not value:
        raise ValueError("give at least one destination")
    if len(value) > 1 and sum(d.weight for d in value) != 100:
        raise ValueError(f"weights must sum to 100, not {sum(d.weight for d in value)}")
    seen = [d.destination.ident() for d in value]
    if len(set(seen)) != len(seen):
        raise ValueError("a destination is listed twice")
    return value


#: Headers a route may not set or remove: pseudo-headers and what the sidecars rely on.
_RESERVED_HEADERS = (
    "host",
    "x-forwarded-client-cert",
    "x-envoy-original-path",
    "x-meshfed-served-by",
)


def _header_names(names: list[str]) -> list[str]:
    for name in names:
        if not _HEADER_NAME.match(name) or name.startswith(":"):
            raise ValueError(f"{name!r} is not a lower-case HTTP header name")
        if name in _RESERVED_HEADERS:
            raise ValueError(f"{name!r} is set by the mesh: a route may not change it")
    return names


class HeaderOperations(_Strict):
    """Istio ``Headers.HeaderOperations``: ``set`` (replace or add), ``add`` (append),
    ``remove`` (Envoy ``HeaderValueOption`` OVERWRITE_IF_EXISTS_OR_ADD /
    APPEND_IF_EXISTS_OR_ADD, ``*_headers_to_remove``)."""

    set: dict[str, str] = Field(default_factory=dict)
    add: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> HeaderOperations:
        _header_names([*self.set, *self.add, *self.remove])
        return self


class Headers(_Strict):
    """Istio ``Headers``: what a route changes in the request before it goes on and in the
    response before the caller sees it."""

    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class RegexRewrite(_Strict):
    """Istio ``RegexRewrite``: ``match`` (RE2) in the path replaced by ``rewrite`` (``\\1``
    for groups), Envoy ``RegexMatchAndSubstitute``."""

    match: str = Field(min_length=1)
    rewrite: str

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"regex {value!r}: {err}") from err
        return value


class Rewrite(_Strict):
    """Istio ``HTTPRewrite``: before the request goes on, ``uri`` replaces the matched path
    prefix (or the exact path; Envoy ``prefix_rewrite``), or ``uriRegexRewrite`` rewrites the
    path by a regex (``regex_rewrite``); ``authority`` replaces the Host
    (``host_rewrite_literal``)."""

    uri: str | None = None
    uri_regex_rewrite: RegexRewrite | None = Field(default=None, alias="uriRegexRewrite")
    authority: str | None = None

    @model_validator(mode="after")
    def _one_path(self) -> Rewrite:
        if self.uri is not None and self.uri_regex_rewrite is not None:
            raise ValueError("give uri or uriRegexRewrite, not both")
        if self.uri is None and self.uri_regex_rewrite is None and self.authority is None:
            raise ValueError("give uri, uriRegexRewrite or authority")
        return self


class Redirect(_Strict):
    """Istio ``HTTPRedirect``: the caller's sidecar answers ``redirectCode`` (default 301)
    with a ``Location`` whose path is ``uri`` (or the path rewritten by ``uriRegexRewrite``),
    host ``authority``, ``port`` and ``scheme`` -- each kept from the request when not
    given (Envoy ``RedirectAction``); nothing is sent to the service."""

    uri: str | None = None
    uri_regex_rewrite: RegexRewrite | None = Field(default=None, alias="uriRegexRewrite")
    authority: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    scheme: Literal["http", "https"] | None = None
    redirect_code: Literal[301, 302, 303, 307, 308] = Field(default=301, alias="redirectCode")

    @model_validator(mode="after")
    def _one_path(self) -> Redirect:
        if self.uri is not None and self.uri_regex_rewrite is not None:
            raise ValueError("give uri or uriRegexRewrite, not both")
        return self


class HTTPRoute(_Strict):
    """Istio ``HTTPRoute`` (see the module docstring). Routes are tried in order, the first
    whose ``match`` (any of its entries; none: every request) holds wins."""

    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=lambda: [RouteDestination()])
    timeout_ms: int | None = Field(default=None, ge=1, le=3600000, alias="timeoutMs")
    retries: RetrySettings | None = None
    fault: FaultInjection | None = None
    mirror: Destination | None = None
    mirror_percentage: Percent | None = Field(default=None, alias="mirrorPercentage")
    headers: Headers | None = None
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None

    @field_validator("route")
    @classmethod
    def _weights(cls, value: list[RouteDestination]) -> list[RouteDestination]:
        return _destinations(value)

    @model_validator(mode="after")
    def _mirror(self) -> HTTPRoute:
        if self.mirror_percentage is not None and self.mirror is None:
            raise ValueError("mirrorPercentage needs mirror")
        if self.redirect is not None and (
            self.rewrite is not None or self.mirror is not None or self.fault is not None
        ):
            raise ValueError("a redirect answers the caller: no rewrite, mirror or fault with it")
        if self.rewrite is not None and self.rewrite.uri is not None:
            regex = [i for i, m in enumerate(self.match) if m.uri is not None and m.uri.regex]
            if regex:
                raise ValueError(
                    f"rewrite.uri replaces a matched prefix or path, and match[{regex[0]}]"
                    " matches a regex: use rewrite.uriRegexRewrite"
                )
        return self


class TCPMatch(_Strict):
    """Istio ``L4MatchAttributes``, as far as meshfed goes: ``sourceClusters`` (the callers'
    member clusters; empty: every caller)."""

    source_clusters: list[str] = Field(default_factory=list, alias="sourceClusters")

    @field_validator("source_clusters")
    @classmethod
    def _clusters(cls, value: list[str]) -> list[str]:
        return _cluster_names(value)


class TCPRoute(_Strict):
    """Istio ``TCPRoute``: for the service's ``tcp`` ports, the first route whose ``match``
    holds for the caller (none: every caller) sends each connection to its destinations by
    weight."""

    match: list[TCPMatch] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=lambda: [RouteDestination()])

    @field_validator("route")
    @classmethod
    def _weights(cls, value: list[RouteDestination]) -> list[RouteDestination]:
        return _destinations(value)

    def applies_to(self, cluster: str) -> bool:
        """Whether a caller in member cluster ``cluster`` takes this route."""
        return not self.match or any(
            not m.source_clusters or cluster in m.source_clusters for m in self.match
        )


class TrafficPolicySpec(_Strict):
    """``spec`` of a TrafficPolicy (see the module docstring)."""

    host: str
    locality: LocalitySettings = Field(default_factory=LocalitySettings)
    cost: CostSettings = Field(default_factory=CostSettings)
    split: dict[str, int] | None = None
    health_check: HealthCheckSettings | None = Field(default=None, alias="healthCheck")
    outlier_detection: OutlierDetectionSettings | None = Field(
        default=None, alias="outlierDetection"
    )
    retries: RetrySettings | None = None
    timeout_ms: int | None = Field(default=None, ge=1, le=3600000, alias="timeoutMs")
    http: list[HTTPRoute] = Field(default_factory=list)
    tcp: list[TCPRoute] = Field(default_factory=list)
    subsets: list[Subset] = Field(default_factory=list)
    connection_pool: ConnectionPoolSettings | None = Field(default=None, alias="connectionPool")

    @field_validator("subsets")
    @classmethod
    def _subsets(cls, value: list[Subset]) -> list[Subset]:
        names = [s.name for s in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"subset {twice[0]!r} is defined twice")
        return value

    @field_validator("http")
    @classmethod
    def _routes(cls, value: list[HTTPRoute]) -> list[HTTPRoute]:
        """Conflicting routes: one that can never match because an earlier route matches
        everything it would (a route without ``match`` before it, or the same match)."""
        seen: dict[tuple[object, ...], int] = {}
        for i, route in enumerate(value):
            if not route.match and i < len(value) - 1:
                raise ValueError(
                    f"http[{i}] matches every request, so http[{i + 1}] and later never match"
                    " (put it last)"
                )
            for j, m in enumerate(route.match):
                earlier = seen.setdefault(m.key(), i)
                if earlier != i:
                    raise ValueError(
                        f"http[{i}].match[{j}] is the same as a match of http[{earlier}],"
                        " which comes first: it never matches"
                    )
        return value

    def destinations(self) -> list[Destination]:
        """Every destination and mirror of the ``http`` and ``tcp`` routes on the service's
        own endpoints (not another ``host``), each once, in order."""
        out: dict[tuple[str | None, str | None], Destination] = {}
        for route in self.http:
            for d in [*(r.destination for r in route.route), route.mirror]:
                if d is not None and d.host is None:
                    out.setdefault(d.key(), d)
        for tcp in self.tcp:
            for r in tcp.route:
                if r.destination.host is None:
                    out.setdefault(r.destination.key(), r.destination)
        return list(out.values())

    @model_validator(mode="after")
    def _known_subsets(self) -> TrafficPolicySpec:
        defined = {s.name for s in self.subsets}
        named = [
            (f"http[{i}]", [*(r.destination for r in route.route), route.mirror])
            for i, route in enumerate(self.http)
        ] + [(f"tcp[{i}]", [r.destination for r in t.route]) for i, t in enumerate(self.tcp)]
        for where, destinations in named:
            for d in destinations:
                if d is not None and d.subset is not None and d.subset not in defined:
                    raise ValueError(
                        f"{where}: subset {d.subset!r} is not defined in spec.subsets"
                        f" (defined: {', '.join(sorted(defined)) or 'none'})"
                    )
        return self

    @model_validator(mode="after")
    def _split_or_routes(self) -> TrafficPolicySpec:
        if self.split and self.http:
            raise ValueError(
                "split and http cannot be used together: give the split as the weights of"
                " an http route's destinations"
            )
        return self

    def destination_clusters(self) -> set[str]:
        """Member clusters the ``http`` routes send or mirror requests to (by cluster only,
        without a subset)."""
        return {d.cluster for d in self.destinations() if d.cluster and d.subset is None}

    def for_subset(self, name: str) -> TrafficPolicySpec:
        """This spec with subset ``name``'s ``trafficPolicy`` in place of the policy's
        ``connectionPool`` / ``outlierDetection`` (what the subset's Envoy clusters get)."""
        subset = next((s for s in self.subsets if s.name == name), None)
        own = subset.traffic_policy if subset is not None else None
        if own is None:
            return self
        return self.model_copy(
            update={
                "connection_pool": own.connection_pool or self.connection_pool,
                "outlier_detection": own.outlier_detection or self.outlier_detection,
            }
        )

    def clusters_named(self) -> set[str]:
        """Every member cluster the policy names (split, destinations, mirrors, sources)."""
        named = set(self.split or {}) | {d.cluster for d in self.destinations() if d.cluster}
        for route in self.http:
            for m in route.match:
                named |= set(m.source_clusters)
        for tcp in self.tcp:
            for t in tcp.match:
                named |= set(t.source_clusters)
        return named

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _GLOBAL_NAME.match(value):
            raise ValueError(f"{value!r} must be a global name <svc>.<ns>.svc.clusterset.local")
        return value

    @field_validator("split")
    @classmethod
    def _split(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is None:
            return None
        for cluster, weight in value.items():
            if not _DNS.match(cluster):
                raise ValueError(f"{cluster!r} is not a cluster name (DNS label)")
            if not 0 <= weight <= 100:
                raise ValueError(f"{cluster}: weight {weight} must be 0-100")
        if sum(value.values()) != 100:
            raise ValueError(f"weights must sum to 100, not {sum(value.values())}")
        return value


@functools.lru_cache(maxsize=8192)
def _host_target(host: str) -> tuple[str, str]:
    """``(namespace, service)`` of a validated ``spec.host`` (looked up for every policy on
    every update a control plane applies)."""
    m = _GLOBAL_NAME.match(host)
    assert m is not None
    return (m.group("ns"), m.group("svc"))


class TrafficPolicy(_Strict):
    """A ``TrafficPolicy`` document."""

    api_version: Literal["meshfed.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["TrafficPolicy"]
    metadata: ObjectMeta
    spec: TrafficPolicySpec

    @property
    def target(self) -> tuple[str, str]:
        """``(namespace, service)`` of ``spec.host``."""
        return _host_target(self.spec.host)


PathClassName = Literal["same-zone", "cross-zone", "cross-region", "cross-continent", "cross-cloud"]


#: A region name as clouds spell them (``us-east-1``, ``europe-west1``).
_REGION = r"^[a-z0-9]([a-z0-9-]{0,62})$"


class PriceTier(_Strict):
    """One volume tier of a rate: ``usdPerGB`` up to ``upToGB`` GB a month (None: above the
    last bound)."""

    up_to_gb: float | None = Field(default=None, alias="upToGB", gt=0)
    usd_per_gb: float = Field(alias="usdPerGB", ge=0)


class RegionPairRate(_Strict):
    """The rate of bytes leaving region ``from`` for region ``to`` (the same region: across
    zones, both directions' charges together; ``internet``: leaving the cloud). ``tiers``:
    the volume tiers the rate was taken from (``usdPerGB`` is the one meshfed routes by)."""

    from_region: str = Field(alias="from", pattern=_REGION)
    to: str = Field(pattern=_REGION)
    usd_per_gb: float = Field(alias="usdPerGB", ge=0)
    tiers: list[PriceTier] = Field(default_factory=list)


class PriceTableSpec(_Strict):
    """``spec`` of a PriceTable: a cloud's rates by path class and by region pair, US$/GB,
    their source and the date it was read, and a multiplier for the user's discount."""

    cloud: str = Field(pattern=DNS_LABEL)
    source: str = Field(min_length=1, description="where the numbers come from")
    read_on: str | None = Field(default=None, alias="readOn", pattern=r"^\d{4}-\d{2}-\d{2}$")
    usd_per_gb: dict[PathClassName, float] = Field(default_factory=dict, alias="usdPerGB")
    region_pairs: list[RegionPairRate] = Field(default_factory=list, alias="regionPairs")
    discount: float = Field(default=1.0, gt=0, le=10, description="multiplies every rate")

    @field_validator("usd_per_gb")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for path, rate in value.items():
            if rate < 0:
                raise ValueError(f"{path}: {rate} must be >= 0 (US$/GB)")
        return value

    @model_validator(mode="after")
    def _something(self) -> PriceTableSpec:
        if not self.usd_per_gb and not self.region_pairs:
            raise ValueError("give usdPerGB (by path class) or regionPairs, or both")
        pairs = [(r.from_region, r.to) for r in self.region_pairs]
        twice = sorted({p for p in pairs if pairs.count(p) > 1})
        if twice:
            raise ValueError(f"regionPairs: {twice[0][0]} -> {twice[0][1]} is given twice")
        return self


class PriceTable(_Strict):
    """A ``PriceTable`` document: overrides the built-in rates of one cloud (negotiated
    prices, private interconnects)."""

    api_version: Literal["meshfed.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["PriceTable"]
    metadata: ObjectMeta
    spec: PriceTableSpec
