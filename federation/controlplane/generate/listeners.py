"""LDS: the sidecar's inbound and outbound listeners, and proxyless-gRPC API listeners.

- **Outbound** (``outbound_http``, ``127.0.0.1:<outbound_port>``): plain HTTP/1.1 or HTTP/2
  from the app (codec AUTO, so gRPC works), routed by RDS ``outbound``.
- **Inbound** (``inbound``, ``<workload address>:<inboundPort>``; in a captured pod the
  wildcard of the address's family, as Istio's 15006, so every replica of a workload gets the
  same listener -- :func:`inbound_bind_address`): TLS inspector; one filter
  chain per service port matched on the SNI ``outbound_.<port>_._.<host>``; mTLS STRICT by
  default -- the client must present an SVID chaining to the trust bundle whose URI SAN starts
  with ``spiffe://<trust-domain>/``. PERMISSIVE adds a plain-text chain, DISABLE has only that
  -- per port, by the PeerAuthentications that select the workload, else its ``mtlsMode``.
  One more mTLS chain, without SNI match, serves callers that send no meshfed SNI --
  proxyless gRPC (gRPC ignores ``UpstreamTlsContext.sni``, gRFC A29) -- choosing the port by
  ``:authority`` (``<host>:<port>``, or ``<host>`` for the service's first HTTP port, as the
  gRPC listeners do), with each port's RBAC as per-route configuration (``RBACPerRoute``).
  The app sees the caller's identity in ``x-forwarded-client-cert`` (``URI=spiffe://...``).
- **gRPC** (proxyless): an ``api_listener`` per target name (``<host>`` and ``<host>:<port>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    protocol_pb2,
    substitution_format_string_pb2,
)
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from federation.controlplane.generate.common import (
    OUTBOUND_ROUTE,
    ProxyTls,
    ads,
    duration_ms,
    grpc_tls_context,
    inbound_cluster_name,
    pack,
    tls_transport_socket,
)
from federation.controlplane.generate.rbac import (
    network_rbac_filters,
    rbac_filters,
    rbac_per_route,
)
from federation.controlplane.generate.routes import (
    AuthorityRoute,
    grpc_route_name,
    inbound_authority_route_config,
    inbound_route_config,
)
from federation.controlplane.generate.services import ServicePort
from federation.model.authz import AuthorizationPolicy
from federation.model.workload import ServicePort as WorkloadPort
from federation.model.workload import WorkloadEntry
from federation.sync.node import GRPC_SERVER_LISTENER_TEMPLATE

OUTBOUND_LISTENER = "outbound_http"
INBOUND_LISTENER = "inbound"
ACCESS_LOG_FORMAT = (
    '[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% "%REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(:PATH)%"'
    " %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION%ms upstream=%UPSTREAM_CLUSTER%"
    " host=%UPSTREAM_HOST% peer=%DOWNSTREAM_PEER_URI_SAN%"
)
#: Who called whom, first on every line. Outbound: this sidecar's cluster and locality, and
#: the ``x-meshfed-served-by`` answer (``<cluster>/<zone>`` of the endpoint that served it).
#: Inbound: the caller's cluster claim (the DNS SAN ``<cluster>.cluster.meshfed.internal`` of
#: its SVID, which only that cluster's CA can sign; ``-`` for a plain-text caller) and this
#: workload's ``<cluster>/<zone>``.
OUTBOUND_PEERS = "src={source} dst=%RESP(X-MESHFED-SERVED-BY)%"
INBOUND_PEERS = "src=%DOWNSTREAM_PEER_DNS_SAN% dst={served_by}"
#: Inbound only: what the RBAC filters decided, shadow (dry-run) results included.
RBAC_LOG_FIELD = " rbac=%DYNAMIC_METADATA(envoy.filters.http.rbac)%"


def access_log(direction: str, peers: str = "") -> accesslog_pb2.AccessLog:
    """Access log to stdout: ``<direction> <peers> <ACCESS_LOG_FORMAT>`` -- source and
    destination (:data:`OUTBOUND_PEERS`, :data:`INBOUND_PEERS`, filled in), the request, the
    upstream cluster and host (inbound: also the RBAC filters' dynamic metadata, e.g. a
    dry-run policy's verdict)."""
    return accesslog_pb2.AccessLog(
        name="envoy.access_loggers.stdout",
        typed_config=pack(
            stream_pb2.StdoutAccessLog(
                log_format=substitution_format_string_pb2.SubstitutionFormatString(
                    text_format_source=base_pb2.DataSource(
                        inline_string=f"{direction} {peers}{' ' if peers else ''}"
                        + ACCESS_LOG_FORMAT
                        + (RBAC_LOG_FIELD if direction == "inbound" else "")
                        + "\n"
                    )
                )
            )
        ),
    )


#: One line per outbound request for the agent's traffic counter (:mod:`federation.agent.tap`
#: parses it): the Envoy cluster, the ``x-meshfed-served-by`` answer, the response code,
#: upstream wire bytes sent and received, the duration (ms), and the upstream attempts (more
#: than 1: the router retried, e.g. on the stable destination during a shift), separated by
#: spaces.
TRAFFIC_LOG_FORMAT = (
    "%UPSTREAM_CLUSTER% %RESP(X-MESHFED-SERVED-BY)% %RESPONSE_CODE%"
    " %UPSTREAM_WIRE_BYTES_SENT% %UPSTREAM_WIRE_BYTES_RECEIVED% %DURATION%"
    " %UPSTREAM_REQUEST_ATTEMPT_COUNT%\n"
)


def traffic_log(path: str, line: str = TRAFFIC_LOG_FORMAT) -> accesslog_pb2.AccessLog:
    """Envoy's file access logger writing ``line`` (default :data:`TRAFFIC_LOG_FORMAT`; a
    gateway's: :data:`federation.controlplane.generate.gateway.HOP_LOG_FORMAT`) to ``path``
    (the FIFO the proxy's agent reads; node metadata ``meshfed.io/traffic_log``, absolute or
    relative to Envoy's working directory). Envoy formats a
    short line and a flush thread writes it: no gRPC message per request (Envoy's gRPC
    access log service cost its worker ~14 us of CPU per request here, 25 % of a request's
    proxying; docs/benchmarks.md)."""
    return accesslog_pb2.AccessLog(
        name="envoy.access_loggers.file",
        typed_config=pack(
            file_pb2.FileAccessLog(
                path=path,
                log_format=substitution_format_string_pb2.SubstitutionFormatString(
                    text_format_source=base_pb2.DataSource(inline_string=line)
                ),
            )
        ),
    )


def _router() -> hcm.HttpFilter:
    return hcm.HttpFilter(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))


def _fault() -> hcm.HttpFilter:
    """The fault filter, empty: TrafficPolicy ``fault`` configures it per route
    (:mod:`~federation.controlplane.generate.http_routes`). Always present, so adding a
    fault changes the routes only, never the listener (no drain)."""
    return hcm.HttpFilter(name="envoy.filters.http.fault", typed_config=pack(fault_pb2.HTTPFault()))


def path_normalization() -> dict[str, Any]:
    r"""The HCM fields that make every path one spelling before any filter or route sees it,
    on the sidecars' inbound and outbound connection managers (the east-west gateway passes
    TLS through and never parses HTTP). As Istio's ``DECODE_AND_MERGE_SLASHES``
    (meshConfig ``pathNormalization``), so an AuthorizationPolicy path matches what the app
    is sent and is not bypassed by another spelling of it:

    - ``normalize_path``: RFC 3986 section 6 (``/./``, ``/x/../``, percent-encoded
      unreserved characters such as ``%61``, backslashes);
    - ``merge_slashes``: ``//admin`` is ``/admin``;
    - ``path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD``: ``%2F`` / ``%5C`` become
      ``/`` / ``\`` first (then normalised), because most app frameworks decode them and
      would serve ``/admin%2Fx`` as ``/admin/x``; a path segment that must carry an encoded
      slash cannot pass a meshfed sidecar (Istio's same trade-off).

    The table of spellings and outcomes, measured against Envoy, is in docs/policy.md.
    Source: Envoy API ``HttpConnectionManager`` fields of those names; Istio's "Security
    Best Practices", "Understand path normalization in authorization policy"."""
    return {
        "normalize_path": wrappers_pb2.BoolValue(value=True),
        "merge_slashes": True,
        "path_with_escaped_slashes_action": (
            hcm.HttpConnectionManager.PathWithEscapedSlashesAction.UNESCAPE_AND_FORWARD
        ),
    }


def outbound_listener(
    port: int,
    source: str = "-",
    tracing: hcm.HttpConnectionManager.Tracing | None = None,
    telemetry: accesslog_pb2.AccessLog | None = None,
) -> listener_pb2.Listener:
    """The sidecar's outbound HTTP listener on ``127.0.0.1:<port>``: one chain of
    :func:`outbound_manager` (a captured sidecar's is
    :func:`federation.controlplane.generate.capture.capture_listener`)."""
    return _loopback_listener(
        OUTBOUND_LISTENER,
        port,
        "envoy.filters.network.http_connection_manager",
        outbound_manager(source, tracing, telemetry),
    )


def outbound_manager(
    source: str = "-",
    tracing: hcm.HttpConnectionManager.Tracing | None = None,
    telemetry: accesslog_pb2.AccessLog | None = None,
) -> hcm.HttpConnectionManager:
    """The outbound HTTP connection manager, routed by RDS ``outbound``; ``source``
    (``<cluster>/<locality>``) goes into its access log; ``tracing``
    (:mod:`federation.controlplane.generate.tracing`) when the mesh has a collector;
    ``telemetry`` (:func:`traffic_log`) when the agent counts the sidecar's traffic."""
    return hcm.HttpConnectionManager(
        stat_prefix="outbound_http",
        codec_type=hcm.HttpConnectionManager.CodecType.AUTO,
        rds=hcm.Rds(config_source=ads(), route_config_name=OUTBOUND_ROUTE),
        http_filters=[_fault(), _router()],
        access_log=[
            access_log("outbound", OUTBOUND_PEERS.format(source=source)),
            *([telemetry] if telemetry is not None else []),
        ],
        tracing=tracing,
        **path_normalization(),
    )


def _loopback_listener(
    name: str, port: int, filter_name: str, config: Message
) -> listener_pb2.Listener:
    """An outbound listener on ``127.0.0.1:<port>`` with one filter chain of one filter."""
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
        ),
        traffic_direction=base_pb2.TrafficDirection.OUTBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(name=filter_name, typed_config=pack(config))
                ]
            )
        ],
    )


def outbound_tcp_listener(
    local_port: int, stat_name: str, clusters: Sequence[tuple[str, int]], source: str = "-"
) -> listener_pb2.Listener:
    """A TCP upstream's outbound listener on ``127.0.0.1:<local_port>``: one chain of
    :func:`outbound_tcp_proxy`. Named ``outbound_tcp|<port>``."""
    return _loopback_listener(
        f"outbound_tcp|{local_port}",
        local_port,
        "envoy.filters.network.tcp_proxy",
        outbound_tcp_proxy(stat_name, clusters, source),
    )


def outbound_tcp_proxy(
    stat_name: str, clusters: Sequence[tuple[str, int]], source: str = "-"
) -> tcp_proxy_pb2.TcpProxy:
    """``tcp_proxy`` to one cluster, or to ``clusters`` (``[(name, weight)]``) by weight per
    connection (``weighted_clusters``); the clusters originate mTLS."""
    proxy = tcp_proxy_pb2.TcpProxy(
        stat_prefix=f"outbound_tcp_{stat_name}",
        access_log=[access_log("outbound", f"src={source} dst=%UPSTREAM_CLUSTER%")],
    )
    live = [(name, w) for name, w in clusters if w > 0]
    if len(live) == 1:
        proxy.cluster = live[0][0]
    else:
        proxy.weighted_clusters.CopyFrom(
            tcp_proxy_pb2.TcpProxy.WeightedCluster(
                clusters=[
                    tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=n, weight=w)
                    for n, w in live
                ]
            )
        )
    return proxy


def original_dst_filter() -> listener_components_pb2.ListenerFilter:
    """Listener filter ``envoy.filters.listener.original_dst``: a redirected connection's local
    address becomes the one its client dialled (``SO_ORIGINAL_DST``), for filter chain
    matching and ``ORIGINAL_DST`` clusters; an unredirected one keeps its own."""
    return listener_components_pb2.ListenerFilter(
        name="envoy.filters.listener.original_dst",
        typed_config=pack(original_dst_pb2.OriginalDst()),
    )


def downstream_mtls(tls: ProxyTls) -> tls_pb2.DownstreamTlsContext:
    """Require a client SVID chaining to ROOTCA with a URI SAN in ``trust_domain`` (or in a
    federated domain: the ROOTCA secret then holds Envoy's SPIFFE validator, which checks
    each SVID against its own domain's bundle, :mod:`federation.ca.files`). ALPN
    offers ``h2`` and ``http/1.1``: gRPC clients refuse a TLS connection without a selected
    ``h2`` (sidecars offer no ALPN, so it changes nothing for them).

    TLS session resumption is off (``disable_stateless_session_resumption``,
    ``disable_stateful_session_resumption``): a resumed session skips certificate
    validation, so Envoy reports the peer as not validated and the ``mtls_authenticated``
    principal behind ``clusters`` stops matching (envoyproxy/envoy#42668: a DENY by cluster
    would not deny), and the member CRLs would not be checked either. Every connection does a
    full handshake instead; connections are pooled, so that is rare."""
    return tls_pb2.DownstreamTlsContext(
        require_client_certificate={"value": True},
        disable_stateless_session_resumption=True,
        disable_stateful_session_resumption=True,
        common_tls_context=tls_pb2.CommonTlsContext(
            alpn_protocols=["h2", "http/1.1"],
            tls_certificate_sds_secret_configs=[tls.svid()],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=[
                        common_pb2.SubjectAltNameMatcher(
                            san_type=common_pb2.SubjectAltNameMatcher.SanType.URI,
                            matcher=string_pb2.StringMatcher(prefix=f"spiffe://{domain}/"),
                        )
                        for domain in (tls.trust_domain, *tls.federated)
                    ]
                ),
                validation_context_sds_secret_config=tls.rootca(),
            ),
        ),
    )


#: Longest life of an inbound connection (ms; HCM ``common_http_protocol_options.
#: max_connection_duration``, drained gracefully: HTTP/1.1 ``Connection: close``, HTTP/2
#: GOAWAY). Certificate checks happen at the handshake, so this bounds how long an
#: established connection from a peer whose SVID was revoked since (a removed cluster,
#: :mod:`trust.revocation`) keeps working.
INBOUND_MAX_CONNECTION_MS = 20_000


def _inbound_hcm(
    stat_prefix: str,
    route_config: route_pb2.RouteConfiguration,
    authz: Sequence[hcm.HttpFilter] = (),
    served_by: str = "-",
    tracing: hcm.HttpConnectionManager.Tracing | None = None,
) -> listener_components_pb2.Filter:
    manager = hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm.HttpConnectionManager.CodecType.AUTO,
        route_config=route_config,
        http_filters=[*authz, _router()],
        forward_client_cert_details=hcm.HttpConnectionManager.ForwardClientCertDetails.SANITIZE_SET,
        set_current_client_cert_details=hcm.HttpConnectionManager.SetCurrentClientCertDetails(
            uri=True
        ),
        access_log=[access_log("inbound", INBOUND_PEERS.format(served_by=served_by))],
        tracing=tracing,
        common_http_protocol_options=protocol_pb2.HttpProtocolOptions(
            max_connection_duration=duration_ms(INBOUND_MAX_CONNECTION_MS)
        ),
        **path_normalization(),
    )
    return listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=pack(manager)
    )


def _inbound_tcp(
    port_name: str,
    port: int,
    app_port: int,
    authz: Sequence[AuthorizationPolicy],
    served_by: str = "-",
) -> list[listener_components_pb2.Filter]:
    """A TCP port's inbound filters: network RBAC (:func:`rbac.network_rbac_filters`), then
    ``tcp_proxy`` to the app, connections capped at :data:`INBOUND_MAX_CONNECTION_MS` like
    HTTP ones (``max_downstream_connection_duration``) so revocation reaches them too."""
    stat_prefix = f"inbound_tcp_{app_port}"
    proxy = tcp_proxy_pb2.TcpProxy(
        stat_prefix=stat_prefix,
        cluster=inbound_cluster_name(port_name, app_port),
        max_downstream_connection_duration=duration_ms(INBOUND_MAX_CONNECTION_MS),
        access_log=[access_log("inbound", INBOUND_PEERS.format(served_by=served_by))],
    )
    return [
        *network_rbac_filters(authz, (port, app_port), stat_prefix),
        listener_components_pb2.Filter(
            name="envoy.filters.network.tcp_proxy", typed_config=pack(proxy)
        ),
    ]


@dataclass(frozen=True)
class _Inbound:
    """What every chain of one workload's inbound listener shares."""

    workload: WorkloadEntry
    mtls: base_pb2.TransportSocket  # one for every mTLS chain
    served_by: str
    authz: Sequence[AuthorizationPolicy]
    tracing: hcm.HttpConnectionManager.Tracing | None

    def manager(self, name: str, port: int, app_port: int) -> listener_components_pb2.Filter:
        # the policies' ports are the service port or the app's (target) port
        return _inbound_hcm(
            f"inbound_{app_port}",
            inbound_route_config(name, app_port, self.served_by),
            rbac_filters(self.authz, (port, app_port)),
            self.served_by,
            self.tracing,
        )

    def mtls_chain(
        self,
        name: str,
        match: listener_components_pb2.FilterChainMatch,
        filters: list[listener_components_pb2.Filter],
    ) -> listener_components_pb2.FilterChain:
        return listener_components_pb2.FilterChain(
            name=name,
            filter_chain_match=match,
            filters=filters,
            transport_socket=self.mtls,
        )


def _port_chain(
    inb: _Inbound, port: ServicePort, wp: WorkloadPort, subsets: Sequence[str]
) -> listener_components_pb2.FilterChain:
    """The mTLS chain of one service port, matched by its SNIs (and its subsets')."""
    return inb.mtls_chain(
        f"mtls|{port.port}",
        listener_components_pb2.FilterChainMatch(
            server_names=[port.sni] + [replace(port, subset=name).sni for name in subsets],
            transport_protocol="tls",
        ),
        [inb.manager(wp.name, port.port, wp.app_port)]
        if port.is_http
        else _inbound_tcp(wp.name, port.port, wp.app_port, inb.authz, inb.served_by),
    )


def _authority_chain(
    inb: _Inbound, by_authority: list[tuple[ServicePort, WorkloadPort]]
) -> listener_components_pb2.FilterChain:
    """The mTLS chain for callers without a port's SNI: HTTP ports routed by authority."""
    filters, per_route = rbac_per_route(
        inb.authz, [(port.port, wp.app_port) for port, wp in by_authority]
    )
    entries = [
        AuthorityRoute(
            (f"{port.hostname}:{port.port}",) + ((port.hostname,) if i == 0 else ()),
            wp.name,
            wp.app_port,
            per_route[i],
        )
        for i, (port, wp) in enumerate(by_authority)
    ]
    manager = _inbound_hcm(
        "inbound_authority",
        inbound_authority_route_config(entries, inb.served_by),
        filters,
        inb.served_by,
        inb.tracing,
    )
    return inb.mtls_chain(
        "mtls|authority",
        listener_components_pb2.FilterChainMatch(transport_protocol="tls"),
        [manager],
    )


def _inbound_chains(
    inb: _Inbound,
    ports: list[ServicePort],
    subsets: Sequence[str],
    modes: Mapping[int, str],
    *,
    captured: bool = False,
) -> list[listener_components_pb2.FilterChain]:
    """Every chain of the inbound listener, by each port's mTLS mode (``modes``, by target
    port: STRICT and PERMISSIVE get the mTLS chains, PERMISSIVE and DISABLE plain text);
    ``captured``: the plain-text chains match each port's original destination port (the
    app's port, which the client dialled), else one chain serves the first port that takes
    plain text."""
    chains = []
    spec = inb.workload.spec

    def mode(wp: WorkloadPort) -> str:
        return modes.get(wp.app_port, spec.mtls_mode)

    by_name = {p.name: p for p in spec.ports}
    served = [
        (port, by_name[port.port_name])
        for port in ports
        if port.port_name in by_name and mode(by_name[port.port_name]) != "DISABLE"
    ]
    chains += [_port_chain(inb, port, wp, subsets) for port, wp in served]
    by_authority = [(port, wp) for port, wp in served if port.is_http]
    if by_authority:
        chains.append(_authority_chain(inb, by_authority))
    plain = [wp for wp in spec.ports if mode(wp) != "STRICT"]
    if plain:
        for wp in plain if captured else plain[:1]:
            match = listener_components_pb2.FilterChainMatch(transport_protocol="raw_buffer")
            if captured:
                match.destination_port.value = wp.app_port
            chains.append(
                listener_components_pb2.FilterChain(
                    name=f"plaintext|{wp.app_port}" if captured else "plaintext",
                    filter_chain_match=match,
                    filters=[inb.manager(wp.name, wp.port, wp.app_port)]
                    if wp.protocol != "tcp"
                    else _inbound_tcp(wp.name, wp.port, wp.app_port, inb.authz, inb.served_by),
                )
            )
    return chains


def inbound_bind_address(address: str, *, captured: bool) -> str:
    """Where the inbound listener binds: the workload's ``address``, or, when its pod captures
    (the pod's network namespace is the sidecar's alone, and the redirect's destination is
    the address of the interface the connection came in on), ``0.0.0.0`` / ``::`` by
    ``address``'s family. Pure."""
    if not captured:
        return address
    return "::" if ":" in address else "0.0.0.0"  # noqa: S104 - the pod's own namespace


def inbound_listener(
    workload: WorkloadEntry,
    ports: list[ServicePort],
    tls: ProxyTls,
    served_by: str,
    authz: Sequence[AuthorizationPolicy] = (),
    tracing: hcm.HttpConnectionManager.Tracing | None = None,
    subsets: Sequence[str] = (),
    *,
    captured: bool = False,
    mtls_modes: Mapping[int, str] | None = None,
) -> listener_pb2.Listener:
    """The sidecar's inbound listener for ``workload`` (see the module docstring).

    Args:
        ports: the service's ports (numbers as callers address them).
        subsets: the TrafficPolicy subsets the workload belongs to: each port's chain also
            answers their SNIs (``outbound_.<port>_.<subset>_.<host>``).
        served_by: the ``x-meshfed-served-by`` value, ``<cluster>/<zone>``.
        authz: the AuthorizationPolicies that select the workload; enforced by RBAC filters
            on every chain (:mod:`federation.controlplane.generate.rbac`).
        tracing: the HTTP managers' tracing (:mod:`federation.controlplane.generate.tracing`).
        captured: the pod redirects inbound TCP here (``meshfed proxy init``): listener filter
            ``original_dst`` first, so plain-text chains match the port the client dialled,
            and a client that skips mTLS by dialling the app's port directly meets this
            listener (STRICT: no chain matches, the connection is closed).
        mtls_modes: STRICT, PERMISSIVE or DISABLE by target port (PeerAuthentications:
            :meth:`federation.controlplane.registry.RegistryState.mtls_modes`); a port not
            in it takes the workload's ``mtlsMode``.
    """
    inb = _Inbound(workload, tls_transport_socket(downstream_mtls(tls)), served_by, authz, tracing)
    return listener_pb2.Listener(
        name=INBOUND_LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=inbound_bind_address(workload.spec.address, captured=captured),
                port_value=workload.spec.inbound_port,
            )
        ),
        traffic_direction=base_pb2.TrafficDirection.INBOUND,
        listener_filters=[
            *([original_dst_filter()] if captured else []),
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=pack(tls_inspector_pb2.TlsInspector()),
            ),
        ],
        filter_chains=_inbound_chains(inb, ports, subsets, mtls_modes or {}, captured=captured),
    )


def grpc_listener(port: ServicePort, *, with_port: bool) -> listener_pb2.Listener:
    """An ``api_listener`` for grpcio's xDS client; RDS names the same target."""
    name = grpc_route_name(port, with_port=with_port)
    manager = hcm.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm.Rds(config_source=ads(), route_config_name=name),
        http_filters=[_fault(), _router()],  # fault injection: gRFC A33
    )
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pack(manager))
    )


def grpc_server_tls() -> tls_pb2.DownstreamTlsContext:
    """mTLS for a proxyless gRPC server (gRFC A29): its SVID and the trust bundle from the
    bootstrap's certificate provider; a client certificate chaining to the bundle is required
    (the bundle holds only this trust domain's roots, whose CAs sign only its SPIFFE IDs)."""
    return tls_pb2.DownstreamTlsContext(
        require_client_certificate={"value": True}, common_tls_context=grpc_tls_context()
    )


def grpc_server_listener(
    workload: WorkloadEntry,
    port_name: str,
    listen_port: int,
    authz: Sequence[hcm.HttpFilter] = (),
    *,
    mtls: bool = True,
) -> listener_pb2.Listener:
    """The Listener a proxyless gRPC server on ``<workload address>:<listen_port>`` asks for
    (gRFC A36): one filter chain, mTLS (:func:`grpc_server_tls`) when ``mtls`` -- gRPC cannot
    tell TLS from plain text on one port, so a PERMISSIVE workload is served STRICT --, an
    HTTP connection manager whose only route is a
    ``non_forwarding_action`` (the server handles the call), the RBAC filters ``authz``
    (:func:`federation.controlplane.generate.rbac.grpc_rbac_filters`) and the router."""
    address = f"{workload.spec.address}:{listen_port}"
    manager = hcm.HttpConnectionManager(
        stat_prefix=f"grpc_server_{listen_port}",
        route_config=route_pb2.RouteConfiguration(
            name=f"grpc_server|{listen_port}|{port_name}",
            virtual_hosts=[
                rc.VirtualHost(
                    name="grpc_server",
                    domains=["*"],
                    routes=[
                        rc.Route(
                            match=rc.RouteMatch(prefix="/"),
                            non_forwarding_action=rc.NonForwardingAction(),
                        )
                    ],
                )
            ],
        ),
        http_filters=[*authz, _router()],
    )
    chain = listener_components_pb2.FilterChain(
        name=f"grpc_server|{port_name}",
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager", typed_config=pack(manager)
            )
        ],
    )
    if mtls:
        chain.transport_socket.CopyFrom(tls_transport_socket(grpc_server_tls()))
    return listener_pb2.Listener(
        name=GRPC_SERVER_LISTENER_TEMPLATE % address,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=workload.spec.address, port_value=listen_port
            )
        ),
        traffic_direction=base_pb2.TrafficDirection.INBOUND,
        filter_chains=[chain],
    )
