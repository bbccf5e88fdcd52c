"""The east-west gateway's listener: SNI-routed TLS passthrough (Istio's AUTO_PASSTHROUGH).

One filter chain per exported service port, matched on the SNI
``outbound_.<port>_._.<svc>.<ns>.svc.clusterset.local`` and forwarding the TLS stream unopened
(``envoy.filters.network.tcp_proxy``) to a cluster of that service's local sidecars. There is
no default filter chain: a connection without SNI, with an unknown SNI, or in plain text
matches nothing and is closed. The caller's mTLS session ends at the destination sidecar, so
identity stays end to end. When the gateway's agent counts the hop (node metadata
``meshfed.io/traffic_log``), each ``tcp_proxy`` writes :data:`HOP_LOG_FORMAT` to that FIFO
every :data:`HOP_LOG_FLUSH_S` while a connection is open and once when it ends
(:mod:`federation.agent.tap`). Pure: protos out, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import duration_pb2

from federation.controlplane.generate.common import pack
from federation.controlplane.generate.listeners import traffic_log

GATEWAY_LISTENER = "eastwest_gateway"
#: One record per connection and flush: Envoy's connection id, the cluster, the upstream
#: host (the sidecar), upstream wire bytes sent and received so far (TLS records: the
#: gateway never opens them), and the record's type (``TcpPeriodic``, ``TcpConnectionEnd``).
HOP_LOG_FORMAT = (
    "%CONNECTION_ID% %UPSTREAM_CLUSTER% %UPSTREAM_HOST% %UPSTREAM_WIRE_BYTES_SENT%"
    " %UPSTREAM_WIRE_BYTES_RECEIVED% %ACCESS_LOG_TYPE%\n"
)
#: How often an open connection's record is written (s; ``access_log_flush_interval``).
HOP_LOG_FLUSH_S = 1


@dataclass(frozen=True, slots=True)
class PassthroughRoute:
    """An exported service port: its SNI and the cluster of its local sidecars."""

    sni: str
    cluster: str


def hop_log(
    path: str,
) -> tuple[list[accesslog_pb2.AccessLog], tcp_proxy_pb2.TcpProxy.TcpAccessLogOptions]:
    """The ``tcp_proxy`` access log writing :data:`HOP_LOG_FORMAT` to ``path`` (the FIFO
    the gateway's agent reads), and its options (a record every :data:`HOP_LOG_FLUSH_S`)."""
    log = traffic_log(path, HOP_LOG_FORMAT)
    options = tcp_proxy_pb2.TcpProxy.TcpAccessLogOptions(
        access_log_flush_interval=duration_pb2.Duration(seconds=HOP_LOG_FLUSH_S)
    )
    return [log], options


def gateway_listener(
    host: str, port: int, routes: Sequence[PassthroughRoute], traffic_log: str = ""
) -> listener_pb2.Listener:
    """The gateway listener on ``host:port`` with one SNI filter chain per route (sorted);
    with ``traffic_log`` (a path, absolute or relative to Envoy's working directory), every
    chain logs its connections there
    (:func:`hop_log`)."""
    logs, options = hop_log(traffic_log) if traffic_log else ([], None)
    chains = [
        listener_components_pb2.FilterChain(
            name=f"passthrough|{r.sni}",
            filter_chain_match=listener_components_pb2.FilterChainMatch(
                server_names=[r.sni], transport_protocol="tls"
            ),
            filters=[
                listener_components_pb2.Filter(
                    name="envoy.filters.network.tcp_proxy",
                    typed_config=pack(
                        tcp_proxy_pb2.TcpProxy(
                            stat_prefix=r.cluster,
                            cluster=r.cluster,
                            access_log=logs,
                            access_log_options=options,
                        )
                    ),
                )
            ],
        )
        for r in sorted(routes, key=lambda r: r.sni)
    ]
    return listener_pb2.Listener(
        name=GATEWAY_LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=host, port_value=port)
        ),
        traffic_direction=base_pb2.TrafficDirection.INBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=pack(tls_inspector_pb2.TlsInspector()),
            )
        ],
        listener_filters_timeout=duration_pb2.Duration(seconds=5),
        filter_chains=chains,
    )
