"""CDS: outbound service clusters, inbound app clusters, and proxyless-gRPC clusters.

Outbound clusters (Envoy sidecars) are EDS clusters with, by default:

- mTLS to workloads behind a sidecar: ``transport_socket_matches`` on the endpoint metadata
  ``{tlsMode: mutual}``; SNI ``outbound_.<port>_._.<host>``; client SVID and trust bundle over
  SDS; the server's URI SAN must be one of the service's SPIFFE IDs. Other endpoints (tlsMode
  disabled: no sidecar) get plain TCP.
- active TCP health checks (``HealthCheck.tcp_health_check``: 1 s interval, unhealthy after 3
  failures) and outlier detection (``OutlierDetection``: eject after 3 consecutive 5xx or
  connect failures, 100 % max ejection) so failover actually happens;
- ``healthy_panic_threshold`` :data:`PANIC_THRESHOLD_PERCENT` (1 %) so a partly dead priority
  spills to the next instead of spraying traffic at dead hosts, yet a cluster whose every
  host looks unhealthy still tries them (Envoy ``Cluster.CommonLbConfig``), and locality
  weights honoured (``locality_weighted_lb_config``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, health_check_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from federation.controlplane.generate.common import (
    ProxyTls,
    ads,
    duration_ms,
    grpc_tls_context,
    inbound_cluster_name,
    pack,
    spiffe_id,
    tls_transport_socket,
)
from federation.controlplane.generate.services import ServicePort
from federation.model.policy import (
    ConnectionPoolSettings,
    HealthCheckSettings,
    OutlierDetectionSettings,
    TrafficPolicy,
)

HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
#: Health-check interval of healthy hosts in clusters without traffic (ms).
NO_TRAFFIC_HEALTHY_INTERVAL_MS = 60_000
#: Longest wait (ms) before re-checking a host that is new or failed its last check.
UNHEALTHY_INTERVAL_MS = 250
CONNECT_TIMEOUT_MS = 1000
#: ``CommonLbConfig.healthy_panic_threshold`` (percent) of outbound and gateway clusters.
#: Envoy ignores a priority's health only when its healthy share is below this *and* the
#: healthy hosts of every priority together cannot take the load (normalized total health
#: < 100 %), so at 1 % a partly dead priority spills to the next as with 0, but when every
#: host looks unhealthy -- for an instant, as when outlier detection ejected the one left --
#: requests still go to them instead of failing at once with 503 ``UH`` (0 turns panic
#: off). Seen under CPU starvation: three connect failures ejected one of two healthy
#: endpoints for 5 s, the other was then removed, and the caller got 0.3-1.4 s of 503s.
#: Istio's default (``minHealthPercent`` 0) has that outage.
PANIC_THRESHOLD_PERCENT = 1.0


#: HTTP/2 PING keepalive between sidecars (``Http2ProtocolOptions.connection_keepalive``):
#: a PING every 200 ms; a connection whose peer does not answer one within the timeout
#: (:func:`keepalive_timeout_ms`) is closed, its requests are reset and retried elsewhere
#: (retry_on ``reset``), so a network partition costs no request.
KEEPALIVE_INTERVAL_MS = 200
#: The PING timeout (ms) when the distance to an endpoint is unknown.
KEEPALIVE_TIMEOUT_UNKNOWN_MS = 1000
#: Longest life of a sidecar's pooled upstream connection (ms; ``common_http_protocol_options
#: .max_connection_duration``): then it drains (HTTP/2 GOAWAY, requests in flight finish) and
#: the next request opens a new one. An east-west gateway picks the sidecar once per
#: connection (TLS passthrough), so without it a connection the gateway sent to another
#: zone while its own zone had no healthy endpoint (or in the second its health checks come
#: back) kept crossing zones -- and paying for it -- for as long as the caller kept it open.
MAX_CONNECTION_DURATION_MS = 300_000


def keepalive_timeout_ms(rtts_ms: Iterable[float | None]) -> int:
    """PING timeout (ms) for a cluster whose endpoints are ``rtts_ms`` away (round trips, ms,
    measured or estimated; None: unknown): two round trips of the farthest plus 100 ms (the
    answer takes one; a PING may queue behind data frames), rounded up to 100 ms, between
    300 ms and 2,000 ms;
    :data:`KEEPALIVE_TIMEOUT_UNKNOWN_MS` when a distance is unknown."""
    rtts = list(rtts_ms)
    if not rtts or any(r is None for r in rtts):
        return KEEPALIVE_TIMEOUT_UNKNOWN_MS
    farthest = max(r for r in rtts if r is not None)
    return int(min(2000, max(300, math.ceil((2 * farthest + 100) / 100) * 100)))


def _http2_options(
    timeout_ms: int = KEEPALIVE_TIMEOUT_UNKNOWN_MS,
) -> protocol_pb2.Http2ProtocolOptions:
    return protocol_pb2.Http2ProtocolOptions(
        connection_keepalive=protocol_pb2.KeepaliveSettings(
            interval=duration_ms(KEEPALIVE_INTERVAL_MS),
            timeout=duration_ms(timeout_ms),
        )
    )


def sidecar_to_sidecar_h2(port: ServicePort) -> bool:
    """True when the outbound cluster of ``port`` speaks HTTP/2 to its endpoints although the
    app may speak HTTP/1.1: an ``http`` port all of whose endpoints run a sidecar (tlsMode
    ``mutual``; remote ones always do). Linkerd upgrades proxy-to-proxy traffic the same way;
    it lets a dead path be seen within a second (HTTP/1.1 has no ping)."""
    return port.protocol == "http" and port.tls_modes == frozenset({"mutual"})


def protocol_options(
    protocol: str,
    *,
    h2: bool = False,
    inbound: bool = False,
    keepalive_timeout: int = KEEPALIVE_TIMEOUT_UNKNOWN_MS,
    max_requests_per_connection: int | None = None,
    max_connection_duration_ms: int | None = None,
) -> dict[str, object]:
    """``typed_extension_protocol_options`` of a cluster for a port of ``protocol``.

    - ``tcp``: none.
    - ``grpc`` / ``http2``, or ``h2`` (:func:`sidecar_to_sidecar_h2`): HTTP/2 with PING
      keepalive (:data:`KEEPALIVE_INTERVAL_MS`, ``keepalive_timeout`` ms).
    - ``http`` to the sidecar's own app (``inbound``): HTTP/1.1, whatever the caller's
      sidecar spoke.
    - ``http`` to workloads without a sidecar: the downstream's protocol.

    ``max_requests_per_connection`` (> 0): ``common_http_protocol_options`` closes an
    upstream connection after that many requests (TrafficPolicy
    ``connectionPool.maxRequestsPerConnection``); ``max_connection_duration_ms`` drains it
    after that long (:data:`MAX_CONNECTION_DURATION_MS`).
    """
    if protocol == "tcp":
        return {}
    if protocol in ("grpc", "http2") or h2:
        options = hpo.HttpProtocolOptions(
            explicit_http_config=hpo.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=_http2_options(keepalive_timeout)
            )
        )
    elif inbound:
        options = hpo.HttpProtocolOptions(
            explicit_http_config=hpo.HttpProtocolOptions.ExplicitHttpConfig(
                http_protocol_options={}
            )
        )
    else:
        options = hpo.HttpProtocolOptions(
            use_downstream_protocol_config=hpo.HttpProtocolOptions.UseDownstreamHttpConfig(
                http_protocol_options={}, http2_protocol_options={}
            )
        )
    if max_requests_per_connection:
        options.common_http_protocol_options.max_requests_per_connection.value = (
            max_requests_per_connection
        )
    if max_connection_duration_ms:
        options.common_http_protocol_options.max_connection_duration.CopyFrom(
            duration_ms(max_connection_duration_ms)
        )
    return {HTTP_OPTIONS_KEY: pack(options)}


def upstream_tls(port: ServicePort, tls: ProxyTls) -> tls_pb2.UpstreamTlsContext:
    """mTLS to a sidecar: our SVID, the bundle, SNI naming the port, SAN = service identities."""
    return mesh_upstream_tls(
        port.sni,
        [spiffe_id(tls.trust_domain, port.namespace, sa) for sa in port.service_accounts],
        tls,
        ["h2"] if sidecar_to_sidecar_h2(port) else [],
    )


def mesh_upstream_tls(
    sni: str, spiffe_ids: Sequence[str], tls: ProxyTls, alpn: Sequence[str] = ()
) -> tls_pb2.UpstreamTlsContext:
    """mTLS to a mesh workload: our SVID (secret ``default``), SNI ``sni``, the server's
    URI SAN exactly one of ``spiffe_ids``, verified with the ROOTCA secret (ALPN ``alpn``)."""
    sans = [
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.SanType.URI,
            matcher=string_pb2.StringMatcher(exact=sid),
        )
        for sid in spiffe_ids
    ]
    return tls_pb2.UpstreamTlsContext(
        sni=sni,
        common_tls_context=tls_pb2.CommonTlsContext(
            alpn_protocols=list(alpn),
            tls_certificate_sds_secret_configs=[tls.svid()],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=sans
                ),
                validation_context_sds_secret_config=tls.rootca(),
            ),
        ),
    )


def _tls_match(port: ServicePort, tls: ProxyTls) -> cluster_pb2.Cluster.TransportSocketMatch:
    match = struct_pb2.Struct()
    match.update({"tlsMode": "mutual"})
    return cluster_pb2.Cluster.TransportSocketMatch(
        name="tlsMode-mutual",
        match=match,
        transport_socket=tls_transport_socket(upstream_tls(port, tls)),
    )


_DEFAULT_HC = HealthCheckSettings()
_DEFAULT_OD = OutlierDetectionSettings()


def default_health_check(
    settings: HealthCheckSettings = _DEFAULT_HC,
) -> health_check_pb2.HealthCheck:
    """TCP connect (through the cluster's transport socket, so the TLS handshake counts).

    Defaults (TrafficPolicy ``healthCheck`` overrides them): every 1 s, 2 s timeout,
    unhealthy after 3 failures, healthy after 1 success. Generous on purpose: a check through
    a remote gateway crosses two proxies on a busy host, and fast failover comes from the
    control plane's EDS health, outlier detection and retries.

    In a cluster that has had no traffic yet (a split subset, or a service this proxy never
    calls) unhealthy and new hosts are still checked at that interval, healthy ones every
    :data:`NO_TRAFFIC_HEALTHY_INTERVAL_MS` (Envoy ``no_traffic_healthy_interval``): every
    sidecar has a cluster per service, so checking them all every second costs a full TLS
    handshake per sidecar pair and port each second -- on a 2-vCPU host with 27 sidecars that
    alone kept both cores busy, and at 10 s 51 sidecars still did (issue #16's bench). 60 s
    is Envoy's own default; the control plane's EDS health and retries cover a host that
    died meanwhile.

    A host that is new or failed its last check is checked again after at most
    :data:`UNHEALTHY_INTERVAL_MS` (``unhealthy_interval``, and ``no_traffic_interval``, which
    Envoy uses for such hosts of a cluster without traffic): a new endpoint takes traffic only
    after its first check passes, and a first check that fails (a remote gateway that is a
    moment behind its control plane) used to hold it back a whole interval. On issue #16's
    bed that was the cross-cluster tail: adds at 1.3-2.3 s against ~0.5 s. A partitioned or
    dead host costs each caller one check every 250 ms plus the timeout instead of every
    second."""
    retry = min(settings.interval_ms, UNHEALTHY_INTERVAL_MS)
    return health_check_pb2.HealthCheck(
        timeout=duration_ms(settings.timeout_ms),
        interval=duration_ms(settings.interval_ms),
        unhealthy_interval=duration_ms(retry),
        no_traffic_interval=duration_ms(retry),
        no_traffic_healthy_interval=duration_ms(
            max(settings.interval_ms, NO_TRAFFIC_HEALTHY_INTERVAL_MS)
        ),
        unhealthy_threshold=wrappers_pb2.UInt32Value(value=settings.unhealthy_threshold),
        healthy_threshold=wrappers_pb2.UInt32Value(value=settings.healthy_threshold),
        tcp_health_check=health_check_pb2.HealthCheck.TcpHealthCheck(),
    )


def default_outlier_detection(
    settings: OutlierDetectionSettings = _DEFAULT_OD,
) -> outlier_detection_pb2.OutlierDetection:
    """Eject after 3 consecutive 5xx / connect failures for 5 s; up to 100 % of hosts
    (TrafficPolicy ``outlierDetection`` overrides)."""
    return outlier_detection_pb2.OutlierDetection(
        consecutive_5xx=wrappers_pb2.UInt32Value(value=settings.consecutive_5xx),
        consecutive_gateway_failure=wrappers_pb2.UInt32Value(value=settings.consecutive_5xx),
        enforcing_consecutive_gateway_failure=wrappers_pb2.UInt32Value(value=100),
        interval=duration_ms(settings.interval_ms),
        base_ejection_time=duration_ms(settings.base_ejection_time_ms),
        max_ejection_percent=wrappers_pb2.UInt32Value(value=settings.max_ejection_percent),
    )


def retry_friendly_circuit_breakers(
    pool: ConnectionPoolSettings | None = None,
) -> circuit_breaker_pb2.CircuitBreakers:
    """No cap on concurrent retries (Envoy's default is 3 per cluster, which at a few hundred
    requests per second turns a failover into errors; Istio lifts it the same way), unless a
    TrafficPolicy ``connectionPool`` sets ``maxRetries``; its other limits become the
    thresholds ``max_connections``, ``max_pending_requests`` (``http1MaxPendingRequests``)
    and ``max_requests`` (``http2MaxRequests``), else Envoy's defaults (1024)."""
    pool = pool or ConnectionPoolSettings()
    limits = {
        "max_connections": pool.max_connections,
        "max_pending_requests": pool.http1_max_pending_requests,
        "max_requests": pool.http2_max_requests,
    }
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                max_retries=wrappers_pb2.UInt32Value(
                    value=pool.max_retries if pool.max_retries is not None else 2**32 - 1
                ),
                **{k: wrappers_pb2.UInt32Value(value=v) for k, v in limits.items() if v},
            )
        ]
    )


def outbound_cluster(
    port: ServicePort,
    tls: ProxyTls,
    *,
    inline_dns: endpoint_pb2.ClusterLoadAssignment | None = None,
    name: str | None = None,
    policy: TrafficPolicy | None = None,
    rtts_ms: Iterable[float | None] = (),
) -> cluster_pb2.Cluster:
    """The sidecar's cluster for one service port (see the module docstring).

    EDS normally; with ``inline_dns`` (endpoints addressed by hostname, e.g. a remote gateway
    behind a cloud load balancer) a STRICT_DNS cluster carrying that assignment, IPv4 only.
    ``name`` (default ``port.cluster_name``) names a split subset; ``policy`` overrides the
    health check and outlier detection; ``rtts_ms`` (round trips to the endpoints' clusters)
    sets the HTTP/2 PING timeout (:func:`keepalive_timeout_ms`).

    A host the control plane removes leaves Envoy's load balancer at once
    (``ignore_health_on_host_removal``): by default Envoy keeps a removed host that its own
    health check still calls healthy (``/pending_dynamic_removal``) until a check fails, and
    a healthy host's next check can be a minute away (``no_traffic_healthy_interval``). On the
    isolated bed a killed replica lingered so in its caller's priority 0, and when the next
    cluster was partitioned, the retries went to the dead replica: 1,073 of 2,800 requests
    failed. The control plane knows membership first (it checks its own workloads and learns
    withdrawals from the controller); requests in flight on a removed host still complete.
    """
    name = name or port.cluster_name
    hc = policy.spec.health_check if policy and policy.spec.health_check else None
    od = policy.spec.outlier_detection if policy and policy.spec.outlier_detection else None
    discovery: dict[str, object]
    if inline_dns is None:
        discovery = {
            "type": cluster_pb2.Cluster.DiscoveryType.EDS,
            "eds_cluster_config": cluster_pb2.Cluster.EdsClusterConfig(
                eds_config=ads(), service_name=name
            ),
        }
    else:
        discovery = {
            "type": cluster_pb2.Cluster.DiscoveryType.STRICT_DNS,
            "load_assignment": inline_dns,
            "dns_lookup_family": cluster_pb2.Cluster.DnsLookupFamily.V4_ONLY,
        }
    return cluster_pb2.Cluster(
        name=name,
        **discovery,
        connect_timeout=duration_ms(CONNECT_TIMEOUT_MS),
        lb_policy=cluster_pb2.Cluster.LbPolicy.ROUND_ROBIN,
        common_lb_config=cluster_pb2.Cluster.CommonLbConfig(
            healthy_panic_threshold=percent_pb2.Percent(value=PANIC_THRESHOLD_PERCENT),
            locality_weighted_lb_config=cluster_pb2.Cluster.CommonLbConfig.LocalityWeightedLbConfig(),
        ),
        circuit_breakers=retry_friendly_circuit_breakers(
            policy.spec.connection_pool if policy is not None else None
        ),
        ignore_health_on_host_removal=True,
        health_checks=[default_health_check(hc) if hc else default_health_check()],
        outlier_detection=default_outlier_detection(od) if od else default_outlier_detection(),
        transport_socket_matches=[_tls_match(port, tls)] if "mutual" in port.tls_modes else [],
        typed_extension_protocol_options=protocol_options(
            port.protocol,
            h2=sidecar_to_sidecar_h2(port),
            keepalive_timeout=keepalive_timeout_ms(rtts_ms),
            max_requests_per_connection=(
                policy.spec.connection_pool.max_requests_per_connection
                if policy is not None and policy.spec.connection_pool is not None
                else None
            ),
            max_connection_duration_ms=MAX_CONNECTION_DURATION_MS,
        ),
    )


def load_assignment(
    name: str, targets: Iterable[tuple[str, int]]
) -> endpoint_pb2.ClusterLoadAssignment:
    """The load assignment of cluster ``name`` with one locality of endpoints ``(host,
    port)`` (IPs for a STATIC cluster, names or IPs for STRICT_DNS / LOGICAL_DNS)."""
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=address_pb2.Address(
                                socket_address=address_pb2.SocketAddress(
                                    address=host, port_value=port
                                )
                            )
                        )
                    )
                    for host, port in targets
                ]
            )
        ],
    )


def single_endpoint(name: str, host: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    """The load assignment of cluster ``name`` with one endpoint, ``host:port``."""
    return load_assignment(name, [(host, port)])


def inbound_cluster(port_name: str, target_port: int, protocol: str) -> cluster_pb2.Cluster:
    """The local app behind a sidecar: STATIC ``127.0.0.1:<targetPort>``, plain text."""
    name = inbound_cluster_name(port_name, target_port)
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.DiscoveryType.STATIC,
        connect_timeout=duration_ms(CONNECT_TIMEOUT_MS),
        load_assignment=single_endpoint(name, "127.0.0.1", target_port),
        typed_extension_protocol_options=protocol_options(protocol, inbound=True),
    )


def gateway_cluster(port: ServicePort, name: str | None = None) -> cluster_pb2.Cluster:
    """The east-west gateway's EDS cluster of local sidecars (``name``: a subset's, default
    ``port.gateway_cluster_name``): plain TCP, the TLS inside is the caller's, passed through
    unopened. TCP health checks, outlier detection and removal as outbound."""
    name = name or port.gateway_cluster_name
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.DiscoveryType.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads(), service_name=name
        ),
        connect_timeout=duration_ms(CONNECT_TIMEOUT_MS),
        lb_policy=cluster_pb2.Cluster.LbPolicy.ROUND_ROBIN,
        common_lb_config=cluster_pb2.Cluster.CommonLbConfig(
            healthy_panic_threshold=percent_pb2.Percent(value=PANIC_THRESHOLD_PERCENT),
        ),
        ignore_health_on_host_removal=True,
        health_checks=[default_health_check()],
        outlier_detection=default_outlier_detection(),
    )


def grpc_upstream_tls(port: ServicePort, trust_domain: str) -> tls_pb2.UpstreamTlsContext:
    """mTLS from proxyless gRPC to sidecars (gRFC A29): :func:`grpc_tls_context` with the
    service's SPIFFE IDs as the server SANs it accepts. No SNI: gRPC ignores ``sni``; the
    sidecar's authority chain serves it."""
    sans = [spiffe_id(trust_domain, port.namespace, sa) for sa in port.service_accounts]
    return tls_pb2.UpstreamTlsContext(common_tls_context=grpc_tls_context(sans))


def grpc_cluster(
    port: ServicePort, name: str | None = None, *, mtls_trust_domain: str | None = None
) -> cluster_pb2.Cluster:
    """A cluster for grpcio's xDS client: EDS over ADS, round robin, nothing gRPC would NACK.
    ``name`` (default ``port.cluster_name``) names a split subset; ``mtls_trust_domain``
    (endpoints behind sidecars) adds :func:`grpc_upstream_tls` as its transport socket."""
    cluster = cluster_pb2.Cluster(
        name=name or port.cluster_name,
        type=cluster_pb2.Cluster.DiscoveryType.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads(), service_name=name or port.cluster_name
        ),
        lb_policy=cluster_pb2.Cluster.LbPolicy.ROUND_ROBIN,
    )
    if mtls_trust_domain is not None:
        cluster.transport_socket.CopyFrom(
            tls_transport_socket(grpc_upstream_tls(port, mtls_trust_domain))
        )
    return cluster
