"""Shared fixtures, and how the suite is split between pytest-xdist workers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from trust.spiffe import TrustDomain
from trust.store import TrustDirectory

#: Modules that must never run at the same time as another of their group: ``meshfed up``
#: on loopback (its controller listens on fixed ports, 127.0.0.1:15080/15090, its clusters
#: on fixed /24s), and the isolated bed (the host's end of its network is 198.18.0.1).
SHARED = {
    "test_up.py": "loopback-up",
    "test_telemetry.py": "loopback-up",
    "test_soak.py": "isolated",
    "test_isolated.py": "isolated",
    "test_cost_optimizer.py": "isolated",
    "test_capture.py": "isolated",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items) -> None:
    """One xdist group per module (``-n 2 --dist loadgroup`` in ``make test``), so a module's
    fixtures -- many start whole federations at module scope -- are made once, on one
    worker, and its tests run in order; the modules of :data:`SHARED` share their group.
    Without xdist the marks change nothing."""
    for item in items:
        path = item.path
        group = str(path) if "unit" in path.parts else SHARED.get(path.name, str(path))
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def trust_dir(tmp_path):
    """A trust directory for example.org with an intermediate CA for cluster ``east``."""
    store = TrustDirectory(tmp_path / "trust")
    store.init(TrustDomain("example.org"), ttl=timedelta(days=30))
    store.create_intermediate("east", ttl=timedelta(days=7))
    return store


@pytest.fixture(scope="session")
def postgres_server_dsn():
    """A PostgreSQL server for the session (:func:`tests.postgres.postgres_server`)."""
    from tests.postgres import postgres_server

    with postgres_server() as dsn:
        yield dsn


@pytest.fixture
def postgres_dsn(postgres_server_dsn):
    """A new, empty database of the session's PostgreSQL server, dropped after the test."""
    from tests.postgres import fresh_database

    with fresh_database(postgres_server_dsn) as dsn:
        yield dsn
