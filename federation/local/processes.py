"""The processes of a local federation and their record: ``$MESHFED_HOME/up.json`` (pid and
start time of each, read by ``meshfed down``, ``status`` and ``demo``), stopping exactly
those, and the host checks before many Envoys start.

A process is signalled only while its start time (``/proc/<pid>/stat`` field 22) still
matches the record, so a reused pid is never stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from federation.client import unverified_tls
from federation.errors import FederationError
from trust.files import CERT_FILE_MODE, write_atomic

#: The record's file name in ``$MESHFED_HOME``.
RECORD = "up.json"


class UpError(FederationError):
    """A step of ``meshfed up`` failed; the message names the process and its log."""

    retryable = True


@dataclass
class ProcessRecord:
    """One started process."""

    name: str
    argv: list[str]
    pid: int
    start_time: int
    log: str
    role: str
    cluster: str = ""
    replica: int = -1
    extra: dict[str, Any] = field(default_factory=dict)
    node: str = ""  # whose network it runs in: a cluster, ``controller`` or ``<cluster>/<pod>``


def meshfed_argv() -> list[str]:
    """How to run ``meshfed``: the script next to this Python, or ``python -m``."""
    script = Path(sys.executable).with_name("meshfed")
    if script.exists():
        return [str(script)]
    found = shutil.which("meshfed")
    return [found] if found else [sys.executable, "-m", "federation.cli.main"]


def _running_stat(path: Path) -> list[str] | None:
    """The fields of a ``/proc/<pid>/stat`` after the command name (state first, then ppid,
    pgrp, ...), None if the process is gone or a zombie (it has exited)."""
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks since boot), None if it is gone."""
    fields = _running_stat(Path(f"/proc/{pid}/stat"))
    return None if fields is None else int(fields[19])


def process_alive(record: ProcessRecord) -> bool:
    return process_start_time(record.pid) == record.start_time


class Record:
    """``$MESHFED_HOME/up.json``: the federation's processes and endpoints."""

    def __init__(self, home: Path) -> None:
        self.path = home / RECORD
        self.processes: list[ProcessRecord] = []
        self.info: dict[str, Any] = {}

    @classmethod
    def load(cls, home: Path) -> Record | None:
        """The record, or None when nothing was started here."""
        record = cls(home)
        if not record.path.exists():
            return None
        data = json.loads(record.path.read_text())
        record.processes = [ProcessRecord(**p) for p in data.get("processes", [])]
        record.info = data.get("info", {})
        return record

    def save(self) -> None:
        data = {"info": self.info, "processes": [asdict(p) for p in self.processes]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(data, indent=2).encode(), CERT_FILE_MODE)

    def alive(self) -> list[ProcessRecord]:
        """Recorded processes still running (same pid and start time)."""
        return [p for p in self.processes if process_alive(p)]


def _group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that has not exited. ``killpg(pgid, 0)``
    alone also succeeds for a group of zombies -- a process that exited and that its parent
    (a foreground ``meshfed up``) has not reaped yet -- and ``meshfed demo kill`` then
    waited its whole timeout for processes that had stopped at once."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(
        fields is not None and fields[2] == str(pgid)
        for fields in map(_running_stat, Path("/proc").glob("[0-9]*/stat"))
    )


#: How often :func:`stop_processes` says what it still waits for (s).
PROGRESS_EVERY_S = 2.0


def stop_processes(
    records: list[ProcessRecord],
    timeout_s: float = 15,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """SIGTERM each live process (a proxy agent then deregisters, drains and stops its Envoy),
    wait until each process group (the process and its Envoy) is empty, then SIGKILL what is
    left; returns the names of the processes that were running. A process whose pid now
    belongs to another program (start time differs) is not touched. ``progress`` is told
    what is stopped, every :data:`PROGRESS_EVERY_S` what is still awaited, and what had to
    be killed (a sidecar's drain takes seconds; a command should not sit silent).

    A group whose recorded process died but whose members live on (an agent that crashed
    and left its Envoy) is stopped too: SIGTERM to the group. It is recognised by its pgid --
    the dead process's pid -- having members but no process of that pid (a pid still in
    use as a group id is not handed out again, so that group can only be ours)."""

    def orphaned(r: ProcessRecord) -> bool:
        return process_start_time(r.pid) is None and _group_alive(r.pid)

    live = [r for r in records if process_alive(r) or orphaned(r)]
    for r in reversed(live):
        try:
            if process_alive(r):
                os.kill(r.pid, signal.SIGTERM)
            else:
                os.killpg(r.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    started = time.monotonic()
    deadline, note = started + timeout_s, started + PROGRESS_EVERY_S
    say = progress or (lambda _message: None)
    if live:
        say(f"stopping {', '.join(r.name for r in live)}")

    def running() -> list[ProcessRecord]:
        _reap(live)
        return [r for r in live if process_alive(r) or _group_alive(r.pid)]

    while time.monotonic() < deadline and (waiting := running()):
        if time.monotonic() >= note:
            names = ", ".join(r.name for r in waiting)
            say(f"waiting for {names} ({time.monotonic() - started:.0f} s of {timeout_s:.0f} s)")
            note += PROGRESS_EVERY_S
        time.sleep(0.1)
    stuck = running()
    if stuck:
        say(f"{', '.join(r.name for r in stuck)}: not stopped in {timeout_s:.0f} s, killed")
    for r in stuck:
        try:
            os.killpg(r.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and running():
        time.sleep(0.05)
    return [r.name for r in live]


#: Set by ``meshfed up`` in the environment of every process it starts (inherited by their
#: children): the home they belong to. ``down`` finds by it what no record names -- a process
#: started by an ``up`` that was killed between starting it and recording it.
OWNER_ENV = "MESHFED_UP_HOME"


def unrecorded(home: Path, records: list[ProcessRecord]) -> list[ProcessRecord]:
    """Live processes whose environment says :data:`OWNER_ENV` is ``home`` (resolved) but
    which no record names, neither by pid nor by process group (an Envoy of a recorded
    agent); each as a record to stop (``name`` ``unrecorded-<pid>``). Processes this user
    may not read are skipped."""
    wanted = f"{OWNER_ENV}={home.resolve()}".encode()
    known = {r.pid for r in records}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        pid = int(proc.name)
        try:
            if wanted not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            if pid in known or os.getpgid(pid) in known:
                continue
        except (OSError, ProcessLookupError):
            continue
        start = process_start_time(pid)
        if start is not None:
            found.append(ProcessRecord(f"unrecorded-{pid}", [], pid, start, "", "unrecorded"))
    return found


def _reap(records: list[ProcessRecord]) -> None:
    for r in records:  # reap our own children (a foreground ``up``), or they stay zombies
        try:
            os.waitpid(r.pid, os.WNOHANG)
        except ChildProcessError:
            pass


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
#: inotify instances one Envoy holds (file-based SDS: its SVID and trust bundle; measured 4).
INOTIFY_PER_ENVOY = 4


def ensure_inotify_instances(envoys: int, path: Path = INOTIFY_INSTANCES) -> str | None:
    """Make sure ``envoys`` Envoys can watch their certificate files: each holds
    :data:`INOTIFY_PER_ENVOY` inotify instances, counted per user against
    ``fs.inotify.max_user_instances`` (128 by default: about 30 Envoys). As root, raise the
    limit and say so (returns the message); otherwise, or when it cannot be written, raise.

    Raises:
        UpError: the limit is too low and cannot be raised here (names the sysctl to set).
    """
    try:
        current = int(path.read_text())
    except (OSError, ValueError):
        return None
    needed = INOTIFY_PER_ENVOY * envoys + 64
    if current >= needed:
        return None
    try:
        path.write_text(str(needed))
    except OSError as err:
        raise UpError(
            f"{envoys} Envoys need {needed} inotify instances and fs.inotify.max_user_instances"
            f" is {current}: run `sysctl -w fs.inotify.max_user_instances={needed}` as root"
            f" ({err.strerror})"
        ) from err
    return f"raised fs.inotify.max_user_instances from {current} to {needed} for {envoys} Envoys"


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 (liveness only: an https certificate is not verified)."""
    context = unverified_tls().context if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as resp:  # noqa: S310 - loopback URL we built
            return int(resp.status) == 200
    except OSError:
        return False


def tcp_ok(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
