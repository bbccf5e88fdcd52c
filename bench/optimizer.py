"""How long the controller's linear program takes (issue #18): one solve per service at
``--localities`` caller and serving localities (20 by default: 400 paths, 1,200 variables),
for ``--services`` services (1,000) with random demand, capacity, price and RTT; beside it,
in the same run, the priority decision (``decide``) every control plane makes per caller over
the same 20 localities -- the per-service work the optimizer adds to what exists -- and the
same programs solved through SciPy's ``linprog(method="highs")``, which the optimizer used
before it called HiGHS through ``highspy`` (the same solver; SciPy is a test dependency).

Printed: ms per solve (p50, p99, max), seconds for a whole round over every service, and how
many programs needed their reserve or overflow tiers (demand beyond capacity x headroom).

Run: ``.venv/bin/python bench/optimizer.py [--localities 20] [--services 1000]``
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile
from federation.lb import optimizer
from federation.lb.decision import Candidate, PolicyInputs, decide
from federation.lb.optimizer import Caller, Link, Problem, Server, solve
from federation.model.locality import Locality

CLOUDS = ("aws", "gcp")


def _localities(n: int) -> list[Locality]:
    return [
        Locality(f"{CLOUDS[i % 2]}/region-{i // 4}", f"region-{i // 4}{'abcd'[i % 4]}")
        for i in range(n)
    ]


def _problem(rng: random.Random, locs: list[Locality]) -> Problem:
    callers = [Caller(f"c{i}", loc, rng.uniform(10, 500), 800, 8000) for i, loc in enumerate(locs)]
    servers = [
        Server(f"c{i}", loc, rng.choice((None, rng.uniform(50, 400)))) for i, loc in enumerate(locs)
    ]
    links = [
        [
            Link(
                usd_per_request=0.0 if i == j else rng.choice((0.01, 0.02, 0.09)) * 8.8e-6,
                rtt_ms=0.2 if i == j else rng.uniform(1, 150),
                rank=0 if i == j else rng.choice((1, 2, 3)),
                excluded="" if rng.random() > 0.1 else "over budget",
            )
            for j in range(len(servers))
        ]
        for i in range(len(callers))
    ]
    return Problem(callers, servers, links)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--localities", type=int, default=20)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    locs = _localities(args.localities)
    problems = [_problem(rng, locs) for _ in range(args.services)]

    solve(problems[0])  # warm the imports
    times, overloaded, dollars = [], 0, []
    started = time.perf_counter()
    for p in problems:
        t = time.perf_counter()
        solution = solve(p)
        times.append((time.perf_counter() - t) * 1000)
        dollars.append(sum(solution.usd_per_hour))
        overloaded += any("reserve" in b or "over its capacity" in b for b in solution.binding)
    total = time.perf_counter() - started

    scipy_ms, scipy_dollars = _through_scipy(problems)
    same = sum(
        abs(a - b) <= 1e-9 + 1e-6 * abs(a) for a, b in zip(dollars, scipy_dollars, strict=True)
    )

    candidates = [
        Candidate(f"c{i}", loc, 2, 2, 2, rng.uniform(1, 150), "estimated", 0.02, "")
        for i, loc in enumerate(locs)
    ]
    policy = PolicyInputs(mode="optimize", latency_budget_ms=100)
    decide_ms = []
    for _ in range(args.services):
        t = time.perf_counter()
        for caller in locs:  # one decision per caller locality, as the control planes make
            decide(caller, "c0", candidates, policy)
        decide_ms.append((time.perf_counter() - t) * 1000)

    n = args.localities
    print(
        f"{args.services} services x {n} caller localities x {n} serving localities"
        f" ({3 * n * n} variables, {n + 2 * n} constraints at most)"
    )
    print(f"{'per service':<44}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print(
        f"{'optimizer: solve() (HiGHS)':<44}{percentile(times, 50):>9.2f}"
        f"{percentile(times, 99):>9.2f}{max(times):>9.2f}"
    )
    print(
        f"{'baseline: solve() through scipy linprog':<44}{percentile(scipy_ms, 50):>9.2f}"
        f"{percentile(scipy_ms, 99):>9.2f}{max(scipy_ms):>9.2f}"
    )
    print(
        f"{f'baseline: decide() for the {n} callers':<44}{percentile(decide_ms, 50):>9.2f}"
        f"{percentile(decide_ms, 99):>9.2f}{max(decide_ms):>9.2f}"
    )
    print(
        f"a whole round over {args.services} services: {total:.1f} s;"
        f" {overloaded} programs used a reserve or overflowed; scipy's plan cost the same"
        f" US$/hour for {same} of {len(problems)}"
    )


def _through_scipy(problems: list[Problem]) -> tuple[list[float], list[float]]:
    """ms per :func:`solve` with its LP handed to ``scipy.optimize.linprog`` instead, and
    each plan's predicted US$/hour."""
    import numpy as np
    from scipy.optimize import linprog

    def scipy_lp(cost, rows, lower, upper, bound):  # type: ignore[no-untyped-def]
        eq = lower == upper
        result = linprog(
            cost,
            A_ub=rows[~eq] if (~eq).any() else None,
            b_ub=upper[~eq] if (~eq).any() else None,
            A_eq=rows[eq],
            b_eq=upper[eq],
            bounds=[(0.0, None if np.isinf(b) else float(b)) for b in bound],
            method="highs",
        )
        return result.x

    highs, optimizer.solve_lp = optimizer.solve_lp, scipy_lp
    try:
        solve(problems[0])  # warm the imports
        times, dollars = [], []
        for p in problems:
            t = time.perf_counter()
            dollars.append(sum(solve(p).usd_per_hour))
            times.append((time.perf_counter() - t) * 1000)
    finally:
        optimizer.solve_lp = highs
    return times, dollars


if __name__ == "__main__":
    main()
