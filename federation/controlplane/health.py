"""Active health checks run by the control plane, so dead workloads leave EDS within seconds.

Per workload (``spec.healthCheck``): ``tcp`` connects to the endpoint Envoy would use (the
sidecar's inbound port for tlsMode mutual, else the first service port's app port); ``http``
sends ``GET <path>`` to a tlsMode-disabled workload and wants a 2xx; ``none`` skips it.
A workload becomes UNHEALTHY after ``unhealthyThreshold`` consecutive failures and HEALTHY
after one success. Every probe is bounded by ``timeoutMs``. A workload just registered is
probed at once (not at the next tick): until then no other cluster learns of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp

from federation.controlplane.registry import Health, RegistryState, ServiceRegistry, WorkloadKey
from federation.model.workload import WorkloadEntry

log = logging.getLogger(__name__)


def probe_target(w: WorkloadEntry) -> tuple[str, int]:
    """``(host, port)`` a probe connects to (see the module docstring)."""
    if w.spec.tls_mode == "mutual":
        return w.spec.address, w.spec.inbound_port
    return w.spec.address, w.spec.ports[0].app_port


async def probe(w: WorkloadEntry, session: aiohttp.ClientSession | None = None) -> bool:
    """One probe of ``w``; True when it passed. Never raises for network errors."""
    hc = w.spec.health_check
    host, port = probe_target(w)
    timeout = hc.timeout_ms / 1000
    try:
        if hc.type == "http" and w.spec.tls_mode == "disabled" and session is not None:
            url = f"http://{host}:{port}{hc.path}"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return 200 <= resp.status < 300
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    except (OSError, TimeoutError, aiohttp.ClientError):
        return False


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
        now = time.monotonic()
        due = [
            w
            for key, w in self._registry.state.workloads.items()
            if w.spec.health_check.type != "none" and self._next_due.get(key, 0.0) <= now
        ]
        results = await asyncio.gather(*(probe(w, session) for w in due))
        for w, ok in zip(due, results, strict=True):
            key = w.key
            self._next_due[key] = now + w.spec.health_check.interval_ms / 1000
            if ok:
                self._failures[key] = 0
                self._registry.set_health(key, Health.HEALTHY)
            else:
                self._failures[key] = self._failures.get(key, 0) + 1
                if self._failures[key] >= w.spec.health_check.unhealthy_threshold:
                    self._registry.set_health(key, Health.UNHEALTHY)
        for key in list(self._next_due):
            if key not in self._registry.state.workloads:
                self._next_due.pop(key, None)
                self._failures.pop(key, None)

    async def run(self, tick_s: float = 0.1) -> None:
        """Probe forever (until cancelled), waking every ``tick_s`` seconds and when a
        workload is registered."""
        async with aiohttp.ClientSession() as session:
            while True:
                self._new.clear()
                await self.check_once(session)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new.wait(), tick_s)
