"""The proxy agent: runs one Envoy (sidecar or east-west gateway) for as long as it lives.

What it does, in order, and logs as it goes:

1. ``register()`` (a hook from the caller: the sidecar's WorkloadEntry is applied to the
   control plane; nothing for a gateway).
2. Writes the bootstrap and starts Envoy with its own ``--base-id``; waits until ready.
3. Watches Envoy; if it exits, or a restarted Envoy fails to start, restarts it after a
   backoff (0.25 s doubling to 10 s; reset after 30 s of healthy running).
4. On stop (SIGTERM/SIGINT): ``deregister()`` so callers stop picking this endpoint, waits
   ``propagation_s`` for that to reach them, drains inbound listeners
   (``/drain_listeners?graceful&inboundonly``), waits until no downstream request is active
   (at most ``drain_timeout_s``), then stops Envoy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.agent.envoy_process import EnvoyProcess
from federation.agent.errors import EnvoyExitedError, EnvoyNotReadyError

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


#: The admin query :func:`requests_in_flight` reads.
IN_FLIGHT_STATS = "/stats?filter=downstream_rq_active$"


def requests_in_flight(stats: str) -> int:
    """Requests an Envoy is serving, from its admin's :data:`IN_FLIGHT_STATS` text: the
    sum of its HTTP connection managers' ``downstream_rq_active``, the admin's own
    (``http.admin.*``, which counts this very query) left out. Pure."""
    total = 0
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        value = value.strip()
        if name.startswith("http.") and not name.startswith("http.admin.") and value.isdigit():
            total += int(value)
    return total


async def _nothing() -> None:
    return None


@dataclass
class AgentSettings:
    """How the agent runs Envoy.

    Attributes:
        bootstrap: the Envoy bootstrap dict.
        workdir: where the bootstrap and ``envoy.log`` go.
        admin_port: Envoy's admin port on 127.0.0.1 (also its ``--base-id``).
        register / deregister: hooks run before the first start and on stop.
        propagation_s: wait after deregistering before draining (seconds).
        drain_timeout_s: longest wait for in-flight requests (seconds).
        log_file: Envoy's log (default ``<workdir>/envoy.log``).
    """

    bootstrap: dict[str, Any]
    workdir: Path
    admin_port: int
    register: Hook = _nothing
    deregister: Hook = _nothing
    propagation_s: float = 1.0
    drain_timeout_s: float = 20.0
    log_level: str = "warning"
    log_file: Path | None = None
    restarts: int = field(default=0, init=False)


def backoff_s(attempt: int) -> float:
    """Seconds to wait before restart number ``attempt`` (0-based): 0.25 s doubling, max 10 s."""
    return float(min(10.0, 0.25 * 2**attempt))


class ProxyAgent:
    """Supervises one Envoy (see the module docstring)."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.envoy = EnvoyProcess(
            settings.bootstrap,
            settings.workdir,
            base_id=settings.admin_port,
            admin_port=settings.admin_port,
            log_level=settings.log_level,
            log_file=settings.log_file,
        )
        self.ready = asyncio.Event()

    async def _start_envoy(self) -> None:
        self.envoy.start()
        await asyncio.to_thread(self.envoy.wait_ready, 30.0)
        self.ready.set()
        log.info(
            "envoy pid %s ready (log: %s)",
            self.envoy.process and self.envoy.process.pid,
            self.envoy.log_path,
        )

    async def _wait_exit(self) -> int:
        process = self.envoy.process
        assert process is not None
        while process.poll() is None:
            await asyncio.sleep(0.1)
        return int(process.returncode)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then drain and stop Envoy (see the module docstring).

        Raises:
            EnvoyExitedError, EnvoyNotReadyError: the *first* start failed (a bad bootstrap
                or port shows at once). A later start that fails counts as one more crash
                and is retried after the backoff: the agent never gives its workload up.
        """
        s = self.settings
        await s.register()
        attempt = 0
        started_once = False
        try:
            while not stop.is_set():
                started = time.monotonic()
                outcome = await self._run_once(stop, raise_on_start=not started_once)
                started_once = True
                if outcome is None:
                    break
                self.ready.clear()
                if time.monotonic() - started > 30:
                    attempt = 0
                delay = backoff_s(attempt)
                attempt += 1
                s.restarts += 1
                log.warning("%s; restarting in %.2fs (restart %d)", outcome, delay, s.restarts)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            await self._shutdown()

    async def _run_once(self, stop: asyncio.Event, *, raise_on_start: bool) -> str | None:
        """Start Envoy and wait until it exits (returns why, for the log) or ``stop`` is set
        (returns None). A start that fails is raised when ``raise_on_start``, else returned
        as the reason after the half-started Envoy is stopped."""
        try:
            await self._start_envoy()
        except (EnvoyExitedError, EnvoyNotReadyError) as err:
            if raise_on_start:
                raise
            await asyncio.to_thread(self.envoy.stop, drain=False)
            return f"envoy failed to start ({err})"
        exited = asyncio.ensure_future(self._wait_exit())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            exited.cancel()
            return None
        stopping.cancel()
        return f"envoy exited with code {exited.result()}"

    async def _active_requests(self) -> int:
        try:
            text = await asyncio.to_thread(self.envoy.admin, IN_FLIGHT_STATS)
        except OSError:
            return 0
        return requests_in_flight(text)

    async def _shutdown(self) -> None:
        s = self.settings
        log.info("stopping: deregistering")
        try:
            await s.deregister()
        except Exception:
            log.exception("deregistering failed; draining anyway")
        if self.envoy.alive():
            await asyncio.sleep(s.propagation_s)
            try:
                await asyncio.to_thread(
                    self.envoy.admin, "/drain_listeners?graceful&inboundonly", method="POST"
                )
                log.info("draining inbound listeners")
            except OSError as err:
                log.warning("drain request failed: %s", err)
            deadline = time.monotonic() + s.drain_timeout_s
            while time.monotonic() < deadline and (active := await self._active_requests()) > 0:
                log.info("waiting for %d in-flight requests", active)
                await asyncio.sleep(0.2)
        await asyncio.to_thread(self.envoy.stop, drain=False)
        log.info("envoy stopped")
