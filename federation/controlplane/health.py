"""Active health checks run by the control plane, so dead workloads leave EDS within seconds.

Per workload (``spec.healthCheck``): ``tcp`` connects to the endpoint Envoy would use (the
sidecar's inbound port for tlsMode mutual, else the first service port's app port); ``http``
sends ``GET <path>`` to a tlsMode-disabled workload and wants a 2xx; ``none`` skips it.
A workload becomes UNHEALTHY after ``unhealthyThreshold`` consecutive failures and HEALTHY
after one success. Every probe is bounded by ``timeoutMs``. A workload just registered is
probed at once (not at the next tick): until then no other cluster learns of it.

A probe that timed out while the control plane's own event loop was stalled (it ran
:data:`STALL_S` or more late during that round: CPU starvation on an overloaded host) says
nothing about the workload and is not counted, neither as a failure nor as a success; a
refused connection or a timeout on a responsive loop counts. On issue #16's bed (51 sidecars
on 2 cores) a busy control plane once marked every local workload UNHEALTHY at once, which
withdrew them from every cluster of the federation.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time

import aiohttp

from federation.controlplane.registry import Health, RegistryState, ServiceRegistry, WorkloadKey
from federation.model.workload import WorkloadEntry

log = logging.getLogger(__name__)

#: Event-loop lateness (s) in a probe round above which that round's timeouts are not counted.
STALL_S = 0.1


class Probe(enum.Enum):
    """What one probe saw."""

    PASSED = "passed"
    FAILED = "failed"  # refused, reset, or an HTTP status other than 2xx
    TIMED_OUT = "timed out"


def probe_target(w: WorkloadEntry) -> tuple[str, int]:
    """``(host, port)`` a probe connects to (see the module docstring)."""
    if w.spec.tls_mode == "mutual":
        return w.spec.address, w.spec.inbound_port
    return w.spec.address, w.spec.ports[0].app_port


async def probe(w: WorkloadEntry, session: aiohttp.ClientSession | None = None) -> Probe:
    """One probe of ``w`` (see the module docstring). Never raises for network errors."""
    hc = w.spec.health_check
    host, port = probe_target(w)
    timeout = hc.timeout_ms / 1000
    try:
        if hc.type == "http" and w.spec.tls_mode == "disabled" and session is not None:
            url = f"http://{host}:{port}{hc.path}"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return Probe.PASSED if 200 <= resp.status < 300 else Probe.FAILED
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return Probe.PASSED
    except TimeoutError:
        return Probe.TIMED_OUT
    except (OSError, aiohttp.ClientError):
        return Probe.FAILED


async def _lateness(stop: asyncio.Event, period_s: float = 0.02) -> float:
    """How late (s, the worst case) the event loop woke a sleeper until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(period_s)
        worst = max(worst, loop.time() - before - period_s)
    return worst


class HealthChecker:
    """Probes every registered workload on its own interval and records the result."""

    def __init__(self, registry: ServiceRegistry) -> None:
        self._registry = registry
        self._failures: dict[WorkloadKey, int] = {}
        self._next_due: dict[WorkloadKey, float] = {}
        self._new = asyncio.Event()
        registry.subscribe(self._on_registry)

    def _on_registry(self, state: RegistryState) -> None:
        if any(
            key not in self._next_due and w.spec.health_check.type != "none"
            for key, w in state.workloads.items()
        ):
            self._new.set()

    async def check_once(self, session: aiohttp.ClientSession) -> None:
        """Probe every workload that is due, concurrently."""
        for key in list(self._next_due):
            if key not in self._registry.state.workloads:
                self._next_due.pop(key, None)
                self._failures.pop(key, None)
        now = time.monotonic()
        due = [
            w
            for key, w in self._registry.state.workloads.items()
            if w.spec.health_check.type != "none" and self._next_due.get(key, 0.0) <= now
        ]
        if not due:
            return
        stop = asyncio.Event()
        watch = asyncio.create_task(_lateness(stop))
        try:
            results = await asyncio.gather(*(probe(w, session) for w in due))
        except BaseException:
            watch.cancel()
            raise
        stop.set()
        stalled = await watch >= STALL_S
        for w, result in zip(due, results, strict=True):
            key = w.key
            self._next_due[key] = now + w.spec.health_check.interval_ms / 1000
            if result is Probe.PASSED:
                self._failures[key] = 0
                self._registry.set_health(key, Health.HEALTHY)
            elif result is Probe.TIMED_OUT and stalled:
                log.debug("probe of %s/%s timed out on a stalled loop: not counted", *key)
            else:
                self._failures[key] = self._failures.get(key, 0) + 1
                if self._failures[key] >= w.spec.health_check.unhealthy_threshold:
                    self._registry.set_health(key, Health.UNHEALTHY)

    def next_probe_in_s(self, now: float) -> float | None:
        """Seconds from ``now`` (``time.monotonic()``) until the earliest probe falls due (0:
        one is due), or None when no workload is to be probed."""
        dues = [
            self._next_due.get(key, 0.0)
            for key, w in self._registry.state.workloads.items()
            if w.spec.health_check.type != "none"
        ]
        return max(0.0, min(dues) - now) if dues else None

    async def run(self, tick_s: float = 5.0) -> None:
        """Probe forever (until cancelled), waking when the earliest probe falls due, when a
        workload is registered, and at least every ``tick_s`` seconds. It used to wake every
        0.1 s to look: ten wake-ups a second in every control plane, with or without
        workloads."""
        async with aiohttp.ClientSession() as session:
            while True:
                self._new.clear()
                await self.check_once(session)
                due_in = self.next_probe_in_s(time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._new.wait(), tick_s if due_in is None else min(due_in, tick_s)
                    )
