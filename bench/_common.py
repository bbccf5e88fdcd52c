"""Shared helpers for the benchmarks: processes on loopback, percentiles, RSS."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from federation.ca.names import control_plane_server_name
from federation.netaddr import free_port
from tests.integration.harness import api_context, mint_token, plane_info, provision
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory

MESHFED = str(Path(sys.executable).with_name("meshfed"))


REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def worktree(rev: str, path: Path) -> Iterator[Path]:
    """A ``git worktree`` of this repository at ``rev`` in ``path``, removed afterwards:
    another revision's code for an in-run baseline (same Python, same machine)."""
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )


def measure_beside_baseline(
    script: str, baseline_rev: str, args: list[str]
) -> dict[str, dict[str, Any]]:
    """Run ``script --tree TREE *args`` (a benchmark that measures the checkout at TREE and
    prints its result as JSON on its last line) for ``baseline_rev`` from a worktree, then
    for this checkout, each in a subprocess with this Python; results by label."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, worktree(baseline_rev, Path(tmp) / "b") as before:
        for label, tree in ((f"baseline {baseline_rev}", before), ("this checkout", REPO)):
            out = subprocess.run(
                [sys.executable, script, "--tree", str(tree), *args],
                check=True, capture_output=True, text=True, cwd=str(tree),
            ).stdout  # fmt: skip
            results[label] = json.loads(out.strip().splitlines()[-1])
    return results


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


def cpu_s(pid: int) -> float:
    """CPU time (user + system, s) process ``pid`` has used (/proc/PID/stat fields 14-15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    home: Path,
    cluster: str,
    xds: int,
    api: int,
    *,
    health: bool = True,
    extra: tuple[str, ...] = (),
    tree: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``meshfed controlplane serve`` on loopback; ``tree``: run the code of that checkout
    (a ``git worktree`` of another revision, for an in-run baseline) instead of this one."""
    env = dict(os.environ, MESHFED_HOME=str(home))
    meshfed = [MESHFED]
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
        meshfed = [sys.executable, "-c", "from federation.cli.main import main; main()"]
    argv = [
        *meshfed,
        "controlplane",
        "serve",
        "--cluster",
        cluster,
        "--locality",
        "aws/us-east-1/us-east-1a",
        "--xds-listen",
        f"127.0.0.1:{xds}",
        "--ca-listen",
        f"127.0.0.1:{free_port()}",
        "--api-listen",
        f"127.0.0.1:{api}",
    ]
    if not health:
        argv.append("--no-health-checks")
    argv.extend(extra)
    log = (home / f"controlplane-{cluster}.log").open("ab")
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=str(tree) if tree is not None else None,
    )
    deadline = time.monotonic() + 20
    url = f"https://127.0.0.1:{api}"
    while time.monotonic() < deadline:
        try:
            context = api_context(url, home)  # once it wrote its endpoint.json
            urllib.request.urlopen(f"{url}/healthz", timeout=1, context=context)
            _API_TLS[api] = context
            return proc
        except (OSError, AssertionError):
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("control plane did not start")


def token(home: Path, cluster: str) -> str:
    return (home / "controlplanes" / cluster / "api-token").read_text().strip()


#: API port -> TLS context verifying that control plane (HTTPS since issue 35)
_API_TLS: dict[int, ssl.SSLContext] = {}


def post(api: int, path: str, body: str, tok: str) -> None:
    """POST to a control plane started by :func:`start_controlplane` (HTTPS, verified)."""
    req = urllib.request.Request(
        f"https://127.0.0.1:{api}{path}",
        data=body.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {tok}"},
    )
    with urllib.request.urlopen(req, timeout=120, context=_API_TLS.get(api)) as resp:
        resp.read()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class LocalPlane:
    """A control plane started by :func:`start_controlplane`, for the harness's helpers."""

    def __init__(self, home: Path, cluster: str, xds: int, api: int) -> None:
        self.home, self.cluster, self.xds_port = home, cluster, xds
        self.api_url = f"https://127.0.0.1:{api}"

    def info(self) -> dict[str, object]:
        return plane_info(self.api_url, self.home)

    def mint(self, namespace: str, service_account: str, **options: object) -> str:
        return mint_token(self.api_url, self.home, namespace, service_account, **options)

    def provision(self, namespace: str, service_account: str, directory: Path) -> None:
        """An SVID in ``directory`` as a proxy agent would obtain it (token, CSR)."""
        provision(self, namespace, service_account, directory)


def client_channel_options(cluster: str) -> list[tuple[str, str]]:
    """gRPC options to dial a control plane by address and verify it by name."""
    return [("grpc.ssl_target_name_override", control_plane_server_name(cluster))]


def client_credentials(
    home: Path, cluster: str, namespace: str, account: str
) -> grpc.ChannelCredentials:
    """mTLS credentials with an SVID for ``namespace``/``account`` issued straight from the
    trust directory (a benchmark shortcut: agents obtain theirs with a CSR)."""
    trust = TrustDirectory(home / "trust")
    svid = trust.issue_svid(cluster, TrustDomain("example.org").workload_id(namespace, account))
    return grpc.ssl_channel_credentials(
        trust.bundle().to_pem(), svid.private_key_pem(), svid.chain_pem()
    )
