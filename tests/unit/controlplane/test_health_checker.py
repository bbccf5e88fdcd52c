"""The control plane probes a workload as soon as it is registered, not at the next tick:
until its first probe no other cluster hears of it (issue #16's propagation bench)."""

from __future__ import annotations

import asyncio
import time

from federation.controlplane import health
from federation.controlplane.registry import Health, ServiceRegistry
from federation.model.documents import load_documents

ENTRY = """apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: echo-1, namespace: demo}
spec:
  service: echo
  address: 127.0.1.10
  serviceAccount: echo
  locality: aws/us-east-1/us-east-1a
  ports: [{name: http, port: 8080, targetPort: 18080}]
"""


def test_a_new_workload_is_probed_at_once(monkeypatch):
    async def scenario() -> Health:
        probed = asyncio.Event()

        async def fake_probe(w, session=None) -> health.Probe:
            probed.set()
            return health.Probe.PASSED

        monkeypatch.setattr(health, "probe", fake_probe)
        registry = ServiceRegistry()
        checker = health.HealthChecker(registry)
        task = asyncio.create_task(checker.run(tick_s=3600))  # the tick never comes
        try:
            await asyncio.sleep(0)  # the first (empty) round has run
            registry.apply(load_documents(ENTRY))
            await asyncio.wait_for(probed.wait(), 10)
            for _ in range(1000):  # the round records its results (bounded: 1 s)
                if registry.state.health_of(("demo", "echo-1")) is not Health.UNKNOWN:
                    break
                await asyncio.sleep(0.001)
            return registry.state.health_of(("demo", "echo-1"))
        finally:
            task.cancel()

    assert asyncio.run(scenario()) is Health.HEALTHY


def _verdict(monkeypatch, result: health.Probe, stall_s: float) -> Health:
    """The health after two probe rounds that each saw ``result`` while the event loop was
    blocked for ``stall_s`` seconds (0: not at all)."""

    async def scenario() -> Health:
        async def fake_probe(w, session=None) -> health.Probe:
            await asyncio.sleep(0.03)  # the probe is in flight ...
            return result

        async def hog() -> None:
            await asyncio.sleep(0.01)
            time.sleep(stall_s)  # ... while the loop is blocked (CPU-bound work, starvation)

        monkeypatch.setattr(health, "probe", fake_probe)
        registry = ServiceRegistry()
        registry.apply(load_documents(ENTRY))
        checker = health.HealthChecker(registry)
        for _ in range(2):  # unhealthyThreshold defaults to 2
            checker._next_due.clear()  # due now
            blocker = asyncio.create_task(hog())
            await checker.check_once(None)  # type: ignore[arg-type]
            await blocker
        return registry.state.health_of(("demo", "echo-1"))

    return asyncio.run(scenario())


def test_timeouts_on_a_stalled_control_plane_are_not_counted(monkeypatch):
    """Issue #16's bed: a busy control plane marked every local workload UNHEALTHY at once.
    A timeout while the loop itself ran late says nothing about the workload; a refusal,
    or a timeout on a responsive loop, does."""
    assert _verdict(monkeypatch, health.Probe.TIMED_OUT, stall_s=0.3) is Health.UNKNOWN
    assert _verdict(monkeypatch, health.Probe.TIMED_OUT, stall_s=0) is Health.UNHEALTHY
    assert _verdict(monkeypatch, health.Probe.FAILED, stall_s=0.3) is Health.UNHEALTHY
