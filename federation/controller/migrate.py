"""``meshfed controller migrate``: copy a controller's SQLite state into PostgreSQL in one
transaction and verify it table by table (row count and SHA-256 of both sides,
:func:`federation.controller.store.digest`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from federation.controller.pgstore import PostgresStore, parse_dsn
from federation.controller.store import SqliteStore, StoreError, digest
from federation.errors import ConfigError


def migrate(source_path: Path, target: str) -> tuple[str, list[dict[str, Any]]]:
    """Copy ``source_path`` (SQLite) into ``target`` (a libpq connection string).

    Returns:
        ``(where the copy went, rows)``: per table ``table``, ``rows`` copied,
        ``sourceSha256``, ``targetSha256`` and ``match``.

    Raises:
        ConfigError: no such file, or ``target`` is not a PostgreSQL URL (named ``--to``).
        StoreError: the database refused (retryable when it could not be reached).
    """
    if not source_path.is_file():
        raise ConfigError(f"--state {source_path}: no such file")
    try:
        parse_dsn(target)
    except StoreError as err:
        raise ConfigError(str(err).replace("--store", "--to")) from err
    source = SqliteStore(source_path)
    try:
        sink = PostgresStore(target)
        try:
            copied = sink.copy_from(source)
            before, after = digest(source), digest(sink)
            where = sink.where
        finally:
            sink.close()
    finally:
        source.close()
    return where, [
        {
            "table": table,
            "rows": copied[table],
            "sourceSha256": before[table][1],
            "targetSha256": after[table][1],
            "match": before[table] == after[table],
        }
        for table in before
    ]
