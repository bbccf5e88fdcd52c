"""A real PostgreSQL server for tests: Debian's ``postgresql`` binaries (installed by
``make system-deps``), a new cluster in a temporary directory (``initdb``), one ``postgres``
process listening on 127.0.0.1 at a free port, stopped when the test session ends.

PostgreSQL refuses to run as root: as root the cluster belongs to, and the server runs as,
the ``postgres`` user the Debian package creates. Outside CI a machine without the binaries
skips the tests that need them, naming the reason; in CI (``CI`` set) that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from federation.netaddr import free_port

#: The superuser the test cluster is created with (trust authentication on loopback).
USER = "meshfed"


def binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``postgres``."""
    root = Path("/usr/lib/postgresql")
    found = sorted(
        (p for p in root.glob("*/bin/initdb") if p.parts[4].isdigit()),
        key=lambda p: int(p.parts[4]),
    )
    return found[-1].parent if found else None


def require_postgres() -> Path:
    """The binaries' folder; skips (outside CI) or fails (in CI) without them."""
    found = binaries()
    if found is None:
        reason = "PostgreSQL is not installed (make system-deps installs Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server in a new temporary directory (pytest's are private to root, and the
    server runs as ``postgres``); yields the connection string of its ``postgres`` database
    (user :data:`USER`); stops the server (fast shutdown) and removes the directory even
    when the caller failed."""
    bin_dir = require_postgres()
    base = Path(tempfile.mkdtemp(prefix="meshfed-pg-"))
    data = base / "pgdata"
    data.mkdir()
    as_user = "postgres" if os.geteuid() == 0 else None
    if as_user:
        shutil.chown(base, as_user)
        shutil.chown(data, as_user)
    try:
        yield from _serve(bin_dir, base, data, as_user)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _serve(bin_dir: Path, base: Path, data: Path, as_user: str | None) -> Iterator[str]:
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "--no-sync",
         "-E", "UTF8", "--locale", "C"],
        check=True, capture_output=True, user=as_user, timeout=120,
    )  # fmt: skip
    port = free_port()
    log = (base / "postgres.log").open("wb")
    proc = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
        stdout=log, stderr=subprocess.STDOUT, user=as_user,
    )  # fmt: skip
    dsn = f"postgresql://{USER}@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 30
        while True:  # bounded: 30 s
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres did not start: {(base / 'postgres.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        yield dsn
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.contextmanager
def fresh_database(server_dsn: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_dsn``; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield server_dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
