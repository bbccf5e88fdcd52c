"""Leader election between controller replicas on a real PostgreSQL (issue #19): one leader
at a time; a leader that can no longer renew stops acting before another can take over;
each new term has a higher fencing number; a deposed leader's writes are refused whole."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import psycopg
import pytest

from federation.controller.leader import LeaderElector, NotLeaderError
from federation.controller.pgstore import PostgresStore

LEASE_S, SAFETY_S = 2.0, 0.3


@pytest.fixture
def replicas(postgres_dsn) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    a, b = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    yield a, b
    a.close()
    b.close()


def _elector(store: PostgresStore, name: str) -> LeaderElector:
    return LeaderElector(store.connection, name, lease_s=LEASE_S, safety_s=SAFETY_S)


def test_one_leader_renews_its_term_and_the_other_waits(replicas) -> None:
    a, b = (_elector(s, n) for s, n in zip(replicas, ("a", "b"), strict=True))
    assert a.campaign() and a.fencing == 1
    assert not b.campaign() and b.fencing is None
    assert a.campaign() and a.fencing == 1  # a renewal keeps the term


def test_a_leader_that_cannot_renew_stops_before_anyone_takes_over(replicas) -> None:
    """``a`` is cut off (it renews no more): by its own clock it stops acting at least
    SAFETY_S before the database lets ``b`` take the lease with the next fencing number;
    then ``a``'s late write is refused and nothing of it is stored, ``b``'s goes in."""
    store_a, store_b = replicas
    a, b = _elector(store_a, "a"), _elector(store_b, "b")
    assert a.campaign()
    old = a.fencing
    assert old is not None
    deadline = time.monotonic() + 3 * LEASE_S
    while not b.campaign():  # bounded: 3 leases
        assert time.monotonic() < deadline, "b never became leader"
        time.sleep(0.05)
    took_over = time.monotonic()
    assert a.term is not None and a.term.until <= took_over - SAFETY_S + 0.05
    assert not a.is_leader
    assert b.fencing == old + 1
    key = ("TrafficPolicy", "demo", "late", "")
    with pytest.raises(NotLeaderError), store_a.leader_tx("a", old) as db:
        db.execute("INSERT INTO documents VALUES (?,?,?,?,?,?)", (*key, "{}", 1.0))
    assert store_a.documents("TrafficPolicy") == []
    with store_b.leader_tx("b", old + 1) as db:
        db.execute("INSERT INTO documents VALUES (?,?,?,?,?,?)", (*key, "{}", 1.0))
    assert store_a.documents("TrafficPolicy") == [{}]
    assert not a.campaign() and a.term is None  # a learns it lost


def test_a_database_error_never_extends_a_term(replicas) -> None:
    store_a, _ = replicas
    a = _elector(store_a, "a")
    assert a.campaign()
    until = a.term.until if a.term else 0.0

    @contextlib.contextmanager
    def unreachable() -> Iterator[psycopg.Connection]:
        raise psycopg.OperationalError("connection refused")
        yield  # pragma: no cover

    cut = LeaderElector(unreachable, "a", lease_s=LEASE_S, safety_s=SAFETY_S)
    cut.term = a.term
    assert cut.campaign()  # still within its term
    assert cut.term is not None and cut.term.until == until
    while cut.is_leader:  # bounded: the term's remaining time
        time.sleep(0.05)
    assert not cut.campaign()
