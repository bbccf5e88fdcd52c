"""Numbers on the isolated bed (``meshfed up --isolate``; root): cross-cluster endpoint
propagation beside same-cluster propagation, and failover by network partition under load.

Setup: the three clusters of ``tests/integration/isolated.py`` (round trips A-B 40 ms, A-C
80 ms, B-C 30 ms) with ``--replicas`` echo replicas each (16: 48 echo sidecars, the frontend's
and the ``marker`` sidecars -- 51 Envoy sidecars and 3 gateways).

1. **Propagation.** A sidecar for service ``marker`` runs in B (exported) and one for
   ``marker-local`` in A (not exported). Each change deletes or re-applies that sidecar's
   WorkloadEntry through its control plane's API; every Envoy sidecar that should see the
   change (cross-cluster: all of A's and C's; baseline: all of A's) sends requests to the
   service back to back until its answer shows the change -- removed: Envoy's own 404 (the
   name is gone with its last endpoint) or ``no healthy upstream`` 503; added: any other
   answer. The time is from the API call to that
   first request's answer; p50/p99/max over every (change, Envoy) pair.
2. **Failover by partition.** A's echo replicas are stopped; ``--rps`` GETs per second from A
   (frontend sidecar) are served by B; B is partitioned at 3 s and healed at 8 s. Failed
   requests, the time until every answer came from C at normal latency ("moved"), and the time
   after the heal until B serves >= 90 % again. Baseline in the same run: 200 rps.

Run (about 4 minutes): ``sudo .venv/bin/python bench/isolated.py [--replicas 16] [--changes 100]
[--rps 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile
from federation.client import call
from federation.local.description import LocalFederation
from federation.local.netns import call_in
from federation.local.runner import LocalFederationRunner, Record
from tests.integration.isolated import (
    A,
    B,
    C,
    IsolatedFederation,
    federation_file,
    isolated_federation,
    wait_for,
)

NO_UPSTREAM = b"no healthy upstream"


def _api(fed: IsolatedFederation, cluster: str) -> str:
    return f"http://{fed.plan.address(cluster, 2)}:15014"


def start_marker(fed: IsolatedFederation, cluster: str, service: str, host: int) -> dict:
    """An echo app and its sidecar in ``cluster`` (recorded, so ``down`` stops them),
    registered as service ``<service>-host``; returns a WorkloadEntry ``<service>`` of
    service ``<service>`` at that sidecar's address, which the benchmark deletes and applies
    (the agent keeps its own registration alive, so toggling that one would be undone). An
    endpoint of ``<service>`` is only ever answered with an error by that sidecar (it serves
    ``<service>-host``), which is enough: the benchmark watches for the caller's Envoy's own
    answers (404 / ``no healthy upstream``), i.e. whether the endpoint is in its config."""
    desc = LocalFederation.model_validate(federation_file(replicas=1))
    runner = LocalFederationRunner(desc, fed.home, lambda _l: None, isolate=True)
    record = Record.load(fed.home)
    assert record is not None
    runner.record = record
    c = desc.cluster(cluster)
    argvs = runner.echo_argv(c, 0)
    port = int(argvs["echo-app"][argvs["echo-app"].index("--port") + 1])
    app_argv = [*argvs["echo-app"]]
    app_argv[app_argv.index("--name") + 1] = service
    runner.spawn(f"app-{service}", app_argv, "marker-app", cluster)
    own = f"{service}-host"
    sidecar = runner.sidecar_argv(
        c,
        service=own,
        namespace="demo",
        name=own,
        app_port=port,
        service_port=8080,
        address=fed.plan.address(cluster, host),
        outbound=20000 + host,
        locality=str(c.locality(0)),
    )
    runner.spawn(f"sidecar-{service}", sidecar, "marker-sidecar", cluster)

    def registered() -> dict | None:
        state = json.loads((fed.home / "controlplanes" / cluster / "state.json").read_text())
        return next(
            (
                d
                for d in state["documents"]
                if d["kind"] == "WorkloadEntry" and d["metadata"]["name"] == own
            ),
            None,
        )

    doc = wait_for(registered, 60, f"{own} registered")
    doc["metadata"] = {"name": service, "namespace": "demo"}
    doc["spec"]["service"] = service
    call("POST", _api(fed, cluster), "/v1/apply", body=json.dumps(doc), home=fed.home)
    return doc


def _outbounds(fed: IsolatedFederation, cluster: str) -> list[int]:
    return [
        int(p.argv[p.argv.index("--outbound-port") + 1])
        for p in fed.record.processes
        if p.cluster == cluster and p.role in ("echo-sidecar", "frontend-sidecar")
    ]


def _sees(port: int, host: str, want_present: bool) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read()
        # gone: no route for the name any more (404), or a route with no endpoint (503)
        absent = resp.status == 404 or (resp.status == 503 and NO_UPSTREAM in body)
    except OSError:
        return False
    finally:
        conn.close()
    return absent != want_present


class Observers:
    """One thread per namespace; each loops requests through its Envoys until every one
    sees the change, recording the time (monotonic) of each first answer that shows it."""

    def __init__(self, fed: IsolatedFederation, clusters: list[str], host: str) -> None:
        self.fed, self.host = fed, host
        self.ports = {c: _outbounds(fed, c) for c in clusters}

    def wait(self, want_present: bool, timeout_s: float = 10) -> tuple[list[float], int]:
        """When each observer first saw the change, and how many did not within
        ``timeout_s``."""
        seen: list[float] = []
        lock = threading.Lock()

        def watch(cluster: str) -> None:
            async def one(port: int) -> None:
                loop = asyncio.get_running_loop()
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    if await loop.run_in_executor(None, _sees, port, self.host, want_present):
                        with lock:
                            seen.append(time.monotonic())
                        return

            async def all_of() -> None:
                await asyncio.gather(*(one(p) for p in self.ports[cluster]))

            call_in(self.fed.netns(cluster), lambda: asyncio.run(all_of()))

        threads = [threading.Thread(target=watch, args=(c,)) for c in self.ports]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expected = sum(len(p) for p in self.ports.values())
        return seen, expected - len(seen)


def propagation(
    fed: IsolatedFederation, cluster: str, service: str, observers: Observers, changes: int
) -> tuple[list[float], int]:
    """ms from the API call to each observer's first answer showing the change, and how
    many (change, observer) pairs did not see it within 10 s."""
    entry = start_marker(fed, cluster, service, host=40)
    doc = json.dumps(entry)
    api = _api(fed, cluster)
    observers.wait(want_present=True, timeout_s=60)
    samples: list[float] = []
    missed = 0
    for i in range(changes):
        present = i % 2 == 1
        t0 = time.monotonic()
        call("POST", api, "/v1/apply" if present else "/v1/delete", body=doc, home=fed.home)
        seen, late = observers.wait(want_present=present)
        samples += [(t - t0) * 1000 for t in seen]
        missed += late
        if late:  # let the stragglers converge before the next change
            observers.wait(want_present=present, timeout_s=30)
    return samples, missed


def partition_round(fed: IsolatedFederation, rps: float) -> tuple[int, int, float, float]:
    """(requests, failed, moved s, back s) for one partition of B under ``rps``."""
    results, at = fed.drive(
        A,
        fed.outbound("sidecar-frontend"),
        rps=rps,
        duration_s=14,
        events=[(3.0, "partition", B), (8.0, "heal", B)],
    )
    cut, healed = at[f"partition {B}"], at[f"heal {B}"]
    failed = sum(r.status != 200 for r in results)
    normal = sorted(r.done - r.sent for r in results if r.done < cut)[
        int(0.99 * sum(r.done < cut for r in results))
    ]
    held = [
        r.done
        for r in results
        if r.sent < healed
        and r.done > cut
        and (r.served_by == B or r.done - r.sent > max(0.3, 2 * normal))
    ]
    moved = max(held) - cut if held else 0.0
    after = [r for r in results if r.sent >= healed]
    back = float("nan")
    for k in range(40):
        window = [r for r in after if healed + k * 0.25 <= r.sent < healed + (k + 1) * 0.25]
        if window and sum(r.served_by == B for r in window) >= 0.9 * len(window):
            back = k * 0.25
            break
    wait_for(
        lambda: (
            fed.drive(A, fed.outbound("sidecar-frontend"), rps=20, duration_s=0.5)[0][-1].served_by
            == B
        ),
        30,
        "B back",
    )
    return len(results), failed, moved, back


def propagation_table(fed: IsolatedFederation, changes: int) -> None:
    """Part 1 (see the module docstring): the baseline, then cross-cluster."""
    local = propagation(
        fed,
        A,
        "marker-local",
        Observers(fed, [A], "marker-local.demo.svc.clusterset.local"),
        changes,
    )
    remote = propagation(
        fed, B, "marker", Observers(fed, [A, C], "marker.demo.svc.clusterset.local"), changes
    )
    print(
        f"\nendpoint propagation: {changes} changes (add/remove); ms from the API call"
        " to the first request through each Envoy that shows it"
    )
    print(f"{'path':<46}{'samples':>8}{'missed':>7}{'p50':>9}{'p99':>9}{'max':>9}")
    observers_a = len(Observers(fed, [A], "").ports[A])
    for label, (s, missed) in (
        (f"same cluster (A -> {observers_a} Envoys of A), baseline", local),
        ("cross-cluster (B -> every Envoy of A and C)", remote),
    ):
        print(
            f"{label:<46}{len(s):>8}{missed:>7}{percentile(s, 50):>9.1f}"
            f"{percentile(s, 99):>9.1f}{max(s):>9.1f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=16, help="echo replicas per cluster")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--rps", type=float, default=1000)
    parser.add_argument("--no-propagation", action="store_true", help="only the partitions")
    args = parser.parse_args()
    spec = federation_file(lease_s=30, replicas=args.replicas, rps=5)
    with tempfile.TemporaryDirectory() as tmp, isolated_federation(Path(tmp), spec) as fed:
        sidecars = sum(1 for p in fed.record.processes if p.role.endswith("sidecar"))
        print(f"isolated bed: 3 clusters, {sidecars} sidecars, 3 gateways", flush=True)
        if not args.no_propagation:
            export = (
                "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
                f"metadata: {{name: marker, namespace: demo}}\nspec: {{cluster: {B}}}\n"
            )
            token = (fed.home / "controller-token").read_text().strip()
            controller = fed.record.info["controller"]
            call("POST", controller, "/v1/apply", token=token, body=export, home=fed.home)
            propagation_table(fed, args.changes)
        fed.meshfed("demo", "kill", f"{A}/echo")
        print("\nfailover by partition of B (A's own replicas stopped; B serves, C is next)")
        print(f"{'load':<24}{'requests':>9}{'failed':>8}{'moved':>10}{'B back':>10}")
        for rps in (200.0, args.rps):
            n, failed, moved, back = partition_round(fed, rps)
            print(
                f"{f'{rps:g} rps':<24}{n:>9}{failed:>8}{moved * 1000:>8.0f}ms{back:>9.2f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
