"""Fixtures that start real processes and always stop them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.harness import Processes
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory


@pytest.fixture
def procs(tmp_path):
    owner = Processes(tmp_path)
    try:
        yield owner
    finally:
        owner.stop_all()


@pytest.fixture
def mesh_home(tmp_path):
    """A MESHFED_HOME with a root CA for example.org and intermediates for east and west."""
    home = tmp_path / "home"
    store = TrustDirectory(home / "trust")
    store.init(TrustDomain("example.org"), ttl=timedelta(days=2))
    for cluster in ("east", "west"):
        store.create_intermediate(cluster, ttl=timedelta(days=1))
    return home
