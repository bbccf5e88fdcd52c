"""The controller's state: one SQLite file (WAL, transactions, versioned schema) behind a small
interface, so PostgreSQL can be added for a replicated controller.

Tables: ``meta`` (schema version), ``clusters``, ``join_tokens`` (SHA-256 of each token, never
the token), ``exports`` (first time each cluster's export was seen: MCS conflict resolution is
"oldest wins"), ``reports`` (each cluster's latest report, JSON) and ``documents``
(resources applied with ``meshfed apply``, JSON, keyed by :data:`DocumentKey`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from federation.errors import FederationError, NotFoundError
from federation.sync.messages import ClusterReport

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
CREATE TABLE IF NOT EXISTS reports (
    cluster TEXT PRIMARY KEY, body TEXT NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, cluster TEXT NOT NULL,
    body TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (kind, namespace, name, cluster));
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
    def set_intermediate(self, cluster: str, intermediate_pem: str) -> None: ...
    def heartbeat(self, name: str, now: float) -> None: ...
    def put_report(self, name: str, report: ClusterReport, now: float) -> None: ...
    def reports(self) -> dict[str, ClusterReport]: ...
    def export_times(self) -> dict[tuple[str, str, str], float]: ...
    def put_documents(
        self, docs: Sequence[tuple[DocumentKey, dict[str, Any]]], now: float
    ) -> None: ...
    def delete_documents(self, keys: Sequence[DocumentKey]) -> list[DocumentKey]: ...
    def documents(self, kind: str) -> list[dict[str, Any]]: ...


class SqliteStore:
    """:class:`ControllerStore` on SQLite (``journal_mode=WAL``; every write one transaction)."""

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
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

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
        except sqlite3.IntegrityError as err:
            raise StoreError(f"cluster {record.name!r} is already a member") from err

    def clusters(self) -> list[ClusterRecord]:
        """Every member, by name."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM clusters ORDER BY name").fetchall()
        return [ClusterRecord(*row) for row in rows]

    def cluster(self, name: str) -> ClusterRecord:
        """One member.

        Raises:
            NotFoundError: no such cluster.
        """
        with self._lock:
            row = self._db.execute("SELECT * FROM clusters WHERE name=?", (name,)).fetchone()
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
            for table in ("join_tokens", "reports", "exports", "documents"):
                db.execute(f"DELETE FROM {table} WHERE cluster=?", (name,))  # noqa: S608 - fixed names

    @staticmethod
    def _token_problem(db: sqlite3.Connection, token_sha256: str, cluster: str, now: float) -> str:
        row = db.execute(
            "SELECT cluster, expires_at, used_at FROM join_tokens WHERE token_sha256=?",
            (token_sha256,),
        ).fetchone()
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
        with self._lock:
            problem = self._token_problem(self._db, token_sha256, cluster, now)
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

    def set_intermediate(self, cluster: str, intermediate_pem: str) -> None:
        """Record a re-signed intermediate CA of a joined cluster (same key).

        Raises:
            NotFoundError: no such cluster.
        """
        with self._tx() as db:
            updated = db.execute(
                "UPDATE clusters SET intermediate_pem=? WHERE name=? AND joined_at IS NOT NULL",
                (intermediate_pem, cluster),
            ).rowcount
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
        """Store a cluster's latest report and keep first-seen times of its exports."""
        exports = set(report.export_keys())
        body = report.model_dump_json()
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO reports VALUES (?,?,?)", (name, body, now))
            db.execute("UPDATE clusters SET last_heartbeat=? WHERE name=?", (now, name))
            known = {
                (ns, svc)
                for ns, svc in db.execute(
                    "SELECT namespace, service FROM exports WHERE cluster=?", (name,)
                )
            }
            for ns, svc in exports - known:
                db.execute("INSERT INTO exports VALUES (?,?,?,?)", (name, ns, svc, now))
            for ns, svc in known - exports:
                db.execute(
                    "DELETE FROM exports WHERE cluster=? AND namespace=? AND service=?",
                    (name, ns, svc),
                )

    def reports(self) -> dict[str, ClusterReport]:
        """Latest report per cluster."""
        with self._lock:
            rows = self._db.execute("SELECT cluster, body FROM reports").fetchall()
        return {c: ClusterReport.model_validate_json(body) for c, body in rows}

    def export_times(self) -> dict[tuple[str, str, str], float]:
        """``(cluster, namespace, service) -> first seen``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT cluster, namespace, service, first_seen FROM exports"
            ).fetchall()
        return {(c, ns, s): t for c, ns, s, t in rows}

    def put_documents(self, docs: Sequence[tuple[DocumentKey, dict[str, Any]]], now: float) -> None:
        """Create or replace documents, all in one transaction (a document keeps its first
        creation time: MCS "oldest wins" and listing order use it)."""
        with self._tx() as db:
            for key, body in docs:
                row = db.execute(
                    "SELECT created_at FROM documents"
                    " WHERE kind=? AND namespace=? AND name=? AND cluster=?",
                    key,
                ).fetchone()
                created = row[0] if row else now
                db.execute(
                    "INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?,?)",
                    (*key, json.dumps(body), created),
                )

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
        return removed

    def documents(self, kind: str) -> list[dict[str, Any]]:
        """Every document of a kind, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM documents WHERE kind=? ORDER BY created_at, namespace, name",
                (kind,),
            ).fetchall()
        return [json.loads(body) for (body,) in rows]
