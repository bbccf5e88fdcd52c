"""Full garbage collections at quiet moments, not in the middle of a push.

CPython's cyclic collector runs a full (generation 2) collection when its own counters say
so, wherever the program happens to be, and the pause grows with every object alive. A
control plane of 1,000 services x 10 endpoints with 1,000 ADS streams tracks ~440,000
objects; one full collection paused its event loop for 300-350 ms, and in a run of ten
endpoint changes two of them waited for one (``gc.callbacks`` timings beside
``bench/xds_scale.py``, 2026-12-07): that is the tail of the update latency. Istio's pilot
has Go's concurrent collector; this is the Python equivalent of choosing when to pay.

:class:`QuietCollector` leaves the young generations (0 and 1) to CPython -- their
collections are short and free cycles that die young -- and takes the full one over: it
raises generation 2's threshold out of reach (:data:`NEVER`) and collects itself once the
process has been quiet (no :meth:`~QuietCollector.activity`) for ``quiet_s``, at most once
per ``min_interval_s``, and only if something reached generation 2 since the last one; but
at least every ``max_interval_s`` whatever the load, so cyclic garbage never waits longer
than that. Garbage without cycles is freed by reference counting at once, as always.
Sources: the ``gc`` module's ``set_threshold``/``get_count`` (Python 3.11 documentation,
"gc -- Garbage Collector interface"; a generation-2 collection also needs its count above
threshold 2).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Generation 2's threshold while a :class:`QuietCollector` is installed: the number of
#: generation-1 collections between two automatic full ones, never reached.
NEVER = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Pacing:
    """When full collections run (seconds; see the module docstring)."""

    quiet_s: float = 2.0
    min_interval_s: float = 10.0
    max_interval_s: float = 60.0
    check_s: float = 0.5


def due(pacing: Pacing, now: float, last_full: float, last_activity: float, promoted: int) -> bool:
    """Whether a full collection should run at ``now`` (monotonic s), given the last one's
    time, the last activity's and ``promoted`` (generation-1 collections since the last
    full one: 0 means nothing new reached generation 2). Pure."""
    since_full = now - last_full
    if since_full >= pacing.max_interval_s:
        return promoted > 0
    return (
        promoted > 0
        and since_full >= pacing.min_interval_s
        and now - last_activity >= pacing.quiet_s
    )


class QuietCollector:
    """Takes CPython's full collections over (see the module docstring). ``install`` before
    :meth:`run`; ``uninstall`` puts the thresholds back."""

    def __init__(
        self,
        pacing: Pacing | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pacing = pacing or Pacing()
        self._clock = clock
        self._saved: tuple[int, int, int] | None = None
        self._last_full = self._last_activity = clock()
        self.collections = 0  # full collections run (tests read it)
        self.last_pause_ms = 0.0

    def install(self) -> None:
        """Raise generation 2's threshold to :data:`NEVER` (idempotent)."""
        if self._saved is None:
            self._saved = gc.get_threshold()
            gc.set_threshold(self._saved[0], self._saved[1], NEVER)

    def uninstall(self) -> None:
        """Put the thresholds found by :meth:`install` back."""
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def activity(self) -> None:
        """Something that should not be paused is going on (a registry change and the pushes
        that follow it): the next full collection waits for ``quiet_s`` of calm."""
        self._last_activity = self._clock()

    def collect_if_due(self) -> bool:
        """Run a full collection when :func:`due` says so; True if it ran."""
        now = self._clock()
        if not due(self.pacing, now, self._last_full, self._last_activity, gc.get_count()[2]):
            return False
        started = time.perf_counter()
        found = gc.collect(2)
        self.last_pause_ms = (time.perf_counter() - started) * 1000
        self._last_full = self._clock()
        self.collections += 1
        log.debug("full garbage collection: %d found, %.0f ms", found, self.last_pause_ms)
        return True

    async def run(self) -> None:
        """Check every ``check_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.pacing.check_s)
            self.collect_if_due()
