"""Work only the leader replica does: planning cost mode ``optimize``
(:class:`federation.controller.planner.Planner`, publishing its plans to the other replicas)
and re-signing members' intermediates when due
(:class:`federation.controller.intermediates.IntermediateSigner`), both fenced by the
leader's term. A follower reads the plans the leader published (:meth:`LeaderWork.plans`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from federation.controller.imports import ExportStatus
from federation.controller.intermediates import IntermediateSigner
from federation.controller.planner import Planner
from federation.controller.roles import Replica
from federation.controller.store import ControllerStore, StoreError
from federation.controller.traffic import TrafficHistory
from federation.model.policy import TrafficPolicy
from federation.sync.messages import RoutingPlan
from providers.pricing import PriceTable as PriceTableRates

log = logging.getLogger(__name__)

#: How the planner's served traffic is grouped (:func:`federation.lb.headroom.zone_loads`).
SERVED_GROUP = (
    "destination_service",
    "destination_cluster",
    "destination_locality",
    "source_locality",
)


class LeaderWork:
    """Plans and re-signs on the leader; ``changed()`` is called when plans changed (the hub
    recomputes every member's update).

    Args:
        planner: the routing planner.
        signer: re-signs intermediates (None: never).
        store: the controller's state (members, reports).
        replica: this replica's role, read at each use.
        traffic: the traffic history plans are made from.
        policies / price_tables / exports: read at each planning round.
        changed: called after the plans changed.
    """

    def __init__(
        self,
        planner: Planner,
        signer: IntermediateSigner | None,
        store: ControllerStore,
        replica: Callable[[], Replica],
        traffic: TrafficHistory,
        inputs: tuple[
            Callable[[], list[TrafficPolicy]],
            Callable[[], dict[str, PriceTableRates]],
            Callable[[], Sequence[ExportStatus]],
        ],
        changed: Callable[[], None],
    ) -> None:
        self.planner = planner
        self.signer = signer
        self.store = store
        self._replica = replica
        self.traffic = traffic
        self._policies, self._price_tables, self._exports = inputs
        self._changed = changed

    def plans(self) -> dict[str, list[RoutingPlan]]:
        """cluster -> the routing plans in force: the planner's on the leader once it has
        planned, else those the leader published (:meth:`Replica.shared_plans`)."""
        replica = self._replica()
        if replica.is_leader and self.planner.active:
            return self.planner.plans()
        shared = replica.shared_plans()
        return self.planner.plans() if shared is None else shared

    def _publish(self) -> None:
        """The leader's plans changed: publish them to the other replicas (fenced), then
        have the hub send them to the control planes this replica serves."""
        try:
            self._replica().publish_plans(self.planner.plans())
        except StoreError as err:  # deposed, or the database is away: the next round retries
            log.warning("routing plans not published: %s", err)
        self._changed()

    def resign_due(self) -> bool:
        """On the leader: re-sign every joined cluster's intermediate that is due, from the
        CSR of its stored report (the write fenced by the leader's term). True when one was
        re-signed (the caller recomputes)."""
        replica = self._replica()
        if self.signer is None or not replica.is_leader:
            return False
        records = [r for r in self.store.clusters() if r.intermediate_pem]
        if not records:
            return False
        reports = self.store.reports()
        fence = replica.fence
        done = False
        bundle = self.signer.root().trust_bundle()  # once a pass: reading it loads the root
        for record in records:
            report = reports.get(record.name)
            if report is not None and self.signer.due(record.name, record, bundle):
                done |= self.signer.resign(record.name, report.intermediate_csr_pem, fence)
        return done

    async def watch_plans(self) -> None:
        """A planning round every planner interval, on the leader, until cancelled; the
        solving runs on a worker thread (a round over many services takes seconds:
        ``bench/optimizer.py``), the updates it causes on the event loop."""
        while True:
            await asyncio.sleep(self.planner.settings.interval_s)
            replica = self._replica()
            if not replica.is_leader:
                continue
            try:
                inputs = self._plan_inputs()
                if inputs is None:
                    if replica.shared_plans():  # a former leader's, no longer planned
                        self._publish()
                elif await asyncio.to_thread(self.planner.plan, *inputs):
                    self._publish()
            except Exception:  # a bad round must not end planning; the plans in force stay
                log.exception("planning round failed; the previous plans stay in force")

    def replan(self) -> None:
        """One planning round (:meth:`Planner.plan`) now, on this thread; have the hub
        recompute when a plan changed."""
        inputs = self._plan_inputs()
        if inputs is not None and self.planner.plan(*inputs):
            self._publish()

    def _plan_inputs(self) -> tuple[Any, ...] | None:
        """What :meth:`Planner.plan` reads, taken now: TrafficPolicies, export statuses,
        members, reports, the traffic of the planner's window (by caller, and by serving
        zone and caller locality for the headrooms) and the prices in force; None
        when there is nothing to plan (no policy in cost mode ``optimize``, no plan to
        withdraw), so an idle round reads neither the traffic nor the reports."""
        policies = self._policies()
        if not self.planner.active and all(p.spec.cost.mode != "optimize" for p in policies):
            return None
        now, window = time.monotonic(), self.planner.settings.window_s
        _, rows = self.traffic.rates(
            window, now, by=("source_cluster", "source_locality", "destination_service")
        )
        _, served = self.traffic.rates(window, now, by=SERVED_GROUP)
        records = {c.name: c for c in self.store.clusters()}
        return (
            policies,
            list(self._exports()),
            records,
            self.store.reports(),
            rows,
            self._price_tables(),
            served,
        )
