"""A whole planning round of the controller (issue #37): ``Planner.plan`` over S services in
cost mode ``optimize``, as the leader runs it every 5 s, this checkout beside an earlier
revision in the same run (``--baseline-rev``, run from a ``git worktree`` in a subprocess
with the same Python).

The world: three clusters (``aws/us-east-1``, ``aws/eu-west-1``, ``gcp/europe-west1``),
each serving every service from two zones (one healthy endpoint per zone, capacities random,
a third undeclared), and callers in one zone of each cluster with random demand. Measured:

- ``cold``: the first round (every service solved);
- ``steady``: a round after the plans converged and nothing moved;
- ``1 % moved``: a round after the demand of 1 % of the services rose by half.

Each is the median of ``--rounds`` rounds; ``solves`` is what the round solved.

    python bench/planner_round.py [--services 1000] [--rounds 5] [--baseline-rev ff34650]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# nothing of meshfed is imported at module level: with --tree, that checkout's federation
# package must be the first one imported (bench._common imports this checkout's)

CLUSTERS = {
    "aws-us-east-1": ("aws/us-east-1", ("us-east-1a", "us-east-1b")),
    "aws-eu-west-1": ("aws/eu-west-1", ("eu-west-1a", "eu-west-1b")),
    "gcp-europe-west1": ("gcp/europe-west1", ("europe-west1-b", "europe-west1-c")),
}


def _world(services: int, rng: random.Random) -> dict[str, Any]:
    from federation.controller.imports import ExportStatus
    from federation.controller.store import ClusterRecord
    from federation.lb.paths import tables_in_force
    from federation.model.documents import validate_documents
    from federation.sync.messages import ClusterReport

    names = [f"svc{i}" for i in range(services)]
    policies = validate_documents(
        [
            {
                "apiVersion": "meshfed.io/v1alpha1",
                "kind": "TrafficPolicy",
                "metadata": {"name": n, "namespace": "demo"},
                "spec": {"host": f"{n}.demo.svc.clusterset.local", "cost": {"mode": "optimize"}},
            }
            for n in names
        ],
        source="bench",
    )
    records = {
        c: ClusterRecord(c, loc, "n-" + c, f"{c}.example:15443", "local", 0.0)
        for c, (loc, _) in CLUSTERS.items()
    }
    reports = {
        c: ClusterReport.model_validate(
            {
                "cluster": c,
                "gateway": f"{c}.example:15443",
                "exports": [f"demo/{n}" for n in names],
                "services": [
                    {
                        "namespace": "demo",
                        "name": n,
                        "ports": [{"name": "http", "port": 80, "protocol": "http"}],
                        "healthy_endpoints_by_zone": dict.fromkeys(zones, 1),
                        "endpoints": [
                            {
                                "address": f"10.{k}.{i // 250}.{i % 250}",
                                "zone": z,
                                "healthy": True,
                                "ports": {"http": 15006},
                                "capacity_rps": rng.choice((0.0, rng.uniform(50, 400))),
                            }
                            for k, z in enumerate(zones)
                        ],
                    }
                    for i, n in enumerate(names)
                ],
            }
        )
        for c, (_, zones) in CLUSTERS.items()
    }
    exports = [ExportStatus(c, "demo", n, 0.0, "Exported") for c in CLUSTERS for n in names]
    demand = {
        (c, f"{loc}/{zones[0]}", n): rng.uniform(10, 300)
        for c, (loc, zones) in CLUSTERS.items()
        for n in names
    }
    return {
        "policies": policies,
        "records": records,
        "reports": reports,
        "exports": exports,
        "demand": demand,
        "prices": tables_in_force([]),
    }


def _rows(demand: dict[tuple[str, str, str], float]) -> list[dict[str, object]]:
    return [
        {
            "source_cluster": c,
            "source_locality": loc,
            "destination_service": f"{n}.demo",
            "rps": rps,
            "requestBytesPerS": rps * 800,
            "responseBytesPerS": rps * 8000,
        }
        for (c, loc, n), rps in demand.items()
    ]


def measure(services: int, rounds: int) -> dict[str, Any]:
    """Run the rounds with the code on ``sys.path``; seconds and solves per kind of round."""
    from federation.controller.planner import Planner, PlannerSettings

    print(f"measuring {sys.modules['federation'].__file__}", file=sys.stderr)

    rng = random.Random(7)
    world = _world(services, rng)
    now = [1000.0]
    planner = Planner(PlannerSettings(smoothing=1.0), clock=lambda: now[0])

    def one(demand: dict[tuple[str, str, str], float]) -> tuple[float, int]:
        now[0] += 5
        rows = _rows(demand)
        solves = planner.solves
        started = time.perf_counter()
        planner.plan(
            world["policies"],
            world["exports"],
            world["records"],
            world["reports"],
            rows,
            world["prices"],
        )
        return time.perf_counter() - started, planner.solves - solves

    demand = dict(world["demand"])
    cold = one(demand)
    for _ in range(6):  # converge (each round moves at most 25 % toward the optimum)
        one(demand)
    steady = [one(demand) for _ in range(rounds)]
    moved = []
    keys = sorted(demand)
    for _ in range(rounds):
        for key in rng.sample(keys, max(1, len(keys) // 100)):
            demand[key] *= 1.5
        moved.append(one(demand))
    return {
        "cold": cold,
        "steady": (statistics.median(s for s, _ in steady), max(n for _, n in steady)),
        "moved": (statistics.median(s for s, _ in moved), max(n for _, n in moved)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-rev", default="ff34650")
    parser.add_argument("--tree", help=argparse.SUPPRESS)  # internal: measure that checkout
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
        print(json.dumps(measure(args.services, args.rounds)))
        return
    sys.path.insert(0, str(REPO))
    from bench._common import measure_beside_baseline

    results = measure_beside_baseline(
        __file__,
        args.baseline_rev,
        ["--services", str(args.services), "--rounds", str(args.rounds)],
    )
    print(
        f"planning round: {args.services} services in cost mode optimize, 3 clusters x 2 zones,"
        f" 3 caller localities; median of {args.rounds} rounds"
    )
    print(f"{'code':<22}{'cold s':>8}{'solves':>8}{'steady s':>10}{'solves':>8}"
          f"{'1% moved s':>12}{'solves':>8}")  # fmt: skip
    for label, r in results.items():
        print(
            f"{label:<22}{r['cold'][0]:>8.2f}{r['cold'][1]:>8}{r['steady'][0]:>10.3f}"
            f"{r['steady'][1]:>8}{r['moved'][0]:>12.3f}{r['moved'][1]:>8}"
        )


if __name__ == "__main__":
    main()
