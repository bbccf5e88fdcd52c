"""The federation's traffic as this replica knows it: the tables its own control planes
report, and those other replicas stored for the clusters whose streams they hold
(:meth:`federation.controller.roles.Replica.shared_traffic`). The tables its own control
planes report also go into the traffic ledger (:mod:`federation.traffic_days`), at most once
per :data:`LEDGER_INTERVAL_S` per cluster and whenever the UTC day changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from federation.controller.roles import Replica
from federation.controller.store import ControllerStore, StoreError
from federation.controller.traffic import TrafficHistory
from federation.traffic import TrafficTable
from federation.traffic_days import totals, utc_day

log = logging.getLogger(__name__)

#: Seconds between two writes of one cluster's traffic to the ledger. Nothing is lost in
#: between (the next write adds what the counters gained); a control plane that restarts
#: loses at most this much of its traffic from the ledger.
LEDGER_INTERVAL_S = 30.0


class TrafficFeed:
    """Feeds :attr:`history` (a :class:`TrafficHistory`) from both sources; ``replica`` is
    read through a callable because the hub's replica is set after construction in tests."""

    def __init__(
        self,
        replica: Callable[[], Replica],
        ledger: ControllerStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history = TrafficHistory()
        self._replica = replica
        self._ledger = ledger
        self._clock = clock
        self._written: dict[str, tuple[float, str]] = {}  # cluster -> (monotonic s, day)
        self._unwritten: dict[str, TrafficTable] = {}  # the latest table not in the ledger

    def report(self, cluster: str, table: TrafficTable) -> None:
        """Keep the traffic table a cluster's control plane sent (in memory; with replicas
        also in the database for the others, :meth:`Replica.share_traffic`)."""
        self.history.add(cluster, table, time.monotonic())
        try:
            self._replica().share_traffic(cluster, table)
        except StoreError as err:  # the next table goes out again
            log.warning("traffic of %s not shared with the other replicas: %s", cluster, err)
        self._to_ledger(cluster, table)

    def _to_ledger(self, cluster: str, table: TrafficTable) -> None:
        """Write ``table`` to the ledger when :data:`LEDGER_INTERVAL_S` passed since the
        cluster's last write or the UTC day changed (a failed write is tried with the next
        table: the ledger adds what the counters gained since the last write that held)."""
        if self._ledger is None:
            return
        now, wall = time.monotonic(), self._clock()
        day = utc_day(wall)
        last = self._written.get(cluster)
        self._unwritten[cluster] = table
        if last is not None and now - last[0] < LEDGER_INTERVAL_S and last[1] == day:
            return
        self._write(cluster, now, wall)

    def _write(self, cluster: str, now: float, wall: float) -> None:
        table = self._unwritten.pop(cluster, None)
        if table is None or self._ledger is None:
            return
        try:
            self._ledger.record_traffic(cluster, table.started_at, totals(table), wall)
        except StoreError as err:
            log.warning("traffic of %s not written to the ledger: %s", cluster, err)
            return
        self._written[cluster] = (now, utc_day(wall))

    def forget(self, cluster: str) -> None:
        """A removed cluster: drop its traffic (its last unwritten table too)."""
        self.history.forget(cluster)
        self._unwritten.pop(cluster, None)
        self._written.pop(cluster, None)

    def flush(self) -> None:
        """Write every table this replica's control planes reported and the ledger does not
        hold yet (before the ledger is read: a report is as fresh as the controller)."""
        now, wall = time.monotonic(), self._clock()
        for cluster in list(self._unwritten):
            self._write(cluster, now, wall)

    async def watch(self, own: Callable[[], set[str]], interval_s: float = 1.0) -> None:
        """Every ``interval_s``: take the traffic tables other replicas stored for the
        clusters not in ``own()`` (the streams this replica holds), dated by their age,
        until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            replica = self._replica()
            if not replica.healthy:
                continue
            try:
                shared = replica.shared_traffic(frozenset(own()))
            except StoreError as err:
                log.warning("traffic of other replicas not read: %s", err)
                continue
            now = time.monotonic()
            for cluster, table, age_s in shared:
                self.history.add(cluster, table, now - max(0.0, age_s))
