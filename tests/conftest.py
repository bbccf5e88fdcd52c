"""Shared fixtures, and how the suite is split between pytest-xdist workers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from trust.spiffe import TrustDomain
from trust.store import TrustDirectory

#: Modules that must never run at the same time as another of their group: ``meshfed up``
#: on loopback (its controller listens on fixed ports, 127.0.0.1:15080/15090, its clusters
#: on fixed /24s), and the isolated bed modules whose clusters use the same addressRanges
#: (:func:`tests.integration.isolated.federation_file`: two federations may share the host,
#: each in its own internet block, but not a private range).
SHARED = {
    "test_up.py": "loopback-up",
    "test_telemetry.py": "loopback-up",
    "test_soak.py": "isolated",
    "test_isolated.py": "isolated",
    "test_cost_optimizer.py": "isolated",
    "test_capture.py": "isolated",
    "test_zone_gateways_isolated.py": "isolated",
}


def xdist_scope(nodeid: str) -> str:
    """The unit ``make test``'s two pytest-xdist workers get whole: a test module (many
    start whole federations at module scope, to be made once, on one worker, and run their
    tests in order), or the group of :data:`SHARED` the module belongs to."""
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/unit/"):
        return path
    return SHARED.get(path.rsplit("/", 1)[-1], path)


def pytest_xdist_make_scheduler(config, log):
    """Schedule by :func:`xdist_scope` (xdist's own ``loadgroup`` reads ``xdist_group``
    marks into node ids, which pytest 9 no longer lets a plugin change), in collection
    order: e2e, then integration, then unit. xdist's default hands out the scopes with the
    most tests first -- unit modules of many quick tests -- so the ``isolated`` group, a few
    tests that take ~9 minutes together, started half way through and ran alone at the end
    on one worker while the other had finished; the longest go first now, and the many
    small unit modules fill in at the end."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False

    class ByScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ByScope(config, log)


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
