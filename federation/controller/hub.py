"""Who gets what, when: the controller's in-memory view of connected control planes.

Every change (a report that differs from the last, a lease expiry, a removed cluster, an
applied document) recomputes the imports of every cluster
(:func:`federation.controller.imports.compute`) and queues a ``ControllerUpdate`` to each
connected control plane whose view (imports, exports it must serve, policies, trust bundle)
changed. A control plane that (re)connects gets its whole view at once.

:class:`SyncHub` is the recompute and the watches that trigger it; its jobs live beside it,
each testable alone: the open streams (:mod:`federation.controller.streams`), what each
member is sent (:mod:`federation.controller.views`), the leader's planning and re-signing
(:mod:`federation.controller.leader_work`) and the traffic history
(:mod:`federation.controller.traffic_feed`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from federation.controller.imports import ExportStatus, compute, intern_imports
from federation.controller.intermediates import IntermediateSigner
from federation.controller.leader_work import LeaderWork
from federation.controller.membership import STARTUP_GRACE_S, ClusterState, cluster_state
from federation.controller.metrics import ControllerMetrics
from federation.controller.planner import Planner, PlannerSettings
from federation.controller.roles import Replica, SoleReplica
from federation.controller.store import ClusterRecord, ControllerStore
from federation.controller.streams import Outbound, SyncStreams
from federation.controller.traffic import TrafficHistory
from federation.controller.traffic_feed import TrafficFeed
from federation.controller.trust_federation import (
    bundles_in_force,
    federations,
    status_rows,
)
from federation.controller.trust_federation import states as bundle_states
from federation.controller.views import (
    FederationView,
    StoredPolicies,
    central_exports,
    federation_view,
)
from federation.model.service import ServiceImport
from federation.sync.messages import ChangeTrace, ClusterReport, RoutingPlan
from federation.traffic import TrafficCollector, TrafficTable
from providers.pricing import PriceTable as PriceTableRates

log = logging.getLogger(__name__)

#: Shortest time (s) between two recomputes for changes other replicas made: a burst of
#: applies (hundreds a second) costs each replica at most 50 recomputes a second.
RECOMPUTE_SPACING_S = 0.02


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
        root_crl: Callable[[], bytes | None] = lambda: None,
        root_crl_problem: Callable[[], str] = lambda: "no root CRL",
        root_crl_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self.replica: Replica = replica or SoleReplica("controller", lambda: "")
        self.root_crl = root_crl
        self.root_crl_problem = root_crl_problem
        self.root_crl_retry = root_crl_retry
        self.store = store
        self.authz_default = authz_default
        self._bundle_pem = bundle_pem
        self.lease_s = lease_s
        self.clock = clock
        self.started_at = clock()
        self.metrics = metrics or ControllerMetrics()
        self.streams = SyncStreams()
        self.policies = StoredPolicies(store)
        self.feed = TrafficFeed(lambda: self.replica, store, clock)
        self.leader = LeaderWork(
            Planner(planner or PlannerSettings(), clock=clock, on_solve=self._solved),
            signer,
            store,
            lambda: self.replica,
            self.feed.history,
            (self.policies.traffic_policies, self.policies.price_tables, lambda: self.exports),
            self.recompute,
        )
        self._changes = asyncio.Event()
        self._last_report: dict[str, ClusterReport] = {}
        self._last_bundle = b""
        self._last_root_crl: bytes | None = None
        self._root_crl_wanted = False  # federated bundles are in force: they need it
        self._last_addresses: list[str] = []
        self._last_states: dict[str, ClusterState] = {}
        self.imports: dict[str, list[ServiceImport]] = {}
        #: the last recompute's imports by JSON (:func:`intern_imports`)
        self._interned: dict[str, ServiceImport] = {}
        self.exports: list[ExportStatus] = []
        self._gauges()

    def _gauges(self) -> None:
        self.metrics.registry.register(TrafficCollector(self.traffic.latest, self.price_tables))
        self.metrics.gauge(
            "meshfed_controller_sync_streams",
            "Open sync streams (connected control planes)",
            lambda: float(len(self.streams)),
        )
        self.metrics.gauge(
            "meshfed_controller_clusters", "Members by state", self._by_state, "state"
        )
        self.metrics.gauge(
            "meshfed_controller_federated_bundle_roots",
            "Unexpired roots in force per foreign trust domain",
            lambda: {r["trustDomain"]: float(r["roots"]) for r in self.trust_federations()},
            "trust_domain",
        )
        self.metrics.gauge(
            "meshfed_controller_federated_bundle_age_seconds",
            "Seconds since a foreign trust domain's bundle was last fetched",
            lambda: {
                r["trustDomain"]: self.clock() - r["fetchedAt"]
                for r in self.trust_federations()
                if r["fetchedAt"]
            },
            "trust_domain",
        )
        self.metrics.gauge(
            "meshfed_controller_plans",
            "Routing plans in force (caller localities of services in cost mode optimize)",
            lambda: float(sum(len(v) for v in self.plans().values())),
        )

    def trust_federations(self) -> list[dict[str, Any]]:
        """Every federation with another trust domain and the state of its bundle
        (:func:`federation.controller.trust_federation.status_rows`)."""
        specs = federations(self.store)
        suspended = (
            f"no root CRL to send with foreign bundles: {self.root_crl_problem()}"
            if specs and self.root_crl() is None
            else ""
        )
        return status_rows(specs, bundle_states(self.store), self.clock(), suspended=suspended)

    def bundle_fetched(self, trust_domain: str, ok: bool) -> None:
        """Count one fetch of a foreign bundle (:class:`BundleRefresher`'s ``on_result``)."""
        self.metrics.bundle_fetches.labels(trust_domain, "ok" if ok else "error").inc()

    def _solved(self, service: tuple[str, str], seconds: float) -> None:
        self.metrics.plan_solves.labels(f"{service[1]}.{service[0]}").inc()
        self.metrics.plan_solve_seconds.observe(seconds)

    def _by_state(self) -> dict[str, float]:
        states = list(self.states().values())
        return {s: float(states.count(s)) for s in set(states)}

    # -- the parts, under the names the servicer, the API and the server use ------------

    @property
    def planner(self) -> Planner:
        """The routing planner (:class:`LeaderWork`'s)."""
        return self.leader.planner

    @property
    def traffic(self) -> TrafficHistory:
        """The traffic history (:class:`TrafficFeed`'s)."""
        return self.feed.history

    def connected(self) -> set[str]:
        """Clusters with an open sync stream."""
        return self.streams.connected()

    def attach(self, cluster: str) -> asyncio.Queue[Outbound]:
        """A control plane's stream opened (:meth:`SyncStreams.attach`): its whole view goes
        out after its first report, so that it is never judged on a stale heartbeat."""
        return self.streams.attach(cluster)

    def detach(self, cluster: str, queue: asyncio.Queue[Outbound]) -> None:
        """A control plane's stream closed."""
        self.streams.detach(cluster, queue)

    def close_stream(self, cluster: str, reason: str) -> None:
        """End a cluster's stream (it was removed from the federation)."""
        self.feed.forget(cluster)
        self.streams.close(cluster, reason)

    def cut_off(self, reason: str) -> None:
        """This replica lost its database: end every stream (the control planes move to
        another replica)."""
        self.streams.close_all(reason, retryable=True)

    def report_traffic(self, cluster: str, table: TrafficTable) -> None:
        """Keep a cluster's traffic table (:meth:`TrafficFeed.report`)."""
        self.feed.report(cluster, table)

    async def watch_traffic(self, interval_s: float = 1.0) -> None:
        """Take other replicas' traffic tables until cancelled (:meth:`TrafficFeed.watch`)."""
        await self.feed.watch(self.streams.connected, interval_s)

    def plans(self) -> dict[str, list[RoutingPlan]]:
        """cluster -> the routing plans in force (:meth:`LeaderWork.plans`)."""
        return self.leader.plans()

    def price_tables(self) -> dict[str, PriceTableRates]:
        """cloud -> the price table in force (built-in, overridden by stored PriceTables)."""
        return self.policies.price_tables()

    def resign_due(self) -> bool:
        """Re-sign due intermediates on the leader (:meth:`LeaderWork.resign_due`)."""
        return self.leader.resign_due()

    async def watch_plans(self) -> None:
        """Plan on the leader until cancelled (:meth:`LeaderWork.watch_plans`)."""
        await self.leader.watch_plans()

    def replan(self) -> None:
        """One planning round now (:meth:`LeaderWork.replan`)."""
        self.leader.replan()

    # -- the recompute and what triggers it ----------------------------------------------

    def states(self, clusters: list[ClusterRecord] | None = None) -> dict[str, ClusterState]:
        """Every member's state now (see :func:`cluster_state` and :data:`STARTUP_GRACE_S`),
        of ``clusters`` (default: the stored ones)."""
        now = self.clock()
        grace = self.started_at + max(0.0, STARTUP_GRACE_S - self.lease_s)
        return {
            # the grace is for clusters not heard from since the start, not for those that
            # reconnected and went silent again
            c.name: cluster_state(
                c, now, self.lease_s, grace if (c.last_heartbeat or 0.0) < self.started_at else 0.0
            )
            for c in (self.store.clusters() if clusters is None else clusters)
        }

    def report(self, cluster: str, body: ClusterReport, trace: ChangeTrace | None = None) -> None:
        """Record a report (a heartbeat); recompute when its content or the cluster's state
        changed, or when it is the first report on a new stream (which gets its whole view).
        ``trace``: the change the report carries, passed on with the updates it causes."""
        self.store.put_report(cluster, body, self.clock())
        self.metrics.reports.labels(cluster).inc()
        first = self.streams.mark_reported(cluster)
        if (
            first
            or self._last_report.get(cluster) != body
            or self._last_states.get(cluster) != "Ready"
        ):
            self._last_report[cluster] = body
            self.recompute(trace)

    def recompute(self, trace: ChangeTrace | None = None) -> None:
        """Recompute every import and queue the updates that changed (carrying ``trace``,
        the change that caused the recompute, stamped with when they were queued). The
        stored state is read in one transaction (:meth:`SqlStore.reading`)."""
        with self.store.reading():
            view = self._view()
        if trace is not None:
            trace = replace(trace, sent_at=time.time())
            self.metrics.propagation.observe(trace.sent_at - trace.received_at)
        for cluster in self.streams.ready():
            update = view.update_for(cluster)
            version = self.streams.send(cluster, update, trace)
            if version is not None:
                self.metrics.updates.labels(cluster).inc()
                log.info("update v%d to %s: %d imports", version, cluster, len(update.imports))

    def _view(self) -> FederationView:
        """The federation as the stored state has it now (imports recomputed, states
        updated, removed members' streams closed)."""
        clusters = self.store.clusters()
        states = self.states(clusters)
        for cluster, state in states.items():  # counted wherever the change is first seen
            if state == "Unreachable" and self._last_states.get(cluster) == "Ready":
                self.metrics.lease_expiries.labels(cluster).inc()
        self._last_states = states
        self.metrics.recomputations.inc()
        reports = self.store.reports()
        self.imports, self.exports = compute(
            clusters,
            states,
            reports,
            self.store.export_times(),
            self.store.clusterset_ips(),
        )
        self.imports, self._interned = intern_imports(self.imports, self._interned)
        records = {c.name: c for c in clusters}
        for cluster in self.streams.connected() - set(records):  # removed via another replica
            self.close_stream(cluster, f"cluster {cluster!r} was removed from the federation")
        self._last_bundle = self._bundle_pem()
        self._last_addresses = self.replica.sync_addresses()
        specs = federations(self.store)  # no federation: no query of their states
        federated = (
            bundles_in_force(specs, bundle_states(self.store), self.clock()) if specs else {}
        )
        self._root_crl_wanted = bool(federated)
        self._last_root_crl = self.root_crl() if federated else None
        if federated and self._last_root_crl is None:
            # without the roots' CRLs the proxies' SPIFFE validator would refuse every local
            # chain: trust no foreign domain rather than break the mesh (fail closed)
            log.error(
                "foreign trust domains %s not sent: no root CRL (%s)",
                ", ".join(federated),
                self.root_crl_problem(),
            )
            federated = {}
        return federation_view(
            imports=self.imports,
            export_statuses=self.exports,
            central=central_exports(self.store),
            policies=self.policies.read(),
            authz_default=self.authz_default,
            bundle=self._last_bundle,
            lease_s=self.lease_s,
            records=records,
            reports=reports,
            plans=self.plans(),
            addresses=self._last_addresses,
            federated_bundles=federated,
            root_crl=self._last_root_crl,
        )

    def changed_elsewhere(self) -> None:
        """Another replica committed a change (:meth:`watch_changes` recomputes)."""
        self._changes.set()

    async def watch_changes(self) -> None:
        """Recompute after changes other replicas made, until cancelled: at once for a change
        that follows a quiet spell, and at most once every :data:`RECOMPUTE_SPACING_S` in a
        burst (the changes that arrive meanwhile share the next one). It used to wait 20 ms
        before every recompute, which every change learned by NOTIFY paid."""
        last = -RECOMPUTE_SPACING_S
        while True:
            await self._changes.wait()
            pause = last + RECOMPUTE_SPACING_S - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            self._changes.clear()
            last = time.monotonic()
            if self.replica.healthy:
                try:
                    self.recompute()
                except Exception:  # the database went away: the next change or check retries
                    log.exception("recompute after another replica's change failed")

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
        """Recompute when a cluster's state changed (a lease expiry, counted by
        :meth:`recompute` in ``meshfed_controller_lease_expiries_total`` whichever call sees
        it first), when the trust bundle changed (a root
        rotation: every control plane gets the new bundle), when the live replicas changed,
        when the leader re-signed an intermediate (:meth:`resign_due`), or when the root CRLs
        sent with foreign bundles were renewed."""
        states = self.states()
        if states != self._last_states:
            changed = {k: v for k, v in states.items() if self._last_states.get(k) != v}
            log.info("cluster states changed: %s", changed)
            self.recompute()  # counts a lease expiry
        elif self._bundle_pem() != self._last_bundle:
            log.info("trust bundle changed: sending it to every control plane")
            self.resign_due()
            self.recompute()
        elif self.replica.sync_addresses() != self._last_addresses:
            log.info("controller replicas changed: %s", self.replica.sync_addresses())
            self.recompute()
        elif self.resign_due():
            self.recompute()
        elif self._root_crl_wanted and self.root_crl() != self._last_root_crl:
            log.info("root CRLs renewed: sending them to every control plane")
            self.recompute()
