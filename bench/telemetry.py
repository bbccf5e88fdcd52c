"""What traffic telemetry costs the controller as the mesh grows (issue #17, proof 4).

Runs ``meshfed up --detach`` twice on loopback, with 1 and with N echo replicas per cluster
(3 clusters: 3 and 3N echo sidecars, plus the frontend's), and in each makes every echo
sidecar call ``echo`` through its own outbound listener (a bounded burst per sidecar, so that
every sidecar's locality has edges), waits until the controller has the traffic, then
measures the controller's resident memory (``VmRSS``) and the time and size of its
``GET /metrics`` (admin token, its own CA). Prints both runs side by side and the memory
growth per added sidecar. The first run is the baseline measured in the same invocation.

    python bench/telemetry.py [--replicas 16] [--requests 20] [--scrapes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench._common import MESHFED
from federation.client import tls_for
from federation.local.processes import Record

FEDERATION = Path(__file__).resolve().parents[1] / "examples" / "federation.yaml"
HOST = "echo.demo.svc.clusterset.local"


def _meshfed(home: Path, *args: str) -> str:
    result = subprocess.run(
        [MESHFED, *args],
        env=dict(os.environ, MESHFED_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"meshfed {' '.join(args)}: {result.stderr[-2000:]}")
    return result.stdout


def _scrape(home: Path, url: str, count: int) -> tuple[list[float], int, str]:
    """Times (s) of ``count`` GET /metrics, the size (bytes) and text of the last."""
    tls = tls_for(url, home)
    assert tls is not None
    token = (home / "controller-token").read_text().strip()

    async def scrape() -> tuple[list[float], int, str]:
        times, body = [], b""
        async with aiohttp.ClientSession() as session:
            for _ in range(count):
                started = time.perf_counter()
                async with session.get(
                    f"{url}/metrics",
                    headers={"Authorization": f"Bearer {token}"},
                    ssl=tls.context,
                    server_hostname=tls.server_hostname,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    body = await resp.read()
                times.append(time.perf_counter() - started)
        return times, len(body), body.decode()

    return asyncio.run(scrape())


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def run(replicas: int, requests: int, scrapes: int, work: Path) -> dict[str, Any]:
    home = work / f"home-{replicas}"
    spec = FEDERATION.read_text().replace(
        "replicasPerCluster: 2", f"replicasPerCluster: {replicas}"
    )
    desc = work / f"federation-{replicas}.yaml"
    desc.write_text(spec)
    try:
        started = time.monotonic()
        # the controller's home: MESHFED_HOME (it reads config.yaml for the CA)
        os.environ["MESHFED_HOME"] = str(home)
        _meshfed(home, "up", "--detach", "-f", str(desc))
        up_s = time.monotonic() - started
        record = Record.load(home)
        assert record is not None
        controller = next(p for p in record.processes if p.role == "controller")
        sidecars = [
            p for p in record.processes if p.role.startswith("echo-") and "sidecar" in p.name
        ]
        sent = 0
        deadline = time.monotonic() + 120
        for p in sidecars:
            port = p.argv[p.argv.index("--outbound-port") + 1]
            for _ in range(requests):
                if time.monotonic() > deadline:
                    break
                req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": HOST})
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        resp.read()
                    sent += 1
                except OSError:
                    pass
        time.sleep(
            6
        )  # flushed by Envoy (1 s), reported by the agents (2 s) and control planes (2 s)
        url = record.info["controller"]
        times, size, text = _scrape(home, url, scrapes)
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        return {
            "replicasPerCluster": replicas,
            "sidecars": len(sidecars) + 1,  # and the frontend's
            "upSeconds": round(up_s, 1),
            "requestsSent": sent,
            "controllerRssKiB": _rss_kib(controller.pid),
            "metricsMedianMs": round(statistics.median(times) * 1000, 2),
            "metricsMaxMs": round(max(times) * 1000, 2),
            "metricsBytes": size,
            "metricsSeries": series,
        }
    finally:
        subprocess.run(
            [MESHFED, "down"],
            env=dict(os.environ, MESHFED_HOME=str(home)),
            capture_output=True,
            timeout=120,
            check=False,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--replicas", type=int, default=16, help="echo replicas per cluster (<= 16)"
    )
    parser.add_argument("--requests", type=int, default=20, help="requests per sidecar")
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = run(1, args.requests, args.scrapes, Path(tmp))
        big = run(args.replicas, args.requests, args.scrapes, Path(tmp))
    print(f"{'':<28}{'baseline':>12}{'measured':>12}")
    for key in base:
        print(f"{key:<28}{base[key]:>12}{big[key]:>12}")
    added = big["sidecars"] - base["sidecars"]
    growth = (big["controllerRssKiB"] - base["controllerRssKiB"]) / added
    print(
        f"controller memory growth: {growth:.1f} KiB per added sidecar ({added} added);"
        f" GET /metrics with {big['sidecars']} sidecars: median {big['metricsMedianMs']} ms,"
        f" max {big['metricsMaxMs']} ms"
    )
    print(json.dumps({"baseline": base, "measured": big, "kibPerSidecar": round(growth, 1)}))


if __name__ == "__main__":
    main()
