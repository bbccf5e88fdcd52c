"""Numbers on the isolated bed (``meshfed up --isolate``; root): cross-cluster endpoint
propagation beside same-cluster propagation, and failover by network partition under load.

Setup: the three clusters of ``tests/integration/isolated.py`` (round trips A-B 40 ms, A-C
80 ms, B-C 30 ms) with ``--replicas`` echo replicas each (16: 48 echo sidecars, the frontend's
and the ``marker`` sidecars -- 51 Envoy sidecars and 3 gateways).

1. **Propagation.** A sidecar for service ``marker`` runs in B (exported) and one for
   ``marker-local`` in A (not exported), each in a pod of its own. Two kinds of change
   (:data:`KINDS`), each ``--changes`` times: deleting and re-applying the WorkloadEntry of
   a service's only endpoint (``marker-local`` appears and disappears in A: its callers add
   or remove its cluster and route; ``marker``, exported, stays a service without
   endpoints: its callers in A and C lose and regain B's gateway as a host), then, with
   that one applied, of a second endpoint beside it (EDS alone: one host more or less;
   across clusters the weight of B's gateway endpoint, 1 <-> 2). Each change goes through its control plane's API; every Envoy
   sidecar that should see the change (cross-cluster: all 33 of A's and C's; baseline: A's
   17) is watched through its admin endpoint (:class:`Observers`: the summed weight of the
   healthy hosts of the service's outbound cluster, polled every 20 ms, which is what the
   next request is balanced over; for the first kind, one request per namespace after each
   change checks that the data plane agrees). The time is from the API call to the first
   poll that shows the change; p50/p99/max over every (change, Envoy) pair. (Watching by
   requests instead -- 33 Envoys sending back to back -- or by ``/stats?filter=`` every
   10 ms loaded the 2 cores so much that the run measured the load.) Then, per kind, the
   cross-cluster changes' hops from A's and C's propagation traces.
2. **Failover by partition.** A's echo replicas are stopped; ``--rps`` GETs per second from A
   (frontend sidecar) are served by B; B is partitioned at 3 s and healed at 8 s. Failed
   requests, the time until every answer came from C at normal latency ("moved"), and the time
   after the heal until B serves >= 90 % again. Baseline in the same run: 200 rps.

Run (about 25 minutes with 100 changes; 3 to start the bed): ``sudo .venv/bin/python
bench/isolated.py [--replicas 16] [--changes 100] [--rps 1000] [--no-partition]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile
from federation.client import call, find_token
from federation.local.description import LocalFederation
from federation.local.netns import call_in
from federation.local.processes import Record
from federation.local.runner import OUTBOUND_PORT, LocalFederationRunner
from federation.sync.node import PROXY_GID
from tests.integration.isolated import (
    A,
    B,
    C,
    IsolatedFederation,
    federation_file,
    isolated_federation,
    wait_for,
)


def _api(fed: IsolatedFederation, cluster: str) -> str:
    return f"https://{fed.plan.address(cluster, 2)}:15014"


def start_marker(
    fed: IsolatedFederation, cluster: str, service: str, host: int, name: str | None = None
) -> dict:
    """An echo app and its sidecar in a pod of ``cluster`` at ``.host`` (recorded, so ``down``
    stops them; ``name``, default ``service``, names them and must be unique in the
    federation), registered as ``<name>-host`` of service ``<service>-host``; returns a
    WorkloadEntry ``<name>`` of service ``<service>`` at that sidecar's address, which the
    benchmark deletes and applies (the agent keeps its own registration alive, so toggling
    that one would be undone). An endpoint of ``<service>`` is only ever answered with an
    error by that sidecar (it serves ``<service>-host``), which is enough: the benchmark
    watches for the caller's Envoy's own answers (404 / ``no healthy upstream``), i.e.
    whether the endpoint is in its config.

    The markers of one service share its service account (``<service>-host``), as replicas
    do: the callers' clusters verify the endpoints by the service's accounts (SANs), so with
    one account per marker, toggling the second changed every caller's cluster (CDS), which
    Envoy warms again through a first health check across the link (~0.3 s) -- the
    "one endpoint of two" kind, meant to change EDS alone, measured that instead (until
    2026-12-07)."""
    desc = LocalFederation.model_validate(federation_file(replicas=1))
    runner = LocalFederationRunner(desc, fed.home, lambda _l: None, isolate=True)
    record = Record.load(fed.home)
    assert record is not None
    runner.record = record
    c = desc.cluster(cluster)
    name = name or service
    # a pod of its own at .host, as every workload of the bed (capture rules included)
    node = runner.net.pod(c, f"marker-{name}", host)
    argvs = runner.echo_argv(c, 0)
    port = int(argvs["echo-app"][argvs["echo-app"].index("--port") + 1])
    app_argv = [*argvs["echo-app"]]
    app_argv[app_argv.index("--name") + 1] = name
    runner.spawn(f"app-{name}", app_argv, "marker-app", node)
    own = f"{name}-host"
    sidecar = runner.sidecar_argv(
        c,
        service=f"{service}-host",
        namespace="demo",
        name=own,
        app_port=port,
        service_port=8080,
        address=fed.plan.address(cluster, host),
        outbound=OUTBOUND_PORT,
        locality=str(c.locality(0)),
    )
    runner.spawn(f"sidecar-{name}", sidecar, "marker-sidecar", node, group=PROXY_GID)

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
    doc["metadata"] = {"name": name, "namespace": "demo"}
    doc["spec"]["service"] = service
    call("POST", _api(fed, cluster), "/v1/apply", body=json.dumps(doc), home=fed.home)
    return doc


def _sidecars(fed: IsolatedFederation, clusters: list[str]) -> dict[str, list[tuple[int, int]]]:
    """(admin port, outbound port) of every echo and frontend sidecar of ``clusters``, by the
    network namespace it runs in (its pod's)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for p in fed.record.processes:
        if p.cluster in clusters and p.role in ("echo-sidecar", "frontend-sidecar"):
            out.setdefault(str(fed.where(p.name)), []).append(
                (
                    int(p.argv[p.argv.index("--admin-port") + 1]),
                    int(p.argv[p.argv.index("--outbound-port") + 1]),
                )
            )
    return out


def _healthy_weight(conn: http.client.HTTPConnection, cluster: str) -> int:
    """The load-balancing weight of the healthy hosts of Envoy cluster ``cluster``, summed,
    from the Envoy's admin ``/clusters?filter=`` (``<cluster>::<host>::health_flags::healthy``
    and ``::weight::N`` lines): the number of endpoints behind them -- a local endpoint
    weighs 1, another cluster's gateway as many as its healthy endpoints there. 0 when the
    cluster does not exist (it is gone when its service has no endpoint left anywhere and is
    not exported: an exported one stays, without hosts).
    About 0.3 ms of the Envoy's main thread; ``/stats?filter=`` costs 1.5 ms (every stat of
    a 50-sidecar mesh is matched against the regex)."""
    conn.request("GET", "/clusters?filter=" + quote(f"^{re.escape(cluster)}$"))
    resp = conn.getresponse()
    body = resp.read().decode()
    if resp.status != 200:
        return 0
    weights: dict[str, int] = {}
    healthy: set[str] = set()
    for line in body.splitlines():
        _, host, field, value = [*line.split("::"), "", "", ""][:4]
        if field == "weight":
            weights[host] = int(value)
        elif field == "health_flags" and value == "healthy":
            healthy.add(host)
    return sum(weights.get(h, 1) for h in healthy)


def _request_sees(port: int, host: str) -> bool:
    """Whether a request through a sidecar's outbound ``port`` for ``host`` reached an
    endpoint: the answer came from upstream (Envoy adds ``x-envoy-upstream-service-time``),
    not from Envoy itself (404 for a name without a route, 503 ``no healthy upstream``). The
    marker endpoint answers 404 too: its sidecar serves only ``<service>-host``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    return resp.getheader("x-envoy-upstream-service-time") is not None


class Observers:
    """Watches every echo and frontend sidecar of some clusters for the arrival or departure
    of one of ``host``'s endpoints as Envoy itself holds them: the summed weight of the
    healthy hosts of the service's outbound cluster ``outbound|8080||<host>``
    (:func:`_healthy_weight`), which is what the load balancer picks from, is ``staying``
    (the endpoints never removed) plus one while it is there -- with none staying, a request
    sent while there is none gets ``no healthy upstream`` (or 404 once the cluster and its
    route are gone), one sent after reaches the endpoint.

    One thread per namespace (each sidecar's pod) polls its Envoy's admin endpoint (loopback
    inside the namespace, a keep-alive connection) every ``interval_s`` for the first second of a change
    and every 100 ms after that, and stops polling an Envoy once it shows the change: the
    watching costs the Envoys ~0.3 ms each per poll for as long as the change takes, and
    puts no traffic on the emulated links that carry the change itself. Each time is that
    of the first poll that showed the change (late by up to ``interval_s``). After every
    change of an only endpoint, one request per namespace through a sidecar checks that the
    data plane agrees (:attr:`disagreements` counts those that did not)."""

    def __init__(
        self,
        fed: IsolatedFederation,
        clusters: list[str],
        host: str,
        interval_s: float = 0.02,
        *,
        staying: int = 0,
    ) -> None:
        self.fed, self.host, self.interval_s = fed, host, interval_s
        self.staying = staying  # endpoints of the service that are never removed
        self.cluster = f"outbound|8080||{host}"
        self.sidecars = _sidecars(fed, clusters)
        self.disagreements = 0
        self.disagreed_adds = 0  # of which after an add (a request found no endpoint)

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.sidecars.values())

    def health_check_failures(self) -> int:
        """Active health checks of the service's outbound cluster that failed, summed over
        every watched Envoy (``cluster.<name>.health_check.failure``; a host the control
        plane adds is checked at once and takes traffic once a check passes: a failed first
        check costs an add ``unhealthy_interval``, 250 ms)."""
        stat = f"cluster.{self.cluster}.health_check.failure"
        total = 0

        def read(netns: str) -> int:
            found = 0
            for admin, _ in self.sidecars[netns]:
                conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
                try:
                    conn.request("GET", "/stats?filter=" + quote(f"^{re.escape(stat)}$"))
                    text = conn.getresponse().read().decode()
                finally:
                    conn.close()
                value = text.rpartition(": ")[2].strip()
                found += int(value) if value.isdigit() else 0
            return found

        for netns in self.sidecars:
            total += call_in(netns, lambda netns=netns: read(netns))
        return total

    def wait(self, want_present: bool, timeout_s: float = 10) -> tuple[list[float], int]:
        """When (``time.monotonic()``) each Envoy first showed the change, and how many did
        not within ``timeout_s``."""
        seen: list[float] = []
        lock = threading.Lock()

        def watch(netns: str) -> None:
            sidecars = self.sidecars[netns]
            conns = {
                admin: http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
                for admin, _ in sidecars
            }
            begin = tick = time.monotonic()
            deadline = begin + timeout_s
            try:
                while conns and time.monotonic() < deadline:  # bounded by timeout_s
                    for admin, conn in list(conns.items()):
                        try:
                            weight = _healthy_weight(conn, self.cluster)
                        except (OSError, http.client.HTTPException):
                            conn.close()  # reconnects on the next request
                            continue
                        if weight == self.staying + want_present:
                            with lock:
                                seen.append(time.monotonic())
                            del conns[admin]
                    tick += self.interval_s if tick - begin < 1 else 0.1
                    time.sleep(max(0.0, tick - time.monotonic()))
                if (
                    not conns
                    and not self.staying  # with one staying, every request is served
                    and _request_sees(sidecars[0][1], self.host) != want_present
                ):
                    with lock:
                        self.disagreements += 1
                        self.disagreed_adds += want_present
            finally:
                for conn in conns.values():
                    conn.close()

        threads = [
            threading.Thread(target=call_in, args=(ns, lambda ns=ns: watch(ns)))
            for ns in self.sidecars
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return seen, self.count - len(seen)


def toggle(
    fed: IsolatedFederation,
    cluster: str,
    entry: dict,
    observers: Observers,
    changes: int,
    calls: list[tuple[float, bool]] | None = None,
) -> tuple[list[float], list[float], int]:
    """Delete and re-apply WorkloadEntry ``entry`` of ``cluster`` ``changes`` times, starting
    with a delete; ms from the API call to each observer's first answer showing the change,
    for adds and for removals, and how many (change, observer) pairs did not see it within
    10 s. The entry is applied when it returns. ``calls`` gets (epoch s before the call,
    whether it added) of every change, for :func:`trace_hops`."""
    doc = json.dumps(entry)
    api = _api(fed, cluster)
    samples: dict[bool, list[float]] = {True: [], False: []}
    missed = 0
    for i in range(changes + changes % 2):  # even: it ends applied
        present = i % 2 == 1
        if calls is not None:
            calls.append((time.time(), present))
        t0 = time.monotonic()
        call("POST", api, "/v1/apply" if present else "/v1/delete", body=doc, home=fed.home)
        seen, late = observers.wait(want_present=present)
        samples[present] += [(t - t0) * 1000 for t in seen]
        missed += late
        if late:  # let the stragglers converge before the next change
            observers.wait(want_present=present, timeout_s=30)
    return samples[True], samples[False], missed


def partition_round(fed: IsolatedFederation, rps: float) -> tuple[int, int, float, float]:
    """(requests, failed, moved s, back s) for one partition of B under ``rps``."""
    results, at = fed.drive(
        "sidecar-frontend",
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
        lambda: fed.drive("sidecar-frontend", rps=20, duration_s=0.5)[0][-1].served_by == B,
        30,
        "B back",
    )
    return len(results), failed, moved, back


#: The two kinds of change: (label, endpoints of the service that stay). A service whose
#: only endpoint comes and goes: ``marker-local`` (not exported) appears and disappears in A
#: (every caller's Envoy adds or removes its cluster and route: CDS, EDS, RDS); ``marker``
#: is exported by B and stays a service without endpoints (``RegistryState.retained``): its
#: callers in A and C lose and regain B's gateway as a host (EDS; a regained host takes
#: traffic once its first health check through the gateway passes). One endpoint of two
#: changes EDS alone (across clusters: the weight of the exporter's gateway endpoint, 1 <-> 2).
KINDS = (("a service's only endpoint", 0), ("one endpoint of two", 1))


def propagation_table(fed: IsolatedFederation, changes: int) -> None:
    """Part 1 (see the module docstring): for each of :data:`KINDS`, the baseline, then
    cross-cluster, then the cross-cluster changes' hops (:func:`trace_table`)."""
    rows: list[tuple[str, list[float] | None, int | None, int | None]] = []
    checks: list[str] = []  # health checks of the watched cluster that failed, per path
    hops: dict[str, dict[str, list[float]]] = {}
    entries: dict[str, dict] = {}
    for kind, staying in KINDS:
        rows.append((f"{kind}:", None, None, None))
        for path, cluster, service, watched in (
            ("  same cluster (A -> {n} Envoys of A), baseline", A, "marker-local", [A]),
            ("  cross-cluster (B -> {n} Envoys of A and C)", B, "marker", [A, C]),
        ):
            observers = Observers(
                fed, watched, f"{service}.demo.svc.clusterset.local", staying=staying
            )
            # the first marker of a service is its only endpoint; a second one is toggled
            # beside it
            name = service if not staying else f"{service}-2"
            entries[name] = start_marker(fed, cluster, service, 40 + staying, name=name)
            observers.wait(want_present=True, timeout_s=60)
            since, calls = time.time(), []
            failed_before = observers.health_check_failures()
            adds, removes, missed = toggle(fed, cluster, entries[name], observers, changes, calls)
            rows.append(
                (path.format(n=observers.count), adds + removes, missed, observers.disagreements)
            )
            rows.append(("    of which adds", adds, None, None))
            rows.append(("    of which removals", removes, None, None))
            failed = observers.health_check_failures() - failed_before
            where = f"{kind} {path.strip().split(' (')[0]}"
            checks.append(
                f"{where}: {failed} in {len(adds)}"
                if failed >= 0  # a cluster made anew on each add starts its counters at 0
                else f"{where}: not counted (the cluster is made anew on each add)"
            )
            if observers.disagreements:
                checks.append(
                    f"  requests disagreeing: {observers.disagreed_adds} after an add,"
                    f" {observers.disagreements - observers.disagreed_adds} after a removal"
                )
        hops[kind] = trace_hops(fed, since, calls)
    print(
        f"\nendpoint propagation: {changes} changes (add/remove) of each kind; ms from the API"
        " call until each Envoy's admin shows the endpoint in (or out of) its load balancer"
        " (polled every 20 ms)"
    )
    print(
        f"{'path':<46}{'samples':>8}{'missed':>7}{'p50':>9}{'p99':>9}{'max':>9}"
        f"{'requests disagreeing':>22}"
    )
    for label, ms, late, disagreements in rows:
        if ms is None:
            print(label)
            continue
        print(
            f"{label:<46}{len(ms):>8}{'' if late is None else late:>7}"
            f"{percentile(ms, 50):>9.1f}{percentile(ms, 99):>9.1f}{max(ms):>9.1f}"
            f"{'' if disagreements is None else disagreements:>22}",
            flush=True,
        )
    print("\nhealth checks of the watched cluster that failed (every Envoy; in (Envoy, add) pairs)")
    for line in checks:
        print(f"  {line}")
    for kind, by_hop in hops.items():
        trace_table(kind, by_hop)


def trace_hops(
    fed: IsolatedFederation, since: float, calls: list[tuple[float, bool]]
) -> dict[str, list[float]]:
    """Where the cross-cluster changes made after ``since`` (epoch s) spent their time, per
    hop, in ms (``GET /v1/traces`` of A's and C's control planes, changes made in B; issue
    #37; a control plane keeps its last 64 traces); the proxies' hops also for adds and
    removals apart (a trace is of the last of ``calls`` made before its change)."""
    hops: dict[str, list[float]] = {}
    for cluster in (A, C):
        api = _api(fed, cluster)
        data = call("GET", api, "/v1/traces", token=find_token(api, home=fed.home), home=fed.home)
        for t in data["traces"]:
            if t["origin"] != B or t["changedAt"] < since:
                continue
            made = [added for at, added in calls if at <= t["changedAt"]]
            which = ("removals", "adds")[made[-1]] if made else "?"
            for hop, ms in t["hopsMs"].items():
                if ms is not None:
                    hops.setdefault(hop, []).append(ms)
            for p in t["proxies"].values():
                for hop in ("buildMs", "ackMs", "totalMs"):
                    if p[hop] is not None:
                        hops.setdefault(f"proxy {hop[:-2]}", []).append(p[hop])
                        hops.setdefault(f"  {hop[:-2]}, {which}", []).append(p[hop])
    return hops


def trace_table(kind: str, hops: dict[str, list[float]]) -> None:
    """The hops of :func:`trace_hops` as a table."""
    print(f"\ncross-cluster changes by hop, {kind} (traces of A's and C's control planes; ms)")
    print(f"{'hop':<28}{'samples':>8}{'p50':>9}{'p99':>9}{'max':>9}")
    for hop, values in hops.items():
        print(
            f"{hop:<28}{len(values):>8}{percentile(values, 50):>9.1f}"
            f"{percentile(values, 99):>9.1f}{max(values):>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=16, help="echo replicas per cluster")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--rps", type=float, default=1000)
    parser.add_argument("--no-propagation", action="store_true", help="only the partitions")
    parser.add_argument("--no-partition", action="store_true", help="only the propagation")
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
        if args.no_partition:
            return
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
