"""Leader election between controller replicas sharing one PostgreSQL database (issue #19):
a lease row with a fencing number, Kuma's model (5 s lease, renewed every 1 s).

- **Acquire or renew** (:meth:`LeaderElector.campaign`): one ``UPDATE ... RETURNING`` of the
  single ``leader_lease`` row, judged by the database's clock (``now()``), so replicas'
  clocks never have to agree. The holder renews; anyone takes an expired lease; each new
  term (a new holder, or the old one after its lease lapsed) increments ``fencing``.
- **Stop before anyone can take over**: a replica counts its lease from its own monotonic
  clock *before* it sent the renewal, minus :data:`SAFETY_S`, so the moment it stops acting
  as leader (:attr:`LeaderElector.is_leader`) comes before the database's expiry, whatever
  the network delay -- a replica cut off from the database stops in time.
- **Fenced writes** (:func:`check_fencing`): work only the leader may do checks, inside its
  own transaction, that the lease row still names this holder, this fencing number and an
  unexpired lease (``FOR SHARE``: a takeover waits for the write to commit); a deposed
  leader's late write is refused whole (:class:`NotLeaderError`).

Advisory locks were the alternative: they end with the session that holds them, but a
replica does not learn that its session died until its next query, so it cannot know when
to stop -- the lease's explicit expiry gives it that bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg

from federation.controller.store import Db, StoreError

log = logging.getLogger(__name__)

#: The lease (s) and the renewal interval (s).
LEASE_S = 5.0
RENEW_S = 1.0
#: Taken off the lease a replica counts locally (s): clock drift and scheduling slack.
SAFETY_S = 0.5

_CAMPAIGN = (
    "UPDATE leader_lease SET"
    " fencing = CASE WHEN holder = %(me)s AND expires_at > now() THEN fencing"
    " ELSE fencing + 1 END,"
    " holder = %(me)s, expires_at = now() + make_interval(secs => %(lease)s)"
    " WHERE id = 1 AND (holder = %(me)s OR expires_at <= now())"
    " RETURNING fencing"
)


class NotLeaderError(StoreError):
    """A write only the leader may make came from a replica that is not (or no longer) the
    leader; nothing was written."""

    retryable = True


@dataclass(frozen=True, slots=True)
class Term:
    """A leadership term: ``fencing`` number and the local monotonic time (s) until which
    this replica may act on it."""

    fencing: int
    until: float


class LeaderElector:
    """One replica's side of the election (see the module docstring).

    Args:
        connect: a connection to the shared database, as a context manager (a pool's
            :meth:`~federation.controller.pgstore.PostgresStore.connection`).
        me: this replica's name (unique among the replicas; shown as the holder).
        lease_s / safety_s: see :data:`LEASE_S`, :data:`SAFETY_S`.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
        me: str,
        *,
        lease_s: float = LEASE_S,
        safety_s: float = SAFETY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= safety_s < lease_s:
            raise ValueError(f"safety {safety_s} s must be less than the lease {lease_s} s")
        self._connect = connect
        self.me = me
        self.lease_s = lease_s
        self.safety_s = safety_s
        self.clock = clock
        self.term: Term | None = None

    @property
    def is_leader(self) -> bool:
        """True while this replica's term lasts by its own clock."""
        return self.term is not None and self.clock() < self.term.until

    @property
    def fencing(self) -> int | None:
        """The fencing number of the current term, None when not leader."""
        return self.term.fencing if self.is_leader and self.term is not None else None

    def campaign(self) -> bool:
        """Acquire or renew the lease once; returns :attr:`is_leader` afterwards. A
        database error leaves the term to run out on its own (never extends it)."""
        sent = self.clock()
        try:
            with self._connect() as conn, conn.transaction():
                row = conn.execute(_CAMPAIGN, {"me": self.me, "lease": self.lease_s}).fetchone()
        except psycopg.Error as err:
            log.warning("leader lease: %s", err.__class__.__name__)
            return self.is_leader
        if row is None:
            if self.term is not None:
                log.info("%s: lost the leader lease", self.me)
            self.term = None
            return False
        fencing = int(row[0])
        if self.term is None or self.term.fencing != fencing:
            log.info("%s: leader, fencing number %d", self.me, fencing)
        self.term = Term(fencing, sent + self.lease_s - self.safety_s)
        return self.is_leader


def check_fencing(db: Db, me: str, fencing: int) -> None:
    """Inside a write transaction: refuse it unless ``me`` still holds the lease of term
    ``fencing`` (by the database's clock).

    Raises:
        NotLeaderError: another replica's term, or the lease expired.
    """
    row = db.execute(
        "SELECT 1 FROM leader_lease WHERE id = 1 AND holder = ? AND fencing = ?"
        " AND expires_at > now() FOR SHARE",
        (me, fencing),
    ).fetchone()
    if row is None:
        raise NotLeaderError(f"{me} is not the leader of term {fencing} any more")
