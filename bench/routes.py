"""What a TrafficPolicy with many ``http`` routes costs (issue #21), for 1 and 50 routes in
the same run:

1. **config**: the sidecar's generated configuration -- ``generate()`` time per sidecar
   (median of ``--generate-runs``, in-process) and the serialized size of its
   RouteConfiguration and of all its resources (bytes);
2. **push**: a real controller, one cluster's control plane and one caller sidecar (Envoy);
   from ``POST /v1/apply`` of the policy to the controller (each apply changes every route's
   header value) until the caller's Envoy has the new last route (polled through its admin
   ``/config_dump`` every 50 ms): p50 / p99 ms over ``--pushes`` applies;
3. **data plane**: wrk through the caller sidecar to a backend Envoy answering ``200 ok`` by
   ``direct_response`` (registered as a workload without sidecar, so only the caller's route
   table differs): the 50-route table with requests matching its **last** route (49 header
   matchers tried first) against the 1-route table, alternating ``--rounds`` rounds;
   median req/s, p50, p99 and the 50/1 ratios.

Routes are header matches (``x-route: r<i>``) each sending to the service (meshfed's
default retries and no timeout), as a user's canary rules would.

    python bench/routes.py [--duration 5] [--connections 16] [--rounds 3] [--pushes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import free_port, percentile
from bench.dataplane import backend, ensure_wrk, wrk
from federation.agent.envoy_process import EnvoyProcess
from federation.client import call, controller_target
from tests.integration.conftest import owned_processes
from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    run_meshfed,
    start_sidecar_agent,
    wait_until,
)

HOST = "echo.demo.svc.clusterset.local"
LOCALITY = "aws/us-east-1/us-east-1a"


def policy(n: int, tag: str = "r") -> str:
    routes = "".join(
        f"  - name: route-{i}\n    match: [{{headers: {{x-route: {{exact: {tag}{i}}}}}}}]\n"
        for i in range(n)
    )
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
        "metadata: {name: echo, namespace: demo}\n"
        f"spec:\n  host: {HOST}\n  http:\n{routes}"
    )


WORKLOAD = """apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: backend, namespace: demo}}
spec: {{service: echo, address: 127.0.0.1, tlsMode: disabled, locality: {loc},
  healthCheck: {{type: none}}, ports: [{{name: http, port: 8080, targetPort: {port}}}]}}
"""


def config_numbers(n: int, runs: int) -> dict[str, float]:
    """generate() time and sizes for a sidecar with an n-route policy (in-process)."""
    from federation.controlplane import resource
    from federation.controlplane.generate.common import MeshContext
    from federation.controlplane.generate.proxy_config import generate
    from federation.controlplane.registry import ServiceRegistry
    from federation.model.documents import load_documents
    from federation.model.locality import Locality
    from federation.sync.node import ProxyDescription

    registry = ServiceRegistry()
    registry.apply(load_documents(WORKLOAD.format(loc=LOCALITY, port=18080)))
    registry.set_federation([], [], load_documents(policy(n)))  # type: ignore[arg-type]
    mesh = MeshContext("east", "example.org", Locality.parse(LOCALITY))
    proxy = ProxyDescription(
        "sidecar~demo~client", "sidecar", "demo", "", "client",
        Locality.parse(LOCALITY), identity_dir="/run/meshfed/identity",
    )  # fmt: skip
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = generate(mesh, registry.state, proxy)
        times.append((time.perf_counter() - t) * 1000)
    routes = sum(m.ByteSize() for m in out[resource.ROUTE])
    total = sum(m.ByteSize() for ms in out.values() for m in ms)
    return {"generate_ms": statistics.median(times), "route_bytes": routes, "all_bytes": total}


def route_names(admin: int) -> list[str]:
    url = f"http://127.0.0.1:{admin}/config_dump?resource=dynamic_route_configs"
    with urllib.request.urlopen(url, timeout=2) as resp:
        dump = json.loads(resp.read())
    names = []
    for config in dump.get("configs", []):
        for vhost in config.get("route_config", {}).get("virtual_hosts", []):
            for route in vhost.get("routes", []):
                for header in route.get("match", {}).get("headers", []):
                    exact = header.get("string_match", {}).get("exact")
                    if exact:
                        names.append(exact)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--generate-runs", type=int, default=200)
    args = parser.parse_args()
    ensure_wrk()

    print("config: generate() per sidecar (median) and serialized sizes")
    print(f"{'routes':>7}{'generate ms':>13}{'RDS bytes':>11}{'all bytes':>11}")
    for n in (1, 50):
        c = config_numbers(n, args.generate_runs)
        print(f"{n:>7}{c['generate_ms']:>13.2f}{c['route_bytes']:>11}{c['all_bytes']:>11}")

    with tempfile.TemporaryDirectory() as tmp, owned_processes(Path(tmp)) as procs:
        home = Path(tmp) / "home"
        controller = ControllerHandle(procs, home, lease_s=10)
        controller.start()
        joined = run_meshfed(
            home, "cluster", "join", "east", "--locality", LOCALITY,
            "--gateway", "127.0.0.1:1", "-o", "json",
        )  # fmt: skip
        cp = ControlPlaneHandle(
            procs, home, "east", LOCALITY,
            extra_args=["--controller", f"127.0.0.1:{controller.api_port}",
                        "--join-token", json.loads(joined.stdout)["token"], "--no-health-checks"],
        )  # fmt: skip
        cp.start()
        back_admin, back_port = free_port(), free_port()
        server = EnvoyProcess(
            backend(back_admin, back_port), Path(tmp) / "backend", base_id=back_admin,
            admin_port=back_admin,
        )  # fmt: skip
        procs.envoy(server)  # started, and stopped with the others
        server.wait_ready(30)
        cp.apply(WORKLOAD.format(loc=LOCALITY, port=back_port))
        admin, outbound = free_port(), free_port()
        start_sidecar_agent(
            procs, home, cp, service="client", address="127.0.0.10", app_port=free_port(),
            service_port=8080, outbound_port=outbound, admin_port=admin,
        )  # fmt: skip
        url = f"http://127.0.0.1:{outbound}/"

        os.environ["MESHFED_HOME"] = str(home)
        api_url, api_token = controller_target(None, None)

        def apply(text: str) -> None:  # the controller's API, as meshfed apply calls it
            call("POST", api_url, "/v1/apply", token=api_token, body=text)

        print(
            f"\npush: POST /v1/apply -> the caller's Envoy has the new last route; {args.pushes} applies"
        )
        print(f"{'routes':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for n in (1, 50):
            samples = []
            for i in range(args.pushes):
                tag = f"p{i}x"
                t = time.perf_counter()
                apply(policy(n, tag))
                wait_until(lambda: f"{tag}{n - 1}" in route_names(admin), 20, "pushed", 0.05)  # noqa: B023
                samples.append((time.perf_counter() - t) * 1000)
            print(
                f"{n:>7}{percentile(samples, 50):>10.0f}{percentile(samples, 99):>10.0f}{max(samples):>10.0f}"
            )

        print(
            f"\ndata plane: wrk -t2 -c{args.connections} -d{args.duration}s through the caller's"
            " sidecar to an Envoy direct_response backend; 50 routes matching the last vs 1"
        )
        results: dict[int, list[dict[str, float]]] = {1: [], 50: []}
        for _ in range(args.rounds):
            for n in (1, 50):
                apply(policy(n))
                wait_until(lambda: f"r{n - 1}" in route_names(admin), 20, "policy in force")  # noqa: B023
                header = f"x-route: r{n - 1}"
                wrk(url, 1, args.connections, HOST, (header,))  # warm up
                run = wrk(url, args.duration, args.connections, HOST, (header,))
                assert run["non2xx"] == 0, run
                results[n].append(run)
        print(f"{'routes':>7}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
        med = {
            n: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
            for n, runs in results.items()
        }
        for n in (1, 50):
            print(f"{n:>7}{med[n]['rps']:>10.0f}{med[n]['p50']:>9.2f}{med[n]['p99']:>9.2f}")
        print(
            f"50/1: req/s x{med[50]['rps'] / med[1]['rps']:.2f},"
            f" p50 x{med[50]['p50'] / med[1]['p50']:.2f}, p99 x{med[50]['p99'] / med[1]['p99']:.2f}"
            f" (medians of {args.rounds} alternating rounds)"
        )


if __name__ == "__main__":
    main()
