"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from federation.local.processes import Record, process_start_time
from tests.e2e.test_up import MESHFED


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    try:
        yield home
    finally:  # stop everything even when the test failed
        subprocess.run(
            [MESHFED, "down"],
            env=dict(os.environ, MESHFED_HOME=str(home)),
            capture_output=True,
            timeout=60,
            check=False,
        )
        record = Record.load(home)
        for p in record.processes if record else []:
            if process_start_time(p.pid) == p.start_time:
                os.killpg(p.pid, signal.SIGKILL)
