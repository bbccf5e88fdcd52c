"""Cost-aware routing against round robin and locality failover, live on the isolated bed
(issue #18; root): :mod:`tests.integration.cost_scenario`.

Three clusters (aws-us-east-1, aws-eu-west-1, gcp-europe-west1; RTT A-B 40 ms, A-C 80 ms,
B-C 30 ms by netem), one echo replica each declaring and enforcing ``--capacity`` rps (503
beyond it). A load generator in A (open loop, through the frontend's sidecar, 4 KiB answers)
sends 50 %, 100 % and 150 % of A's capacity; for each load, each policy in turn -- round
robin, locality failover (cost mode off: Istio's default) and meshfed ``optimize`` (budget
60 ms) -- gets ``--warm`` seconds for plans to follow the demand (optimize: and then until its
plan has settled, for at most ``--settle`` s; ``tests/integration/cost_scenario.settled``)
and ``--seconds`` measured.

Printed per (load, policy): requests sent and failed (as the client saw them), p50/p99 ms,
where answers came from, egress US$/hour counted by the mesh (Envoy's bytes x the price table,
``meshfed_egress_usd_total``), and for optimize the LP's own prediction for the same demand;
then the ratios the issue's targets are stated in.

With ``--zones`` (issue 42): B in two zones, one replica of ``--capacity`` in each, A two in
its one zone, C two (:func:`tests.integration.cost_scenario.zone_scenario_file`); the whole
run twice, on a bed without and then on one with zone-local east-west gateways, each policy's
dollars including the gateway hop's (``hop $/h``) and the bytes gateways carried across
zones (``xzone KB``).

Run (about 10 minutes; twice that with ``--zones``): ``sudo .venv/bin/python
bench/cost_live.py [--capacity 40] [--warm 25] [--settle 60] [--seconds 30] [--loads 0.5,1.0,1.5]
[--headroom 0.8] [--zones]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.cost_scenario import (
    BUDGET_MS,
    POLICY_NAMES,
    Measurement,
    measure,
    plan,
    scenario_file,
    zone_scenario_file,
)
from tests.integration.isolated import IsolatedFederation, isolated_federation


def _row(m: Measurement, zones: bool = False) -> str:
    shares = m.zones if zones and m.zones is not None else m.served
    served = " ".join(f"{k.split('-', 1)[-1]}:{v:.0%}" for k, v in shares.items())
    predicted = f"{m.predicted_usd_per_hour:.5f}" if m.predicted_usd_per_hour is not None else "-"
    hop = (
        f"{m.hop_usd_per_request * m.rps * 3600:>10.5f}{m.cross_zone_hop_bytes / 1024:>9.0f}"
        if zones
        else ""
    )
    return (
        f"{m.policy:<19}{m.sent:>6}{m.failed:>7}{m.p50_ms:>8.1f}{m.p99_ms:>8.1f}"
        f"{m.usd_per_hour:>11.5f}{predicted:>11}{hop}   {served}"
    )


def _headrooms(fed: IsolatedFederation) -> str:
    """The headroom of every serving zone in the optimizer's plan, and why."""
    found = plan(fed)
    rooms = [
        f"{loc['cluster']} headroom {loc['headroom']:.2f} ({loc['headroomReason']})"
        for loc in (found or {}).get("localities", [])
        if loc.get("headroom") is not None
    ]
    return "; ".join(rooms) or "no plan"


def _run_bed(
    spec: dict[str, object], loads: list[float], args: argparse.Namespace, capacity: float
) -> dict[tuple[float, str], Measurement]:
    """Bring the bed of ``spec`` up, run every policy at every load (multiples of A's
    ``capacity`` rps), print the table; the measurements."""
    started = time.monotonic()
    results: dict[tuple[float, str], Measurement] = {}
    with tempfile.TemporaryDirectory() as tmp, isolated_federation(Path(tmp), spec) as fed:
        print(
            f"isolated bed up in {time.monotonic() - started:.0f} s; A serves {capacity:g}"
            f" rps; optimize budget {BUDGET_MS:g} ms, headroom"
            f" {args.headroom if args.headroom is not None else 'learned'}",
            flush=True,
        )
        for load in loads:
            rps = load * capacity
            print(f"\nload {load:.0%} of A's capacity ({rps:g} rps, {args.seconds:g} s)")
            hop = f"{'hop $/h':>10}{'xzone KB':>9}" if args.zones else ""
            print(
                f"{'policy':<19}{'sent':>6}{'failed':>7}{'p50':>8}{'p99':>8}"
                f"{'$/hour':>11}{'LP $/h':>11}{hop}   served by"
            )
            for name in POLICY_NAMES:
                m = measure(
                    fed,
                    name,
                    rps,
                    warm_s=args.warm,
                    seconds=args.seconds,
                    headroom=args.headroom,
                    settle_s=args.settle,
                )
                results[(load, name)] = m
                print(_row(m, args.zones), flush=True)
                if name == "optimize":
                    print(f"{'':19}{_headrooms(fed)}", flush=True)
    return results


def _ratios(results: dict[tuple[float, str], Measurement], loads: list[float]) -> None:
    print("\nratios (targets: RR/optimize >= 3; at 150 %: optimize $ <= 1.2 x failover,")
    print("0 failed, p99 within budget; optimize within 5 % of the LP's prediction)")
    for load in loads:
        rr, fo, op = (results[(load, n)] for n in POLICY_NAMES)
        ratio = rr.usd_per_hour / op.usd_per_hour if op.usd_per_hour > 0 else float("inf")
        vs_fo = op.usd_per_hour / fo.usd_per_hour if fo.usd_per_hour > 0 else float("inf")
        lp = (
            f"{op.usd_per_hour / op.predicted_usd_per_hour - 1:+.1%}"
            if op.predicted_usd_per_hour
            else "-"
        )
        print(
            f"{load:>5.0%}: round robin / optimize ${ratio:.1f}x; optimize / failover"
            f" ${vs_fo:.2f}x; achieved vs LP {lp}; failed RR/FO/opt"
            f" {rr.failed}/{fo.failed}/{op.failed}; p99 ms {rr.p99_ms:.0f}/{fo.p99_ms:.0f}"
            f"/{op.p99_ms:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=float, default=40, help="rps per echo replica")
    parser.add_argument("--warm", type=float, default=25, help="s before each measurement")
    parser.add_argument(
        "--settle",
        type=float,
        default=60,
        help="then at most this many s for an optimize plan to settle (0: do not wait)",
    )
    parser.add_argument("--seconds", type=float, default=30, help="s measured")
    parser.add_argument("--loads", default="0.5,1.0,1.5", help="multiples of A's capacity")
    parser.add_argument(
        "--headroom",
        type=float,
        default=None,
        help="optimize's cost.headroom, fixed [default: learned per zone, issue 42]",
    )
    parser.add_argument(
        "--zones",
        action="store_true",
        help="B in two zones; run without, then with zone-local gateways (issue 42)",
    )
    args = parser.parse_args()
    loads = [float(x) for x in args.loads.split(",")]
    started = time.monotonic()
    if not args.zones:
        _ratios(_run_bed(scenario_file(args.capacity), loads, args, args.capacity), loads)
    else:
        runs = {}
        for gateways in (False, True):
            print(f"\n== B's zones {'each with' if gateways else 'without'} a zone-local gateway")
            spec = zone_scenario_file(args.capacity, gateways)
            runs[gateways] = _run_bed(spec, loads, args, 2 * args.capacity)
            _ratios(runs[gateways], loads)
        print("\nwith / without zone-local gateways, per load and policy: $/hour, p99 ms, failed")
        for load in loads:
            cells = []
            for name in POLICY_NAMES:
                old, new = runs[False][(load, name)], runs[True][(load, name)]
                dollars = new.usd_per_hour / old.usd_per_hour if old.usd_per_hour else float("nan")
                cells.append(
                    f"{name} ${dollars:.2f}x p99 {old.p99_ms:.0f}->{new.p99_ms:.0f}"
                    f" failed {old.failed}->{new.failed}"
                )
            print(f"{load:>5.0%}: " + "; ".join(cells))
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
