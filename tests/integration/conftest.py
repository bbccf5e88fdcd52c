"""Fixtures that start real processes and always stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import timedelta

import pytest

from tests.integration.harness import Processes, envoy_pids_under
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory


@contextlib.contextmanager
def owned_processes(workdir):
    """Owns processes; stops them all and checks that no Envoy is left behind."""
    owner = Processes(workdir)
    try:
        yield owner
    finally:
        owner.stop_all()
        deadline = time.monotonic() + 5
        while envoy_pids_under(workdir) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = envoy_pids_under(workdir)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"Envoy processes left running: {left}"


def make_mesh_home(base):
    """A MESHFED_HOME with a root CA for example.org and intermediates for east and west."""
    home = base / "home"
    store = TrustDirectory(home / "trust")
    store.init(TrustDomain("example.org"), ttl=timedelta(days=2))
    for cluster in ("east", "west"):
        store.create_intermediate(cluster, ttl=timedelta(days=1))
    return home


@pytest.fixture
def procs(tmp_path):
    """Processes of one test (see :func:`owned_processes`)."""
    with owned_processes(tmp_path) as owner:
        yield owner


@pytest.fixture
def mesh_home(tmp_path):
    """See :func:`make_mesh_home`."""
    return make_mesh_home(tmp_path)


@pytest.fixture
def kubes():
    """Two Kubernetes API server fakes (tests/kube_fake.py), clusters ``a`` and ``b``."""
    from tests.kube_fake import fake_kube

    with fake_kube(bookmark_s=0.5) as a, fake_kube(bookmark_s=0.5) as b:
        yield {"a": a, "b": b}
