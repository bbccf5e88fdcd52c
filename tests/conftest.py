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
