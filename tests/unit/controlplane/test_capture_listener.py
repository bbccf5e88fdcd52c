"""A captured sidecar's outbound listener (:mod:`federation.controlplane.generate.capture`):
which chain a connection meets by the address and port the app dialled."""

from __future__ import annotations

from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from federation.controlplane.generate.capture import (
    BLACKHOLE_CLUSTER,
    PASSTHROUGH_CLUSTER,
    capture_listener,
    catch_all_clusters,
)
from federation.controlplane.generate.services import ServicePort


def _port(service: str, number: int, protocol: str, ips: tuple[str, ...]) -> ServicePort:
    return ServicePort(
        "demo", service, protocol, number, protocol, (service,), frozenset(), ips=ips
    )


PORTS = [
    _port("echo", 8080, "http", ("240.241.0.7",)),
    _port("web", 8080, "http", ("240.241.0.8",)),
    _port("db", 5432, "tcp", ("240.241.0.9",)),
    _port("local-only", 9000, "http", ()),  # not exported: no ClusterSetIP, no chain
]


def _chains(listener) -> dict[str, tuple[int, list[str]]]:
    return {
        c.name: (
            c.filter_chain_match.destination_port.value,
            [
                f"{r.address_prefix}/{r.prefix_len.value}"
                for r in c.filter_chain_match.prefix_ranges
            ],
        )
        for c in listener.filter_chains
    }


def _tcp_cluster(chain) -> str:
    proxy = tcp_proxy_pb2.TcpProxy()
    chain.filters[0].typed_config.Unpack(proxy)
    return proxy.cluster


def test_chains_match_the_clusterset_ips_by_port_and_the_explicit_port_by_loopback() -> None:
    targets = {PORTS[2].cluster_name: [(PORTS[2].cluster_name, 100)]}
    listener = capture_listener(15001, PORTS, targets)
    assert listener.address.socket_address.address == "0.0.0.0"
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.original_dst"]
    assert _chains(listener) == {
        "explicit": (15001, ["127.0.0.0/8"]),
        "tcp|240.241.0.9|5432": (5432, ["240.241.0.9/32"]),
        "http|8080": (8080, ["240.241.0.7/32", "240.241.0.8/32"]),
    }
    tcp = next(c for c in listener.filter_chains if c.name.startswith("tcp|"))
    assert _tcp_cluster(tcp) == PORTS[2].cluster_name
    assert _tcp_cluster(listener.default_filter_chain) == PASSTHROUGH_CLUSTER


def test_registry_only_closes_what_is_not_a_service() -> None:
    listener = capture_listener(15001, PORTS, {}, policy="REGISTRY_ONLY")
    assert _tcp_cluster(listener.default_filter_chain) == BLACKHOLE_CLUSTER
    assert "tcp|240.241.0.9|5432" not in _chains(listener)  # its clusters are not built yet
    passthrough, blackhole = catch_all_clusters()
    assert passthrough.name == PASSTHROUGH_CLUSTER and passthrough.type == passthrough.ORIGINAL_DST
    assert blackhole.name == BLACKHOLE_CLUSTER and not blackhole.HasField("load_assignment")
