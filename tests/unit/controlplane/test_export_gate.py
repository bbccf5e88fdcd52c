"""Make before break across clusters (:mod:`federation.controlplane.link.export_gate`): a new
export, or an export back from no endpoint, is reported once this cluster's gateways hold
it, or after HOLD_S; nothing else of a report waits. And :meth:`SnapshotBuilder.gateways_hold`, which the gate asks."""

from __future__ import annotations

import asyncio

import pytest

from federation.controlplane.builder import SnapshotBuilder
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.link.export_gate import HOLD_S, ExportGate
from federation.controlplane.registry import ServiceRegistry
from federation.controlplane.snapshot import SnapshotCache
from federation.model.locality import Locality
from federation.model.service import ServiceExport
from federation.model.workload import WorkloadEntry
from federation.sync.messages import ClusterReport
from federation.sync.node import ProxyDescription
from tests.waiting import until

MESH = MeshContext("east", "example.org", Locality("aws/us-east-1", "us-east-1a"))


def _report(*services: str, exported: tuple[str, ...] | None = None) -> ClusterReport:
    exported = services if exported is None else exported
    return ClusterReport.model_validate(
        {
            "cluster": "east",
            "services": [
                {"namespace": "demo", "name": s, "ports": [{"name": "http", "port": 8080}]}
                for s in services
            ],
            "exports": [f"demo/{s}" for s in exported],
        }
    )


def _names(report: ClusterReport) -> list[str]:
    return [s.name for s in report.services]


def test_a_new_export_waits_for_the_gateways_then_goes_out() -> None:
    ready: dict[int, bool | None] = {}
    asked: list[int] = []

    def gateways(version: int) -> bool | None:
        asked.append(version)
        return ready.get(version, False)

    gate = ExportGate(gateways)
    # the first report after a start holds nothing back (the controller may know them)
    assert _names(gate.apply(_report("a"), 1, 0.0)) == ["a"] and asked == []
    # b is new at version 2: held while the gateways do not hold version 2
    assert _names(gate.apply(_report("a", "b"), 2, 0.1)) == ["a"]
    assert asked == [2] and gate.deadline() == pytest.approx(0.1 + HOLD_S)
    # a later version of the registry: still asked for the version b appeared in
    assert _names(gate.apply(_report("a", "b"), 3, 0.5)) == ["a"] and asked[-1] == 2
    ready[2] = True
    assert _names(gate.apply(_report("a", "b"), 3, 0.6)) == ["a", "b"]
    assert gate.deadline() is None
    # once reported, never held back again, whatever the gateways say
    ready.clear()
    assert _names(gate.apply(_report("a", "b"), 4, 0.7)) == ["a", "b"]


def test_a_stuck_gateway_delays_a_new_export_by_hold_s_only() -> None:
    gate = ExportGate(lambda _version: False)
    gate.apply(_report(), 1, 0.0)
    assert _names(gate.apply(_report("b"), 2, 10.0)) == []
    assert _names(gate.apply(_report("b"), 2, 10.0 + HOLD_S - 0.01)) == []
    assert _names(gate.apply(_report("b"), 2, 10.0 + HOLD_S)) == ["b"]
    assert gate.deadline() is None


def test_only_new_exports_wait() -> None:
    gate = ExportGate(lambda _version: False)
    gate.apply(_report("a", exported=()), 1, 0.0)
    # not exported: other clusters never import it through the gateway, nothing to wait for
    assert _names(gate.apply(_report("a", "c", exported=()), 2, 0.1)) == ["a", "c"]
    # a service already reported that becomes exported now is new to the gateway: it waits
    assert _names(gate.apply(_report("a", "c", exported=("a",)), 3, 0.2)) == ["c"]
    # a removal goes out at once, and a service that comes back is new again
    gate = ExportGate(lambda _version: False)
    gate.apply(_report("a"), 1, 0.0)
    assert _names(gate.apply(_report(), 2, 0.1)) == []
    assert _names(gate.apply(_report("a"), 3, 0.2)) == []


def _counted(**endpoints: int) -> ClusterReport:
    """Every service exported, with that many healthy endpoints."""
    report = _report(*endpoints)
    services = [
        s.model_copy(update={"healthy_endpoints_by_zone": {"us-east-1a": endpoints[s.name]}})
        for s in report.services
    ]
    return report.model_copy(update={"services": services})


def _endpoints(report: ClusterReport) -> dict[str, int]:
    return {s.name: s.healthy_endpoints for s in report.services}


def test_an_export_back_from_no_endpoint_keeps_its_last_entry_until_the_gateways_hold_it() -> None:
    ready: dict[int, bool] = {}
    gate = ExportGate(lambda version: ready.get(version, False))
    gate.apply(_counted(a=1, b=1), 1, 0.0)
    # scaled to zero: goes out at once (a removal waits for nothing)
    assert _endpoints(gate.apply(_counted(a=0, b=1), 2, 0.1)) == {"a": 0, "b": 1}
    # back at version 3: its last entry (no endpoint) while the gateways lack version 3;
    # more endpoints of b, which has some, go out at once
    assert _endpoints(gate.apply(_counted(a=1, b=2), 3, 0.2)) == {"a": 0, "b": 2}
    assert gate.deadline() == pytest.approx(0.2 + HOLD_S)
    assert _endpoints(gate.apply(_counted(a=2, b=2), 4, 0.3)) == {"a": 0, "b": 2}
    ready[3] = True
    assert _endpoints(gate.apply(_counted(a=2, b=2), 4, 0.4)) == {"a": 2, "b": 2}
    assert gate.deadline() is None
    # gone to zero while held: the zero goes out, nothing is held
    gate.apply(_counted(a=0, b=2), 5, 0.5)
    assert _endpoints(gate.apply(_counted(a=1, b=2), 6, 0.6)) == {"a": 0, "b": 2}
    assert _endpoints(gate.apply(_counted(a=0, b=2), 7, 0.7)) == {"a": 0, "b": 2}
    assert gate.deadline() is None
    # a stuck gateway delays the return by HOLD_S only
    assert _endpoints(gate.apply(_counted(a=1, b=2), 8, 1.0)) == {"a": 0, "b": 2}
    assert _endpoints(gate.apply(_counted(a=1, b=2), 8, 1.0 + HOLD_S)) == {"a": 1, "b": 2}


def test_without_a_gateway_nothing_waits() -> None:
    gate = ExportGate(lambda _version: None)
    gate.apply(_report(), 1, 0.0)
    assert _names(gate.apply(_report("b"), 2, 0.1)) == ["b"] and gate.deadline() is None


def _workload(name: str, service: str) -> WorkloadEntry:
    return WorkloadEntry.model_validate(
        {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "WorkloadEntry",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {
                "service": service,
                "address": "127.0.0.9",
                "locality": "aws/us-east-1/us-east-1a",
                "ports": [{"name": "http", "port": 8080}],
            },
        }
    )


def _export(service: str) -> ServiceExport:
    return ServiceExport.model_validate(
        {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "ServiceExport",
            "metadata": {"name": service, "namespace": "demo"},
        }
    )


async def test_the_builder_says_whether_every_gateway_holds_a_version() -> None:
    registry, cache = ServiceRegistry(), SnapshotCache()
    builder = SnapshotBuilder(MESH, registry, cache)
    builder.ready.set()
    synced: list[str] = []
    builder.on_gateway_synced = lambda: synced.append("gateway")
    worker = builder.start()
    try:
        assert builder.gateways_hold(0) is None  # no gateway connected
        gateway = ProxyDescription(
            "gateway~east", "gateway", locality=MESH.locality, listen="127.0.0.1:15443"
        )
        sidecar = ProxyDescription(
            "sidecar~demo~a", "sidecar", "demo", service_account="a",
            locality=MESH.locality, identity_dir="/run/a",
        )  # fmt: skip
        for proxy in (gateway, sidecar):
            builder._proxies[proxy.node_id] = proxy  # registered as on_stream_open does
        builder.request_rebuild()
        await until(lambda: len(cache.node_ids()) == 2, "both first snapshots")
        version = registry.state.version
        assert builder.gateways_hold(version) is False  # built, not ACKed
        builder.synced(sidecar.node_id, cache.get_snapshot(sidecar.node_id).serial)
        assert builder.gateways_hold(version) is False and synced == []  # a sidecar's ACK
        first = cache.get_snapshot(gateway.node_id)
        builder.synced(gateway.node_id, first.serial)
        assert builder.gateways_hold(version) is True and synced == ["gateway"]
        # a new export: the gateway's view changes; until it is rebuilt and ACKs, it does
        # not hold the new version
        registry.apply([_workload("b-1", "b"), _export("b")])
        new = registry.state.version
        assert builder.gateways_hold(new) is False
        await until(lambda: cache.get_snapshot(gateway.node_id) is not first, "a rebuild")
        assert builder.gateways_hold(new) is False
        builder.synced(gateway.node_id, cache.get_snapshot(gateway.node_id).serial)
        assert builder.gateways_hold(new) is True
        # the gateway sees a further change (b's second endpoint): until it ACKs that, it
        # still holds the export's version, not the newest
        held = cache.get_snapshot(gateway.node_id)
        registry.apply([_workload("b-2", "b")])
        newest = registry.state.version
        await until(lambda: cache.get_snapshot(gateway.node_id) is not held, "the rebuild")
        assert builder.gateways_hold(new) is True and builder.gateways_hold(newest) is False
        builder.synced(gateway.node_id, cache.get_snapshot(gateway.node_id).serial)
        assert builder.gateways_hold(newest) is True
        # a change the gateway does not see (a service not exported) carries it forward
        registry.apply([_workload("c-1", "c")])
        await until(lambda: cache.get_snapshot(sidecar.node_id) is not None, "the sidecar")
        builder.request_rebuild()
        await until(
            lambda: builder.gateways_hold(registry.state.version) is True, "carried forward"
        )
        assert cache.get_snapshot(gateway.node_id) is not held
        builder.on_stream_closed(gateway.node_id)
        assert builder.gateways_hold(new) is None
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
