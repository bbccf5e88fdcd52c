"""MCS export/import decisions (KEP-1645): pure, no I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

from federation.controller import imports as mcs
from federation.controller.store import ClusterRecord
from federation.sync.messages import ClusterReport


def compute(*args: Any) -> tuple[dict[str, list[dict[str, Any]]], list[mcs.ExportStatus]]:
    """:func:`mcs.compute` with the ServiceImports as the documents the API shows."""
    imports, statuses = mcs.compute(*args)
    docs = {
        cluster: [
            i.model_dump(
                by_alias=True,
                mode="json",
                exclude_none=True,
                exclude={"metadata": {"labels", "annotations"}},
            )
            for i in imps
        ]
        for cluster, imps in imports.items()
    }
    return docs, statuses


def _cluster(name: str, locality: str = "aws/us-east-1/us-east-1a") -> ClusterRecord:
    return ClusterRecord(
        name, locality, f"net-{name}", f"10.0.0.{ord(name[0]) % 200}:15443", "local", 0.0
    )


def _report(*services: tuple[str, int, str, int], exports: list[str]) -> ClusterReport:
    return ClusterReport.model_validate(
        {
            "cluster": "any",
            "services": [
                {
                    "namespace": "demo",
                    "name": name,
                    "ports": [{"name": "http", "port": port, "protocol": proto}],
                    "service_accounts": [name],
                    "healthy_endpoints_by_zone": {"z1": healthy},
                }
                for name, port, proto, healthy in services
            ],
            "exports": exports,
        }
    )


CLUSTERS = [_cluster("a"), _cluster("b"), _cluster("c")]
READY = {"a": "Ready", "b": "Ready", "c": "Ready"}


def test_same_service_exported_twice_is_one_import_listing_both() -> None:
    reports = {
        "a": _report(("echo", 8080, "http", 2), exports=["demo/echo"]),
        "b": _report(("echo", 8080, "http", 3), exports=["demo/echo"]),
        "c": _report(exports=[]),
    }
    times = {("a", "demo", "echo"): 1.0, ("b", "demo", "echo"): 2.0}
    imports, statuses = compute(CLUSTERS, READY, reports, times)
    [imp] = imports["c"]
    assert imp["metadata"] == {"name": "echo", "namespace": "demo"}
    assert [(c["cluster"], c["endpoints"]) for c in imp["spec"]["clusters"]] == [("a", 2), ("b", 3)]
    assert imp["spec"]["clusters"][0]["gateway"] == CLUSTERS[0].gateway
    assert [c["cluster"] for c in imports["a"][0]["spec"]["clusters"]] == ["b"]
    assert {s.condition for s in statuses} == {"Exported"}


def test_unexported_services_are_never_imported() -> None:
    reports = {"a": _report(("secret", 80, "http", 1), exports=[]), "b": _report(exports=[])}
    imports, statuses = compute(CLUSTERS[:2], READY, reports, {})
    assert imports == {"a": [], "b": []} and statuses == []


def test_an_export_without_a_local_service_is_not_imported() -> None:
    reports = {"a": _report(exports=["demo/ghost"]), "b": _report(exports=[])}
    imports, _ = compute(CLUSTERS[:2], READY, reports, {("a", "demo", "ghost"): 1.0})
    assert imports["b"] == []


def test_conflicting_ports_oldest_export_wins_and_the_loser_gets_conflict() -> None:
    reports = {
        "a": _report(("echo", 9090, "grpc", 1), exports=["demo/echo"]),
        "b": _report(("echo", 8080, "http", 1), exports=["demo/echo"]),
        "c": _report(exports=[]),
    }
    # b exported first: b wins although a sorts first by name
    times = {("a", "demo", "echo"): 5.0, ("b", "demo", "echo"): 1.0}
    imports, statuses = compute(CLUSTERS, READY, reports, times)
    by_cluster = {s.cluster: s for s in statuses}
    assert by_cluster["b"].condition == "Exported"
    assert by_cluster["a"].condition == "Conflict"
    assert "oldest export (cluster b)" in by_cluster["a"].message
    [imp] = imports["c"]
    assert imp["spec"]["ports"] == [{"name": "http", "port": 8080, "protocol": "http"}]
    assert [c["cluster"] for c in imp["spec"]["clusters"]] == ["b"]


def test_ties_in_export_time_break_by_cluster_name() -> None:
    reports = {
        "a": _report(("echo", 9090, "http", 1), exports=["demo/echo"]),
        "b": _report(("echo", 8080, "http", 1), exports=["demo/echo"]),
        "c": _report(exports=[]),
    }
    times = {("a", "demo", "echo"): 1.0, ("b", "demo", "echo"): 1.0}
    _, statuses = compute(CLUSTERS, READY, reports, times)
    assert {s.cluster: s.condition for s in statuses} == {"a": "Exported", "b": "Conflict"}


def test_unreachable_clusters_neither_export_nor_import() -> None:
    reports = {
        "a": _report(("echo", 8080, "http", 1), exports=["demo/echo"]),
        "b": _report(("echo", 8080, "http", 1), exports=["demo/echo"]),
        "c": _report(exports=[]),
    }
    times = {("a", "demo", "echo"): 1.0, ("b", "demo", "echo"): 2.0}
    states = {"a": "Ready", "b": "Unreachable", "c": "Ready"}
    imports, _ = compute(CLUSTERS, states, reports, times)
    assert [c["cluster"] for c in imports["c"][0]["spec"]["clusters"]] == ["a"]
    assert "b" not in imports


def test_no_healthy_endpoints_is_still_listed_with_zero() -> None:
    reports = {
        "a": _report(("echo", 8080, "http", 0), exports=["demo/echo"]),
        "c": _report(exports=[]),
    }
    imports, _ = compute([CLUSTERS[0], CLUSTERS[2]], READY, reports, {("a", "demo", "echo"): 1.0})
    assert imports["c"][0]["spec"]["clusters"][0]["endpoints"] == 0


def test_same_network_importers_get_the_endpoints_others_only_the_gateway() -> None:
    shared = [
        ClusterRecord("a", "aws/us-east-1/us-east-1a", "shared", "10.0.0.1:15443", "local", 0.0),
        ClusterRecord("b", "aws/us-west-2/us-west-2a", "shared", "10.0.0.2:15443", "local", 0.0),
        ClusterRecord("c", "gcp/us-east4/us-east4-a", "other", "10.0.0.3:15443", "local", 0.0),
    ]
    body = _report(("echo", 9090, "grpc", 1), exports=["demo/echo"]).model_dump()
    body["services"][0]["endpoints"] = [
        {
            "address": "10.1.0.5",
            "zone": "us-east-1a",
            "healthy": True,
            "tls_mode": "disabled",
            "ports": {"http": 19090},
            "weight": 2,
        }
    ]
    report_a = ClusterReport.model_validate(body)
    reports = {"a": report_a, "b": _report(exports=[]), "c": _report(exports=[])}
    imports, _ = compute(shared, READY, reports, {("a", "demo", "echo"): 1.0})
    [b_entry] = imports["b"][0]["spec"]["clusters"]
    assert b_entry["directEndpoints"] == [
        {
            "address": "10.1.0.5",
            "zone": "us-east-1a",
            "healthy": True,
            "tlsMode": "disabled",
            "ports": {"http": 19090},
            "weight": 2,
        }
    ]
    [c_entry] = imports["c"][0]["spec"]["clusters"]
    assert "directEndpoints" not in c_entry and c_entry["gateway"] == "10.0.0.1:15443"


def test_the_gateway_a_control_plane_reports_replaces_the_registered_one() -> None:
    """A cluster's load balancer gets its address after the join (meshfed install
    --gateway-service): imports carry what the control plane reports."""
    reported = _report(("echo", 8080, "http", 1), exports=["demo/echo"]).model_copy(
        update={"gateway": "k8s-gw-1.elb.us-east-1.amazonaws.com:15443"}
    )
    reports = {"a": reported, "b": _report(exports=[]), "c": _report(exports=[])}
    imports, _ = compute(CLUSTERS, READY, reports, {("a", "demo", "echo"): 1.0})
    assert imports["b"][0]["spec"]["clusters"][0]["gateway"] == (
        "k8s-gw-1.elb.us-east-1.amazonaws.com:15443"
    )


def test_an_exporter_without_any_gateway_address_is_pending_and_not_imported() -> None:
    """Registered without --gateway (meshfed install's LoadBalancer has no address yet): its
    export waits, with the reason, instead of sending importers an address they cannot dial;
    once its control plane reports one, it is imported."""
    clusters = [dataclasses.replace(CLUSTERS[0], gateway=""), *CLUSTERS[1:]]
    reports = {
        "a": _report(("echo", 8080, "http", 1), exports=["demo/echo"]),
        "b": _report(exports=[]),
        "c": _report(exports=[]),
    }
    imports, statuses = compute(clusters, READY, reports, {("a", "demo", "echo"): 1.0})
    assert imports == {"a": [], "b": [], "c": []}
    [status] = statuses
    assert status.condition == "Pending" and "no gateway address" in status.message
    reports["a"] = reports["a"].model_copy(update={"gateway": "203.0.113.7:15443"})
    imports, statuses = compute(clusters, READY, reports, {("a", "demo", "echo"): 1.0})
    assert [s.condition for s in statuses] == ["Exported"]
    assert imports["b"][0]["spec"]["clusters"][0]["gateway"] == "203.0.113.7:15443"


def test_imports_equal_to_last_rounds_are_its_objects_and_changed_ones_are_new() -> None:
    """A recompute builds every import anew; :func:`mcs.intern_imports` hands back last
    round's object for each that is equal (so a stream's "unchanged?" check is an identity
    check) and the new one where anything differs."""
    reports = {
        "a": _report(("echo", 8080, "http", 2), ("db", 5432, "tcp", 1), exports=["demo/echo"]),
        "b": _report(("db", 5432, "tcp", 1), exports=["demo/db"]),
    }
    times = {("a", "demo", "echo"): 1.0, ("b", "demo", "db"): 2.0}
    first, table = mcs.intern_imports(mcs.compute(CLUSTERS, READY, reports, times)[0], {})
    again, table = mcs.intern_imports(mcs.compute(CLUSTERS, READY, reports, times)[0], table)
    assert again == first
    for cluster in first:
        assert all(x is y for x, y in zip(again[cluster], first[cluster], strict=True))
    reports["b"] = _report(("db", 5432, "tcp", 3), exports=["demo/db"])  # db's endpoints moved
    moved, _ = mcs.intern_imports(mcs.compute(CLUSTERS, READY, reports, times)[0], table)
    by_name = {c: {i.metadata.name: i for i in imps} for c, imps in moved.items()}
    before = {c: {i.metadata.name: i for i in imps} for c, imps in first.items()}
    assert by_name["c"]["echo"] is before["c"]["echo"]  # unchanged: last round's object
    assert by_name["c"]["db"] is not before["c"]["db"]
    assert by_name["c"]["db"] != before["c"]["db"]
