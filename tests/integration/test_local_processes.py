"""Stopping a local federation's processes says what it waits for (issue 41: ``demo kill``
took 41 s with no output): real processes, one that takes its time after SIGTERM (as a
sidecar draining) and one that ignores it (killed at the deadline)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from federation.local.processes import ProcessRecord, process_start_time, stop_processes

pytestmark = pytest.mark.integration

SLOW = "import signal, time; signal.signal(signal.SIGTERM, lambda *a: time.sleep(2.5) or exit(0)); time.sleep(60)"
DEAF = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def _spawn(name: str, code: str) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 10
    while (start := process_start_time(proc.pid)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert start is not None
    time.sleep(0.3)  # the handler is installed before the signal comes
    record = ProcessRecord(name, [], proc.pid, start, "", "echo-sidecar")
    return proc, record


def test_stopping_reports_what_it_waits_for_and_what_it_killed() -> None:
    slow, slow_record = _spawn("echo-sidecar-0", SLOW)
    deaf, deaf_record = _spawn("echo-sidecar-1", DEAF)
    said: list[str] = []
    try:
        stopped = stop_processes([slow_record, deaf_record], timeout_s=4, progress=said.append)
    finally:
        for p in (slow, deaf):
            if process_start_time(p.pid) is not None:
                p.kill()
            p.wait(5)  # (already reaped by stop_processes: returns at once)
    assert stopped == ["echo-sidecar-0", "echo-sidecar-1"]
    assert said[0] == "stopping echo-sidecar-0, echo-sidecar-1"
    assert any(
        m.startswith("waiting for echo-sidecar-0, echo-sidecar-1 (2 s of 4 s)") for m in said
    ), said
    assert said[-1] == "echo-sidecar-1: not stopped in 4 s, killed", said
    # stop_processes reaps its own children: the pids are gone, not zombies
    assert process_start_time(slow.pid) is None and process_start_time(deaf.pid) is None
