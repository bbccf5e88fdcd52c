"""Soak of the isolated bed under load and chaos (issue #35): see
:mod:`tests.integration.soak` for the setup, the chaos and the checks.

Printed: every chaos event with what it did; requests sent, failed (each with the event it was
sent during), latency p50/p99 during the quiet lead-in (the baseline, same run) and under
chaos; memory and file-descriptor slopes of every process that ran unrestarted for at least
half the run; and what was not back and consistent at the end.

Run as root (about ``--minutes`` + 1.5 minutes)::

    sudo .venv/bin/python bench/soak.py [--minutes 20] [--rps 200] [--seed 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile
from tests.integration.isolated import isolated_federation
from tests.integration.soak import (
    QUIET_S,
    Soak,
    consistency_problems,
    during,
    failed,
    final_problems,
    slopes,
    soak_spec,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--rps", type=float, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every number here too")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        isolated_federation(Path(tmp), soak_spec()) as fed,
    ):
        proxies = {c["name"]: c["proxies"] for c in fed.json("status")["clusters"]}
        soak = Soak(fed, args.seed, args.minutes * 60, args.rps)
        soak.run(progress=lambda line: print(line, flush=True))
        problems = consistency_problems(fed, proxies)
    results = soak.results
    problems += final_problems(results, args.minutes * 60)
    bad = failed(results)
    quiet = [r.done - r.sent for r in results if r.sent < QUIET_S and r.status == 200]
    chaos = [r.done - r.sent for r in results if r.sent >= QUIET_S and r.status == 200]
    print(f"\nrequests: {len(results)} sent at {args.rps:g}/s over {args.minutes:g} min")
    print(f"failed: {len(bad)}")
    for r in bad[:50]:
        e = during(r, soak.events)
        print(
            f"  {r.sent:8.2f} s status {r.status}: during {e.kind + ' ' + e.target if e else '-'}"
        )
    for name, lat in (("quiet lead-in (baseline)", quiet), ("under chaos", chaos)):
        if lat:
            print(
                f"latency {name}: p50 {percentile(lat, 50) * 1000:.1f} ms,"
                f" p99 {percentile(lat, 99) * 1000:.1f} ms ({len(lat)} requests)"
            )
    found = slopes(soak.samples, min_span_s=args.minutes * 30)
    print("\nprocess                          samples  span s   RSS MiB  MiB/hour   fds  fds/hour")
    for s in found:
        print(
            f"{s.name:<32} {s.samples:>7} {s.span_s:>7.0f} {s.rss_mib:>9.1f}"
            f" {s.rss_mib_per_hour:>9.2f} {s.fds:>5} {s.fds_per_hour:>9.2f}"
        )
    if soak.connections:
        first, last = soak.connections[0], soak.connections[-1]
        peak = max(soak.connections, key=lambda c: c[1] + c[2])
        print(
            f"\nfrontend Envoy connections (downstream, upstream): {first[1:]} at {first[0]:.0f} s,"
            f" {last[1:]} at {last[0]:.0f} s, most {peak[1:]} at {peak[0]:.0f} s"
        )
    print(
        f"\nat the end: {'; '.join(problems) if problems else 'every component back and consistent'}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "events": [dataclasses.asdict(e) for e in soak.events],
                    "requests": len(results),
                    "failed": [dataclasses.asdict(r) for r in bad],
                    "slopes": [dataclasses.asdict(s) for s in found],
                    "problems": problems,
                    "connections": soak.connections,
                    "samples": [dataclasses.asdict(x) for x in soak.samples],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
