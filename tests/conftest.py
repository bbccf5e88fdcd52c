"""Shared fixtures."""

from __future__ import annotations

from datetime import timedelta

import pytest

from trust.spiffe import TrustDomain
from trust.store import TrustDirectory


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
