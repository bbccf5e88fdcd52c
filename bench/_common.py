"""Shared helpers for the benchmarks: processes on loopback, percentiles, RSS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from federation.netaddr import free_port  # noqa: F401 - re-exported for the tests

MESHFED = str(Path(sys.executable).with_name("meshfed"))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def init_trust(home: Path, clusters: list[str]) -> None:
    env = dict(os.environ, MESHFED_HOME=str(home))
    subprocess.run(
        [MESHFED, "trust", "init", "--trust-domain", "example.org"],
        env=env,
        check=True,
        capture_output=True,
    )
    for c in clusters:
        subprocess.run(
            [MESHFED, "trust", "intermediate", "--cluster", c],
            env=env,
            check=True,
            capture_output=True,
        )


def start_controlplane(
    home: Path, cluster: str, xds: int, api: int, *, health: bool = True
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MESHFED_HOME=str(home))
    argv = [
        MESHFED,
        "controlplane",
        "serve",
        "--cluster",
        cluster,
        "--locality",
        "aws/us-east-1/us-east-1a",
        "--xds-listen",
        f"127.0.0.1:{xds}",
        "--api-listen",
        f"127.0.0.1:{api}",
    ]
    if not health:
        argv.append("--no-health-checks")
    log = (home / f"controlplane-{cluster}.log").open("ab")
    proc = subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("control plane did not start")


def token(home: Path, cluster: str) -> str:
    return (home / "controlplanes" / cluster / "api-token").read_text().strip()


def post(api: int, path: str, body: str, tok: str) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{api}{path}",
        data=body.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {tok}"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
