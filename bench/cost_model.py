"""What routing costs: monthly egress US$ and p99 RTT of three policies on a reference workload,
computed from the EDS weights the control plane actually emits; and how long one decision takes.

Reference workload (3 regions, 2 clouds):

- clusters ``aws-use1`` (aws/us-east-1, zones a and b), ``aws-euw1`` (aws/eu-west-1, zone a),
  ``gcp-euw1`` (gcp/europe-west1, zone b); service ``api`` with 4 endpoints in each cluster;
- partial local capacity: in ``aws-use1`` zone a has 1 of 2 endpoints healthy, in ``gcp-euw1``
  only 1 of 4 (Envoy then spills 30 % and 65 % of their callers' traffic);
- traffic matrix (GB of responses per month, by caller cluster): aws-use1 20,000,
  aws-euw1 12,000, gcp-euw1 8,000 (callers in the first zone of their cluster).

Policies: ``round-robin`` (every healthy endpoint equally, what a mesh without locality load
balancing does), ``locality-only`` (meshfed's default: nearest healthy first), ``cost:
prefer-cheaper`` and ``cost: optimize`` (TrafficPolicy). For the meshfed policies the shares
come from the ClusterLoadAssignment generated for a sidecar in each caller cluster (priorities,
locality weights, endpoint health), with Envoy's overprovisioning factor 1.4. Prices:
providers/pricing (AWS and GCP list prices, source and date in the YAML files); RTT: estimates
from region coordinates (same zone 0.2 ms, cross zone 1 ms).

Run: ``.venv/bin/python bench/cost_model.py``
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from federation.controlplane import resource
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import (
    Health,
    RegistryState,
    ServiceRegistry,
    with_federation,
)
from federation.lb.decision import OVERPROVISIONING, Candidate, PolicyInputs, decide
from federation.lb.paths import path_facts
from federation.model.documents import load_documents
from federation.model.locality import Locality
from federation.model.policy import TrafficPolicy
from federation.model.service import ServiceImport
from federation.sync.node import ProxyDescription

CLUSTERS = {
    "aws-use1": ("aws/us-east-1", ["us-east-1a", "us-east-1a", "us-east-1b", "us-east-1b"]),
    "aws-euw1": ("aws/eu-west-1", ["eu-west-1a"] * 4),
    "gcp-euw1": ("gcp/europe-west1", ["europe-west1-b"] * 4),
}
UNHEALTHY = {("aws-use1", 1), ("gcp-euw1", 1), ("gcp-euw1", 2), ("gcp-euw1", 3)}
DEMAND_GB = {"aws-use1": 20_000, "aws-euw1": 12_000, "gcp-euw1": 8_000}


def _healthy(cluster: str) -> int:
    return sum(1 for i in range(4) if (cluster, i) not in UNHEALTHY)


def _caller(cluster: str) -> Locality:
    region, zones = CLUSTERS[cluster]
    return Locality(region, zones[0])


def _state(caller: str, policy: TrafficPolicy | None) -> RegistryState:
    """The caller cluster's registry: its own endpoints, imports of the two others (one
    gateway each, weighted by healthy endpoints), the policy."""
    region, zones = CLUSTERS[caller]
    docs = []
    for i, zone in enumerate(zones):
        docs.append(
            "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
            f"metadata: {{name: api-{i}, namespace: demo}}\n"
            f"spec: {{service: api, address: 10.0.0.{i + 1}, locality: {region}/{zone},"
            " ports: [{name: http, port: 8080}]}\n"
        )
    registry = ServiceRegistry()
    registry.apply(load_documents("---\n".join(docs)))  # type: ignore[arg-type]
    for i in range(4):
        health = Health.UNHEALTHY if (caller, i) in UNHEALTHY else Health.HEALTHY
        registry.set_health(("demo", f"api-{i}"), health)
    remote = [
        {
            "cluster": name,
            "gateway": f"10.9.{n}.1:15443",
            "network": name,
            "locality": f"{CLUSTERS[name][0]}/{CLUSTERS[name][1][0]}",
            "endpoints": _healthy(name),
        }
        for n, name in enumerate(CLUSTERS)
        if name != caller
    ]
    imp = ServiceImport.model_validate(
        {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "ServiceImport",
            "metadata": {"name": "api", "namespace": "demo"},
            "spec": {
                "ports": [{"name": "http", "port": 8080}],
                "serviceAccounts": ["api"],
                "clusters": remote,
            },
        }
    )
    return with_federation(registry.state, [imp], [], [policy] if policy else [])


def _shares_from_cla(caller: str, policy: TrafficPolicy | None) -> dict[tuple[str, str], float]:
    """(server cluster, zone) -> share of the caller's requests, from the generated EDS."""
    state = _state(caller, policy)
    mesh = MeshContext(caller, "example.org", _caller(caller))
    proxy = ProxyDescription(
        "bench", "sidecar", "demo", "", "frontend", _caller(caller), identity_dir="/run/id"
    )
    main = "outbound|8080||api.demo.svc.clusterset.local"  # not the per-cluster subsets
    [cla] = [c for c in generate(mesh, state, proxy)[resource.ENDPOINT] if c.cluster_name == main]
    levels: dict[int, list] = {}
    for loc in cla.endpoints:
        levels.setdefault(loc.priority, []).append(loc)
    remaining, shares = 1.0, {}
    for p in sorted(levels):
        locs = levels[p]
        total = sum(len(loc.lb_endpoints) for loc in locs)
        # a gateway endpoint stands for the remote cluster's healthy endpoints
        healthy = sum(
            sum(1 for e in loc.lb_endpoints if e.health_status != 2) for loc in locs
        )  # 2 = UNHEALTHY
        take = min(remaining, OVERPROVISIONING * healthy / total if total else 0)
        weight_sum = sum(loc.load_balancing_weight.value for loc in locs)
        for loc in locs:
            server = _server_cluster(loc)
            shares[(server, loc.locality.zone)] = (
                take * loc.load_balancing_weight.value / weight_sum
            )
        remaining -= take
    return shares


def _server_cluster(loc) -> str:  # type: ignore[no-untyped-def]
    for name, (region, _) in CLUSTERS.items():
        if region == loc.locality.region:
            return name
    raise KeyError(loc.locality.region)


def _round_robin() -> dict[tuple[str, str], float]:
    healthy = [
        (name, zones[i])
        for name, (_, zones) in CLUSTERS.items()
        for i in range(4)
        if (name, i) not in UNHEALTHY
    ]
    shares: dict[tuple[str, str], float] = {}
    for key in healthy:
        shares[key] = shares.get(key, 0) + 1 / len(healthy)
    return shares


def _evaluate(
    shares_by_caller: dict[str, dict[tuple[str, str], float]],
) -> tuple[float, float, float]:
    dollars, samples, local = 0.0, [], 0.0
    total_demand = sum(DEMAND_GB.values())
    for caller, shares in shares_by_caller.items():
        here = _caller(caller)
        for (server, zone), share in shares.items():
            facts = path_facts(here, Locality(CLUSTERS[server][0], zone))
            gb = DEMAND_GB[caller] * share
            dollars += gb * facts.usd_per_gb
            samples.append((facts.rtt_ms or 0.0, gb))
            if server == caller:
                local += gb / total_demand
    samples.sort()
    acc, p99 = 0.0, 0.0
    for rtt, gb in samples:
        acc += gb
        if acc >= 0.99 * total_demand:
            p99 = rtt
            break
    return dollars, p99, local


def _policy(mode: str) -> TrafficPolicy:
    return TrafficPolicy.model_validate(
        {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "TrafficPolicy",
            "metadata": {"name": "api", "namespace": "demo"},
            "spec": {"host": "api.demo.svc.clusterset.local", "cost": {"mode": mode}},
        }
    )


def _decision_timing() -> None:
    locs = [
        "aws/us-east-1/us-east-1a",
        "aws/us-east-1/us-east-1b",
        "aws/us-west-2/us-west-2a",
        "aws/eu-west-1/eu-west-1a",
        "gcp/us-east4/us-east4-a",
        "gcp/europe-west1/europe-west1-b",
    ]
    caller = Locality.parse(locs[0])
    cands = []
    for i in range(20):
        loc = Locality.parse(locs[i % len(locs)] + ("" if i < len(locs) else f"/r{i}"))
        facts = path_facts(caller, loc)
        cands.append(
            Candidate(
                f"c{i}",
                loc,
                1 + i % 3,
                3,
                1 + i % 3,
                facts.rtt_ms,
                facts.rtt_source,
                facts.usd_per_gb,
                facts.path,
            )
        )
    print("\ndecide() for 20 localities (10,000 runs each, µs per decision):")
    print(f"{'policy':<28}{'p50':>8}{'p99':>8}")
    for name, policy in [
        ("locality-only (baseline)", PolicyInputs()),
        ("cost: prefer-cheaper", PolicyInputs(mode="prefer-cheaper", latency_budget_ms=50)),
        ("cost: optimize", PolicyInputs(mode="optimize", max_cost_per_gb=0.05)),
    ]:
        times = []
        for _ in range(10_000):
            t0 = time.perf_counter()
            decide(caller, "c0", cands, policy)
            times.append((time.perf_counter() - t0) * 1e6)
        times.sort()
        print(f"{name:<28}{statistics.median(times):>8.1f}{times[int(len(times) * 0.99)]:>8.1f}")


def main() -> None:
    print(__doc__.split("\n\n")[0])
    rows = [("round-robin (baseline)", {c: _round_robin() for c in CLUSTERS})]
    rows.append(("locality-only", {c: _shares_from_cla(c, None) for c in CLUSTERS}))
    for mode in ("prefer-cheaper", "optimize"):
        rows.append((f"cost: {mode}", {c: _shares_from_cla(c, _policy(mode)) for c in CLUSTERS}))
    print(f"\n{'policy':<28}{'egress $/month':>16}{'p99 RTT ms':>12}{'served locally':>16}")
    for name, shares in rows:
        dollars, p99, local = _evaluate(shares)
        print(f"{name:<28}{dollars:>16,.0f}{p99:>12.1f}{local:>15.0%}")
    _decision_timing()


if __name__ == "__main__":
    main()
