"""LDS: the sidecar's inbound and outbound listeners, and proxyless-gRPC API listeners.

- **Outbound** (``outbound_http``, ``127.0.0.1:<outbound_port>``): plain HTTP/1.1 or HTTP/2
  from the app (codec AUTO, so gRPC works), routed by RDS ``outbound``.
- **Inbound** (``inbound``, ``<workload address>:<inboundPort>``): TLS inspector; one filter
  chain per service port matched on the SNI ``outbound_.<port>_._.<host>``; mTLS STRICT by
  default -- the client must present an SVID chaining to the trust bundle whose URI SAN starts
  with ``spiffe://<trust-domain>/``. PERMISSIVE adds a plain-text chain, DISABLE has only that.
  The app sees the caller's identity in ``x-forwarded-client-cert`` (``URI=spiffe://...``).
- **gRPC** (proxyless): an ``api_listener`` per target name (``<host>`` and ``<host>:<port>``).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    protocol_pb2,
    substitution_format_string_pb2,
)
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from federation.controlplane.generate.common import (
    OUTBOUND_ROUTE,
    ProxyTls,
    ads,
    duration_ms,
    pack,
)
from federation.controlplane.generate.rbac import rbac_filters
from federation.controlplane.generate.routes import grpc_route_name, inbound_route_config
from federation.controlplane.generate.services import ServicePort
from federation.model.authz import AuthorizationPolicy
from federation.model.workload import WorkloadEntry

OUTBOUND_LISTENER = "outbound_http"
INBOUND_LISTENER = "inbound"
ACCESS_LOG_FORMAT = (
    '[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% "%REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(:PATH)%"'
    " %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION%ms upstream=%UPSTREAM_CLUSTER%"
    " host=%UPSTREAM_HOST% served_by=%RESP(X-MESHFED-SERVED-BY)% peer=%DOWNSTREAM_PEER_URI_SAN%"
)
#: Inbound only: what the RBAC filters decided, shadow (dry-run) results included.
RBAC_LOG_FIELD = " rbac=%DYNAMIC_METADATA(envoy.filters.http.rbac)%"


def access_log(direction: str) -> accesslog_pb2.AccessLog:
    """Access log to stdout naming the upstream cluster, host and who served the request
    (inbound: also the RBAC filters' dynamic metadata, e.g. a dry-run policy's verdict)."""
    return accesslog_pb2.AccessLog(
        name="envoy.access_loggers.stdout",
        typed_config=pack(
            stream_pb2.StdoutAccessLog(
                log_format=substitution_format_string_pb2.SubstitutionFormatString(
                    text_format_source=base_pb2.DataSource(
                        inline_string=f"{direction} {ACCESS_LOG_FORMAT}"
                        + (RBAC_LOG_FIELD if direction == "inbound" else "")
                        + "\n"
                    )
                )
            )
        ),
    )


def _router() -> hcm.HttpFilter:
    return hcm.HttpFilter(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))


def outbound_listener(port: int) -> listener_pb2.Listener:
    """The sidecar's outbound HTTP listener on ``127.0.0.1:<port>``."""
    manager = hcm.HttpConnectionManager(
        stat_prefix="outbound_http",
        codec_type=hcm.HttpConnectionManager.CodecType.AUTO,
        rds=hcm.Rds(config_source=ads(), route_config_name=OUTBOUND_ROUTE),
        http_filters=[_router()],
        access_log=[access_log("outbound")],
    )
    return listener_pb2.Listener(
        name=OUTBOUND_LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
        ),
        traffic_direction=base_pb2.TrafficDirection.OUTBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=pack(manager),
                    )
                ]
            )
        ],
    )


def downstream_mtls(tls: ProxyTls) -> tls_pb2.DownstreamTlsContext:
    """Require a client SVID chaining to ROOTCA with a URI SAN in ``trust_domain``."""
    return tls_pb2.DownstreamTlsContext(
        require_client_certificate={"value": True},
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[tls.svid()],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=[
                        common_pb2.SubjectAltNameMatcher(
                            san_type=common_pb2.SubjectAltNameMatcher.SanType.URI,
                            matcher=string_pb2.StringMatcher(
                                prefix=f"spiffe://{tls.trust_domain}/"
                            ),
                        )
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
    port_name: str,
    target_port: int,
    served_by: str,
    authz: Sequence[hcm.HttpFilter] = (),
) -> listener_components_pb2.Filter:
    manager = hcm.HttpConnectionManager(
        stat_prefix=f"inbound_{target_port}",
        codec_type=hcm.HttpConnectionManager.CodecType.AUTO,
        route_config=inbound_route_config(port_name, target_port, served_by),
        http_filters=[*authz, _router()],
        forward_client_cert_details=hcm.HttpConnectionManager.ForwardClientCertDetails.SANITIZE_SET,
        set_current_client_cert_details=hcm.HttpConnectionManager.SetCurrentClientCertDetails(
            uri=True
        ),
        access_log=[access_log("inbound")],
        common_http_protocol_options=protocol_pb2.HttpProtocolOptions(
            max_connection_duration=duration_ms(INBOUND_MAX_CONNECTION_MS)
        ),
    )
    return listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=pack(manager)
    )


def inbound_listener(
    workload: WorkloadEntry,
    ports: list[ServicePort],
    tls: ProxyTls,
    served_by: str,
    authz: Sequence[AuthorizationPolicy] = (),
) -> listener_pb2.Listener:
    """The sidecar's inbound listener for ``workload`` (see the module docstring).

    Args:
        ports: the service's ports (numbers as callers address them).
        served_by: the ``x-meshfed-served-by`` value, ``<cluster>/<zone>``.
        authz: the AuthorizationPolicies that select the workload; enforced by RBAC filters
            on every chain (:mod:`federation.controlplane.generate.rbac`).
    """

    def manager(name: str, port: int, app_port: int) -> listener_components_pb2.Filter:
        # the policies' ports are the service port or the app's (target) port
        return _inbound_hcm(name, app_port, served_by, rbac_filters(authz, (port, app_port)))

    chains = []
    mode = workload.spec.mtls_mode
    by_name = {p.name: p for p in workload.spec.ports}
    if mode in ("STRICT", "PERMISSIVE"):
        for port in ports:
            wp = by_name.get(port.port_name)
            if wp is None:
                continue
            chains.append(
                listener_components_pb2.FilterChain(
                    name=f"mtls|{port.port}",
                    filter_chain_match=listener_components_pb2.FilterChainMatch(
                        server_names=[port.sni], transport_protocol="tls"
                    ),
                    filters=[manager(wp.name, port.port, wp.app_port)],
                    transport_socket=base_pb2.TransportSocket(
                        name="envoy.transport_sockets.tls",
                        typed_config=pack(downstream_mtls(tls)),
                    ),
                )
            )
    if mode in ("PERMISSIVE", "DISABLE"):
        first = workload.spec.ports[0]
        chains.append(
            listener_components_pb2.FilterChain(
                name="plaintext",
                filter_chain_match=listener_components_pb2.FilterChainMatch(
                    transport_protocol="raw_buffer"
                ),
                filters=[manager(first.name, first.port, first.app_port)],
            )
        )
    return listener_pb2.Listener(
        name=INBOUND_LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=workload.spec.address, port_value=workload.spec.inbound_port
            )
        ),
        traffic_direction=base_pb2.TrafficDirection.INBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=pack(tls_inspector_pb2.TlsInspector()),
            )
        ],
        filter_chains=chains,
    )


def grpc_listener(port: ServicePort, *, with_port: bool) -> listener_pb2.Listener:
    """An ``api_listener`` for grpcio's xDS client; RDS names the same target."""
    name = grpc_route_name(port, with_port=with_port)
    manager = hcm.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm.Rds(config_source=ads(), route_config_name=name),
        http_filters=[_router()],
    )
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pack(manager))
    )
