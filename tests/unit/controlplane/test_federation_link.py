"""The control plane's side of federation: its report, installing the controller's view,
reconnect backoff, and how the CLI finds the controller."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace

import grpc
import pytest

import federation.controlplane.link.join as join_module
from federation.client import controller_target
from federation.controlplane.link.join import JoinError, JoinInfo, controller_urls
from federation.controlplane.link.session import SyncRefusedError, backoff_delays, sync_error
from federation.controlplane.registry import Health, RegistryState, ServiceRegistry, with_federation
from federation.controlplane.report import cluster_report
from federation.errors import ApiError, InvalidDocumentError
from federation.model.documents import load_documents
from federation.model.service import ServiceExport, ServiceImport
from federation.sync.convert import (
    plans_from_json,
    plans_to_json,
    report_from_proto,
    report_to_proto,
    traffic_from_json,
    traffic_to_json,
    update_from_json,
    update_from_proto,
    update_to_json,
    update_to_proto,
)
from federation.sync.messages import ControllerUpdate, RoutingPlan
from federation.traffic import Counters, Edge, TrafficTable

WORKLOADS = """
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: echo-1, namespace: demo}
spec: {service: echo, address: 127.0.1.10, locality: aws/us-east-1/us-east-1a, ports: [{name: http, port: 8080}, {name: grpc, port: 9090, protocol: grpc}]}
---
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: echo-2, namespace: demo}
spec: {service: echo, address: 127.0.1.11, locality: aws/us-east-1/us-east-1b, serviceAccount: echo-sa, ports: [{name: http, port: 8080}]}
---
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: secret-1, namespace: demo}
spec: {service: secret, address: 127.0.1.12, locality: aws/us-east-1/us-east-1a, ports: [{name: http, port: 80}]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: echo, namespace: demo}
"""

IMPORT = {
    "apiVersion": "meshfed.io/v1alpha1",
    "kind": "ServiceImport",
    "metadata": {"name": "echo", "namespace": "demo"},
    "spec": {
        "ports": [{"name": "http", "port": 8080, "protocol": "http"}],
        "serviceAccounts": ["echo"],
        "clusters": [
            {
                "cluster": "west",
                "gateway": "127.0.2.1:15443",
                "network": "w",
                "locality": "aws/eu-west-1",
                "endpoints": 2,
            }
        ],
    },
}


def _registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.apply(load_documents(WORKLOADS))  # type: ignore[arg-type]
    return registry


def test_report_lists_local_services_healthy_endpoints_per_zone_and_exports() -> None:
    registry = _registry()
    registry.set_health(("demo", "echo-2"), Health.UNHEALTHY)
    typed = cluster_report(registry.state, "east", "127.0.1.1:15443", {"west": 1.23456})
    assert report_from_proto(report_to_proto(typed)) == typed  # the wire keeps everything
    report = typed.model_dump()
    echo, secret = report["services"]
    endpoints = echo.pop("endpoints")
    assert endpoints[1] == {
        "address": "127.0.1.11",
        "zone": "us-east-1b",
        "healthy": False,
        "tls_mode": "mutual",
        "ports": {"http": 15006},  # the sidecar's inbound port
        "weight": 1,
        "capacity_rps": 0.0,
    }
    assert echo == {
        "namespace": "demo",
        "name": "echo",
        "ports": [
            {"name": "http", "port": 8080, "protocol": "http"},
            {"name": "grpc", "port": 9090, "protocol": "grpc"},
        ],
        "service_accounts": ["default", "echo-sa"],
        "healthy_endpoints_by_zone": {"us-east-1a": 1, "us-east-1b": 0},
    }
    assert secret["name"] == "secret"
    assert report["exports"] == ["demo/echo"]  # never the unexported secret
    assert report["gateway"] == "127.0.1.1:15443" and report["rtt_ms"] == {"west": 1.235}


def test_federated_exports_count_as_exports_and_the_controller_view_replaces_the_old() -> None:
    registry = _registry()
    [imp] = [ServiceImport.model_validate(IMPORT)]
    assert registry.set_federation([imp], [("demo", "secret")])
    state = registry.state
    assert state.exported(("demo", "secret")) and state.exported(("demo", "echo"))
    assert cluster_report(state, "east", "", {}).exports == ["demo/echo", "demo/secret"]
    assert not registry.set_federation([imp], [("demo", "secret")])  # same view: no new version
    assert registry.state is state
    registry.set_federation([], [])
    assert dict(registry.state.imports) == {} and not registry.state.exported(("demo", "secret"))
    # federated exports are not persisted as local documents
    assert not any(
        isinstance(d, ServiceExport) and d.metadata.name == "secret"
        for d in registry.state.documents()
    )


def test_with_federation_is_pure() -> None:
    state = RegistryState()
    imp = ServiceImport.model_validate(IMPORT)
    after = with_federation(state, [imp], [])
    assert state.imports == {} and after.version == 1 and after.imports[("demo", "echo")] == imp


POLICY = {
    "apiVersion": "meshfed.io/v1alpha1",
    "kind": "TrafficPolicy",
    "metadata": {"name": "echo", "namespace": "demo"},
    "spec": {"host": "echo.demo.svc.clusterset.local", "split": {"west": 100}},
}


def _update() -> ControllerUpdate:
    direct = {
        **IMPORT["spec"]["clusters"][0],  # type: ignore[index]
        "directEndpoints": [{"address": "10.0.0.1", "ports": {"http": 15006}}],
    }
    imp = {**IMPORT, "spec": {**IMPORT["spec"], "clusters": [direct]}}  # type: ignore[dict-item]
    [policy] = load_documents(json.dumps(POLICY))
    return ControllerUpdate(
        version=7,
        imports=[ServiceImport.model_validate(imp)],
        exports=[("demo", "echo"), ("x", "y")],
        policies=[policy],  # type: ignore[list-item]
        trust_bundle_pem=b"PEM",
        lease_seconds=30,
        sync_addresses=["10.0.0.10:15090", "10.0.0.11:15090"],
        plans=[
            RoutingPlan(
                "demo",
                "echo",
                "aws/us-east-1/us-east-1a",
                (("a", "aws/us-east-1/us-east-1a", 0.6), ("b", "aws/eu-west-1/eu-west-1a", 0.4)),
                demand_rps=150.0,
                usd_per_hour=0.01,
                round_robin_usd_per_hour=0.05,
                binding=("a aws/us-east-1/us-east-1a: capacity x headroom binds",),
                solved_at=1.5,
                capacities=(("a", "aws/us-east-1/us-east-1a", 100.0),),
            )
        ],
    )


def test_a_plan_with_a_bad_locality_or_share_is_refused() -> None:
    for shares in ((("a", "nowhere", 1.0),), (("a", "aws/us-east-1", 1.5),), ()):
        bad = replace(_update(), plans=[replace(_update().plans[0], shares=shares)])
        with pytest.raises(InvalidDocumentError, match=r"plan for echo\.demo"):
            update_from_proto(update_to_proto(bad))


def test_updates_cross_the_wire_and_the_disk_unchanged() -> None:
    update = _update()
    assert update_from_proto(update_to_proto(update)) == update
    stored = update_to_json(update)
    assert "trust_bundle_pem" not in stored  # the bundle is kept as a PEM file of its own
    again = update_from_json(stored)
    assert again.imports == update.imports and again.policies == update.policies
    assert again.plans == update.plans
    assert again.sync_addresses == update.sync_addresses
    # same network: an empty list of direct endpoints is not "no direct endpoints"
    empty = ServiceImport.model_validate(
        {
            **IMPORT,
            "spec": {
                **IMPORT["spec"],
                "clusters": [{**IMPORT["spec"]["clusters"][0], "directEndpoints": []}],
            },
        }  # type: ignore[index, dict-item]
    )
    back = update_from_proto(update_to_proto(ControllerUpdate(imports=[empty])))
    assert back.imports[0].spec.clusters[0].direct_endpoints == []


def test_an_invalid_update_is_refused_whole_naming_the_import_and_field() -> None:
    message = update_to_proto(_update())
    message.imports[0].clusters[0].gateway = "no-port"
    with pytest.raises(
        InvalidDocumentError, match=r"ServiceImport demo/echo: spec.clusters.0.gateway"
    ):
        update_from_proto(message)


def test_an_update_stored_by_the_json_in_proto_protocol_still_loads() -> None:
    legacy = {
        "version": "3",
        "service_imports_json": [json.dumps(IMPORT)],
        "policies_json": [json.dumps(POLICY)],
        "exports": ["demo/echo"],
    }
    update = update_from_json(legacy)
    assert [i.key for i in update.imports] == [("demo", "echo")]
    assert update.exports == [("demo", "echo")] and len(update.policies) == 1


class _RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="why")


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, False),
        (grpc.StatusCode.UNAUTHENTICATED, False),
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.ABORTED, True),
        (grpc.StatusCode.INTERNAL, True),
    ],
)
def test_a_refused_cluster_stops_syncing_a_broken_stream_reconnects(code, retryable) -> None:
    err = sync_error(_RpcError(code), "127.0.0.1:15090")
    assert err.retryable is retryable
    assert isinstance(err, SyncRefusedError) is (not retryable)
    assert code.name in str(err)


def test_backoff_doubles_to_ten_seconds_with_jitter() -> None:
    delays = list(itertools.islice(backoff_delays(rng=random.Random(1)), 8))
    assert 0.25 <= delays[0] <= 0.5
    assert all(5 <= d <= 10 for d in delays[5:])
    caps = [min(0.5 * 2**i, 10) for i in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, caps, strict=True))


def test_controller_target_flags_then_config_file(tmp_path) -> None:
    with pytest.raises(ApiError, match="no controller"):
        controller_target(None, None, home=tmp_path)
    (tmp_path / "tok").write_text("t0ken\n")
    (tmp_path / "config.yaml").write_text(
        f"controller: http://127.0.0.1:15080\ntokenFile: {tmp_path / 'tok'}\n"
    )
    assert controller_target(None, None, home=tmp_path) == ("http://127.0.0.1:15080", "t0ken")
    assert controller_target(None, "flag", home=tmp_path) == ("http://127.0.0.1:15080", "flag")
    # another controller: the stored token is not sent to it
    assert controller_target("http://10.0.0.1:1", None, home=tmp_path) == (
        "http://10.0.0.1:1",
        None,
    )


def test_plans_and_traffic_tables_shared_between_replicas_round_trip_and_bad_ones_are_named() -> (
    None
):
    plans = {"a": _update().plans, "b": []}
    assert plans_from_json(plans_to_json(plans)) == plans
    with pytest.raises(InvalidDocumentError, match="stored routing plans"):
        plans_from_json('{"a": [{"shares": "nope"}]}')
    edge = Edge("a", "aws/us-east-1/us-east-1a", "echo.demo", "b", "aws/us-west-2/us-west-2a",
                "cross-region", "2xx")  # fmt: skip
    table = TrafficTable(5.0, {edge: Counters(3, 30, 300, 0.5, 12.0)})
    back = traffic_from_json("a", traffic_to_json(table))
    assert back == table
    with pytest.raises(InvalidDocumentError, match="stored traffic of cluster 'a'"):
        traffic_from_json("a", "{not json")


def test_join_info_written_before_replicas_loads_with_its_one_sync_address() -> None:
    old = {
        "cluster": "a", "trust_domain": "example.org", "controller": "https://c:1",
        "sync_address": "c:2", "sync_server_name": "controller.meshfed.internal",
        "lease_seconds": 30.0,
    }  # fmt: skip
    info = JoinInfo(**old)
    assert info.sync_addresses == []
    assert controller_urls("c:1, http://d:2/") == ["https://c:1", "http://d:2"]


@pytest.mark.parametrize(
    "url",
    ["http://192.0.2.10:15080", "http://controller.example.com:15080", "http://[2001:db8::1]:1"],
)
async def test_attack_a_join_token_is_never_sent_over_plain_http_off_loopback(
    url, tmp_path, monkeypatch
) -> None:
    """Issue #35 (4): with an http:// controller URL the token went to whoever answered the
    public bundle (which anyone can copy). Now the join stops before any request."""
    sent = []

    async def request_json(*args, **kwargs):
        sent.append(args)
        raise AssertionError("nothing may be sent")

    monkeypatch.setattr(join_module, "request_json", request_json)
    with pytest.raises(JoinError) as info:
        await join_module.join(tmp_path, "east", url, "mfj_" + "s" * 32 + "." + "ab" * 32, None)
    assert "refusing to send the join token over plain HTTP" in str(info.value)
    assert not info.value.retryable
    assert sent == []
    assert not (tmp_path / "ca").exists()


def test_plain_http_is_allowed_only_to_loopback() -> None:
    assert join_module.plain_http_problem("http://127.0.0.1:15080") is None
    assert join_module.plain_http_problem("http://[::1]:15080") is None
    assert join_module.plain_http_problem("http://localhost:15080") is None
    assert join_module.plain_http_problem("https://10.0.0.1:15080") is None
    assert join_module.plain_http_problem("http://10.0.0.1:15080") is not None
