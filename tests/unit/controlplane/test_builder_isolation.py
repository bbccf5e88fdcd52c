"""Issue #35 (1): one proxy's failing build never stops the others' configuration, and a
builder that stopped shows in the health check and the metrics."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

import federation.controlplane.builder as builder_module
from federation.controlplane.api import make_app
from federation.controlplane.builder import SnapshotBuilder
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.metrics import ControlPlaneMetrics
from federation.controlplane.registry import ServiceRegistry
from federation.controlplane.snapshot import SnapshotCache
from federation.controlplane.status import StatusRegistry
from federation.model.locality import Locality
from federation.model.workload import WorkloadEntry
from federation.sync.node import ProxyDescription, node_problems
from tests.waiting import until

MESH = MeshContext("east", "example.org", Locality("aws/us-east-1", "us-east-1a"))


def _workload(name: str) -> WorkloadEntry:
    return WorkloadEntry.model_validate(
        {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "WorkloadEntry",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {
                "service": "echo",
                "address": "127.0.0.9",
                "locality": "aws/us-east-1/us-east-1a",
                "ports": [{"name": "http", "port": 8080}],
            },
        }
    )


def _sidecar(name: str) -> ProxyDescription:
    return ProxyDescription(
        f"sidecar~demo~{name}",
        "sidecar",
        "demo",
        service_account=name,
        locality=MESH.locality,
        identity_dir=f"/run/{name}",
    )


async def test_a_failing_build_keeps_the_proxys_last_snapshot_and_others_go_on(
    monkeypatch,
) -> None:
    registry, cache = ServiceRegistry(), SnapshotCache()
    metrics = ControlPlaneMetrics()
    builder = SnapshotBuilder(MESH, registry, cache, metrics)
    builder.ready.set()
    real = builder_module.generate
    broken = {"on": False}

    def generate(mesh, state, proxy, plans=None):
        if broken["on"] and proxy.service_account == "bad":
            raise RuntimeError("a generator bug")
        return real(mesh, state, proxy, plans)

    monkeypatch.setattr(builder_module, "generate", generate)
    worker = builder.start()
    try:
        for name in ("bad", "good"):
            proxy = _sidecar(name)
            builder._proxies[proxy.node_id] = proxy  # registered as on_stream_open does
        builder.request_rebuild()
        await until(lambda: len(cache.node_ids()) == 2, "both first snapshots")
        bad_before = cache.get_snapshot("sidecar~demo~bad")
        broken["on"] = True
        registry.apply([_workload("echo-1")])
        good_before = cache.get_snapshot("sidecar~demo~good")
        await until(
            lambda: cache.get_snapshot("sidecar~demo~good") is not good_before,
            "the good proxy's new snapshot",
        )
        registry.apply([_workload("echo-2")])  # and the next change too
        await until(lambda: builder.failures >= 2, "the second failure")
        assert cache.get_snapshot("sidecar~demo~bad") is bad_before  # static stability
        assert builder.health_problem() is None
        assert metrics.build_failures._value.get() >= 2
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker


async def test_a_stopped_builder_fails_the_health_check() -> None:
    registry, cache = ServiceRegistry(), SnapshotCache()
    builder = SnapshotBuilder(MESH, registry, cache)
    app = make_app(
        registry=registry,
        state_file=None,  # type: ignore[arg-type]
        status=StatusRegistry(),
        cache=cache,
        builder=builder,
        token="t",
        workload_tokens=None,  # type: ignore[arg-type]
        identity=lambda: {},
    )
    async with TestClient(TestServer(app)) as client:
        worker = builder.start()
        assert (await client.get("/healthz")).status == 200
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
        resp = await client.get("/healthz")
        assert resp.status == 503
        body = await resp.json()
        assert body["status"] == "failing"
        assert "snapshot builder" in body["problems"][0]


@pytest.mark.parametrize(
    ("role", "meta", "expected"),
    [
        ("sidecar", {}, "identity_dir is required"),
        ("sidecar", {"identity_dir": "run/x"}, "absolute path"),
        ("sidecar", {"identity_dir": "/run/\nx"}, "printable"),
        ("sidecar", {"identity_dir": "/x", "namespace": "Demo"}, "namespace 'Demo'"),
        ("sidecar", {"identity_dir": "/x", "service_account": "a" * 300}, "Kubernetes name"),
        ("sidecar", {"identity_dir": "/x", "upstreams": "db.demo:5432"}, "upstreams"),
        ("gateway", {"listen": "nohost"}, "HOST:PORT"),
        ("gateway", {"listen": "1.2.3.4:0"}, "HOST:PORT"),
        ("toaster", {}, "unknown meshfed.io/role"),
    ],
)
def test_node_problems_name_the_key(role, meta, expected) -> None:
    meta = {f"meshfed.io/{k}": v for k, v in meta.items()}
    problems = node_problems("sidecar~demo~a", role, "15001", meta)
    assert any(expected in p for p in problems), problems


def test_a_good_node_has_no_problems() -> None:
    meta = {
        "meshfed.io/identity_dir": "/run/meshfed/identity",
        "meshfed.io/traffic_log": "/run/meshfed/traffic.fifo",
        "meshfed.io/upstreams": "db.demo:5432=15432",
        "meshfed.io/workload": "echo-7d9f.abc",
    }
    assert node_problems("sidecar~demo~echo-1", "sidecar", "15001", meta) == []
    assert node_problems("x" * 257, "grpc", "15001", {}) != []


def test_a_control_plane_without_proxies_keeps_no_history_of_changes() -> None:
    """The change times a builder keeps to measure push latency go once every proxy saw
    them: with no proxy at all, only the last (it used to keep one per change forever --
    a control plane with no proxy yet, following its controller for days, grew by each)."""
    registry, cache = ServiceRegistry(), SnapshotCache()
    builder = SnapshotBuilder(MESH, registry, cache)
    for i in range(50):
        registry.apply([_workload(f"echo-{i}")])
    assert list(builder._changed_at) == [registry.state.version]
