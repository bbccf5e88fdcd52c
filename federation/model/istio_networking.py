"""Istio's ``VirtualService`` and ``DestinationRule`` (``networking.istio.io`` ``v1``,
``v1beta1`` and ``v1alpha3``), taken as written (issue #40).

The models follow Istio's API reference field by field (istio.io/latest/docs/reference/
config/networking/virtual-service/ and .../destination-rule/, Istio 1.27), camelCase as
Istio writes it. A field Istio does not have is refused as unknown; a field Istio has but
meshfed cannot honour yet is refused by :func:`not_supported` with the reason -- never
ignored. Every field defaults to ``None``, so a stored document dumps back as written.

What the documents mean for meshfed -- one :class:`federation.model.policy.TrafficPolicy`
per service -- is decided in one place, :mod:`federation.model.istio_translate`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from federation.model.policy import StringMatch
from federation.model.workload import ObjectMeta, _Strict

#: The apiVersions Istio has served these kinds under (v1 since Istio 1.22).
NETWORKING_VERSIONS = (
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
)
NetworkingVersion = Literal[
    "networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"
]


def not_supported(reason: str = "") -> BeforeValidator:
    """A validator for a field Istio has and meshfed does not honour: any value given is
    refused as ``not supported by meshfed: <reason>`` (without a reason: ``... yet``,
    pointing at docs/policy.md); pydantic error type ``not_supported``, with the field's
    path."""
    message = (
        f"not supported by meshfed: {reason}"
        if reason
        else "not supported by meshfed yet (docs/policy.md lists the fields it honours)"
    )

    def refuse(value: Any) -> Any:
        raise PydanticCustomError("not_supported", message)

    return BeforeValidator(refuse)


def _only(allowed: tuple[Any, ...], reason: str) -> BeforeValidator:
    """Accept the values in ``allowed`` (those meshfed does anyway); refuse any other."""

    def check(value: Any) -> Any:
        if value is not None and value not in allowed:
            raise PydanticCustomError(
                "not_supported", f"not supported by meshfed: {value!r}: {reason}"
            )
        return value

    return BeforeValidator(check)


def _only_mesh(value: Any) -> Any:
    """``gateways`` naming only ``mesh`` (every sidecar, Istio's default) is what meshfed
    does; an ingress or egress Gateway is not supported."""
    if value is not None and (not isinstance(value, list) or any(g != "mesh" for g in value)):
        raise PydanticCustomError(
            "not_supported",
            f"not supported by meshfed: {value!r}: routes apply to the mesh's sidecars"
            " (gateways: [mesh]); ingress and egress Gateways are not supported yet",
        )
    return value


_EXPORT_TO = _only(
    (["*"],),
    "a policy applied to the controller applies to callers in every namespace of every"
    " member cluster (exportTo: ['*']); namespace-scoped visibility is not supported yet",
)
Unsupported = Annotated[Any, not_supported()]


Duration = Annotated[str, Field(min_length=1, description="a Go duration: 10s, 1m, 500ms")]


class PortSelector(_Strict):
    """Istio ``PortSelector``."""

    number: int = Field(ge=1, le=65535)


class Destination(_Strict):
    """Istio ``Destination``: the service (``host``) and subset a route sends to."""

    host: str = Field(min_length=1)
    subset: str | None = None
    port: PortSelector | None = None


class Percent(_Strict):
    """Istio ``Percent``: 0-100, fractions allowed."""

    value: float = Field(ge=0, le=100)


class HTTPMatchRequest(_Strict):
    """Istio ``HTTPMatchRequest``."""

    name: str | None = None
    uri: StringMatch | None = None
    method: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    query_params: dict[str, StringMatch] | None = Field(default=None, alias="queryParams")
    gateways: Annotated[list[str] | None, BeforeValidator(_only_mesh)] = None
    scheme: Unsupported = None
    authority: Unsupported = None
    port: Annotated[Any, not_supported("a route applies to every port of its service")] = None
    source_labels: Annotated[
        Any,
        not_supported(
            "callers are told apart by member cluster: a meshfed TrafficPolicy's"
            " match.sourceClusters"
        ),
    ] = Field(default=None, alias="sourceLabels")
    source_namespace: Unsupported = Field(default=None, alias="sourceNamespace")
    ignore_uri_case: Unsupported = Field(default=None, alias="ignoreUriCase")
    without_headers: Unsupported = Field(default=None, alias="withoutHeaders")
    stat_prefix: Unsupported = Field(default=None, alias="statPrefix")


class HTTPRouteDestination(_Strict):
    """Istio ``HTTPRouteDestination``: a destination and its weight (percent; omitted: 100
    for a route's only destination, else 0)."""

    destination: Destination
    weight: int | None = Field(default=None, ge=0, le=100)
    headers: Unsupported = None


class HTTPRetry(_Strict):
    """Istio ``HTTPRetry``."""

    attempts: int = Field(ge=0, le=10)
    per_try_timeout: Duration | None = Field(default=None, alias="perTryTimeout")
    retry_on: str | None = Field(default=None, alias="retryOn")
    retry_remote_localities: Annotated[
        bool | None,
        _only((True,), "retries always prefer another host, in another locality when there"),
    ] = Field(default=None, alias="retryRemoteLocalities")


class FaultDelay(_Strict):
    """Istio ``HTTPFaultInjection.Delay``."""

    fixed_delay: Duration = Field(alias="fixedDelay")
    percentage: Percent | None = None
    percent: Unsupported = None
    exponential_delay: Unsupported = Field(default=None, alias="exponentialDelay")


class FaultAbort(_Strict):
    """Istio ``HTTPFaultInjection.Abort``."""

    http_status: int = Field(ge=200, le=599, alias="httpStatus")
    percentage: Percent | None = None
    grpc_status: Unsupported = Field(default=None, alias="grpcStatus")
    http2_error: Unsupported = Field(default=None, alias="http2Error")


class HTTPFaultInjection(_Strict):
    """Istio ``HTTPFaultInjection``."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HeaderOperations(_Strict):
    """Istio ``Headers.HeaderOperations``."""

    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(_Strict):
    """Istio ``Headers``."""

    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class RegexRewrite(_Strict):
    """Istio ``RegexRewrite``."""

    match: str
    rewrite: str


class HTTPRewrite(_Strict):
    """Istio ``HTTPRewrite``."""

    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = Field(default=None, alias="uriRegexRewrite")


class HTTPRedirect(_Strict):
    """Istio ``HTTPRedirect``."""

    uri: str | None = None
    authority: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    derive_port: Unsupported = Field(default=None, alias="derivePort")
    scheme: str | None = None
    redirect_code: int | None = Field(default=None, alias="redirectCode")


class HTTPRoute(_Strict):
    """Istio ``HTTPRoute``."""

    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirror_percentage: Percent | None = Field(default=None, alias="mirrorPercentage")
    mirror_percent: Unsupported = Field(default=None, alias="mirrorPercent")
    mirrors: Annotated[Any, not_supported("one mirror per route (mirror)")] = None
    redirect: HTTPRedirect | None = None
    direct_response: Unsupported = Field(default=None, alias="directResponse")
    delegate: Unsupported = None
    rewrite: HTTPRewrite | None = None
    cors_policy: Unsupported = Field(default=None, alias="corsPolicy")
    headers: Headers | None = None


class L4MatchAttributes(_Strict):
    """Istio ``L4MatchAttributes``: every field is one meshfed cannot honour yet (a TCP
    route applies to every caller)."""

    gateways: Annotated[list[str] | None, BeforeValidator(_only_mesh)] = None
    destination_subnets: Unsupported = Field(default=None, alias="destinationSubnets")
    port: Annotated[Any, not_supported("a route applies to every TCP port of its service")] = None
    source_labels: Annotated[
        Any,
        not_supported(
            "callers are told apart by member cluster: a meshfed TrafficPolicy's"
            " match.sourceClusters"
        ),
    ] = Field(default=None, alias="sourceLabels")
    source_namespace: Unsupported = Field(default=None, alias="sourceNamespace")
    source_subnet: Unsupported = Field(default=None, alias="sourceSubnet")


class RouteDestination(_Strict):
    """Istio ``RouteDestination`` (TCP)."""

    destination: Destination
    weight: int | None = Field(default=None, ge=0, le=100)


class TCPRoute(_Strict):
    """Istio ``TCPRoute``."""

    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] | None = None


class VirtualServiceSpec(_Strict):
    """Istio ``VirtualService`` spec."""

    hosts: list[str] = Field(min_length=1)
    gateways: Annotated[list[str] | None, BeforeValidator(_only_mesh)] = None
    http: list[HTTPRoute] | None = None
    tcp: list[TCPRoute] | None = None
    tls: Annotated[Any, not_supported("TLS routes by SNI are not supported yet")] = None
    export_to: Annotated[list[str] | None, _EXPORT_TO] = Field(default=None, alias="exportTo")


class VirtualService(_Strict):
    """A ``VirtualService`` document."""

    api_version: NetworkingVersion = Field(alias="apiVersion")
    kind: Literal["VirtualService"]
    metadata: ObjectMeta
    spec: VirtualServiceSpec


class TCPSettings(_Strict):
    """Istio ``ConnectionPoolSettings.TCPSettings``."""

    max_connections: int | None = Field(default=None, ge=1, le=10**6, alias="maxConnections")
    connect_timeout: Unsupported = Field(default=None, alias="connectTimeout")
    tcp_keepalive: Unsupported = Field(default=None, alias="tcpKeepalive")
    max_connection_duration: Unsupported = Field(default=None, alias="maxConnectionDuration")
    idle_timeout: Unsupported = Field(default=None, alias="idleTimeout")


class HTTPSettings(_Strict):
    """Istio ``ConnectionPoolSettings.HTTPSettings``."""

    http1_max_pending_requests: int | None = Field(
        default=None, ge=1, le=10**6, alias="http1MaxPendingRequests"
    )
    http2_max_requests: int | None = Field(default=None, ge=1, le=10**6, alias="http2MaxRequests")
    max_requests_per_connection: int | None = Field(
        default=None, ge=0, le=10**6, alias="maxRequestsPerConnection"
    )
    max_retries: int | None = Field(default=None, ge=0, le=10**6, alias="maxRetries")
    idle_timeout: Unsupported = Field(default=None, alias="idleTimeout")
    h2_upgrade_policy: Unsupported = Field(default=None, alias="h2UpgradePolicy")
    use_client_protocol: Unsupported = Field(default=None, alias="useClientProtocol")
    max_concurrent_streams: Unsupported = Field(default=None, alias="maxConcurrentStreams")


class ConnectionPoolSettings(_Strict):
    """Istio ``ConnectionPoolSettings``."""

    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(_Strict):
    """Istio ``OutlierDetection``; unset fields take Istio's defaults (5 errors, 10 s
    interval, 30 s ejection, 10 % of hosts), not meshfed's."""

    consecutive_5xx_errors: int | None = Field(
        default=None, ge=0, le=100, alias="consecutive5xxErrors"
    )
    consecutive_gateway_errors: int | None = Field(
        default=None, ge=0, le=100, alias="consecutiveGatewayErrors"
    )
    interval: Duration | None = None
    base_ejection_time: Duration | None = Field(default=None, alias="baseEjectionTime")
    max_ejection_percent: int | None = Field(default=None, ge=0, le=100, alias="maxEjectionPercent")
    min_health_percent: Unsupported = Field(default=None, alias="minHealthPercent")
    split_external_local_origin_errors: Unsupported = Field(
        default=None, alias="splitExternalLocalOriginErrors"
    )
    consecutive_local_origin_failures: Unsupported = Field(
        default=None, alias="consecutiveLocalOriginFailures"
    )
    consecutive_errors: Annotated[
        Any, not_supported("deprecated by Istio: write consecutive5xxErrors")
    ] = Field(default=None, alias="consecutiveErrors")


class LoadBalancerSettings(_Strict):
    """Istio ``LoadBalancerSettings``: meshfed balances round robin, by locality."""

    simple: Annotated[
        str | None,
        _only(
            ("ROUND_ROBIN", "UNSPECIFIED"),
            "meshfed balances round robin within each locality's weight",
        ),
    ] = None
    consistent_hash: Unsupported = Field(default=None, alias="consistentHash")
    locality_lb_setting: Annotated[
        Any,
        not_supported(
            "meshfed's localities begin with the cloud (aws/us-east-1/us-east-1a): write"
            " locality failover and distribution in a meshfed TrafficPolicy (spec.locality)"
        ),
    ] = Field(default=None, alias="localityLbSetting")
    warmup_duration_secs: Unsupported = Field(default=None, alias="warmupDurationSecs")
    warmup: Unsupported = None


class ClientTLSSettings(_Strict):
    """Istio ``ClientTLSSettings``: only ``ISTIO_MUTUAL``, what meshfed does anyway."""

    mode: Annotated[
        str,
        _only(
            ("ISTIO_MUTUAL",),
            "sidecars always speak mTLS with their SVIDs to sidecars (ISTIO_MUTUAL)",
        ),
    ]


class TrafficPolicy(_Strict):
    """Istio ``DestinationRule`` ``TrafficPolicy``."""

    connection_pool: ConnectionPoolSettings | None = Field(default=None, alias="connectionPool")
    outlier_detection: OutlierDetection | None = Field(default=None, alias="outlierDetection")
    load_balancer: LoadBalancerSettings | None = Field(default=None, alias="loadBalancer")
    tls: ClientTLSSettings | None = None
    port_level_settings: Unsupported = Field(default=None, alias="portLevelSettings")
    tunnel: Unsupported = None
    proxy_protocol: Unsupported = Field(default=None, alias="proxyProtocol")


class Subset(_Strict):
    """Istio ``Subset``."""

    name: str = Field(min_length=1)
    labels: dict[str, str] | None = None
    traffic_policy: TrafficPolicy | None = Field(default=None, alias="trafficPolicy")


class DestinationRuleSpec(_Strict):
    """Istio ``DestinationRule`` spec."""

    host: str = Field(min_length=1)
    traffic_policy: TrafficPolicy | None = Field(default=None, alias="trafficPolicy")
    subsets: list[Subset] | None = None
    export_to: Annotated[list[str] | None, _EXPORT_TO] = Field(default=None, alias="exportTo")
    workload_selector: Annotated[
        Any, not_supported("a DestinationRule applies to every caller of its host")
    ] = Field(default=None, alias="workloadSelector")


class DestinationRule(_Strict):
    """A ``DestinationRule`` document."""

    api_version: NetworkingVersion = Field(alias="apiVersion")
    kind: Literal["DestinationRule"]
    metadata: ObjectMeta
    spec: DestinationRuleSpec
