"""Workload identity costs: SVID issuance under concurrency, and a sidecar's cold start.

1. **Issuance**: N agents at once (in-process, each its own P-256 key and CSR, its own TLS
   channel) ask one ``meshfed controlplane serve`` process for their first SVID with a
   workload token (CA port), then all renew at once over mutual TLS (xDS port). Per call:
   CSR -> SVID latency, key generation included. Baseline in the same run: one agent alone.
2. **Sidecar cold start**: ``meshfed proxy sidecar`` start -> first request through its
   outbound listener answered by a backend (an echo app without sidecar, tlsMode disabled).
   "after" is this checkout (the agent obtains its SVID with a token before Envoy starts,
   xDS over mutual TLS); "before" is the same measurement with the code of a git revision
   from before workload identity (``--before-rev``, default ``b43a92a``), imported from a
   ``git worktree`` in the same run, with the same Envoy and Python.

    python bench/identity.py [--agents 100] [--starts 5] [--before-rev b43a92a]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    LocalPlane,
    free_port,
    init_trust,
    percentile,
    post,
    start_controlplane,
    stop,
    token,
    worktree,
)
from federation.ca.client import CaEndpoints, WorkloadIdentity
from federation.ca.files import IdentityDirectory
from trust.spiffe import SpiffeId

REPO = Path(__file__).resolve().parents[1]
BACKEND = """apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: echo-1, namespace: demo}}
spec: {{service: echo, address: 127.0.0.1, tlsMode: disabled, locality: aws/us-east-1/us-east-1a,
  ports: [{{name: http, port: 8080, targetPort: {port}}}]}}
"""


async def _issue_all(plane: LocalPlane, work: Path, n: int) -> tuple[list[float], list[float]]:
    info = await asyncio.to_thread(plane.info)
    tokens = [
        await asyncio.to_thread(plane.mint, "demo", f"agent-{i}", ttl_s=600) for i in range(n)
    ]
    identities = [
        WorkloadIdentity(
            SpiffeId.parse(f"spiffe://example.org/ns/demo/sa/agent-{i}"),
            IdentityDirectory(work / f"agent-{n}-{i}"),
            CaEndpoints(str(info["caAddress"]), str(info["xdsAddress"]), str(info["serverName"])),
            str(info["trustBundle"]).encode(),
            tokens[i],
        )
        for i in range(n)
    ]

    async def timed(identity: WorkloadIdentity, renew: bool) -> float:
        started = time.perf_counter()
        if renew:
            await identity._issue(renew=True)
        else:
            await identity.ensure()
        return (time.perf_counter() - started) * 1000

    first = await asyncio.gather(*(timed(i, False) for i in identities))
    renewals = await asyncio.gather(*(timed(i, True) for i in identities))
    return list(first), list(renewals)


def issuance(work: Path, agents: int) -> None:
    home = work / "issuance"
    init_trust(home, ["east"])
    xds, api = free_port(), free_port()
    cp = start_controlplane(home, "east", xds, api, health=False)
    try:
        plane = LocalPlane(home, "east", xds, api)
        print(f"SVID issuance: CSR -> SVID per agent, all agents at once ({os.cpu_count()} CPUs)")
        print(
            f"{'agents':>7}{'first p50 ms':>14}{'first p99 ms':>14}{'renew p50':>11}{'renew p99':>11}"
        )
        for n in (1, agents):
            first, renew = asyncio.run(_issue_all(plane, work, n))
            print(
                f"{n:>7}{percentile(first, 50):>14.1f}{percentile(first, 99):>14.1f}"
                f"{percentile(renew, 50):>11.1f}{percentile(renew, 99):>11.1f}"
            )
    finally:
        stop(cp)


def _answered(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/", headers={"Host": "echo.demo.svc.clusterset.local"})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def cold_starts(work: Path, label: str, pythonpath: Path, starts: int) -> list[float]:
    """Seconds from spawning ``meshfed proxy sidecar`` to its first answered request."""
    home = work / f"cold-{label}"
    env = dict(os.environ, MESHFED_HOME=str(home), PYTHONPATH=str(pythonpath))
    # run from the tree itself: "python -c" puts the working directory first on sys.path
    meshfed = [sys.executable, "-c", "from federation.cli.main import main; main()"]
    cwd = str(pythonpath)
    subprocess.run(
        [*meshfed, "trust", "init", "--trust-domain", "example.org"], env=env, check=True, cwd=cwd,
        capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*meshfed, "trust", "intermediate", "--cluster", "east"], env=env, check=True, cwd=cwd,
        capture_output=True,
    )  # fmt: skip
    xds, api, ca, app = free_port(), free_port(), free_port(), free_port()
    argv = [
        *meshfed, "controlplane", "serve", "--cluster", "east", "--locality",
        "aws/us-east-1/us-east-1a", "--xds-listen", f"127.0.0.1:{xds}", "--api-listen",
        f"127.0.0.1:{api}", "--no-health-checks",
    ]  # fmt: skip
    if label == "after":
        argv += ["--ca-listen", f"127.0.0.1:{ca}"]
    log = (work / f"cp-{label}.log").open("ab")
    cp = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    echo = subprocess.Popen(
        [sys.executable, "-m", "federation.demo.echo_http", "--name", "echo-1", "--port", str(app)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    samples: list[float] = []
    try:
        deadline = time.monotonic() + 30
        while not (home / "controlplanes" / "east" / "api-token").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"control plane ({label}) did not start; see {log.name}")
            time.sleep(0.05)
        time.sleep(0.5)
        post(api, "/v1/apply", BACKEND.format(port=app), token(home, "east"))
        plane = LocalPlane(home, "east", xds, api)
        for i in range(starts):
            outbound = free_port()
            sidecar = [
                *meshfed, "proxy", "sidecar", "--cluster", "east", "--controlplane",
                f"127.0.0.1:{xds}", "--service", f"client-{i}", "-n", "demo", "--app-port",
                str(free_port()), "--outbound-port", str(outbound), "--inbound-port",
                str(free_port()), "--locality", "aws/us-east-1/us-east-1a",
            ]  # fmt: skip
            extra = {}
            if label == "after":  # minted beforehand, as an operator does
                extra["MESHFED_WORKLOAD_TOKEN"] = plane.mint("demo", f"client-{i}")
            agent_log = work / f"agent-{label}-{i}.log"
            started = time.perf_counter()
            with agent_log.open("wb") as out:
                agent = subprocess.Popen(
                    sidecar, env=dict(env, **extra), stdout=out, stderr=subprocess.STDOUT, cwd=cwd
                )
            try:
                deadline = time.monotonic() + 60
                while not _answered(outbound):
                    if time.monotonic() > deadline or agent.poll() is not None:
                        tail = agent_log.read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"sidecar {label}/{i} never answered:\n{tail}")
                    time.sleep(0.01)
                samples.append(time.perf_counter() - started)
            finally:
                agent.terminate()
                agent.wait(30)
    finally:
        echo.terminate()
        echo.wait(5)
        stop(cp)  # type: ignore[arg-type]
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--before-rev", default="b43a92a")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        issuance(work, args.agents)
        with worktree(args.before_rev, work / "before") as before_tree:
            results = {
                "before": cold_starts(work, "before", before_tree, args.starts),
                "after": cold_starts(work, "after", REPO, args.starts),
            }
        print(f"\nsidecar cold start: agent spawn -> first answered request, {args.starts} starts")
        print(f"{'code':<28}{'p50 s':>8}{'max s':>8}")
        for label, values in results.items():
            name = f"{label} ({args.before_rev})" if label == "before" else "after (this checkout)"
            print(f"{name:<28}{percentile(values, 50):>8.2f}{max(values):>8.2f}")
        ratio = percentile(results["after"], 50) / percentile(results["before"], 50)
        print(f"after/before p50: x{ratio:.2f}")


if __name__ == "__main__":
    main()
