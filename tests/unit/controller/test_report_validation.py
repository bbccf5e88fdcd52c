"""Issue #35: a cluster's report is what it tells every other member, so the controller
accepts only reports whose every part other members accept too.

The property (hypothesis, with the sync fuzzer's report strategy): any report the
controller's validation (:func:`federation.sync.convert.report_from_proto`) accepts -- with
every service it names exported -- computes into ServiceImports
(:func:`federation.controller.imports.compute`) and an update that a control plane's
validation (:func:`federation.sync.convert.update_from_proto`) accepts. Before reports were
checked this strictly, a gateway such as ``"N"`` or a service name with control characters
was stored, and every recompute after it raised (no cluster got updates until the next good
report) or the importing control plane refused its updates.
"""

from __future__ import annotations

from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings

from federation.controller.imports import compute
from federation.controller.store import ClusterRecord
from federation.errors import InvalidDocumentError
from federation.sync.convert import (
    report_from_proto,
    traffic_from_proto,
    update_from_proto,
    update_to_proto,
)
from federation.sync.messages import ClusterReport, ControllerUpdate
from federation.sync.proto import sync_pb2
from tests.fuzzing import cluster_report_strategy, report_message

A = ClusterRecord("a", "aws/us-east-1/us-east-1a", "default", "127.0.0.1:15443", "local", 1.0, 1.0)
B = ClusterRecord("b", "aws/eu-west-1/eu-west-1a", "net-b", "127.0.0.2:15443", "local", 1.0, 1.0)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(report=cluster_report_strategy("b"))
def test_what_the_controller_accepts_every_member_accepts(report) -> None:
    message = report_message(report)
    try:
        body = report_from_proto(message)
        traffic_from_proto(message)
    except InvalidDocumentError:
        return
    if body.cluster != "b":
        return  # refused by the sync service (another cluster's report)
    # every service b reports is exported, so that each becomes an import at a
    exports = sorted({f"{s.namespace}/{s.name}" for s in body.services})
    body = body.model_copy(update={"exports": exports})
    times = {("b", *e.split("/")): 1.0 for e in exports}
    reports = {"a": ClusterReport(cluster="a"), "b": body}
    imports, _ = compute([A, B], {"a": "Ready", "b": "Ready"}, reports, times)
    update = ControllerUpdate(version=1, imports=imports["a"])
    update_from_proto(update_to_proto(update))  # raises if a would refuse it


def test_reports_the_controller_used_to_store_are_refused_naming_the_field() -> None:
    port = {"name": "http", "port": 8080, "protocol": "http"}
    good = {"namespace": "demo", "name": "echo", "ports": [port]}
    endpoint = {"tls_mode": "mutual", "weight": 1, "ports": {"http": 15006}}
    cases = {
        "gateway": {"gateway": "N"},
        "services.0.name": {"services": [{**good, "name": "Echo\x01"}]},
        "services.0.endpoints.0.address": {
            "services": [{**good, "endpoints": [{**endpoint, "address": "a b"}]}]
        },
        "services.0.endpoints.0.capacity_rps": {
            "services": [
                {**good, "endpoints": [{**endpoint, "address": "10.0.0.1", "capacity_rps": "inf"}]}
            ]
        },
        "services.0.service_accounts.0": {"services": [{**good, "service_accounts": ["A/B"]}]},
        "rtt_ms": {"rtt_ms": {"a": "NaN"}},
        "exports.0": {"exports": [{"namespace": "demo", "name": ""}]},
        "services.0.ports": {"services": [{**good, "ports": []}]},
        "traffic: started_at": {"traffic": {"started_at": "-Infinity"}},
        "traffic: taken_at": {"traffic": {"started_at": 1, "taken_at": "NaN"}},
    }
    for field, change in cases.items():
        message = json_format.ParseDict({"cluster": "b", **change}, sync_pb2.ClusterReport())
        try:
            report_from_proto(message)
            traffic_from_proto(message)
        except InvalidDocumentError as err:
            assert field.split(":")[0] in str(err), (field, str(err))
        else:
            raise AssertionError(f"accepted a report with a bad {field}")
