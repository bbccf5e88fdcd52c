"""How long from a registry change to the first Envoy request that shows it.

Setup (all real processes on loopback): ``meshfed controlplane serve``, two plain echo apps A
and B, one Envoy sidecar. Each change re-applies WorkloadEntry ``echo-x`` pointing at the
other app; the benchmark then sends requests back to back through Envoy until the answer comes
from the new app. Run for SotW and for delta ADS in the same run; the "floor" line is the
same request loop with no change pending (the time one request takes), the baseline the
propagation numbers sit on.

    python bench/xds_propagation.py [--changes 100]
"""

from __future__ import annotations

import argparse
import http.client
import json
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
)
from federation.agent.bootstrap import BootstrapParams, envoy_bootstrap
from federation.agent.envoy_process import EnvoyProcess
from federation.ca.names import control_plane_spiffe_id
from federation.sync.node import ProxyDescription

DOC = """apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: echo-x, namespace: demo}}
spec: {{service: echo, address: 127.0.0.1, tlsMode: disabled, locality: aws/us-east-1/us-east-1a,
  healthCheck: {{type: none}}, ports: [{{name: http, port: 8080, targetPort: {port}}}]}}
"""


def ask(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/", headers={"Host": "echo.demo.svc.clusterset.local"})
        resp = conn.getresponse()
        body = resp.read()
        return (
            str(json.loads(body).get("name", "")) if resp.status == 200 else f"status {resp.status}"
        )
    except (OSError, ValueError):
        return "error"
    finally:
        conn.close()


def run(
    delta: bool, changes: int, workdir: Path, home: Path, apps: dict[str, int], xds: int, api: int
) -> dict[str, float]:
    tok = token(home, "east")
    admin, outbound = free_port(), free_port()
    plane = LocalPlane(home, "east", xds, api)
    identity_dir = (workdir / f"identity-{'delta' if delta else 'sotw'}").resolve()
    plane.provision("demo", "bench", identity_dir)
    info = plane.info()
    desc = ProxyDescription(
        node_id=f"bench-{'delta' if delta else 'sotw'}",
        role="sidecar",
        namespace="demo",
        service_account="bench",
        outbound_port=outbound,
        identity_dir=str(identity_dir),
    )
    envoy = EnvoyProcess(
        envoy_bootstrap(
            BootstrapParams(
                node_id=desc.node_id,
                cluster="east",
                xds_host="127.0.0.1",
                xds_port=xds,
                admin_port=admin,
                locality=("aws/us-east-1", "us-east-1a", ""),
                metadata=desc.metadata(),
                delta=delta,
                identity_dir=str(identity_dir),
                xds_server_id=control_plane_spiffe_id(str(info["trust_domain"]), "east"),
                xds_server_name=str(info["serverName"]),
            )
        ),
        workdir / desc.node_id,
        base_id=admin,
        admin_port=admin,
    )
    envoy.start()
    try:
        envoy.wait_ready(30)
        names = list(apps)
        post(api, "/v1/apply", DOC.format(port=apps[names[0]]), tok)
        deadline = time.monotonic() + 30
        while ask(outbound) != names[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        floor = []
        for _ in range(50):
            t = time.perf_counter()
            ask(outbound)
            floor.append((time.perf_counter() - t) * 1000)
        samples = []
        for i in range(changes):
            target = names[(i + 1) % 2]
            t = time.perf_counter()
            post(api, "/v1/apply", DOC.format(port=apps[target]), tok)
            limit = time.monotonic() + 10
            while ask(outbound) != target:
                if time.monotonic() > limit:
                    raise RuntimeError(f"change {i} not visible after 10 s")
            samples.append((time.perf_counter() - t) * 1000)
        return {
            "p50": percentile(samples, 50),
            "p99": percentile(samples, 99),
            "max": max(samples),
            "floor_p50": percentile(floor, 50),
        }
    finally:
        envoy.stop(drain=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        home = workdir / "home"
        init_trust(home, ["east"])
        xds, api = free_port(), free_port()
        cp = start_controlplane(home, "east", xds, api, health=False)
        apps = {"app-a": free_port(), "app-b": free_port()}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "federation.demo.echo_http", "--name", n, "--port", str(p)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for n, p in apps.items()
        ]
        try:
            time.sleep(1)
            print(
                f"xDS propagation: registry change (HTTP apply) -> first Envoy request that shows it; {args.changes} changes each"
            )
            print(f"{'mode':<8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'floor p50 ms':>15}")
            for delta in (False, True):
                r = run(delta, args.changes, workdir, home, apps, xds, api)
                print(
                    f"{'delta' if delta else 'sotw':<8}{r['p50']:>10.1f}{r['p99']:>10.1f}{r['max']:>10.1f}{r['floor_p50']:>15.2f}"
                )
        finally:
            for p in procs:
                p.terminate()
                p.wait(5)
            stop(cp)


if __name__ == "__main__":
    main()
