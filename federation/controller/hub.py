"""Who gets what, when: the controller's in-memory view of connected control planes.

Every change (a report that differs from the last, a lease expiry, a removed cluster, an
applied document) recomputes the imports of every cluster
(:func:`federation.controller.imports.compute`) and queues a ``ControllerUpdate`` to each
connected control plane whose view (imports, exports it must serve, policies, trust bundle)
changed. A control plane that (re)connects gets its whole view at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from federation.controller.imports import ExportStatus, compute
from federation.controller.intermediates import IntermediateSigner
from federation.controller.membership import (
    STARTUP_GRACE_S,
    ClusterState,
    cluster_state,
    member_cas,
    member_crls,
)
from federation.controller.metrics import ControllerMetrics
from federation.controller.planner import Planner, PlannerSettings
from federation.controller.roles import Replica, SoleReplica
from federation.controller.store import ControllerStore, StoreError
from federation.controller.traffic import TrafficHistory
from federation.errors import InvalidDocumentError
from federation.lb.paths import tables_in_force
from federation.model.authz import AuthorizationPolicy, default_deny_policy
from federation.model.documents import validate_documents
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service import ServiceImport
from federation.sync.messages import ClusterReport, ControllerUpdate, RoutingPlan
from federation.traffic import TrafficCollector, TrafficTable
from providers.pricing import PriceTable as PriceTableRates

log = logging.getLogger(__name__)

#: Document kinds the controller sends to every control plane as policies.
POLICY_KINDS: tuple[str, ...] = ("TrafficPolicy", "PriceTable", "AuthorizationPolicy")


@dataclass(frozen=True, slots=True)
class Closed:
    """Put on a stream's queue to end it: the cluster was removed (``retryable`` False: the
    control plane stops syncing), or this replica lost its database (True: the control plane
    moves to another replica)."""

    reason: str
    retryable: bool = False


Outbound = ControllerUpdate | Closed


def central_exports(store: ControllerStore) -> dict[str, list[tuple[str, str]]]:
    """cluster -> ``[(ns, svc), ...]`` from meshfed ServiceExports applied to the controller."""
    result: dict[str, list[tuple[str, str]]] = {}
    for doc in store.documents("ServiceExport"):
        cluster = (doc.get("spec") or {}).get("cluster")
        meta = doc.get("metadata") or {}
        if cluster:
            key = (str(meta.get("namespace", "default")), str(meta.get("name")))
            result.setdefault(cluster, []).append(key)
    return {c: sorted(v) for c, v in result.items()}


class SyncHub:
    """See the module docstring.

    Args:
        store: the controller's state.
        bundle_pem: returns the current trust bundle (PEM).
        lease_s: heartbeat lease; a cluster silent for longer is Unreachable.
        clock: seconds since the epoch (injected in tests).
        authz_default: ``deny`` adds :func:`federation.model.authz.default_deny_policy` to
            every update (the mesh-wide default); ``allow`` is Istio's default.
        signer: re-signs joined clusters' intermediates (None: never).
        metrics: where the hub counts its work (:mod:`federation.controller.metrics`).
        planner: the routing plans of cost mode ``optimize``
            (:mod:`federation.controller.planner`).
        replica: this controller's place among replicas
            (:mod:`federation.controller.replicas`; default: the only one). Only the leader
            re-signs intermediates and plans; a cut-off replica serves no stream.
    """

    def __init__(
        self,
        store: ControllerStore,
        bundle_pem: Callable[[], bytes],
        *,
        lease_s: float,
        clock: Callable[[], float] = time.time,
        authz_default: str = "allow",
        signer: IntermediateSigner | None = None,
        metrics: ControllerMetrics | None = None,
        planner: PlannerSettings | None = None,
        replica: Replica | None = None,
    ) -> None:
        self.replica: Replica = replica or SoleReplica("controller", lambda: "")
        self._changes = asyncio.Event()
        self._policy_models: dict[str, BaseModel] = {}
        self._last_addresses: list[str] = []
        self.signer = signer
        self.planner = Planner(planner or PlannerSettings(), clock=clock, on_solve=self._solved)
        self.metrics = metrics or ControllerMetrics()
        self.store = store
        self.authz_default = authz_default
        self._bundle_pem = bundle_pem
        self.lease_s = lease_s
        self.clock = clock
        self.started_at = clock()
        self._streams: dict[str, asyncio.Queue[Outbound]] = {}
        self._sent: dict[str, ControllerUpdate] = {}
        self._last_report: dict[str, ClusterReport] = {}
        self._reported: set[str] = set()  # streams whose first report has arrived
        self._last_bundle = b""
        self._version = 0
        self._last_states: dict[str, ClusterState] = {}
        self.imports: dict[str, list[ServiceImport]] = {}
        self.exports: list[ExportStatus] = []
        self.traffic = TrafficHistory()
        self.metrics.registry.register(TrafficCollector(self.traffic.latest, self.price_tables))
        self.metrics.gauge(
            "meshfed_controller_sync_streams",
            "Open sync streams (connected control planes)",
            lambda: float(len(self._streams)),
        )
        self.metrics.gauge(
            "meshfed_controller_clusters", "Members by state", self._by_state, "state"
        )
        self.metrics.gauge(
            "meshfed_controller_plans",
            "Routing plans in force (caller localities of services in cost mode optimize)",
            lambda: float(sum(len(v) for v in self.plans().values())),
        )

    def _solved(self, service: tuple[str, str], seconds: float) -> None:
        self.metrics.plan_solves.labels(f"{service[1]}.{service[0]}").inc()
        self.metrics.plan_solve_seconds.observe(seconds)

    def _by_state(self) -> dict[str, float]:
        states = list(self.states().values())
        return {s: float(states.count(s)) for s in set(states)}

    def states(self) -> dict[str, ClusterState]:
        """Every member's state now (see :func:`cluster_state` and :data:`STARTUP_GRACE_S`)."""
        now = self.clock()
        grace = self.started_at + max(0.0, STARTUP_GRACE_S - self.lease_s)
        return {
            # the grace is for clusters not heard from since the start, not for those that
            # reconnected and went silent again
            c.name: cluster_state(
                c, now, self.lease_s, grace if (c.last_heartbeat or 0.0) < self.started_at else 0.0
            )
            for c in self.store.clusters()
        }

    def connected(self) -> set[str]:
        """Clusters with an open sync stream."""
        return set(self._streams)

    def attach(self, cluster: str) -> asyncio.Queue[Outbound]:
        """A control plane's stream opened: its whole view goes out after its first report
        (so that it is never judged on a stale heartbeat).

        A second stream for the same cluster replaces the first (which is closed).
        """
        old = self._streams.get(cluster)
        if old is not None:
            old.put_nowait(Closed("replaced by a newer stream from the same cluster"))
        queue: asyncio.Queue[Outbound] = asyncio.Queue()
        self._streams[cluster] = queue
        self._sent.pop(cluster, None)
        self._reported.discard(cluster)
        return queue

    def detach(self, cluster: str, queue: asyncio.Queue[Outbound]) -> None:
        """A control plane's stream closed."""
        if self._streams.get(cluster) is queue:
            del self._streams[cluster]
            self._sent.pop(cluster, None)
            self._reported.discard(cluster)

    def report_traffic(self, cluster: str, table: TrafficTable) -> None:
        """Keep the traffic table a cluster's control plane sent (in memory; with replicas
        also in the database for the others, :meth:`Replica.share_traffic`)."""
        self.traffic.add(cluster, table, time.monotonic())
        try:
            self.replica.share_traffic(cluster, table)
        except StoreError as err:  # the next table goes out again
            log.warning("traffic of %s not shared with the other replicas: %s", cluster, err)

    async def watch_traffic(self, interval_s: float = 1.0) -> None:
        """Every ``interval_s``: take the traffic tables other replicas stored for the
        clusters whose streams they hold (:meth:`Replica.shared_traffic`), dated by their
        age, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            if not self.replica.healthy:
                continue
            try:
                shared = self.replica.shared_traffic(frozenset(self._streams))
            except StoreError as err:
                log.warning("traffic of other replicas not read: %s", err)
                continue
            now = time.monotonic()
            for cluster, table, age_s in shared:
                self.traffic.add(cluster, table, now - max(0.0, age_s))

    def close_stream(self, cluster: str, reason: str) -> None:
        """End a cluster's stream (it was removed from the federation)."""
        self.traffic.forget(cluster)
        queue = self._streams.get(cluster)
        if queue is not None:
            queue.put_nowait(Closed(reason))

    def report(self, cluster: str, body: ClusterReport) -> None:
        """Record a report (a heartbeat); recompute when its content or the cluster's state
        changed, or when it is the first report on a new stream (which gets its whole view)."""
        self.store.put_report(cluster, body, self.clock())
        self.metrics.reports.labels(cluster).inc()
        first = cluster in self._streams and cluster not in self._reported
        if first:
            self._reported.add(cluster)
        if (
            first
            or self._last_report.get(cluster) != body
            or self._last_states.get(cluster) != "Ready"
        ):
            self._last_report[cluster] = body
            self.recompute()

    def recompute(self) -> None:
        """Recompute every import and queue the updates that changed."""
        states = self.states()
        self._last_states = states
        self.metrics.recomputations.inc()
        self.imports, self.exports = compute(
            self.store.clusters(), states, self.store.reports(), self.store.export_times()
        )
        exports = central_exports(self.store)
        policies = self._stored_policies()
        authz = [p for p in policies if isinstance(p, AuthorizationPolicy)]
        if self.authz_default == "deny":
            authz.append(default_deny_policy())
        bundle = self._bundle_pem()
        self._last_bundle = bundle
        reports = self.store.reports()
        records = {c.name: c for c in self.store.clusters()}
        for cluster in set(self._streams) - set(records):  # removed through another replica
            self.close_stream(cluster, f"cluster {cluster!r} was removed from the federation")
        crls = member_crls(list(records.values()), reports)
        cas = member_cas(list(records.values()), crls)
        plans = self.plans()
        addresses = self.replica.sync_addresses()
        self._last_addresses = addresses
        conditions: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}
        for e in self.exports:
            conditions.setdefault(e.cluster, {})[(e.namespace, e.service)] = (
                e.condition,
                e.message,
            )
        for cluster, queue in self._streams.items():
            if cluster not in self._reported:
                continue
            view = ControllerUpdate(
                imports=self.imports.get(cluster, []),
                exports=exports.get(cluster, []),
                policies=[p for p in policies if isinstance(p, TrafficPolicy)],
                price_tables=[p for p in policies if isinstance(p, PriceTable)],
                authorization_policies=authz,
                trust_bundle_pem=bundle,
                lease_seconds=max(1, int(self.lease_s)),
                cluster_crls=crls,
                cluster_cas=cas,
                intermediate_chain_pem=(
                    records[cluster].intermediate_pem or "" if cluster in records else ""
                ),
                plans=plans.get(cluster, []),
                sync_addresses=addresses,
                export_conditions=conditions.get(cluster, {}),
            )
            if self._sent.get(cluster) == view:
                continue
            self._sent[cluster] = view
            self._version += 1
            queue.put_nowait(replace(view, version=self._version))
            self.metrics.updates.labels(cluster).inc()
            log.info("update v%d to %s: %d imports", self._version, cluster, len(view.imports))

    def plans(self) -> dict[str, list[RoutingPlan]]:
        """cluster -> the routing plans in force: the planner's on the leader once it has
        planned, else those the leader published (:meth:`Replica.shared_plans`)."""
        if self.replica.is_leader and self.planner.active:
            return self.planner.plans()
        shared = self.replica.shared_plans()
        return self.planner.plans() if shared is None else shared

    def _publish_plans(self) -> None:
        """The leader's plans changed: publish them to the other replicas (fenced), then
        send them to the control planes this replica serves."""
        try:
            self.replica.publish_plans(self.planner.plans())
        except StoreError as err:  # deposed, or the database is away: the next round retries
            log.warning("routing plans not published: %s", err)
        self.recompute()

    def price_tables(self) -> dict[str, PriceTableRates]:
        """cloud -> the price table in force (built-in, overridden by stored PriceTables)."""
        return tables_in_force(p for p in self._stored_policies() if isinstance(p, PriceTable))

    def _stored_policies(self) -> list[BaseModel]:
        """The stored policy documents as models; one that no longer validates (stored by an
        older version) is logged and left out rather than stopping every update."""
        out: list[BaseModel] = []
        models: dict[str, BaseModel] = {}  # the models of this read, by stored JSON
        for kind in POLICY_KINDS:
            for doc in self.store.documents(kind):
                key = json.dumps(doc, sort_keys=True)
                model = self._policy_models.get(key)
                if model is None:
                    try:
                        [model] = validate_documents([doc], source="stored")
                    except InvalidDocumentError as err:
                        log.error("stored %s left out of updates: %s", kind, err)
                        continue
                models[key] = model
                out.append(model)
        self._policy_models = models  # unchanged documents keep their model objects
        return out

    def resign_due(self) -> bool:
        """On the leader: re-sign every joined cluster's intermediate that is due, from the
        CSR of its stored report (:class:`IntermediateSigner`; the write fenced by the
        leader's term). True when one was re-signed (the caller recomputes)."""
        if self.signer is None or not self.replica.is_leader:
            return False
        reports = self.store.reports()
        fence = self.replica.fence
        done = False
        for record in self.store.clusters():
            report = reports.get(record.name)
            if report is not None and self.signer.due(record.name, record):
                done |= self.signer.resign(record.name, report.intermediate_csr_pem, fence)
        return done

    def changed_elsewhere(self) -> None:
        """Another replica committed a change (:meth:`watch_changes` recomputes)."""
        self._changes.set()

    async def watch_changes(self) -> None:
        """Recompute after changes other replicas made, coalesced (one recompute for the
        changes of about 20 ms), until cancelled."""
        while True:
            await self._changes.wait()
            await asyncio.sleep(0.02)
            self._changes.clear()
            if self.replica.healthy:
                try:
                    self.recompute()
                except Exception:  # the database went away: the next change or check retries
                    log.exception("recompute after another replica's change failed")

    def cut_off(self, reason: str) -> None:
        """This replica lost its database: end every stream (the control planes move to
        another replica)."""
        for queue in self._streams.values():
            queue.put_nowait(Closed(reason, retryable=True))

    async def watch_plans(self) -> None:
        """A planning round every planner interval, on the leader, until cancelled; the
        solving runs on a worker thread (a round over many services takes seconds:
        ``bench/optimizer.py``), the updates it causes on the event loop."""
        while True:
            await asyncio.sleep(self.planner.settings.interval_s)
            if not self.replica.is_leader:
                continue
            try:
                inputs = self._plan_inputs()
                if inputs is None:
                    if self.replica.shared_plans():  # a former leader's, no longer planned
                        self._publish_plans()
                elif await asyncio.to_thread(self.planner.plan, *inputs):
                    self._publish_plans()
            except Exception:  # a bad round must not end planning; the plans in force stay
                log.exception("planning round failed; the previous plans stay in force")

    def replan(self) -> None:
        """One planning round (:meth:`Planner.plan`) now, on this thread; recompute the
        updates when a plan changed."""
        inputs = self._plan_inputs()
        if inputs is not None and self.planner.plan(*inputs):
            self._publish_plans()

    def _plan_inputs(self) -> tuple[Any, ...] | None:
        """What :meth:`Planner.plan` reads, taken now: TrafficPolicies, export statuses,
        members, reports, the traffic of the planner's window and the prices in force; None
        when there is nothing to plan (no policy in cost mode ``optimize``, no plan to
        withdraw), so an idle round reads neither the traffic nor the reports."""
        policies = [p for p in self._stored_policies() if isinstance(p, TrafficPolicy)]
        if not self.planner.active and all(p.spec.cost.mode != "optimize" for p in policies):
            return None
        _, rows = self.traffic.rates(
            self.planner.settings.window_s,
            time.monotonic(),
            by=("source_cluster", "source_locality", "destination_service"),
        )
        records = {c.name: c for c in self.store.clusters()}
        return (
            policies,
            list(self.exports),
            records,
            self.store.reports(),
            rows,
            self.price_tables(),
        )

    async def watch_leases(self) -> None:
        """:meth:`check` every lease/10 (at least 0.2 s, at most 3 s) until cancelled; a
        replica that lost its database (:attr:`Replica.healthy`) ends its streams and checks
        nothing until it is back."""
        cut = False
        while True:
            await asyncio.sleep(min(3.0, max(0.2, self.lease_s / 10)))
            if not self.replica.healthy:
                if not cut:
                    log.error("%s lost its database: ending every sync stream", self.replica.name)
                    cut = True
                self.cut_off("this controller replica lost its database; try another")
                continue
            if cut:
                log.info("%s has its database again", self.replica.name)
                cut = False
            try:
                self.check()
            except Exception:  # the database went away between two renewals
                log.exception("lease check failed")

    def check(self) -> None:
        """Recompute when a cluster's state changed (a lease expiry: counted in
        ``meshfed_controller_lease_expiries_total``), when the trust bundle changed (a root
        rotation: every control plane gets the new bundle), when the live replicas changed,
        or when the leader re-signed an intermediate (:meth:`resign_due`)."""
        states = self.states()
        if states != self._last_states:
            changed = {k: v for k, v in states.items() if self._last_states.get(k) != v}
            log.info("cluster states changed: %s", changed)
            for cluster, state in changed.items():
                if state == "Unreachable" and self._last_states.get(cluster) == "Ready":
                    self.metrics.lease_expiries.labels(cluster).inc()
            self.recompute()
        elif self._bundle_pem() != self._last_bundle:
            log.info("trust bundle changed: sending it to every control plane")
            self.resign_due()
            self.recompute()
        elif self.replica.sync_addresses() != self._last_addresses:
            log.info("controller replicas changed: %s", self.replica.sync_addresses())
            self.recompute()
        elif self.resign_due():
            self.recompute()
