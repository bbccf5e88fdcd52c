"""The controller's state store contract, on SQLite and on a real PostgreSQL server (issue
#19): the same calls give the same answers on both; writes are all or nothing; a join token
is used once even by two replicas at the same moment; PostgreSQL's schema is migrated once
and refused when it is another's; bad connection strings and unreachable servers are named
without echoing secrets."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from federation.controller.pgstore import (
    PostgresStore,
    UnreachableStoreError,
    describe,
    migrations,
)
from federation.controller.store import ClusterRecord, SqliteStore, SqlStore, StoreError
from federation.errors import NotFoundError
from federation.netaddr import free_port
from federation.sync.join_token import token_digest
from federation.sync.messages import ClusterReport
from federation.traffic_days import DayCounts
from tests.integration.harness import MESHFED, ControllerHandle, meshfed_env, run_meshfed

Opener = Callable[[], SqlStore]


def _record(name: str = "east") -> ClusterRecord:
    return ClusterRecord(name, "aws/us-east-1", "net", "127.0.1.1:15443", "local", 0.0)


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same store again and again (closing what it opened afterwards)."""
    opened: list[SqlStore] = []
    if request.param == "sqlite":
        target: str | Path = tmp_path / "controller.db"
    else:
        target = request.getfixturevalue("postgres_dsn")

    def open_store() -> SqlStore:
        store: SqlStore = SqliteStore(target) if isinstance(target, Path) else PostgresStore(target)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


def test_state_survives_reopen_and_tokens_are_single_use(opener: Opener, tmp_path) -> None:
    store = opener()
    if isinstance(store, SqliteStore):
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    store.add_cluster(_record(), token_digest("t1"), token_expires_at=50.0)
    with pytest.raises(StoreError, match="already a member"):
        store.add_cluster(_record(), token_digest("t2"), token_expires_at=50.0)
    with pytest.raises(StoreError, match="unknown"):
        store.join(token_digest("nope"), "east", "PEM", now=1.0)
    with pytest.raises(StoreError, match="unknown"):
        store.join(token_digest("t1"), "west", "PEM", now=1.0)
    with pytest.raises(StoreError, match="expired"):
        store.join(token_digest("t1"), "east", "PEM", now=51.0)
    store.check_token(token_digest("t1"), "east", now=2.0)
    store.join(token_digest("t1"), "east", "PEM", now=2.0)
    with pytest.raises(StoreError, match="already used"):
        store.join(token_digest("t1"), "east", "PEM", now=3.0)
    store.put_report("east", ClusterReport(cluster="east", exports=["demo/echo"]), now=4.0)
    store.put_documents(
        [(("ServiceExport", "demo", "echo", "east"), {"kind": "ServiceExport"})], 5.0
    )
    store.close()

    again = opener()
    record = again.cluster("east")
    assert (record.joined_at, record.last_heartbeat, record.intermediate_pem) == (2.0, 4.0, "PEM")
    assert again.export_times() == {("east", "demo", "echo"): 4.0}
    assert again.documents("ServiceExport") == [{"kind": "ServiceExport"}]
    assert again.reports()["east"].export_keys() == [("demo", "echo")]
    # a later report keeps the first-seen time; dropping the export forgets it
    again.put_report("east", ClusterReport(cluster="east", exports=["demo/echo"]), now=9.0)
    assert again.export_times()[("east", "demo", "echo")] == 4.0
    again.put_report("east", ClusterReport(cluster="east"), now=10.0)
    assert again.export_times() == {}
    again.set_intermediate("east", "PEM2")
    again.new_token("east", token_digest("t3"), 99.0)
    again.heartbeat("east", 11.0)
    assert (again.cluster("east").intermediate_pem, again.cluster("east").last_heartbeat) == (
        "PEM2",
        11.0,
    )
    again.remove_cluster("east")
    assert again.clusters() == [] and again.documents("ServiceExport") == []
    with pytest.raises(NotFoundError):
        again.remove_cluster("east")
    with pytest.raises(NotFoundError):
        again.cluster("east")


def test_documents_keep_their_first_creation_time_and_order(opener: Opener) -> None:
    store = opener()
    a, b = ("TrafficPolicy", "demo", "a", ""), ("TrafficPolicy", "demo", "b", "")
    store.put_documents([(b, {"v": 1})], 1.0)
    store.put_documents([(a, {"v": 1})], 2.0)
    store.put_documents([(b, {"v": 2})], 3.0)  # replaced: still the oldest
    assert store.documents("TrafficPolicy") == [{"v": 2}, {"v": 1}]
    assert store.delete_documents([a, ("TrafficPolicy", "demo", "nope", "")]) == [a]


def test_a_failed_write_changes_nothing(opener: Opener) -> None:
    store = opener()
    key = ("ServiceExport", "demo", "a", "east")
    with pytest.raises(TypeError):  # the second body cannot be stored: the first is rolled back
        store.put_documents([(key, {"ok": 1}), (("X", "d", "b", ""), {"bad": object()})], 1.0)
    assert store.documents("ServiceExport") == []


def test_the_traffic_ledger_adds_what_counters_gained_per_day_across_reopen(opener) -> None:
    """Cumulative counters become daily increments; the mark survives a reopen (a restarted
    controller counts nothing twice), and counters of a new start count whole."""
    key = ("east", "aws/us-east-1/us-east-1a", "echo.demo", "west", "aws/us-west-2/us-west-2a",
           "cross-region")  # fmt: skip
    day1, day2 = 1_764_979_200.0, 1_765_065_600.0  # 2025-12-06 and -07, 00:00 UTC
    store = opener()
    assert store.record_traffic("east", 10.0, {key: DayCounts(10, 1000, 5000, 0.5)}, day1) == 1
    assert store.record_traffic("east", 10.0, {key: DayCounts(10, 1000, 5000, 0.5)}, day1 + 5) == 0
    store.close()
    store = opener()
    store.record_traffic("east", 10.0, {key: DayCounts(25, 2500, 12500, 1.25)}, day1 + 60)
    store.record_traffic("east", 10.0, {key: DayCounts(30, 3000, 15000, 1.5)}, day2 + 1)
    store.record_traffic("east", 99.0, {key: DayCounts(2, 200, 1000, 0.1)}, day2 + 60)
    rows = store.traffic_days("2025-12-06", "2025-12-07")
    assert [(d, k) for d, k, _ in rows] == [("2025-12-06", key), ("2025-12-07", key)]
    assert rows[0][2] == DayCounts(25, 2500, 12500, 1.25)
    assert rows[1][2].requests == 7 and rows[1][2].response_bytes == 3500
    assert abs(rows[1][2].egress_usd - 0.35) < 1e-9
    assert store.traffic_days("2025-12-07", "2025-12-07") == rows[1:]


def test_two_replicas_using_one_join_token_at_once_only_one_joins(postgres_dsn) -> None:
    """The token row is locked while it is used: of two stores (two replicas) joining with
    the same token at the same moment, exactly one succeeds."""
    first, second = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    try:
        first.add_cluster(_record(), token_digest("once"), 100.0)
        results: list[str] = []
        barrier = threading.Barrier(2)

        def join(store: PostgresStore, pem: str) -> None:
            barrier.wait(timeout=10)
            try:
                store.join(token_digest("once"), "east", pem, now=1.0)
                results.append("joined")
            except StoreError as err:
                results.append(str(err))

        threads = [
            threading.Thread(target=join, args=(s, p)) for s, p in ((first, "A"), (second, "B"))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(results) == ["join token already used", "joined"]
    finally:
        first.close()
        second.close()


def test_reads_inside_reading_share_one_transaction_and_see_other_writes(postgres_dsn) -> None:
    """A recompute's reads go in one transaction (one BEGIN/COMMIT for all): inside
    ``reading()`` every read of the thread is in the same transaction (``now()`` is its start
    and does not move), still sees what another replica committed meanwhile (READ COMMITTED,
    as separate reads did), and after it each read is on its own again -- also after a read
    inside failed."""
    store, other = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)

    def started() -> object:
        with store._read() as db:
            row = db.execute("SELECT now()").fetchone()
        assert row is not None
        return row[0]

    try:
        with store.reading():
            first = started()
            other.add_cluster(_record("west"), token_digest("w"), 100.0)
            assert [c.name for c in store.clusters()] == ["west"]
            with store.reading():  # nested: the same transaction
                assert started() == first
            assert started() == first
        assert started() != first
        assert started() != started()
        with pytest.raises(psycopg.errors.UndefinedTable), store.reading():
            with store._read() as db:
                db.execute("SELECT * FROM no_such_table")
        assert [c.name for c in store.clusters()] == ["west"]  # not stuck in the failed one
    finally:
        store.close()
        other.close()


def test_postgresql_schema_is_migrated_once_and_another_schema_is_refused(postgres_dsn) -> None:
    PostgresStore(postgres_dsn).close()
    PostgresStore(postgres_dsn).close()  # a second start applies nothing again
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
        assert rows == [(v, name) for v, name, _ in migrations()]
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')")
    with pytest.raises(StoreError, match="schema version 9999 is newer"):
        PostgresStore(postgres_dsn)


def test_a_database_with_foreign_tables_is_refused_and_left_alone(postgres_dsn) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE clusters (id INTEGER)")
    with pytest.raises(StoreError, match="not a meshfed database"):
        PostgresStore(postgres_dsn)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


def test_bad_and_unreachable_connection_strings_are_named_without_secrets() -> None:
    for dsn in ("postgresql://u:s3cret@h:notaport/db", "postgresql://u:s3cret@h/db?bogus=1"):
        with pytest.raises(StoreError, match="not a PostgreSQL connection string") as bad:
            PostgresStore(dsn)
        assert "s3cret" not in str(bad.value) and not bad.value.retryable
    port = free_port()
    with pytest.raises(UnreachableStoreError, match="no connection within") as down:
        PostgresStore(f"postgresql://meshfed:s3cret@127.0.0.1:{port}/x?connect_timeout=1")
    assert "s3cret" not in str(down.value) and down.value.retryable
    assert describe("postgresql://u:pw@h:5/d") == "postgresql://u@h:5/d"


def test_a_controller_on_postgresql_keeps_its_members_across_a_restart(
    procs, tmp_path, postgres_dsn
) -> None:
    """``meshfed controller serve --store postgresql://...``: a cluster registered through
    the API is a row in PostgreSQL (no SQLite file), and a restarted controller (SIGKILL)
    serves it again."""
    home = tmp_path / "home"
    controller = ControllerHandle(procs, home, store=postgres_dsn)
    controller.start()
    run_meshfed(
        home, "cluster", "join", "east", "--locality", "aws/us-east-1",
        "--gateway", "127.0.1.1:15443", "-o", "json",
    )  # fmt: skip
    assert set(controller.clusters()) == {"east"}
    assert controller.proc is not None
    controller.proc.send_signal(signal.SIGKILL)
    controller.proc.wait(5)
    controller.start()
    assert controller.clusters()["east"]["state"] == "Pending"
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT name FROM clusters").fetchall() == [("east",)]
    assert not (home / "controller.db").exists()


def test_a_bad_or_unreachable_store_is_one_line_and_writes_nothing(tmp_path) -> None:
    """A connection string that does not parse: exit 2; an unreachable server: exit 1;
    either way one ``Error:`` line without the password, and no root of trust, token or
    state file created."""
    for store, code in (
        ("postgresql://u:s3cret@db:notaport/x", 2),
        (f"postgresql://u:s3cret@127.0.0.1:{free_port()}/x?connect_timeout=1", 1),
    ):
        home = tmp_path / f"home-{code}"
        done = subprocess.run(
            [MESHFED, "controller", "serve", "--store", store, "--listen", "127.0.0.1:0",
             "--sync-listen", "127.0.0.1:0"],
            env=meshfed_env(home), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == code, done.stderr
        lines = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
        assert len(lines) == 1 and "s3cret" not in done.stderr, done.stderr
        assert not home.exists() or not any(home.iterdir()), list(home.iterdir())


def test_migrate_copies_a_sqlite_state_into_postgresql_verified_and_idempotently(
    tmp_path, postgres_dsn
) -> None:
    home = tmp_path / "home"
    source = SqliteStore(home / "controller.db")
    source.add_cluster(_record(), token_digest("t"), 50.0)
    source.join(token_digest("t"), "east", "PEM", now=2.0)
    source.put_report("east", ClusterReport(cluster="east", exports=["demo/echo"]), now=3.0)
    source.put_documents([(("TrafficPolicy", "demo", "echo", ""), {"spec": {"x": 1}})], 4.0)
    key = ("east", "aws/us-east-1/us-east-1a", "echo.demo", "east", "aws/us-east-1/us-east-1b",
           "cross-zone")  # fmt: skip
    source.record_traffic("east", 1.0, {key: DayCounts(3, 300, 900, 0.000024)}, 5.0)
    source.close()
    for _ in range(2):  # the second run changes nothing and still verifies
        done = run_meshfed(home, "controller", "migrate", "--to", postgres_dsn, "-o", "json")
        data = json.loads(done.stdout)
        assert all(t["match"] for t in data["tables"]), data
        assert {t["table"]: t["rows"] for t in data["tables"]} == {
            "clusters": 1, "join_tokens": 1, "exports": 1, "clusterset_ips": 1, "reports": 1,
            "documents": 1, "traffic_days": 1, "traffic_marks": 1,
        }  # fmt: skip
    target = PostgresStore(postgres_dsn)
    try:
        assert target.cluster("east").intermediate_pem == "PEM"
        assert target.documents("TrafficPolicy") == [{"spec": {"x": 1}}]
        assert target.export_times() == {("east", "demo", "echo"): 3.0}
        assert target.traffic_days("1970-01-01", "1970-01-01")[0][2].egress_usd == 0.000024
    finally:
        target.close()
    missing = run_meshfed(
        tmp_path / "nobody", "controller", "migrate", "--to", postgres_dsn, check=False
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_two_replicas_exporting_at_once_give_each_service_one_clusterset_ip(postgres_dsn) -> None:
    """Issue #38: two controller replicas on one PostgreSQL record the reports of two clusters
    that export the same 60 services, at the same time: every service gets one ClusterSetIP,
    no two share one (the allocation holds a table lock), and both replicas read the same."""
    stores = [PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)]
    try:
        for i, name in enumerate(("east", "west")):
            stores[i].add_cluster(_record(name), token_digest(name), 1e12)
        exports = [f"demo/svc-{n}" for n in range(60)]
        errors: list[BaseException] = []

        def report(store: SqlStore, name: str) -> None:
            try:
                for k in range(1, len(exports) + 1):  # one more export per report
                    store.put_report(name, ClusterReport(cluster=name, exports=exports[:k]), k)
            except BaseException as err:
                errors.append(err)

        threads = [
            threading.Thread(target=report, args=(store, name))
            for store, name in zip(stores, ("east", "west"), strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        ips = stores[0].clusterset_ips()
        assert ips == stores[1].clusterset_ips()
        assert len(ips) == 60 and len(set(ips.values())) == 60
    finally:
        for store in stores:
            store.close()
