"""The federation's traffic as this replica knows it: the tables its own control planes
report, and those other replicas stored for the clusters whose streams they hold
(:meth:`federation.controller.roles.Replica.shared_traffic`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from federation.controller.roles import Replica
from federation.controller.store import StoreError
from federation.controller.traffic import TrafficHistory
from federation.traffic import TrafficTable

log = logging.getLogger(__name__)


class TrafficFeed:
    """Feeds :attr:`history` (a :class:`TrafficHistory`) from both sources; ``replica`` is
    read through a callable because the hub's replica is set after construction in tests."""

    def __init__(self, replica: Callable[[], Replica]) -> None:
        self.history = TrafficHistory()
        self._replica = replica

    def report(self, cluster: str, table: TrafficTable) -> None:
        """Keep the traffic table a cluster's control plane sent (in memory; with replicas
        also in the database for the others, :meth:`Replica.share_traffic`)."""
        self.history.add(cluster, table, time.monotonic())
        try:
            self._replica().share_traffic(cluster, table)
        except StoreError as err:  # the next table goes out again
            log.warning("traffic of %s not shared with the other replicas: %s", cluster, err)

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
