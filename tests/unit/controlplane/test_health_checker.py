"""The control plane probes a workload as soon as it is registered, not at the next tick:
until its first probe no other cluster hears of it (issue #16's propagation bench)."""

from __future__ import annotations

import asyncio
import contextlib
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


def test_the_checker_sleeps_until_the_next_probe_is_due():
    """No workload: nothing falls due (the checker waits for one to be registered). A
    workload probed now is due again after its interval; a new one is due at once; one whose
    health check is ``none`` never."""
    registry = ServiceRegistry()
    checker = health.HealthChecker(registry)
    assert checker.next_probe_in_s(100.0) is None
    registry.apply(load_documents(ENTRY))
    assert checker.next_probe_in_s(100.0) == 0.0  # registered, not probed yet
    checker._next_due[("demo", "echo-1")] = 101.0  # as check_once records a probe at 100.0
    assert checker.next_probe_in_s(100.0) == 1.0
    assert checker.next_probe_in_s(100.5) == 0.5
    assert checker.next_probe_in_s(102.0) == 0.0
    registry.apply(
        load_documents(ENTRY.replace("echo-1", "echo-2") + "  healthCheck: {type: none}\n")
    )
    assert checker.next_probe_in_s(100.0) == 1.0


def test_the_checker_wakes_when_a_probe_falls_due_not_at_a_tick(monkeypatch):
    """A workload with a 100 ms interval is probed about every 100 ms although the tick is an
    hour: the checker sleeps until the next probe is due (bounded: at most 2 s)."""

    async def scenario() -> int:
        probes = 0

        async def fake_probe(w, session=None) -> health.Probe:
            nonlocal probes
            probes += 1
            return health.Probe.PASSED

        monkeypatch.setattr(health, "probe", fake_probe)
        registry = ServiceRegistry()
        registry.apply(load_documents(ENTRY + "  healthCheck: {intervalMs: 100}\n"))
        task = asyncio.create_task(health.HealthChecker(registry).run(tick_s=3600))
        try:
            for _ in range(200):  # bounded: 2 s
                if probes >= 3:
                    break
                await asyncio.sleep(0.01)
            return probes
        finally:
            task.cancel()
            # awaited here: cancelled again by asyncio.run's shutdown, its session's close
            # could be cut short and the unclosed session warned about in a later test
            with contextlib.suppress(asyncio.CancelledError):
                await task

    assert asyncio.run(scenario()) >= 3
