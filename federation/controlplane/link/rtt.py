"""RTT probes from this cluster to every imported cluster's east-west gateway.

Every 10 s, and at once when the imports change, the prober times a TCP connect (ms) to each
gateway. The figure kept per cluster is the **minimum of the last** :data:`RTT_WINDOW`
**probes** (about a minute): the path's propagation delay, as TCP's min-RTT filter and BBR
estimate it, not the queueing of a busy moment. Priorities and the HTTP/2 PING timeouts
derived from it (:func:`federation.controlplane.generate.clusters.keepalive_timeout_ms`) must
not follow load: on the isolated bed the last-probe figure swung from 40 to over 900 ms when
the host was busy, every swing changed the sidecars' clusters, and every changed cluster
restarts Envoy's health checks and connections -- more load, wider swings, until 51 Envoys
kept both cores busy. The figures go into the next report (the controller shows them) and,
with the hysteresis of :func:`federation.lb.paths.rtts_for_decisions`, into the registry for
load balancing. A probe that fails adds no sample: an unreachable gateway says nothing
about the distance (health checks and outlier detection take the cluster out), and falling
back to the estimate would reorder priorities during a partition and again after it heals.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections import deque

from federation.controlplane.registry import RegistryState, ServiceRegistry
from federation.lb.paths import rtts_for_decisions
from federation.netaddr import parse_host_port

RTT_PROBE_INTERVAL_S = 10.0
#: Probes per cluster whose minimum is the RTT kept (6 x 10 s: about a minute).
RTT_WINDOW = 6
CONNECT_TIMEOUT_S = 2.0


#: Byte offset of ``tcpi_rtt`` (u32, µs) in Linux's ``struct tcp_info`` (linux/tcp.h: eight
#: one-byte fields, then ``tcpi_rto`` ... ``tcpi_rcv_ssthresh``, fifteen u32s).
TCPI_RTT_OFFSET = 68


def kernel_rtt_ms(sock: socket.socket) -> float | None:
    """The kernel's round-trip estimate of a just-connected TCP socket (ms): right after the
    handshake it is the SYN -> SYN-ACK time, measured by the kernel (``TCP_INFO``
    ``tcpi_rtt``), so it holds no time the process spent waiting for the CPU or the GIL.
    None where ``TCP_INFO`` is not available (not Linux)."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, 104)
    except OSError:
        return None
    if len(info) < TCPI_RTT_OFFSET + 4:
        return None
    micros = int.from_bytes(info[TCPI_RTT_OFFSET : TCPI_RTT_OFFSET + 4], sys.byteorder)
    return micros / 1000 if micros > 0 else None


def _connect_ms(host: str, port: int, timeout_s: float) -> float | None:
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            elapsed = (time.perf_counter() - started) * 1000
            kernel = kernel_rtt_ms(sock)
            return min(kernel, elapsed) if kernel is not None else elapsed
    except OSError:
        return None


async def connect_time_ms(gateway: str, timeout_s: float = CONNECT_TIMEOUT_S) -> float | None:
    """TCP connect time (ms) to ``host:port``, or None when it fails or times out: the
    kernel's handshake RTT (:func:`kernel_rtt_ms`), else the wall time around a blocking
    ``connect`` in a worker thread.

    Timed on the event loop, every callback the loop ran meanwhile counted as network time.
    Timed in a thread, the thread's wait for the GIL after ``connect`` still counted (up to
    the 5 ms switch interval, more with several threads busy): CI runs of issue #16's bed
    kept reading 48.7-49 ms for a 40 ms path while the control plane was busy. The kernel's
    figure has neither."""
    host, port = parse_host_port(gateway)
    return await asyncio.to_thread(_connect_ms, host, port, timeout_s)


class RttProber:
    """Keeps ``rtt_ms`` (other cluster -> least connect time of its last :data:`RTT_WINDOW`
    probes, ms) current; see the module docstring. The dict is shared with the sync link,
    which reports it."""

    def __init__(self, registry: ServiceRegistry) -> None:
        self._registry = registry
        self.rtt_ms: dict[str, float] = {}
        self._samples: dict[str, deque[float]] = {}
        self._imports_changed = asyncio.Event()
        self._last_imports = registry.state.imports
        registry.subscribe(self._on_registry)

    def _on_registry(self, state: RegistryState) -> None:
        if state.imports is not self._last_imports:
            self._last_imports = state.imports
            self._imports_changed.set()

    async def probe_once(self) -> None:
        """Probe every imported cluster's gateway once and update the registry's RTTs."""
        gateways = {
            c.cluster: c.gateway
            for imp in self._registry.state.imports.values()
            for c in imp.spec.clusters
        }
        for cluster, gateway in sorted(gateways.items()):
            rtt = await connect_time_ms(gateway)
            if rtt is not None:
                samples = self._samples.setdefault(cluster, deque(maxlen=RTT_WINDOW))
                samples.append(rtt)
                self.rtt_ms[cluster] = min(samples)
        for gone in set(self.rtt_ms) - set(gateways):
            del self.rtt_ms[gone]
            self._samples.pop(gone, None)
        current = self._registry.state.rtt_ms
        self._registry.set_rtts(rtts_for_decisions(current, self.rtt_ms, gateways))

    async def run(self) -> None:
        """Probe until cancelled: every :data:`RTT_PROBE_INTERVAL_S`, or at once when the
        imports change."""
        while True:
            self._imports_changed.clear()
            await self.probe_once()
            try:
                await asyncio.wait_for(self._imports_changed.wait(), RTT_PROBE_INTERVAL_S)
            except TimeoutError:
                pass
