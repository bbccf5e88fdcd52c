"""The controller's state in PostgreSQL (issue #19): the SQL of
:class:`federation.controller.store.SqlStore` through psycopg 3 and a connection pool
(``psycopg_pool``), for controllers that outgrow one host.

Schema: versioned migrations kept in ``federation/controller/migrations/postgresql/NNNN_*.sql``,
applied on start, each once and in its own transaction, recorded in ``schema_migrations``;
start-up holds a transaction-scoped advisory lock, so replicas that start together apply
them once. A database whose ``schema_migrations`` names a version this code does not know
(a newer meshfed) is refused, and so is a database that holds meshfed's tables without it.

Connection strings are libpq's (``postgresql://user@host:5432/db?sslmode=require`` or
``host=... dbname=...``); passwords belong in ``~/.pgpass`` or ``PGPASSWORD``, and no
connection string is ever logged.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from importlib import resources
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from federation.controller.leader import check_fencing
from federation.controller.store import Cursor, Db, SqlStore, StoreError

log = logging.getLogger(__name__)

#: Seconds to wait for a connection (at start and from the pool).
CONNECT_TIMEOUT_S = 5.0
#: Seconds a statement waits for a pooled connection (the pool reconnects meanwhile); short,
#: as statements run on the event loop.
STATEMENT_WAIT_S = 1.0
#: The channel of ``NOTIFY`` on every change a control plane would be sent
#: (:mod:`federation.controller.replicas` listens on it).
CHANGES_CHANNEL = "meshfed_state"
#: libpq's TCP settings: a connection whose sent data stays unacknowledged for this long
#: (ms; a network partition) fails instead of hanging, and idle ones are probed.
TCP_SETTINGS: dict[str, Any] = {
    "tcp_user_timeout": 5000,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
}
#: Key of the advisory lock held while migrations are applied (``hashtext('meshfed')``-like).
MIGRATION_LOCK = 0x6D657368
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class UnreachableStoreError(StoreError):
    """PostgreSQL could not be reached (retryable)."""

    retryable = True


def migrations() -> list[tuple[int, str, str]]:
    """``(version, file name, SQL)`` of every migration shipped, by version."""
    folder = resources.files("federation.controller") / "migrations" / "postgresql"
    out = []
    for entry in folder.iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text()))
    return sorted(out)


def parse_dsn(dsn: str) -> dict[str, Any]:
    """The parts of a libpq connection string.

    Raises:
        StoreError: it does not parse (the message never repeats the string: it may hold a
            password).
    """
    try:
        parts = pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as err:
        reason = str(err).splitlines()[0] if str(err) else "invalid"
        raise StoreError(f"--store: not a PostgreSQL connection string ({reason})") from err
    for port in str(parts.get("port", "")).split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise StoreError(
                f"--store: not a PostgreSQL connection string (port {port!r} is not a number"
                " from 1 to 65535)"
            )
    return parts


def describe(dsn: str) -> str:
    """``postgresql://user@host:port/db`` without the password (for logs and messages)."""
    parts = parse_dsn(dsn)
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class _Db:
    """A psycopg connection with ``?`` placeholders (the SQL of :class:`SqlStore`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(sql.replace("?", "%s"), tuple(params))


class PostgresStore(SqlStore):
    """:class:`~federation.controller.store.ControllerStore` on PostgreSQL (see the module
    docstring). Every write is one transaction (READ COMMITTED; the join token row is
    locked ``FOR UPDATE`` while it is used, so two replicas cannot both use one token).

    Raises (from the constructor):
        StoreError: the connection string does not parse; the database's schema is another
            meshfed's or not meshfed's (exit 2: change the input).
        UnreachableStoreError: no connection within :data:`CONNECT_TIMEOUT_S` (exit 1).
    """

    _integrity_errors = (psycopg.errors.UniqueViolation,)
    _lock_row = " FOR UPDATE"
    _lock_table = "LOCK TABLE clusterset_ips IN SHARE ROW EXCLUSIVE MODE"

    def __init__(self, dsn: str, *, max_connections: int = 4) -> None:
        self.where = describe(dsn)  # parses it: StoreError before any connection
        self.dsn = dsn
        #: The payload of this store's change notifications (the replica's name).
        self.notify_as = ""
        self._down: str | None = None  # why the last statement found PostgreSQL unreachable
        self._shared_read = threading.local()  # .db: the transaction of :meth:`reading`
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            timeout=CONNECT_TIMEOUT_S,
            kwargs={
                "connect_timeout": int(CONNECT_TIMEOUT_S),
                "application_name": "meshfed",
                **TCP_SETTINGS,
            },
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout as err:
            self._pool.close()
            raise UnreachableStoreError(
                f"{self.where}: no connection within {CONNECT_TIMEOUT_S:g} s"
            ) from err
        try:
            self.schema_version = self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _migrate(self) -> int:
        """Apply the shipped migrations the database lacks; returns its schema version."""
        shipped = migrations()
        known = {v for v, _, _ in shipped}
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            has_table = conn.execute(
                "SELECT to_regclass('schema_migrations') IS NOT NULL"
            ).fetchone()
            if not (has_table and has_table[0]):
                tables = conn.execute("SELECT to_regclass('clusters') IS NOT NULL").fetchone()
                if tables and tables[0]:
                    raise StoreError(
                        f"{self.where}: has a 'clusters' table but no schema_migrations:"
                        " not a meshfed database (use an empty database)"
                    )
                conn.execute(
                    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                    " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
            applied = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
            unknown = sorted(applied - known)
            if unknown:
                raise StoreError(
                    f"{self.where}: schema version {unknown[-1]} is newer than this meshfed's"
                    f" ({max(known)}): upgrade meshfed"
                )
            for version, name, sql in shipped:
                if version in applied:
                    continue
                conn.execute(sql.encode())  # shipped files, not input
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )
                log.info("%s: applied migration %s", self.where, name)
        return max(known)

    @contextmanager
    def _tx(self) -> Iterator[Db]:
        """One transaction. Once a statement found PostgreSQL unreachable, every later one
        fails at once (no wait for the pool) until :meth:`mark_reachable`: callers on the
        event loop are never held up for a whole connect timeout per call."""
        if self._down is not None:
            raise UnreachableStoreError(f"{self.where}: {self._down}")
        try:
            with self._pool.connection(timeout=STATEMENT_WAIT_S) as conn, conn.transaction():
                yield _Db(conn)
        except PoolTimeout as err:
            self._down = "no connection"
            raise UnreachableStoreError(f"{self.where}: no connection") from err
        except psycopg.OperationalError as err:
            if err.sqlstate is not None and not err.sqlstate.startswith("08"):
                raise  # e.g. a serialization failure: the server answered
            self._down = str(err).splitlines()[0] if str(err) else "connection lost"
            raise UnreachableStoreError(f"{self.where}: {self._down}") from err

    # -- shared with other replicas: traffic tables and routing plans ------------------------

    def put_traffic(self, cluster: str, body: str) -> None:
        """Keep a cluster's latest traffic table (JSON) for the other replicas."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO traffic VALUES (?, ?, now(), nextval('traffic_seq'))"
                " ON CONFLICT (cluster) DO UPDATE SET body = excluded.body,"
                " received_at = excluded.received_at, seq = excluded.seq",
                (cluster, body),
            )

    def traffic_since(self, seq: int) -> list[tuple[str, str, float, int]]:
        """``(cluster, body, age in s by the database's clock, seq)`` of the tables written
        after ``seq``, oldest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT cluster, body, extract(epoch FROM now() - received_at), seq"
                " FROM traffic WHERE seq > ? ORDER BY seq",
                (seq,),
            ).fetchall()
        return [(str(c), str(b), float(a), int(n)) for c, b, a, n in rows]

    def put_plans(self, body: str, fence: tuple[str, int]) -> None:
        """Publish the routing plans (JSON) as the leader of term ``fence``.

        Raises:
            federation.controller.leader.NotLeaderError: not that term's leader any more.
        """
        with self.leader_tx(*fence) as db:
            db.execute(
                "INSERT INTO routing_plans VALUES (1, ?, ?, now()) ON CONFLICT (id) DO UPDATE"
                " SET body = excluded.body, fencing = excluded.fencing,"
                " written_at = excluded.written_at",
                (body, fence[1]),
            )
            self._changed(db)

    def plans_body(self) -> str | None:
        """The routing plans the leader last published (JSON), None before any."""
        with self._read() as db:
            row = db.execute("SELECT body FROM routing_plans WHERE id = 1").fetchone()
        return str(row[0]) if row else None

    def mark_reachable(self) -> None:
        """PostgreSQL answered again (a successful renewal of the replica, which waits for
        the pool on a thread of its own): statements go to it again."""
        self._down = None

    def _read(self) -> AbstractContextManager[Db]:
        shared: Db | None = getattr(self._shared_read, "db", None)
        return nullcontext(shared) if shared is not None else self._tx()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """The reads of this thread inside share one transaction: a recompute reads ten
        tables, and each read in a transaction of its own was three round trips to the
        server (BEGIN, the statement, COMMIT), with the event loop waiting on every one.
        Nested: the outermost one holds the transaction. Writes inside still commit on
        their own (another connection)."""
        if getattr(self._shared_read, "db", None) is not None:
            yield
            return
        with self._tx() as db:
            self._shared_read.db = db
            try:
                yield
            finally:
                self._shared_read.db = None

    def _changed(self, db: Db) -> None:
        db.execute(f"SELECT pg_notify('{CHANGES_CHANNEL}', ?)", (self.notify_as,))

    def _leader_tx(self, fence: tuple[str, int] | None) -> AbstractContextManager[Db]:
        return self._tx() if fence is None else self.leader_tx(*fence)

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A connection of the pool (returned to it on exit)."""
        return self._pool.connection()

    @contextmanager
    def leader_tx(self, me: str, fencing: int) -> Iterator[Db]:
        """A write transaction only the leader of term ``fencing`` may commit
        (:func:`federation.controller.leader.check_fencing` first).

        Raises:
            NotLeaderError: ``me`` no longer holds that term; nothing is written.
        """
        with self._tx() as db:
            check_fencing(db, me, fencing)
            yield db

    def close(self) -> None:
        """Close every connection of the pool."""
        self._pool.close()
