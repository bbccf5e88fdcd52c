"""A controller among replicas sharing one PostgreSQL database (issue #19).

Every replica serves the REST API and sync streams and writes through the database, so any
replica can take any request. What a replica knows of the others:

- **Changes** (:meth:`PostgresReplica.listen`): every write that changes what a control plane
  is sent ends with ``NOTIFY meshfed_state, '<replica>'`` in its own transaction
  (:data:`federation.controller.pgstore.CHANGES_CHANNEL`), delivered when it commits; the
  other replicas ``LISTEN`` and recompute the views of the control planes they serve. After
  the listening connection is (re)opened a replica recomputes once, so a notification lost
  while it was down changes nothing.
- **Leadership and liveness** (:meth:`PostgresReplica.renew`, every
  :data:`~federation.controller.leader.RENEW_S` on its own thread, so a hung connection never
  holds up the event loop): the leader lease (:class:`~federation.controller.leader.LeaderElector`)
  and this replica's row in ``replicas`` (API URL, sync address, the database's ``now()``).
  Work that must happen once -- re-signing intermediates and cost planning -- is done by the
  leader only, its writes fenced by its term.
- **Traffic and plans**: each traffic table a control plane sends is stored (``traffic``, one
  row per cluster) and every replica reads the new ones every second, so the leader plans
  on the whole federation's demand and any replica's ``/v1/traffic`` shows it; the leader
  publishes its routing plans (``routing_plans``, fenced) and the other replicas send them
  to the control planes they serve.
- **Health**: a replica whose last successful renewal is older than the lease minus the safety
  margin (the same bound after which it stops acting as leader) is *cut off*: it answers
  503 on its API, ends its sync streams and refuses new ones, so control planes and the CLI
  move to another replica (they know every replica's address: :meth:`sync_addresses`).

:class:`federation.controller.roles.SoleReplica` is the single controller on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from federation.controller.leader import (
    LEASE_S,
    RENEW_S,
    SAFETY_S,
    LeaderElector,
    NotLeaderError,
)
from federation.controller.pgstore import CHANGES_CHANNEL, TCP_SETTINGS, PostgresStore
from federation.errors import InvalidDocumentError
from federation.sync.convert import (
    plans_from_json,
    plans_to_json,
    traffic_from_json,
    traffic_to_json,
)
from federation.sync.messages import RoutingPlan
from federation.traffic import TrafficTable

log = logging.getLogger(__name__)

#: A replica whose row was not renewed for this many leases is not listed as live.
LIVE_LEASES = 3


class PostgresReplica:
    """One replica on a shared PostgreSQL (see the module docstring).

    Args:
        store: the replica's store (its pool also runs the election).
        name: unique among the replicas (``meshfed controller serve --replica-name``).
        api_url / sync_address: return where this replica serves (known once it listens).
        lease_s / renew_s / safety_s: see :mod:`federation.controller.leader`.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        store: PostgresStore,
        name: str,
        api_url: Callable[[], str],
        sync_address: Callable[[], str],
        *,
        lease_s: float = LEASE_S,
        renew_s: float = RENEW_S,
        safety_s: float = SAFETY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.store = store
        self._api_url = api_url
        self._sync_address = sync_address
        self.renew_s = renew_s
        self.elector = LeaderElector(
            store.connection, name, lease_s=lease_s, safety_s=safety_s, clock=clock
        )
        self.clock = clock
        self._last_ok: float | None = None
        self._live: list[dict[str, Any]] = []
        self._holder = ""
        self._fencing: int | None = None
        self._traffic_seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        """This replica holds the lease now (by its own clock)."""
        return self.elector.is_leader

    @property
    def fence(self) -> tuple[str, int] | None:
        """``(name, fencing number)`` of this replica's term; None when not leader."""
        fencing = self.elector.fencing
        return None if fencing is None else (self.name, fencing)

    @property
    def healthy(self) -> bool:
        """The last renewal succeeded within the lease minus the safety margin."""
        bound = self.elector.lease_s - self.elector.safety_s
        return self._last_ok is not None and self.clock() - self._last_ok < bound

    def sync_addresses(self) -> list[str]:
        """Sync addresses of the live replicas, this one first."""
        own = self._sync_address()
        return [own] + [r["syncAddress"] for r in self._live if r["syncAddress"] != own]

    def describe(self) -> dict[str, Any]:
        """``GET /v1/replicas``: this replica, the leader and its fencing number as of the
        last renewal (None: the lease is free), and every live replica (renewed within
        :data:`LIVE_LEASES` leases)."""
        return {
            "replica": self.name,
            "leader": self._holder or None,
            "fencing": self._fencing,
            "replicas": list(self._live),
        }

    def renew(self) -> bool:
        """One renewal: campaign, upsert this replica's row and read the others'; True when
        the database answered (the time it was sent then counts for :attr:`healthy`)."""
        sent = self.clock()
        self.elector.campaign()
        try:
            with self.store.connection() as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO replicas VALUES (%s, %s, %s, now()) ON CONFLICT (name)"
                    " DO UPDATE SET api_url = excluded.api_url,"
                    " sync_address = excluded.sync_address, seen_at = now()",
                    (self.name, self._api_url(), self._sync_address()),
                )
                rows = conn.execute(
                    "SELECT name, api_url, sync_address,"
                    " seen_at > now() - make_interval(secs => %s)"
                    " FROM replicas ORDER BY name",
                    (LIVE_LEASES * self.elector.lease_s,),
                ).fetchall()
                holder = conn.execute(
                    "SELECT holder, fencing FROM leader_lease WHERE id = 1 AND expires_at > now()"
                ).fetchone()
        except psycopg.Error as err:
            log.warning("%s: renewal failed: %s", self.name, err.__class__.__name__)
            return False
        self._live = [
            {"name": n, "apiUrl": a, "syncAddress": s, "live": bool(live)}
            for n, a, s, live in rows
            if live
        ]
        self._holder, self._fencing = (str(holder[0]), int(holder[1])) if holder else ("", None)
        self._last_ok = sent
        self.store.mark_reachable()
        return True

    def start(self) -> None:
        """Renew every ``renew_s`` on a thread of its own until :meth:`stop`; the first
        renewal happens before this returns (so a replica starts knowing the others)."""
        self.renew()

        def loop() -> None:
            while not self._stop.wait(self.renew_s):
                self.renew()

        self._thread = threading.Thread(target=loop, name=f"replica-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and give up the lease at once if held (a clean stop; the next
        leader need not wait for it to expire)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.elector.is_leader:
            try:
                with self.store.connection() as conn, conn.transaction():
                    conn.execute(
                        "UPDATE leader_lease SET expires_at = now() WHERE id = 1 AND holder = %s",
                        (self.name,),
                    )
            except psycopg.Error as err:
                log.warning("%s: could not give up the lease: %s", self.name, err)

    def share_traffic(self, cluster: str, table: TrafficTable) -> None:
        """Store a traffic table a control plane sent this replica, for the others (the
        leader plans on every cluster's traffic; any replica's ``/v1/traffic`` shows it)."""
        self.store.put_traffic(cluster, traffic_to_json(table))

    def shared_traffic(
        self, skip: frozenset[str] = frozenset()
    ) -> list[tuple[str, TrafficTable, float]]:
        """``(cluster, table, age in s)`` of the tables stored since the last call, but for
        the clusters in ``skip`` (whose streams this replica holds: it has their tables)."""
        out = []
        for cluster, body, age, seq in self.store.traffic_since(self._traffic_seq):
            self._traffic_seq = max(self._traffic_seq, seq)
            if cluster in skip:
                continue
            try:
                out.append((cluster, traffic_from_json(cluster, body), age))
            except InvalidDocumentError as err:  # another meshfed version's: left out
                log.warning("%s", err)
        return out

    def publish_plans(self, plans: dict[str, list[RoutingPlan]]) -> None:
        """Publish the leader's routing plans (fenced: refused once deposed)."""
        fence = self.fence
        if fence is None:
            raise NotLeaderError(f"{self.name} is not the leader")
        self.store.put_plans(plans_to_json(plans), fence)

    def shared_plans(self) -> dict[str, list[RoutingPlan]] | None:
        """The plans the leader last published ({} before any; invalid ones left out)."""
        body = self.store.plans_body()
        if body is None:
            return {}
        try:
            return plans_from_json(body)
        except InvalidDocumentError as err:
            log.error("%s", err)
            return {}

    async def listen(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` for every change another replica commits, and once each time
        the listening connection opens; reconnects every second while PostgreSQL is away.
        Runs until cancelled."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.store.dsn,
                    autocommit=True,
                    connect_timeout=5,
                    application_name=f"meshfed-listen-{self.name}",
                    **TCP_SETTINGS,
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    on_change()
                    async for note in conn.notifies():
                        if note.payload != self.name:
                            on_change()
            except psycopg.Error as err:
                log.warning("%s: change notifications: %s", self.name, err.__class__.__name__)
            await asyncio.sleep(1.0)
