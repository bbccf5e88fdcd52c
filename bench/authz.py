"""Data-plane cost of AuthorizationPolicy: the same requests with and without Envoy's RBAC
filters on the destination sidecars, in one run.

Setup: the three-cluster federation of ``tests/integration/federations.py`` (real controller,
control planes, agents, Envoys on loopback) plus a service ``fast`` in the caller's cluster:
an Envoy answering ``200 ok`` by ``direct_response`` (so the backend is not the bottleneck)
behind a meshfed sidecar. wrk sends GETs through the caller's sidecar to ``fast`` (mutual
TLS between the sidecars). Rounds alternate: **none** (no AuthorizationPolicy: no RBAC
filter) and **rbac** (a DENY policy for one path plus an ALLOW policy for the caller's
principal, so every request runs both engines). The policies are applied to the controller
and are in force when a request to the denied path gets 403; removed, when it gets 200.
Reported: the median round of each variant, and their ratio.

    python bench/authz.py [--duration 10] [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile
from bench.dataplane import AUTHZ_POLICIES as POLICIES
from bench.dataplane import backend, ensure_wrk, wrk
from federation.agent.envoy_process import EnvoyProcess
from tests.integration.conftest import make_mesh_home, owned_processes
from tests.integration.federations import ThreeClusters
from tests.integration.harness import free_port, get, start_sidecar_agent, wait_until

HOST = "fast.demo.svc.clusterset.local"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = make_mesh_home(work)
        with owned_processes(work) as procs:
            fed = ThreeClusters(procs, home)
            fed.start()
            port = fed.client_port
            url = f"http://127.0.0.1:{port}/"
            app, admin = free_port(), free_port()
            fast = EnvoyProcess(backend(admin, app), work / "fast", base_id=admin, admin_port=admin)
            procs.envoy(fast)
            fast.wait_ready(30)
            start_sidecar_agent(
                procs, home, fed.cps["a"], service="fast", address="127.0.1.20", app_port=app,
                service_port=8080,
            )  # fmt: skip
            wait_until(lambda: get(port, HOST)[0] == 200, 60, "fast served through the mesh")

            def probe() -> int:
                return get(port, HOST, path="/probe-denied")[0]

            results: dict[str, list[dict[str, float]]] = {"none": [], "rbac": []}
            for _ in range(args.rounds):
                for variant in ("none", "rbac"):
                    if variant == "rbac":
                        fed.meshfed("apply", "-f", "-", input_text=POLICIES)
                        wait_until(lambda: probe() == 403, 30, "policies in force")
                    else:
                        fed.meshfed("delete", "-f", "-", input_text=POLICIES, check=False)
                        wait_until(lambda: probe() == 200, 30, "policies removed")
                    wrk(url, 2, args.connections, HOST)  # warm up
                    results[variant].append(wrk(url, args.duration, args.connections, HOST))
    print(
        f"AuthorizationPolicy cost: wrk -t2 -c{args.connections} -d{args.duration}s through"
        f" the caller's sidecar to 'fast' (Envoy direct_response behind a sidecar, mTLS),"
        f" {args.rounds} alternating rounds"
    )
    print(f"{'variant':<8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    summary: dict[str, dict[str, dict[str, float]]] = {"median": {}, "best": {}}
    for variant, runs in results.items():
        for r in runs:
            print(
                f"{variant:<8}{r['rps']:>10.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['non2xx']:>9.0f}"
            )
        summary["median"][variant] = {
            k: percentile([r[k] for r in runs], 50) for k in ("rps", "p50", "p99")
        }
        summary["best"][variant] = max(runs, key=lambda r: r["rps"])
    for how, by_variant in summary.items():
        n, r = by_variant["none"], by_variant["rbac"]
        print(
            f"rbac/none ({how} round each): req/s x{r['rps'] / n['rps']:.3f},"
            f" p50 x{r['p50'] / n['p50']:.3f}, p99 x{r['p99'] / n['p99']:.3f}"
        )


if __name__ == "__main__":
    main()
