"""Issue 42: the gateway hop -- an east-west gateway's connections counted per sidecar, from
the gateway's Envoy access log through its control plane's classification and price to the
sync wire, the controller's rates and the Prometheus families. Pure."""

from __future__ import annotations

import pytest
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from prometheus_client import CollectorRegistry, generate_latest

from federation.agent.tap import GatewayTap, parse_hop_line
from federation.controlplane import resource
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.gateway import HOP_LOG_FORMAT
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import Health, ServiceRegistry
from federation.controlplane.telemetry import TrafficCounter, hop_for, hop_service
from federation.errors import InvalidDocumentError
from federation.model.documents import load_documents
from federation.model.locality import Locality
from federation.sync.convert import hop_problem, report_to_proto, traffic_from_proto
from federation.sync.messages import ClusterReport
from federation.sync.node import ProxyDescription
from federation.traffic import Counters, GatewayHop, TrafficCollector, TrafficTable, hop_rates
from tests.prometheus import samples

ZONE_A = Locality("aws/eu-west-1", "eu-west-1a")
ZONE_B = Locality("aws/eu-west-1", "eu-west-1b")
CLUSTER = "gateway|8080||echo.demo.svc.clusterset.local"
WORKLOADS = {"10.0.0.1:15006": ZONE_A, "10.0.0.2:15006": ZONE_B}
MESH = MeshContext("b", "example.org", ZONE_A)
WORKLOAD = """apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: echo-{i}, namespace: demo}}
spec: {{service: echo, address: 10.0.0.{i}, serviceAccount: echo, locality: aws/eu-west-1/{zone},
  ports: [{{name: http, port: 8080, targetPort: 18080}}]}}
"""
EXPORT = (
    "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n"
    "metadata: {name: echo, namespace: demo}\n"
)


def _line(cid: int, host: str, sent: int, received: int, kind: str = "TcpPeriodic") -> bytes:
    return f"{cid} {CLUSTER} {host} {sent} {received} {kind}\n".encode()


def test_the_gateway_log_names_the_connection_and_its_bytes_so_far() -> None:
    assert parse_hop_line(_line(3, "10.0.0.1:15006", 10, 20)) == (
        3, (CLUSTER, "10.0.0.1:15006", 0), 10, 20, False,
    )  # fmt: skip
    assert parse_hop_line(_line(3, "10.0.0.1:15006", 10, 20, "TcpConnectionEnd"))[-1] is True  # type: ignore[index]
    assert parse_hop_line(_line(3, "-", 0, 0)) is None  # never connected upstream
    assert parse_hop_line(b"3 x 10.0.0.1:1 ten 20 TcpPeriodic") is None
    assert parse_hop_line(b"garbage") is None
    # what the control plane configures is what the agent parses: six fields
    assert len(HOP_LOG_FORMAT.split()) == 6


def test_the_tap_adds_what_each_record_adds_to_its_connection(tmp_path) -> None:
    tap = GatewayTap(tmp_path / "fifo", b"")
    assert tap.per_request is False
    log = (
        _line(1, "10.0.0.1:15006", 100, 1000)
        + _line(2, "10.0.0.2:15006", 5, 50)
        + _line(1, "10.0.0.1:15006", 150, 1600)  # the same connection, later: +50, +600
        + _line(1, "10.0.0.1:15006", 170, 1700, "TcpConnectionEnd")
        + _line(1, "10.0.0.1:15006", 7, 9)  # id 1 again after the end: a new connection
        + _line(2, "10.0.0.2:15006", 3, 4)  # fewer bytes than before: Envoy restarted
        + b"garbage\n"
    )
    tap.feed(log[:37])
    tap.feed(log[37:])
    a, b = tap.counts[(CLUSTER, "10.0.0.1:15006", 0)], tap.counts[(CLUSTER, "10.0.0.2:15006", 0)]
    assert (a.requests, a.request_bytes, a.response_bytes) == (2, 177, 1709)
    assert (b.requests, b.request_bytes, b.response_bytes) == (2, 8, 54)
    assert tap.bad_lines == 1 and tap.lines == 7
    [report] = [tap.message()]
    assert {k.served_by for k in report.keys} == set(WORKLOADS)


def test_a_hop_into_another_zone_is_priced_and_one_inside_it_is_free() -> None:
    inside = hop_for("b", ZONE_A, CLUSTER, "10.0.0.1:15006", WORKLOADS)
    across = hop_for("b", ZONE_A, CLUSTER, "10.0.0.2:15006", WORKLOADS)
    assert inside == (
        GatewayHop("b", str(ZONE_A), "echo.demo", str(ZONE_A), "same-zone"), 0.0, 0.0,
    )  # fmt: skip
    assert across is not None
    hop, per_sent, per_received = across
    assert (hop.destination_locality, hop.path_class) == (str(ZONE_B), "cross-zone")
    # AWS: $0.01/GB out of the zone and $0.01/GB into the other, each way
    assert per_sent == per_received == pytest.approx(0.02 / 1e9)
    gone = hop_for("b", ZONE_A, CLUSTER, "10.9.9.9:15006", WORKLOADS)
    assert gone is not None and gone[0].destination_locality == "unknown" and gone[1:] == (0, 0)
    assert hop_for("b", ZONE_A, "outbound|8080||echo.demo.svc.clusterset.local", "x", {}) is None
    assert hop_service("gateway|8080|v1|echo.demo.svc.clusterset.local") == "echo.demo"
    assert hop_service("meshfed-xds") is None


def test_the_control_plane_counts_a_gateways_reports_as_deltas(tmp_path) -> None:
    registry = ServiceRegistry()
    registry.apply(
        load_documents(
            "---\n".join(
                [WORKLOAD.format(i=1, zone="eu-west-1a"), WORKLOAD.format(i=2, zone="eu-west-1b")]
            )
        )
    )
    counter = TrafficCounter(MESH, registry, 1.0)
    tap = GatewayTap(tmp_path / "fifo", b"")
    tap.feed(_line(1, "10.0.0.1:15006", 1000, 9000) + _line(2, "10.0.0.2:15006", 100, 900))
    counter.add_gateway_report("gateway~b~eu-west-1a", ZONE_A, tap.message())
    counter.add_gateway_report("gateway~b~eu-west-1a", ZONE_A, tap.message())  # nothing new
    tap.feed(_line(2, "10.0.0.2:15006", 200, 1800))
    counter.add_gateway_report("gateway~b~eu-west-1a", ZONE_A, tap.message())
    hops = {h.destination_locality: c for h, c in counter.table.hops.items()}
    same, cross = hops[str(ZONE_A)], hops[str(ZONE_B)]
    assert (same.requests, same.request_bytes, same.response_bytes, same.egress_usd) == (
        1, 1000, 9000, 0.0,
    )  # fmt: skip
    assert (cross.requests, cross.request_bytes, cross.response_bytes) == (1, 200, 1800)
    assert cross.egress_usd == pytest.approx(2000 * 0.02 / 1e9)
    assert counter.table.edges == {} and counter.requests == 0  # no request was counted


def test_hops_cross_the_sync_wire_and_bad_labels_are_refused() -> None:
    table = TrafficTable(5.0)
    hop = GatewayHop("b", str(ZONE_A), "echo.demo", str(ZONE_B), "cross-zone")
    table.hops[hop] = Counters(2, 300, 4000, 0.5)
    table.hops[GatewayHop("b", "nowhere", "echo.demo", "unknown", "unknown")] = Counters(1)
    message = report_to_proto(ClusterReport(cluster="b", exports=[]), table)
    got = traffic_from_proto(message)
    assert got is not None and got.hops == {hop: Counters(2, 300, 4000, 0.5)}  # the bad one left
    assert hop_problem(GatewayHop("b", str(ZONE_A), "echo.demo", "unknown", "unknown")) is None
    assert "path_class" in str(
        hop_problem(GatewayHop("b", str(ZONE_A), "echo.demo", "unknown", "x"))
    )
    message.traffic.gateway_hops[0].egress_usd = -1
    with pytest.raises(InvalidDocumentError, match=r"gateway_hops\.0\.egress_usd"):
        traffic_from_proto(message)
    message.traffic.gateway_hops[0].egress_usd = 0
    message.traffic.gateway_hops[0].gateway_locality = "mars"
    with pytest.raises(InvalidDocumentError, match=r"gateway_hops\.0: gateway_locality"):
        traffic_from_proto(message)


def test_hop_rates_and_families() -> None:
    hop = GatewayHop("b", str(ZONE_A), "echo.demo", str(ZONE_B), "cross-zone")
    old, new = TrafficTable(5.0), TrafficTable(5.0)
    old.hops[hop] = Counters(1, 100, 1000, 0.001)
    new.hops[hop] = Counters(3, 300, 5000, 0.003)
    new.hops[GatewayHop("b", str(ZONE_B), "echo.demo", str(ZONE_B), "same-zone")] = Counters()
    [row] = hop_rates(old, new, 2.0)  # the idle hop has no row
    assert row == {
        "cluster": "b",
        "gatewayLocality": str(ZONE_A),
        "destinationService": "echo.demo",
        "destinationLocality": str(ZONE_B),
        "pathClass": "cross-zone",
        "connections": 2,
        "bytesToEndpoint": 200,
        "bytesFromEndpoint": 4000,
        "bytesToEndpointPerS": 100.0,
        "bytesFromEndpointPerS": 2000.0,
        "usdPerHour": pytest.approx(0.002 / 2 * 3600),
    }
    restarted = TrafficTable(6.0, hops={hop: Counters(1, 10, 20, 0.0)})
    assert hop_rates(new, restarted, 1.0)[0]["bytesToEndpoint"] == 10  # counted from zero
    registry = CollectorRegistry()
    registry.register(TrafficCollector(lambda: [new]))
    got = samples(generate_latest(registry).decode())
    labels = (
        ("cluster", "b"), ("destination_locality", str(ZONE_B)),
        ("destination_service", "echo.demo"), ("gateway_locality", str(ZONE_A)),
        ("path_class", "cross-zone"),
    )  # fmt: skip
    assert got[("meshfed_gateway_hop_connections_total", labels)] == 3
    to = tuple(sorted((*labels, ("direction", "to_endpoint"))))
    back = tuple(sorted((*labels, ("direction", "from_endpoint"))))
    assert got[("meshfed_gateway_hop_bytes_total", to)] == 300
    assert got[("meshfed_gateway_hop_bytes_total", back)] == 5000
    assert got[("meshfed_gateway_hop_egress_usd_total", labels)] == 0.003


def test_the_gateway_logs_its_connections_only_when_its_agent_counts_them() -> None:
    registry = ServiceRegistry()
    registry.apply(load_documents(WORKLOAD.format(i=1, zone="eu-west-1a") + "---\n" + EXPORT))

    def tcp_proxy(traffic_log: str, mesh: MeshContext = MESH) -> tcp_proxy_pb2.TcpProxy:
        gateway = ProxyDescription(
            "gateway~b", "gateway", locality=ZONE_A, listen="127.0.1.1:15443",
            traffic_log=traffic_log,
        )  # fmt: skip
        (listener,) = generate(mesh, registry.state, gateway)[resource.LISTENER]
        proxy = tcp_proxy_pb2.TcpProxy()
        listener.filter_chains[0].filters[0].typed_config.Unpack(proxy)
        return proxy

    counted = tcp_proxy("/run/meshfed/traffic.fifo")
    (log,) = counted.access_log
    config = file_pb2.FileAccessLog()
    log.typed_config.Unpack(config)
    assert config.path == "/run/meshfed/traffic.fifo"
    assert config.log_format.text_format_source.inline_string == HOP_LOG_FORMAT
    assert counted.access_log_options.access_log_flush_interval.seconds == 1
    assert not tcp_proxy("").access_log  # an agent that reads no log
    quiet = MeshContext("b", "example.org", ZONE_A, telemetry=False)
    assert not tcp_proxy("/run/meshfed/traffic.fifo", quiet).access_log


def test_a_zone_local_gateway_holds_only_its_zones_endpoints_while_one_is_healthy() -> None:
    registry = ServiceRegistry()
    registry.apply(
        load_documents(
            "---\n".join(
                [
                    WORKLOAD.format(i=1, zone="eu-west-1a"),
                    WORKLOAD.format(i=2, zone="eu-west-1b"),
                    EXPORT,
                ]
            )
        )
    )
    gateway = ProxyDescription(
        "gateway~b~eu-west-1a", "gateway", locality=ZONE_A, listen="127.0.1.1:15444",
        zone_local=True,
    )  # fmt: skip

    def endpoints() -> list[tuple[str, int]]:
        (cla,) = generate(MESH, registry.state, gateway)[resource.ENDPOINT]
        return [
            (e.endpoint.address.socket_address.address, loc.priority)
            for loc in cla.endpoints
            for e in loc.lb_endpoints
        ]

    assert endpoints() == [("10.0.0.1", 0)]  # not 10.0.0.2 at priority 1
    registry.set_health(("demo", "echo-1"), Health.UNHEALTHY)
    assert sorted(endpoints()) == [("10.0.0.1", 1), ("10.0.0.2", 0)]  # its zone has none left
    main = ProxyDescription("gateway~b", "gateway", locality=ZONE_A, listen="127.0.1.1:15443")
    registry.set_health(("demo", "echo-1"), Health.HEALTHY)
    gateway = main  # the cluster's own gateway keeps the other zones, by priority
    assert sorted(endpoints()) == [("10.0.0.1", 0), ("10.0.0.2", 1)]


def test_explain_says_what_the_hop_behind_a_gateway_does() -> None:
    from federation.controlplane.explain import gateway_hop

    assert gateway_hop("zone gateway 10.0.1.5:15443") == "same-zone"
    assert gateway_hop("gateway 10.0.0.5:15443") == "may cross zones"
    assert gateway_hop("") is None
