"""Issue #17: traffic counted per edge -- access-log entries classified, histograms, rates,
the Prometheus families, the sync wire form and the rows of ``meshfed status``. Pure."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from prometheus_client import CollectorRegistry, generate_latest

from federation.agent.metrics import TapCollector, relabel
from federation.agent.tap import TrafficTap, parse_line
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.registry import RegistryState, ServiceRegistry
from federation.controlplane.telemetry import (
    TrafficCounter,
    cluster_localities,
    edge_for,
    service_of,
)
from federation.errors import InvalidDocumentError
from federation.lb.paths import tables_in_force
from federation.local.traffic import edge_rows, service_name, totals, traffic_rows
from federation.model.locality import Locality
from federation.model.service import ServiceImport
from federation.sync.convert import report_to_proto, traffic_from_proto
from federation.sync.messages import ClusterReport
from federation.traffic import (
    DURATION_BUCKETS_MS,
    Edge,
    TrafficCollector,
    TrafficTable,
    code_class,
    edge_rates,
    quantile_ms,
)
from tests.prometheus import samples

EAST = Locality("aws/us-east-1", "us-east-1a")
EU = Locality("aws/eu-west-1", "")
LOCALITIES = {"east": EAST, "eu": EU, "gcp": Locality("gcp/europe-west1", "")}
ECHO = "outbound|8080||echo.demo.svc.clusterset.local"


def _classify(served_by: str, code: int = 200, cluster: str = ECHO, prices=None):  # type: ignore[no-untyped-def]
    return edge_for("east", EAST, cluster, served_by, code, LOCALITIES, prices)


def _edge(dst: str = "eu", code: str = "2xx", path: str = "cross-continent") -> Edge:
    return Edge("east", str(EAST), "echo.demo", dst, f"aws/{dst}", path, code)


def test_a_request_is_counted_for_the_serving_cluster_at_the_price_of_its_path() -> None:
    edge, per_sent, per_received = _classify("eu/eu-west-1b")  # type: ignore[misc]
    assert edge == Edge(
        "east",
        "aws/us-east-1/us-east-1a",
        "echo.demo",
        "eu",
        "aws/eu-west-1/eu-west-1b",
        "cross-continent",
        "2xx",
    )
    assert 1000 * per_sent + 9000 * per_received == pytest.approx(10_000 * 0.02 / 1e9)
    local = _classify("east/us-east-1a")
    assert local is not None and local[0].path_class == "same-zone" and local[1:] == (0, 0)
    gcp = _classify("gcp/europe-west1-b")
    assert gcp is not None and gcp[0].path_class == "cross-cloud"
    # internet egress both ways: GCP's for the response, AWS's for the request
    assert gcp[2] > per_received and gcp[1] > per_sent


def test_what_no_sidecar_answered_is_unknown_and_what_is_not_a_service_is_not_counted() -> None:
    no_answer = _classify("", code=503)
    assert no_answer is not None
    assert no_answer[0].destination_cluster == "unknown"
    assert (no_answer[0].path_class, no_answer[0].response_code_class) == ("unknown", "5xx")
    assert no_answer[1:] == (0, 0)
    assert _classify("east/a", cluster="meshfed-xds") is None
    reset = _classify("eu/x", code=0)
    assert reset is not None and reset[0].response_code_class == "none"
    # a cluster the control plane does not know (not imported): counted, not priced
    stranger = _classify("nobody/z")
    assert stranger is not None
    assert (stranger[0].destination_cluster, stranger[0].destination_locality) == (
        "nobody",
        "unknown",
    )


def test_the_agent_parses_envoys_traffic_log_lines() -> None:
    assert parse_line(f"{ECHO} eu/eu-west-1b 200 1000 9000 12 1".encode()) == (
        (ECHO, "eu/eu-west-1b", 200),
        1000,
        9000,
        12,
        0,
    )
    assert parse_line(f"{ECHO} - 503 - - 0 -".encode()) == ((ECHO, "", 503), 0, 0, 0, 0)
    # three attempts: two retried; six fields (an Envoy of an older control plane): none
    assert parse_line(f"{ECHO} eu/z 200 1 2 3 3".encode()) == ((ECHO, "eu/z", 200), 1, 2, 3, 2)
    assert parse_line(f"{ECHO} eu/z 200 1 2 3".encode()) == ((ECHO, "eu/z", 200), 1, 2, 3, 0)
    assert parse_line(b"garbage") is None
    assert parse_line(f"{ECHO} eu/z two 1 2 3".encode()) is None
    assert parse_line(f"{ECHO} eu/z 200 1 2 3 4 5".encode()) is None


def test_the_tap_counts_lines_split_anywhere_and_its_reports_become_deltas(tmp_path) -> None:
    node = base_pb2.Node(id="sidecar~demo~client")
    tap = TrafficTap(tmp_path / "traffic.fifo", node.SerializeToString())
    lines = f"{ECHO} eu/eu-west-1b 200 1000 9000 12\n".encode() * 3 + b"garbage\n"
    tap.feed(lines[:50])
    tap.feed(lines[50:])
    assert tap.lines == 4 and tap.bad_lines == 1
    [(key, counters)] = tap.counts.items()
    assert key == (ECHO, "eu/eu-west-1b", 200)
    assert (counters.requests, counters.request_bytes, counters.response_bytes) == (3, 3000, 27000)

    mesh = MeshContext("east", "example.org", EAST)
    imp = _import("eu", "aws/eu-west-1")
    registry = ServiceRegistry()
    registry.set_federation([imp], [], [], [], [])
    counter = TrafficCounter(mesh, registry, 1.0)
    counter.add_report(node.id, EAST, tap.message())
    counter.add_report(node.id, EAST, tap.message())  # the same counts again: nothing new
    [(edge, got)] = counter.table.edges.items()
    assert edge.destination_locality == "aws/eu-west-1/eu-west-1b" and got.requests == 3
    assert got.egress_usd == pytest.approx(30_000 * 0.02 / 1e9)
    tap.feed(f"{ECHO} eu/eu-west-1b 200 1000 9000 12 3\n".encode())  # two attempts retried
    counter.add_report(node.id, EAST, tap.message())
    assert (got.requests, got.retries) == (4, 2)
    restarted = TrafficTap(tap.path, node.SerializeToString())  # a restarted agent
    restarted.started_at = tap.started_at + 1
    restarted.feed(f"{ECHO} eu/eu-west-1b 200 1000 9000 12\n".encode())
    counter.add_report(node.id, EAST, restarted.message())
    assert got.requests == 5 and counter.requests == 5


def _import(cluster: str, locality: str) -> ServiceImport:
    return ServiceImport.model_validate(
        {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "ServiceImport",
            "metadata": {"name": "echo", "namespace": "demo"},
            "spec": {
                "ports": [{"name": "http", "port": 8080}],
                "serviceAccounts": ["echo"],
                "clusters": [
                    {
                        "cluster": cluster,
                        "gateway": "10.0.0.1:15443",
                        "locality": locality,
                        "endpoints": 2,
                    }
                ],
            },
        }
    )


def test_price_tables_in_force_change_the_dollars() -> None:
    from federation.model.documents import validate_documents

    [doc] = validate_documents(
        [
            {
                "apiVersion": "meshfed.io/v1alpha1",
                "kind": "PriceTable",
                "metadata": {"name": "negotiated"},
                "spec": {
                    "cloud": "aws",
                    "source": "contract",
                    "usdPerGB": {"cross-continent": 0.01},
                },
            }
        ],
        source="test",
    )
    prices = tables_in_force([doc])  # type: ignore[list-item]
    found = _classify("eu/z", prices=prices)
    assert found is not None and 10_000 * found[2] == pytest.approx(10_000 * 0.01 / 1e9)
    assert prices["aws"].source == "PriceTable negotiated" and "gcp" in prices


def test_service_names_and_cluster_localities() -> None:
    assert service_of(ECHO) == "echo.demo"
    assert service_of("outbound|8080|v2|echo.demo.svc.clusterset.local") == "echo.demo"
    assert service_of("inbound|8080|http") is None
    assert service_name("echo.demo.svc.clusterset.local:8080") == "echo.demo"
    imp = _import("eu", "aws/eu-west-1")
    mesh = MeshContext("east", "example.org", EAST)
    state = RegistryState(imports={("demo", "echo"): imp})
    assert cluster_localities(mesh, state) == {"east": EAST, "eu": EU}


def test_quantiles_interpolate_inside_a_bucket_like_histogram_quantile() -> None:
    buckets = [0] * (len(DURATION_BUCKETS_MS) + 1)
    assert quantile_ms(0.5, buckets) is None
    buckets[DURATION_BUCKETS_MS.index(20)] = 100  # 100 requests in (15, 20] ms
    assert quantile_ms(0.5, buckets) == pytest.approx(17.5)
    assert quantile_ms(0.99, buckets) == pytest.approx(19.95)
    buckets[-1] = 1000  # most beyond the last bound
    assert quantile_ms(0.99, buckets) == DURATION_BUCKETS_MS[-1]
    assert [code_class(c) for c in (200, 302, 404, 503, 0)] == ["2xx", "3xx", "4xx", "5xx", "none"]


def test_rates_are_deltas_between_snapshots_and_a_restart_counts_from_zero() -> None:
    old = TrafficTable(100.0)
    for _ in range(10):
        old.record(_edge(), 100, 900, 5, 2e-8)
    new = old.copy()
    for _ in range(30):
        new.record(_edge(), 100, 900, 5, 2e-8)
    for _ in range(10):
        new.record(_edge("gcp", path="cross-cloud"), 100, 900, 50, 1e-7)
    new.record(_edge("gcp", "5xx", "cross-cloud"), 0, 0, 1, 0)
    rows = {r["destination_cluster"]: r for r in edge_rates(old, new, 10.0)}
    eu, gcp = rows["eu"], rows["gcp"]
    assert (eu["requests"], gcp["requests"]) == (30, 11)
    assert eu["rps"] == 3.0 and eu["share"] == pytest.approx(30 / 41)
    assert eu["share"] + gcp["share"] == pytest.approx(1)
    assert gcp["errorShare"] == pytest.approx(1 / 11) and eu["errorShare"] == 0
    assert eu["requestBytesPerS"] == 300 and eu["responseBytesPerS"] == 2700
    assert eu["usdPerHour"] == pytest.approx(30 * 2e-8 / 10 * 3600)
    assert 3 < eu["p50Ms"] <= 5 and 40 < gcp["p99Ms"] <= 50
    restarted = TrafficTable(200.0, new.edges)
    assert {r["requests"] for r in edge_rates(old, restarted, 10)} == {40, 11}


def test_the_families_parse_and_egress_adds_up_the_services_of_a_path() -> None:
    table = TrafficTable(1.0)
    table.record(_edge(), 100, 900, 5, 2e-8)
    table.record(_edge(code="5xx"), 50, 50, 30, 1e-9)
    table.record(
        Edge("east", str(EAST), "other.demo", "eu", "aws/eu", "cross-continent", "2xx"), 1, 1, 1, 0
    )
    collector = TrafficCollector(lambda: [table], lambda: tables_in_force([]))
    got = samples("".join(_exposition(collector)))
    labels = dict(zip(
        ("source_cluster", "source_locality", "destination_service", "destination_cluster",
         "destination_locality", "path_class", "response_code_class"),
        _edge().values(), strict=True,
    ))  # fmt: skip
    key = tuple(sorted(labels.items()))
    assert got[("meshfed_requests_total", key)] == 1
    assert got[("meshfed_request_bytes_total", key)] == 100
    assert got[("meshfed_response_bytes_total", key)] == 900
    assert got[("meshfed_request_duration_seconds_count", key)] == 1
    assert (
        got[
            (
                "meshfed_request_duration_seconds_bucket",
                tuple(sorted({**labels, "le": "0.005"}.items())),
            )
        ]
        == 1
    )
    path = tuple(
        sorted(
            (k, v)
            for k, v in labels.items()
            if k not in ("destination_service", "response_code_class")
        )
    )
    assert got[("meshfed_egress_bytes_total", path)] == 100 + 900 + 50 + 50 + 2
    assert got[("meshfed_egress_usd_total", path)] == pytest.approx(2.1e-8)
    info = [k for k in got if k[0] == "meshfed_price_table_info"]
    assert {dict(k[1])["cloud"] for k in info} == {"aws", "gcp"}
    assert all(dict(k[1])["read_on"] for k in info)


def _exposition(collector: TrafficCollector) -> list[str]:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    return [generate_latest(registry).decode()]


def test_traffic_crosses_the_sync_wire_and_other_buckets_are_refused() -> None:
    table = TrafficTable(123.5)
    table.record(_edge(), 100, 900, 5, 2e-8)
    table.edges[_edge()].retries = 3
    report = ClusterReport(cluster="east")
    message = report_to_proto(report, table)
    got = traffic_from_proto(message)
    assert got is not None and got.started_at == 123.5 and got.edges == table.edges
    assert got.taken_at == 0  # not read to be sent
    got = traffic_from_proto(report_to_proto(report, table.copy(130.25)))
    assert got is not None and got.taken_at == 130.25 and got.started_at == 123.5
    assert traffic_from_proto(report_to_proto(report)) is None
    message.traffic.duration_bounds_ms.append(99999)
    with pytest.raises(InvalidDocumentError, match="duration_bounds_ms"):
        traffic_from_proto(message)
    # the edges' source cluster is the report's, whatever the message says
    other = report_to_proto(ClusterReport(cluster="eu"), table)
    got = traffic_from_proto(other)
    assert got is not None and {e.source_cluster for e in got.edges} == {"eu"}


def test_status_rows_merge_path_classes_and_price_the_bytes() -> None:
    edges = [
        {
            "source_cluster": "east",
            "destination_service": "echo.demo",
            "destination_cluster": "eu",
            "path_class": path,
            "share": share,
            "rps": rps,
            "errorShare": 0.1 if path == "cross-continent" else 0.0,
            "p50Ms": 80.0,
            "p99Ms": p99,
            "requestBytesPerS": 1e5,
            "responseBytesPerS": 9e5,
            "usdPerHour": 1e6 * 3600 / 1e9 * 0.02,
        }
        for path, share, rps, p99 in (
            ("cross-continent", 0.6, 6.0, 90.0),
            ("cross-zone", 0.4, 4.0, 99.0),
        )
    ]
    [row] = edge_rows(edges)
    assert (row["from"], row["service"], row["cluster"]) == ("east", "echo.demo", "eu")
    assert row["share"] == 1.0 and row["rps"] == 10.0 and row["p99Ms"] == 99.0
    assert row["errorShare"] == pytest.approx(0.06)
    assert row["usdPerGB"] == 0.02 and row["path"] == "cross-continent+cross-zone"
    traffic = {"edges": edges, "totals": [
        {"sourceCluster": "east", "destinationService": "echo.demo", "requests": 7, "errors": 1, "egressUsd": 0.5}
    ]}  # fmt: skip
    assert [r["cluster"] for r in traffic_rows(traffic, "east", "echo.demo")] == ["eu"]
    assert traffic_rows(traffic, "eu", "echo.demo") == []
    assert totals(traffic, "east", "echo.demo") == {"requests": 7, "errors": 1, "egressUsd": 0.5}
    assert totals(traffic, "x", "y")["requests"] == 0


def test_the_agent_endpoint_labels_envoys_samples_and_serves_its_counts(tmp_path) -> None:
    """Issue #17: the agent's /metrics -- Envoy's statistics with the proxy's source labels
    (parsed back by prometheus-client), and its traffic by destination."""
    tap = TrafficTap(tmp_path / "traffic.fifo", b"")
    tap.feed(f"{ECHO} eu/eu-west-1b 503 10 20 7\n{ECHO} - 503 0 0 0\n".encode())
    source = {"source_cluster": "east", "source_locality": str(EAST), "source_workload": "demo/a"}
    envoy = (
        "# TYPE envoy_cluster_upstream_rq_total counter\n"
        'envoy_cluster_upstream_rq_total{envoy_cluster_name="x",source_cluster="spoof"} 4\n'
        "envoy_server_live 1\n"
    )
    assert relabel("", source) == ""
    text = relabel(envoy, source)
    registry = CollectorRegistry()
    registry.register(TapCollector(tap, source))
    got = samples(generate_latest(registry).decode() + text)
    assert got[("envoy_server_live", tuple(sorted(source.items())))] == 1
    spoofed = dict(source, source_cluster="spoof", envoy_cluster_name="x")
    assert got[("envoy_cluster_upstream_rq_total", tuple(sorted(spoofed.items())))] == 4
    served = dict(
        source,
        destination_service="echo.demo",
        destination_cluster="eu",
        destination_zone="eu-west-1b",
        response_code_class="5xx",
    )
    assert got[("meshfed_proxy_requests_total", tuple(sorted(served.items())))] == 1
    assert got[("meshfed_proxy_response_bytes_total", tuple(sorted(served.items())))] == 20
    nobody = dict(served, destination_cluster="unknown", destination_zone="unknown")
    assert got[("meshfed_proxy_requests_total", tuple(sorted(nobody.items())))] == 1
