"""LDS/CDS of a sidecar whose pod captures its traffic (``meshfed proxy init``). Pure.

The pod's nftables rules (:mod:`federation.agent.capture`) redirect every outbound TCP
connection of the app to the sidecar's outbound port. The sidecar's outbound listener then
binds ``0.0.0.0:<outbound_port>`` and its listener filter ``envoy.filters.listener.original_dst``
restores the address the app dialled (``SO_ORIGINAL_DST``), so that filter chains match on
it (Envoy's ``FilterChainMatch``: destination port first, then destination IP):

- ``explicit``: ``127.0.0.0/8`` on the outbound port itself -- an app that calls the sidecar
  as before (``http://127.0.0.1:15001`` with the service's name as Host) still works;
- ``http|<port>``: the ClusterSetIPs of every service with an HTTP port ``<port>``, and the
  allocated addresses of the ServiceEntry hosts with a port ``<port>``
  (:func:`federation.model.service_entry.entry_addresses`) -- the outbound HTTP manager (RDS
  ``outbound`` routes by Host; each service's virtual host also answers its ClusterSetIP,
  for clients that dial the address);
- ``tcp|<ip>|<port>``: one TCP service port -- ``tcp_proxy`` to its clusters, weighted by
  the TrafficPolicy's ``tcp`` routes as a ``--upstream`` listener is;
- the default chain, for every other destination: Istio's ``outboundTrafficPolicy.mode``.
  ``ALLOW_ANY`` (the default) proxies the connection on to the address the app dialled
  (:data:`PASSTHROUGH_CLUSTER`, type ``ORIGINAL_DST``); ``REGISTRY_ONLY`` sends it to
  :data:`BLACKHOLE_CLUSTER`, which has no endpoints, so it is closed at once.

Istio builds the same shape (``virtualOutbound`` on 15001 with ``use_original_dst`` and
per-service listeners; PassthroughCluster and BlackHoleCluster); meshfed keeps one listener
with filter chains, which Envoy matches in one lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from federation.controlplane.generate.common import duration_ms, pack
from federation.controlplane.generate.listeners import (
    OUTBOUND_LISTENER,
    original_dst_filter,
    outbound_manager,
    outbound_tcp_proxy,
)
from federation.controlplane.generate.services import ServicePort

PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
#: ``connect_timeout`` of :data:`PASSTHROUGH_CLUSTER` (Istio's ``connectTimeout`` default).
PASSTHROUGH_CONNECT_TIMEOUT_MS = 10_000

_HCM = "envoy.filters.network.http_connection_manager"
_TCP_PROXY = "envoy.filters.network.tcp_proxy"


def _cidr(ip: str) -> address_pb2.CidrRange:
    return address_pb2.CidrRange(
        address_prefix=ip, prefix_len=wrappers_pb2.UInt32Value(value=128 if ":" in ip else 32)
    )


def _chain(
    name: str, filter_name: str, config: Message, *, port: int | None, ips: Sequence[str]
) -> listener_components_pb2.FilterChain:
    match = listener_components_pb2.FilterChainMatch(prefix_ranges=[_cidr(ip) for ip in ips])
    if port is not None:
        match.destination_port.value = port
    return listener_components_pb2.FilterChain(
        name=name,
        filter_chain_match=match,
        filters=[listener_components_pb2.Filter(name=filter_name, typed_config=pack(config))],
    )


def capture_listener(
    outbound_port: int,
    ports: Sequence[ServicePort],
    tcp_targets: Mapping[str, Sequence[tuple[str, int]]],
    *,
    entry_ports: Sequence[tuple[int, str]] = (),
    policy: str = "ALLOW_ANY",
    source: str = "-",
    tracing: hcm.HttpConnectionManager.Tracing | None = None,
    telemetry: accesslog_pb2.AccessLog | None = None,
) -> listener_pb2.Listener:
    """The captured sidecar's outbound listener (see the module docstring).

    Args:
        outbound_port: where the capture rules send the app's connections (15001).
        ports: every service port the sidecar sees; those with ClusterSetIPs get chains.
        tcp_targets: ``port.cluster_name -> [(Envoy cluster, weight)]`` of each TCP port
            (:func:`federation.controlplane.generate.http_routes.tcp_clusters`); a TCP port
            without an entry gets no chain (its clusters are not built yet).
        entry_ports: ``(port, address)`` of each ServiceEntry host the sidecar sees, per
            port (every entry port is HTTP, HTTP2 or gRPC).
        policy: ``ALLOW_ANY`` or ``REGISTRY_ONLY`` (``ProxyDescription.outbound_traffic_policy``).
        source / tracing / telemetry: as for :func:`listeners.outbound_manager`.
    """
    manager = outbound_manager(source, tracing, telemetry)
    chains = [_chain("explicit", _HCM, manager, port=outbound_port, ips=["127.0.0.0"])]
    chains[0].filter_chain_match.prefix_ranges[0].prefix_len.value = 8
    http_ips: dict[int, set[str]] = {}
    for p in ports:
        if not p.ips or p.subset:
            continue
        if p.is_http:
            http_ips.setdefault(p.port, set()).update(p.ips)
        elif p.cluster_name in tcp_targets:
            proxy = outbound_tcp_proxy(
                f"{p.service}_{p.namespace}_{p.port}", tcp_targets[p.cluster_name], source
            )
            chains += [
                _chain(f"tcp|{ip}|{p.port}", _TCP_PROXY, proxy, port=p.port, ips=[ip])
                for ip in p.ips
            ]
    for number, ip in entry_ports:
        http_ips.setdefault(number, set()).add(ip)
    for number, ips in sorted(http_ips.items()):
        if number != outbound_port:
            chains.append(_chain(f"http|{number}", _HCM, manager, port=number, ips=sorted(ips)))
    default = outbound_tcp_proxy(
        "passthrough" if policy == "ALLOW_ANY" else "blackhole",
        [(PASSTHROUGH_CLUSTER if policy == "ALLOW_ANY" else BLACKHOLE_CLUSTER, 1)],
        source,
    )
    return listener_pb2.Listener(
        name=OUTBOUND_LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=outbound_port)  # noqa: S104 - inside the pod's own namespace, where capture sends everything
        ),
        traffic_direction=base_pb2.TrafficDirection.OUTBOUND,
        listener_filters=[original_dst_filter()],
        filter_chains=chains,
        default_filter_chain=listener_components_pb2.FilterChain(
            name=f"default|{policy}",
            filters=[listener_components_pb2.Filter(name=_TCP_PROXY, typed_config=pack(default))],
        ),
    )


def catch_all_clusters() -> list[cluster_pb2.Cluster]:
    """:data:`PASSTHROUGH_CLUSTER` (``ORIGINAL_DST``: to the address the app dialled, in
    plain TCP as the app sent it) and :data:`BLACKHOLE_CLUSTER` (``STATIC``, no endpoints)."""
    return [
        cluster_pb2.Cluster(
            name=PASSTHROUGH_CLUSTER,
            type=cluster_pb2.Cluster.ORIGINAL_DST,
            lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
            connect_timeout=duration_ms(PASSTHROUGH_CONNECT_TIMEOUT_MS),
        ),
        cluster_pb2.Cluster(
            name=BLACKHOLE_CLUSTER,
            type=cluster_pb2.Cluster.STATIC,
            connect_timeout=duration_ms(PASSTHROUGH_CONNECT_TIMEOUT_MS),
        ),
    ]
