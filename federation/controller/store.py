"""The controller's state: one SQLite file (WAL, transactions, versioned schema) behind a small
interface, so PostgreSQL can be added for a replicated controller.

Tables: ``meta`` (schema version), ``clusters``, ``join_tokens`` (SHA-256 of each token, never
the token), ``exports`` (first time each cluster's export was seen: MCS conflict resolution is
"oldest wins"), ``clusterset_ips`` (each exported service's ClusterSetIP,
:mod:`federation.controller.clusterset_ips`; added to schema version 1 without a bump: an
older store gains the table when opened, and an older meshfed ignores it; so were
``traffic_days`` and ``traffic_marks``, the traffic ledger of :mod:`federation.traffic_days`),
``reports``
(each cluster's latest report, JSON) and ``documents`` (resources applied with
``meshfed apply``, JSON, keyed by :data:`DocumentKey`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from federation.controller.clusterset_ips import DEFAULT_RANGE, allocate, parse_range
from federation.errors import ConfigError, FederationError, NotFoundError
from federation.paths import meshfed_home
from federation.sync.messages import ClusterReport
from federation.traffic_days import (
    LEDGER_LABELS,
    DayCounts,
    LedgerKey,
    increments,
    mark_from_json,
    mark_to_json,
    utc_day,
)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clusters (
    name TEXT PRIMARY KEY, locality TEXT NOT NULL, network TEXT NOT NULL, gateway TEXT NOT NULL,
    provider TEXT NOT NULL, created_at REAL NOT NULL, joined_at REAL, last_heartbeat REAL,
    intermediate_pem TEXT);
CREATE TABLE IF NOT EXISTS join_tokens (
    token_sha256 TEXT PRIMARY KEY, cluster TEXT NOT NULL, expires_at REAL NOT NULL, used_at REAL);
CREATE TABLE IF NOT EXISTS exports (
    cluster TEXT NOT NULL, namespace TEXT NOT NULL, service TEXT NOT NULL, first_seen REAL NOT NULL,
    PRIMARY KEY (cluster, namespace, service));
CREATE TABLE IF NOT EXISTS clusterset_ips (
    namespace TEXT NOT NULL, service TEXT NOT NULL, ip TEXT NOT NULL UNIQUE,
    PRIMARY KEY (namespace, service));
CREATE TABLE IF NOT EXISTS reports (
    cluster TEXT PRIMARY KEY, body TEXT NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, cluster TEXT NOT NULL,
    body TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (kind, namespace, name, cluster));
CREATE TABLE IF NOT EXISTS traffic_days (
    day TEXT NOT NULL, source_cluster TEXT NOT NULL, source_locality TEXT NOT NULL,
    destination_service TEXT NOT NULL, destination_cluster TEXT NOT NULL,
    destination_locality TEXT NOT NULL, path_class TEXT NOT NULL, requests INTEGER NOT NULL,
    request_bytes INTEGER NOT NULL, response_bytes INTEGER NOT NULL, egress_usd REAL NOT NULL,
    PRIMARY KEY (day, source_cluster, source_locality, destination_service,
                 destination_cluster, destination_locality, path_class));
CREATE TABLE IF NOT EXISTS traffic_marks (
    cluster TEXT PRIMARY KEY, started_at REAL NOT NULL, body TEXT NOT NULL);
"""


#: ``(kind, namespace, name, cluster)``; cluster is ``""`` for documents not bound to one
#: cluster (a meshfed ServiceExport names the cluster that exports, so two clusters may export
#: the same ``namespace/name``).
DocumentKey = tuple[str, str, str, str]


class StoreError(FederationError):
    """The state store refused an operation (e.g. a duplicate cluster)."""


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """A member cluster as stored. ``last_heartbeat`` is seconds since the epoch or None."""

    name: str
    locality: str
    network: str
    gateway: str
    provider: str
    created_at: float
    joined_at: float | None = None
    last_heartbeat: float | None = None
    intermediate_pem: str | None = None


class ControllerStore(Protocol):
    """What the controller needs from its state store."""

    def add_cluster(
        self, record: ClusterRecord, token_sha256: str, token_expires_at: float
    ) -> None: ...
    def clusters(self) -> list[ClusterRecord]: ...
    def cluster(self, name: str) -> ClusterRecord: ...
    def remove_cluster(self, name: str) -> None: ...
    def check_token(self, token_sha256: str, cluster: str, now: float) -> None: ...
    def join(self, token_sha256: str, cluster: str, intermediate_pem: str, now: float) -> None: ...
    def new_token(self, cluster: str, token_sha256: str, expires_at: float) -> None: ...
    def set_intermediate(
        self, cluster: str, intermediate_pem: str, fence: tuple[str, int] | None = None
    ) -> None: ...
    def heartbeat(self, name: str, now: float) -> None: ...
    def put_report(self, name: str, report: ClusterReport, now: float) -> None: ...
    def reports(self) -> dict[str, ClusterReport]: ...
    def export_times(self) -> dict[tuple[str, str, str], float]: ...
    def clusterset_ips(self) -> dict[tuple[str, str], str]: ...

    clusterset_range: IPv4Network

    def put_documents(
        self, docs: Sequence[tuple[DocumentKey, dict[str, Any]]], now: float
    ) -> None: ...
    def delete_documents(self, keys: Sequence[DocumentKey]) -> list[DocumentKey]: ...
    def documents(self, kind: str) -> list[dict[str, Any]]: ...
    def reading(self) -> AbstractContextManager[None]: ...
    def document_texts(self, kinds: Sequence[str]) -> list[tuple[str, str]]: ...
    def stored_bodies(self, keys: Sequence[DocumentKey]) -> dict[DocumentKey, dict[str, Any]]: ...
    def record_traffic(
        self, cluster: str, started_at: float, current: dict[LedgerKey, DayCounts], now: float
    ) -> int: ...
    def traffic_days(self, since: str, until: str) -> list[tuple[str, LedgerKey, DayCounts]]: ...
    def close(self) -> None: ...


class Cursor(Protocol):
    """What the SQL of :class:`SqlStore` needs of a DB-API cursor."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """A connection inside a transaction: ``execute`` with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


#: Every table of the state, with its primary key columns, in a copy's order.
TABLES: dict[str, tuple[str, ...]] = {
    "clusters": ("name",),
    "join_tokens": ("token_sha256",),
    "exports": ("cluster", "namespace", "service"),
    "clusterset_ips": ("namespace", "service"),
    "reports": ("cluster",),
    "documents": ("kind", "namespace", "name", "cluster"),
    "traffic_days": ("day", *LEDGER_LABELS),
    "traffic_marks": ("cluster",),
}


class SqlStore:
    """:class:`ControllerStore` in SQL that SQLite and PostgreSQL both speak (``?``
    placeholders, ``INSERT ... ON CONFLICT``); subclasses give the connections:
    :meth:`_tx` (one transaction, committed on success, rolled back on an exception) and
    :meth:`_read` (a consistent read), and name their unique-violation exceptions."""

    #: The driver's exceptions for a primary key or unique violation.
    _integrity_errors: tuple[type[Exception], ...] = ()
    #: Appended to the SELECT of a row a transaction is about to change (PostgreSQL: FOR UPDATE).
    _lock_row = ""
    #: Run before allocating ClusterSetIPs, so two writers never pick one address
    #: (PostgreSQL: a table lock until the commit; SQLite's BEGIN IMMEDIATE already is one).
    _lock_table = ""
    #: Where ClusterSetIPs are allocated (``meshfed controller serve --clusterset-ip-range``).
    clusterset_range: IPv4Network = parse_range(DEFAULT_RANGE)

    def _tx(self) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def reading(self) -> AbstractContextManager[None]:
        """The reads of this thread inside share one transaction (PostgreSQL: one connection,
        one BEGIN and COMMIT for them all instead of each; SQLite reads its one connection
        anyway: nothing to share)."""
        return nullcontext()

    def _changed(self, db: Db) -> None:
        """Inside a write transaction that changed what a control plane is sent: tell the
        other replicas once it commits (PostgreSQL: ``NOTIFY``; SQLite has one replica)."""

    def close(self) -> None:
        """Release the connections."""

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of ``table`` (one of :data:`TABLES`), ordered by its primary key."""
        key = ", ".join(TABLES[table])
        with self._read() as db:
            return [
                tuple(r)
                for r in db.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()  # noqa: S608 - names from TABLES
            ]

    def copy_from(self, source: SqlStore) -> dict[str, int]:
        """Make this store's tables hold exactly ``source``'s rows, in one transaction
        (idempotent: a second copy changes nothing). Returns rows per table."""
        tables = {t: source.rows(t) for t in TABLES}
        with self._tx() as db:
            for table in reversed(TABLES):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - names from TABLES
            for table, rows in tables.items():
                for row in rows:
                    marks = ",".join("?" * len(row))
                    db.execute(f"INSERT INTO {table} VALUES ({marks})", row)  # noqa: S608
        return {t: len(r) for t, r in tables.items()}

    def add_cluster(
        self, record: ClusterRecord, token_sha256: str, token_expires_at: float
    ) -> None:
        """Register a cluster and its one-time join token (one transaction).

        Raises:
            StoreError: the cluster name is taken.
        """
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO clusters VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        record.name,
                        record.locality,
                        record.network,
                        record.gateway,
                        record.provider,
                        record.created_at,
                        None,
                        None,
                        None,
                    ),
                )
                db.execute(
                    "INSERT INTO join_tokens VALUES (?,?,?,NULL)",
                    (token_sha256, record.name, token_expires_at),
                )
                self._changed(db)
        except self._integrity_errors as err:
            raise StoreError(f"cluster {record.name!r} is already a member") from err

    def clusters(self) -> list[ClusterRecord]:
        """Every member, by name."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM clusters ORDER BY name").fetchall()
        return [ClusterRecord(*row) for row in rows]

    def cluster(self, name: str) -> ClusterRecord:
        """One member.

        Raises:
            NotFoundError: no such cluster.
        """
        with self._read() as db:
            row = db.execute("SELECT * FROM clusters WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"cluster {name!r} is not a member")
        return ClusterRecord(*row)

    def remove_cluster(self, name: str) -> None:
        """Remove a member with its tokens, report, exports and the documents bound to it.

        Raises:
            NotFoundError: no such cluster.
        """
        with self._tx() as db:
            if db.execute("DELETE FROM clusters WHERE name=?", (name,)).rowcount == 0:
                raise NotFoundError(f"cluster {name!r} is not a member")
            # traffic_days and traffic_marks stay: history, and a mark keeps a cluster that
            # rejoins with the same counters from being counted twice
            for table in ("join_tokens", "reports", "exports", "documents"):
                db.execute(f"DELETE FROM {table} WHERE cluster=?", (name,))  # noqa: S608 - fixed names
            self._changed(db)

    def _token_problem(self, db: Db, token_sha256: str, cluster: str, now: float) -> str:
        query = "SELECT cluster, expires_at, used_at FROM join_tokens WHERE token_sha256=?"
        row = db.execute(query + self._lock_row, (token_sha256,)).fetchone()
        if row is None or row[0] != cluster:
            return "unknown join token for this cluster"
        if row[2] is not None:
            return "join token already used"
        if row[1] < now:
            return "join token expired"
        return ""

    def check_token(self, token_sha256: str, cluster: str, now: float) -> None:
        """Check a join token without using it up (a join is authenticated before anything is
        signed; :meth:`join` checks again when it uses the token).

        Raises:
            StoreError: unknown token, token for another cluster, already used, or expired.
        """
        with self._read() as db:
            problem = self._token_problem(db, token_sha256, cluster, now)
        if problem:
            raise StoreError(problem)

    def join(self, token_sha256: str, cluster: str, intermediate_pem: str, now: float) -> None:
        """Use a join token once and record the intermediate CA signed for the cluster, in one
        transaction (a failed join leaves the token unused).

        Raises:
            StoreError: unknown token, token for another cluster, already used, or expired
                (the caller answers all alike; the message says which, for the log).
        """
        with self._tx() as db:
            problem = self._token_problem(db, token_sha256, cluster, now)
            if problem:
                raise StoreError(problem)
            db.execute("UPDATE join_tokens SET used_at=? WHERE token_sha256=?", (now, token_sha256))
            db.execute(
                "UPDATE clusters SET joined_at=?, last_heartbeat=?, intermediate_pem=?"
                " WHERE name=?",
                (now, now, intermediate_pem, cluster),
            )
            self._changed(db)

    def _leader_tx(self, fence: tuple[str, int] | None) -> AbstractContextManager[Db]:
        """A write transaction only the leader may commit (``fence``: the replica and its
        term's fencing number; None: a single replica, a plain transaction)."""
        return self._tx()

    def set_intermediate(
        self, cluster: str, intermediate_pem: str, fence: tuple[str, int] | None = None
    ) -> None:
        """Record a re-signed intermediate CA of a joined cluster (same key); with
        ``fence``, only as the leader of that term (:meth:`_leader_tx`).

        Raises:
            NotFoundError: no such cluster.
            federation.controller.leader.NotLeaderError: ``fence`` is not the term in force.
        """
        with self._leader_tx(fence) as db:
            updated = db.execute(
                "UPDATE clusters SET intermediate_pem=? WHERE name=? AND joined_at IS NOT NULL",
                (intermediate_pem, cluster),
            ).rowcount
            self._changed(db)
        if not updated:
            raise NotFoundError(f"no joined cluster {cluster!r}")

    def new_token(self, cluster: str, token_sha256: str, expires_at: float) -> None:
        """Add another join token for a member (e.g. to re-join after losing its state).

        Raises:
            NotFoundError: no such cluster.
        """
        with self._tx() as db:
            if db.execute("SELECT 1 FROM clusters WHERE name=?", (cluster,)).fetchone() is None:
                raise NotFoundError(f"cluster {cluster!r} is not a member")
            db.execute(
                "INSERT INTO join_tokens VALUES (?,?,?,NULL)", (token_sha256, cluster, expires_at)
            )

    def heartbeat(self, name: str, now: float) -> None:
        """Record a heartbeat."""
        with self._tx() as db:
            db.execute("UPDATE clusters SET last_heartbeat=? WHERE name=?", (now, name))

    def put_report(self, name: str, report: ClusterReport, now: float) -> None:
        """Store a cluster's latest report, keep first-seen times of its exports, and give a
        service exported for the first time its ClusterSetIP (freed when its last exporter
        stops exporting it).

        Raises:
            ClusterSetRangeError: :attr:`clusterset_range` is full (nothing is stored).
        """
        exports = set(report.export_keys())
        body = report.model_dump_json()
        with self._tx() as db:
            old = db.execute("SELECT body FROM reports WHERE cluster=?", (name,)).fetchone()
            if old is None or old[0] != body:
                self._changed(db)
            db.execute(
                "INSERT INTO reports VALUES (?,?,?) ON CONFLICT (cluster) DO UPDATE"
                " SET body=excluded.body, received_at=excluded.received_at",
                (name, body, now),
            )
            db.execute("UPDATE clusters SET last_heartbeat=? WHERE name=?", (now, name))
            known = {
                (ns, svc)
                for ns, svc in db.execute(
                    "SELECT namespace, service FROM exports WHERE cluster=?", (name,)
                ).fetchall()
            }
            for ns, svc in exports - known:
                db.execute("INSERT INTO exports VALUES (?,?,?,?)", (name, ns, svc, now))
            for ns, svc in known - exports:
                db.execute(
                    "DELETE FROM exports WHERE cluster=? AND namespace=? AND service=?",
                    (name, ns, svc),
                )
            if exports != known:
                self._clusterset_ips(db, exports - known, known - exports)

    def _clusterset_ips(
        self, db: Db, added: set[tuple[str, str]], removed: set[tuple[str, str]]
    ) -> None:
        """Allocate the ClusterSetIPs of ``added`` services that have none; free those of
        ``removed`` services that no cluster exports any more."""
        for ns, svc in sorted(removed):
            db.execute(
                "DELETE FROM clusterset_ips WHERE namespace=? AND service=? AND NOT EXISTS"
                " (SELECT 1 FROM exports WHERE namespace=? AND service=?)",
                (ns, svc, ns, svc),
            )
        if self._lock_table:
            db.execute(self._lock_table)
        rows = db.execute("SELECT namespace, service, ip FROM clusterset_ips")
        have = {(ns, svc): ip for ns, svc, ip in rows.fetchall()}
        taken = set(have.values())
        for ns, svc in sorted(added - set(have)):
            ip = allocate(ns, svc, self.clusterset_range, taken)
            db.execute("INSERT INTO clusterset_ips VALUES (?,?,?)", (ns, svc, ip))
            taken.add(ip)

    #: The last :meth:`reports`' models by (cluster, stored body).
    _report_models: Mapping[tuple[str, str], ClusterReport] = MappingProxyType({})

    def reports(self) -> dict[str, ClusterReport]:
        """Latest report per cluster. A report whose stored body is unchanged since the last
        call is the same model object (not parsed again: a recompute reads every report, and
        with 50 members parsing them was 2.6 ms a read); callers must not change it."""
        with self._read() as db:
            rows = db.execute("SELECT cluster, body FROM reports").fetchall()
        last = self._report_models
        models = {
            (c, body): last.get((c, body)) or ClusterReport.model_validate_json(body)
            for c, body in rows
        }
        self._report_models = models
        return {c: model for (c, _), model in models.items()}

    def export_times(self) -> dict[tuple[str, str, str], float]:
        """``(cluster, namespace, service) -> first seen``."""
        with self._read() as db:
            rows = db.execute(
                "SELECT cluster, namespace, service, first_seen FROM exports"
            ).fetchall()
        return {(c, ns, s): t for c, ns, s, t in rows}

    def clusterset_ips(self) -> dict[tuple[str, str], str]:
        """``(namespace, service) -> ClusterSetIP`` of every exported service."""
        with self._read() as db:
            rows = db.execute("SELECT namespace, service, ip FROM clusterset_ips").fetchall()
        return {(ns, svc): ip for ns, svc, ip in rows}

    def put_documents(self, docs: Sequence[tuple[DocumentKey, dict[str, Any]]], now: float) -> None:
        """Create or replace documents, all in one transaction (a document keeps its first
        creation time: MCS "oldest wins" and listing order use it)."""
        with self._tx() as db:
            for key, body in docs:
                db.execute(
                    "INSERT INTO documents VALUES (?,?,?,?,?,?) ON CONFLICT"
                    " (kind, namespace, name, cluster) DO UPDATE SET body=excluded.body",
                    (*key, json.dumps(body), now),
                )
            self._changed(db)

    def delete_documents(self, keys: Sequence[DocumentKey]) -> list[DocumentKey]:
        """Delete documents by key, all in one transaction; returns those that existed."""
        removed = []
        with self._tx() as db:
            for key in keys:
                if db.execute(
                    "DELETE FROM documents WHERE kind=? AND namespace=? AND name=? AND cluster=?",
                    key,
                ).rowcount:
                    removed.append(key)
            self._changed(db)
        return removed

    def document_texts(self, kinds: Sequence[str]) -> list[tuple[str, str]]:
        """``(kind, body JSON as stored)`` of every document of ``kinds``, in one query: by
        kind in the order given, each kind oldest first (as :meth:`documents`). A reader
        that keeps what it made of a body needs no JSON decode for one it has seen."""
        if not kinds:
            return []
        marks = ",".join("?" * len(kinds))
        with self._read() as db:
            rows = db.execute(
                f"SELECT kind, body FROM documents WHERE kind IN ({marks})"  # noqa: S608 - only ? marks
                " ORDER BY created_at, namespace, name",
                tuple(kinds),
            ).fetchall()
        order = {k: i for i, k in enumerate(kinds)}
        return sorted(((str(k), str(b)) for k, b in rows), key=lambda row: order[row[0]])

    def stored_bodies(self, keys: Sequence[DocumentKey]) -> dict[DocumentKey, dict[str, Any]]:
        """The stored body of each of ``keys`` that exists (an apply compares what it brings
        with these, not with every document of the kinds)."""
        found: dict[DocumentKey, dict[str, Any]] = {}
        with self._read() as db:
            for start in range(0, len(keys), 200):  # 800 parameters a statement at most
                chunk = keys[start : start + 200]
                where = " OR ".join(
                    ["(kind=? AND namespace=? AND name=? AND cluster=?)"] * len(chunk)
                )
                rows = db.execute(
                    f"SELECT kind, namespace, name, cluster, body FROM documents WHERE {where}",  # noqa: S608 - only ? marks
                    [part for key in chunk for part in key],
                ).fetchall()
                for kind, namespace, name, cluster, body in rows:
                    found[(str(kind), str(namespace), str(name), str(cluster))] = json.loads(body)
        return found

    def documents(self, kind: str) -> list[dict[str, Any]]:
        """Every document of a kind, oldest first."""
        return [json.loads(body) for _, body in self.document_texts([kind])]

    # -- the traffic ledger (federation.traffic_days) ------------------------------------------

    def record_traffic(
        self, cluster: str, started_at: float, current: dict[LedgerKey, DayCounts], now: float
    ) -> int:
        """Add what ``cluster``'s counters (cumulative since ``started_at``) gained since its
        stored mark to the UTC day of ``now`` (Unix s), and store them as the new mark, in
        one transaction (:func:`federation.traffic_days.increments`). Returns the rows
        changed; a table older than the mark changes nothing."""
        day = utc_day(now)
        with self._tx() as db:
            row = db.execute(
                f"SELECT body FROM traffic_marks WHERE cluster=?{self._lock_row}",  # noqa: S608 - fixed text
                (cluster,),
            ).fetchone()
            gained = increments(started_at, current, mark_from_json(row[0]) if row else None)
            if gained is None:
                return 0
            for key, c in sorted(gained.items()):
                db.execute(
                    "INSERT INTO traffic_days VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (day, source_cluster, source_locality, destination_service,"
                    " destination_cluster, destination_locality, path_class) DO UPDATE SET"
                    " requests = traffic_days.requests + excluded.requests,"
                    " request_bytes = traffic_days.request_bytes + excluded.request_bytes,"
                    " response_bytes = traffic_days.response_bytes + excluded.response_bytes,"
                    " egress_usd = traffic_days.egress_usd + excluded.egress_usd",
                    (day, *key, *c.as_list()),
                )
            db.execute(
                "INSERT INTO traffic_marks VALUES (?,?,?) ON CONFLICT (cluster) DO UPDATE"
                " SET started_at=excluded.started_at, body=excluded.body",
                (cluster, started_at, mark_to_json(started_at, current)),
            )
        return len(gained)

    def traffic_days(self, since: str, until: str) -> list[tuple[str, LedgerKey, DayCounts]]:
        """Ledger rows of the UTC days ``since`` to ``until`` (``YYYY-MM-DD``, both
        included): ``(day, key, counts)``, ordered by day and key."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM traffic_days WHERE day >= ? AND day <= ? ORDER BY "  # noqa: S608 - names from TABLES
                + ", ".join(TABLES["traffic_days"]),
                (since, until),
            ).fetchall()
        return [
            (
                str(r[0]),
                tuple(str(v) for v in r[1:7]),  # type: ignore[misc]
                DayCounts(int(r[7]), int(r[8]), int(r[9]), float(r[10])),
            )
            for r in rows
        ]


class SqliteStore(SqlStore):
    """:class:`ControllerStore` on SQLite (``journal_mode=WAL``; every write one transaction,
    ``BEGIN IMMEDIATE``; one connection behind a lock)."""

    _integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # owner-only, before SQLite opens it (its -wal and -shm files copy the mode)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)  # idempotent; executescript commits on its own
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{path}: schema version {row[0]} is not {SCHEMA_VERSION}")

    @contextmanager
    def _tx(self) -> Iterator[Db]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[Db]:
        with self._lock:
            yield self._db

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def digest(store: SqlStore) -> dict[str, tuple[int, str]]:
    """Per table of :data:`TABLES`: row count and SHA-256 of its rows (ordered by primary
    key, as JSON): equal on two stores when they hold the same state."""
    out = {}
    for table in TABLES:
        rows = store.rows(table)
        body = json.dumps([list(r) for r in rows], sort_keys=True).encode()
        out[table] = (len(rows), hashlib.sha256(body).hexdigest())
    return out


def joined_intermediates(path: Path | None) -> dict[str, bytes]:
    """Intermediates (PEM) the controller signed for joined clusters, by cluster, from its
    SQLite state ``path`` (None: ``$MESHFED_HOME/controller.db``, nothing when absent), for
    ``meshfed trust rotate-root --retire-old``'s check.

    Raises:
        ConfigError: ``path`` was given and does not exist.
    """
    state = path or meshfed_home() / "controller.db"
    if not state.exists():
        if path is not None:
            raise ConfigError(f"--controller-state {path}: no such file")
        return {}
    store = SqliteStore(state)
    try:
        return {c.name: c.intermediate_pem.encode() for c in store.clusters() if c.intermediate_pem}
    finally:
        store.close()
