"""The traffic ledger's arithmetic, the cost report's alternatives, and reconciling a bill
(AWS CUR 2.0 and GCP billing export samples built from the documented columns)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from federation.billing import (
    BillKey,
    mesh_amounts,
    read_aws_cur,
    read_gcp_billing,
    reconcile,
    reconcile_export,
)
from federation.cost_report import alternatives, csv_rows, report, window
from federation.errors import BillingExportError
from federation.traffic import Counters, Edge, GatewayHop, TrafficTable
from federation.traffic_days import (
    DayCounts,
    increments,
    ledger_rows_from_json,
    ledger_rows_to_json,
    mark_from_json,
    mark_to_json,
    totals,
)
from providers.pricing import builtin_tables

EAST_A, EAST_B = "aws/us-east-1/us-east-1a", "aws/us-east-1/us-east-1b"
EU = "aws/eu-west-1/eu-west-1a"
GCP = "gcp/europe-west1/europe-west1-b"
DAY = "2026-12-01"


def key(src: str, src_loc: str, dst: str, dst_loc: str, path: str, svc: str = "echo.demo"):
    return (src, src_loc, svc, dst, dst_loc, path)


def test_totals_add_up_code_classes_and_increments_are_what_counters_gained() -> None:
    table = TrafficTable(started_at=100.0)
    for code in ("2xx", "5xx"):
        edge = Edge("east", EAST_A, "echo.demo", "eu", EU, "cross-region", code)
        table.edges[edge] = Counters(
            requests=2, request_bytes=10, response_bytes=90, egress_usd=1.0
        )
    k = key("east", EAST_A, "eu", EU, "cross-region")
    assert totals(table) == {k: DayCounts(4, 20, 180, 2.0)}
    mark = (100.0, {k: DayCounts(1, 5, 45, 0.5)})
    assert increments(100.0, {k: DayCounts(4, 20, 180, 2.0)}, mark) == {
        k: DayCounts(3, 15, 135, 1.5)
    }
    assert increments(100.0, {k: DayCounts(1, 5, 45, 0.5)}, mark) == {}  # nothing new
    # a control plane that restarted: its counters count whole
    assert increments(200.0, {k: DayCounts(1, 1, 1, 0.0)}, mark) == {k: DayCounts(1, 1, 1, 0.0)}
    # an older copy (another replica's): nothing, never a negative day
    assert increments(100.0, {k: DayCounts(0, 0, 0, 0.0)}, mark) is None
    assert increments(100.0, {}, mark) is None
    assert mark_from_json(mark_to_json(*mark)) == mark


def test_window_takes_durations_and_days_and_refuses_the_rest() -> None:
    now = 1_764_979_200.0 + 3600  # 2025-12-06 01:00 UTC
    assert window("7d", now) == ("2025-11-29", "2025-12-06")
    assert window("1h", now) == ("2025-12-06", "2025-12-06")
    assert window("2025-12-01", now) == ("2025-12-01", "2025-12-06")
    for bad, why in (
        ("yesterday", "not a duration"),
        ("99999999999999d", "longer than"),
        ("2025-12-07", "after today"),
        ("400d", "366"),
    ):
        with pytest.raises(ValueError, match=why):
            window(bad, now)


def test_the_report_prices_round_robin_and_failover_on_the_same_bytes() -> None:
    """east (us-east-1a) called echo 1 GB each way, all served in its own zone; echo was also
    served in eu-west-1 that day. Round robin would have sent half across the Atlantic
    ($0.02/GB each way), locality failover none of it."""
    gb = 10**9
    rows = [
        (DAY, key("east", EAST_A, "east", EAST_A, "same-zone"), DayCounts(1000, gb, gb, 0.0)),
        (DAY, key("eu", EU, "eu", EU, "same-zone"), DayCounts(10, 1000, 1000, 0.0)),
        (DAY, key("east", EAST_A, "unknown", "unknown", "unknown"), DayCounts(3, 300, 0, 0.0)),
    ]
    prices = builtin_tables()
    spread, failover = alternatives(rows, prices)[("echo.demo", DAY)]
    assert failover == pytest.approx(0.0)
    assert spread == pytest.approx(0.5 * (gb + gb) * 0.02 / 1e9, rel=1e-6)
    data = report(rows, prices, DAY, DAY)
    [echo] = data["services"]
    assert echo["requests"] == 1013 and echo["usd"] == 0.0
    assert echo["roundRobinUsd"] == pytest.approx(0.02)
    assert {(p["sourceCluster"], p["destinationCluster"]) for p in echo["paths"]} == {
        ("east", "east"), ("eu", "eu"), ("east", "unknown")
    }  # fmt: skip
    assert data["total"]["roundRobinUsd"] == echo["roundRobinUsd"]
    assert data["days"] == [{"day": DAY, "bytes": 2 * gb + 2300, "usd": 0.0,
                             "roundRobinUsd": spread, "localityFailoverUsd": failover}]  # fmt: skip
    assert csv_rows(data)[-1][:4] == ["echo.demo", "*", "*", "*"]


def test_a_gateway_hop_is_a_path_of_its_service_in_the_ledger_the_report_and_the_bill() -> None:
    """east calls echo in eu; eu's gateway in eu-west-1a forwards to a sidecar in
    eu-west-1b: 1 GB each way across zones, $0.01/GB each way. The hop is in the ledger (its
    connections, not requests), what was spent, both alternatives as spent (no caller policy
    moves it), and the bill's cross-zone bytes (counted twice on AWS, as AWS bills them)."""
    gb = 10**9
    eu_b = "aws/eu-west-1/eu-west-1b"
    table = TrafficTable(started_at=100.0)
    edge = Edge("east", EAST_A, "echo.demo", "eu", eu_b, "cross-region", "2xx")
    table.edges[edge] = Counters(requests=50, request_bytes=gb, response_bytes=gb, egress_usd=0.04)
    hop = GatewayHop("eu", EU, "echo.demo", eu_b, "cross-zone")
    table.hops[hop] = Counters(requests=2, request_bytes=gb, response_bytes=gb, egress_usd=0.02)
    hop_key = ("eu", EU, "echo.demo", "eu", eu_b, "gateway-hop:cross-zone")
    assert totals(table)[hop_key] == DayCounts(2, gb, gb, 0.02)
    rows = [(DAY, k, c) for k, c in sorted(totals(table).items())]
    assert ledger_rows_from_json(json.loads(json.dumps(ledger_rows_to_json(rows)))) == rows

    prices = builtin_tables()
    only_edges = alternatives([r for r in rows if r[1] != hop_key], prices)
    spread, failover = alternatives(rows, prices)[("echo.demo", DAY)]
    assert (spread, failover) == pytest.approx(
        tuple(v + 0.02 for v in only_edges[("echo.demo", DAY)])
    )
    data = report(rows, prices, DAY, DAY)
    [echo] = data["services"]
    assert (echo["requests"], echo["gatewayHopConnections"]) == (50, 2)
    assert echo["usd"] == pytest.approx(0.06) and echo["bytes"] == 4 * gb
    [path] = [p for p in echo["paths"] if p["pathClass"] == "gateway-hop:cross-zone"]
    assert (path["sourceCluster"], path["destinationCluster"]) == ("eu", "eu")
    assert (path["requests"], path["connections"], path["usd"]) == (0, 2, 0.02)
    assert csv_rows(data)[-1][-1] == 2

    amounts = mesh_amounts(rows, "aws")
    zone = amounts[BillKey(DAY, "aws", "eu-west-1", "eu-west-1")]
    assert zone.bytes == 4 * gb  # 2 GB across zones, billed out of one and into the other
    assert zone.usd == pytest.approx(0.02) and zone.pairs == {"eu gateway -> eu"}


def test_ledger_rows_survive_json() -> None:
    rows = [(DAY, key("east", EAST_A, "eu", EU, "cross-region"), DayCounts(1, 2, 3, 0.25))]
    assert ledger_rows_from_json(json.loads(json.dumps(ledger_rows_to_json(rows)))) == rows


CUR_COLUMNS = [
    "bill_billing_period_start_date", "line_item_line_item_type", "line_item_product_code",
    "line_item_usage_start_date", "line_item_usage_type", "line_item_usage_amount",
    "line_item_unblended_cost", "product_from_region_code", "product_to_region_code",
    "product_product_family",
]  # fmt: skip


def _cur(path: Path, lines: list[dict[str, str]]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as f:  # type: ignore[operator]
        writer = csv.DictWriter(f, CUR_COLUMNS)
        writer.writeheader()
        for line in lines:
            writer.writerow({c: line.get(c, "") for c in CUR_COLUMNS})
    return path


def _transfer(usage_type: str, gb: float, usd: float, day: str = DAY, **product: str):
    return {
        "line_item_line_item_type": "Usage",
        "line_item_product_code": "AWSDataTransfer",
        "line_item_usage_start_date": f"{day}T00:00:00Z",
        "line_item_usage_type": usage_type,
        "line_item_usage_amount": str(gb),
        "line_item_unblended_cost": str(usd),
        "product_product_family": "Data Transfer",
        **{f"product_{k}": v for k, v in product.items()},
    }


def test_a_cur_export_matches_the_ledger_when_the_bytes_agree(tmp_path: Path) -> None:
    """east (us-east-1a) sent 2 GB to eu (eu-west-1) and got 8 GB back; and 1 GB each way
    to east's other zone. The bill: USE1-EUW1 out 2 GB, EUW1-USE1 out 8 GB, Regional 4 GB
    (each cross-zone GB billed out of one zone and into the other)."""
    gb = 10**9
    ledger = [
        (DAY, key("east", EAST_A, "eu", EU, "cross-region"), DayCounts(5, 2 * gb, 8 * gb, 0.2)),
        (DAY, key("east", EAST_A, "east", EAST_B, "cross-zone"), DayCounts(5, gb, gb, 0.04)),
        (DAY, key("east", EAST_A, "east", EAST_A, "same-zone"), DayCounts(5, gb, gb, 0.0)),
    ]
    export = _cur(
        tmp_path / "cur.csv.gz",
        [
            _transfer("USE1-EUW1-AWS-Out-Bytes", 2.0, 0.04, from_region_code="us-east-1",
                      to_region_code="eu-west-1"),
            _transfer("EUW1-USE1-AWS-Out-Bytes", 8.0, 0.16),  # regions from the usage type
            _transfer("EUW1-USE1-AWS-In-Bytes", 2.0, 0.0),  # free: skipped
            _transfer("USE1-DataTransfer-Regional-Bytes", 4.0, 0.04),
            _transfer("USE1-BoxUsage:m5.large", 24.0, 2.3),  # not data transfer
            _transfer("USE1-EUW1-AWS-Out-Bytes", 1.0, 0.02, day="2026-11-20"),  # outside
        ],
    )  # fmt: skip
    data, rows = reconcile_export(
        "aws", export, {"since": DAY, "until": DAY, "rows": ledger_rows_to_json(ledger)}, 0.01
    )
    by_to = {(r.key.source_region, r.key.to): r for r in rows}
    assert set(by_to) == {
        ("us-east-1", "eu-west-1"), ("eu-west-1", "us-east-1"), ("us-east-1", "us-east-1")
    }  # fmt: skip
    assert all(r.status == "match" for r in rows), [r.to_json() for r in rows]
    assert by_to[("us-east-1", "us-east-1")].mesh.bytes == 4 * gb
    assert by_to[("eu-west-1", "us-east-1")].mesh.usd == pytest.approx(0.16)
    assert by_to[("us-east-1", "eu-west-1")].mesh.pairs == {"east -> eu"}
    assert data["rows"][0]["clusters"] == ["east -> eu"]


def test_a_parquet_cur_export_reads_as_its_csv_does(tmp_path: Path) -> None:
    """CUR 2.0's default format: timestamps as timestamps, ``product`` as a map column."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    table = pa.table({
        "line_item_usage_start_date": pa.array([start, start], pa.timestamp("ms", tz="UTC")),
        "line_item_usage_type": ["APN1-USE1-AWS-Out-Bytes", "USE1-DataTransfer-Regional-Bytes"],
        "line_item_usage_amount": [2.5, 4.0],
        "line_item_unblended_cost": [0.225, 0.04],
        "line_item_line_item_type": ["Usage", "Usage"],
        "product": pa.array([[("from_region_code", "ap-northeast-1"),
                              ("to_region_code", "us-east-1")], []],
                            pa.map_(pa.string(), pa.string())),
    })  # fmt: skip
    pq.write_table(table, tmp_path / "cur.parquet")
    bill, unplaced = read_aws_cur(tmp_path / "cur.parquet")
    assert unplaced == 0
    assert bill[BillKey(DAY, "aws", "ap-northeast-1", "us-east-1")].bytes == 2.5e9
    assert bill[BillKey(DAY, "aws", "us-east-1", "us-east-1")].usd == pytest.approx(0.04)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(BillingExportError, match="cannot read a Parquet export"):
        read_aws_cur(tmp_path / "bad.parquet")


def test_a_difference_names_the_day_and_the_clusters_and_meshfed_only_fails_too() -> None:
    key_ = BillKey(DAY, "aws", "us-east-1", "eu-west-1")
    ledger = [(DAY, key("east", EAST_A, "eu", EU, "cross-region"), DayCounts(1, 10**9, 0, 0.02))]
    mesh = mesh_amounts(ledger, "aws")
    bill = {key_: type(mesh[key_])(bytes=1.05e9, usd=0.021, lines=1)}
    [row] = reconcile(bill, mesh, 0.01)
    assert row.status == "differs" and row.difference == pytest.approx(1 / 1.05 - 1)
    assert row.to_json()["clusters"] == ["east -> eu"] and row.to_json()["day"] == DAY
    [only] = reconcile({}, mesh, 0.01)
    assert only.status == "meshfed only"
    [other] = reconcile(bill, {}, 0.01)
    assert other.status == "bill only"


def test_a_gcp_export_is_keyed_by_the_skus_continents(tmp_path: Path) -> None:
    gib = 2**30
    path = tmp_path / "gcp.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["usage_start_time", "service.description", "sku.description",
                    "usage.amount", "usage.unit", "cost", "location.region"])  # fmt: skip
        w.writerow([f"{DAY} 00:00:00 UTC", "Networking",
                    "Network Inter Region Data Transfer Out from Europe to Northern America",
                    str(3 * gib), "byte", "0.15", "europe-west1"])  # fmt: skip
        w.writerow([f"{DAY} 01:00:00 UTC", "Compute Engine", "Network Inter Zone Data "
                    "Transfer Out", "1", "gibibyte", "0.01", "europe-west1"])  # fmt: skip
        w.writerow([f"{DAY} 01:00:00 UTC", "Compute Engine", "N1 Predefined Instance Core",
                    "3600", "seconds", "0.03", "europe-west1"])  # fmt: skip
    bill, unplaced = read_gcp_billing(path)
    assert unplaced == 0
    assert bill[BillKey(DAY, "gcp", "europe-west1", "cross-continent")].bytes == 3 * gib
    assert bill[BillKey(DAY, "gcp", "europe-west1", "cross-zone")].bytes == gib
    ledger = [(DAY, key("us", "gcp/us-central1/us-central1-a", "gcp-eu", GCP, "cross-continent"),
               DayCounts(1, 0, 3 * gib, 0.15))]  # fmt: skip
    assert set(mesh_amounts(ledger, "gcp")) == {
        BillKey(DAY, "gcp", "europe-west1", "cross-continent")
    }


def test_an_export_that_is_not_one_is_named_with_its_line(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(BillingExportError, match="no column line_item_usage_start_date"):
        read_aws_cur(wrong)
    bad = _cur(tmp_path / "bad.csv", [_transfer("USE1-EUW1-AWS-Out-Bytes", 1.0, 0.02),
                                      _transfer("USE1-EUW1-AWS-Out-Bytes", "x", 0.02)])  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(BillingExportError, match=r"bad.csv:3: line_item_usage_amount: 'x'"):
        read_aws_cur(bad)
    binary = tmp_path / "cur.csv.gz"
    binary.write_bytes(b"not gzip")
    with pytest.raises(BillingExportError, match="cannot read"):
        read_aws_cur(binary)
