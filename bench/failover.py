"""Failover under steady load: kill every local endpoint, count failed requests and time how
long until 100 % of the traffic has moved; meshfed's defaults side by side with a baseline.

Setup (real processes on loopback, see tests/integration/federations.py): a controller, cluster
``a`` (aws/us-east-1) with two echo replicas behind Envoy sidecars and a caller sidecar,
cluster ``b`` (aws/us-west-2) and ``c`` (gcp/us-east4) each with a gateway and one replica.
A load of ``--rps`` GETs per second runs through the caller; after ``--warmup`` s both of
``a``'s replicas (app + sidecar) are SIGKILLed; ``--after`` s later they are restarted.

Variants:
- ``meshfed defaults``: outlier detection, active health checks, EDS health from the control
  plane, 2 retries to another host and another priority, no cap on concurrent retries;
- ``baseline: no retries``: the same with a TrafficPolicy ``retries: {attempts: 0}`` -- what a
  mesh that relies on health checking alone does.

"moved" is the time from the kill to the first response after which every response came
from another cluster.

Run: ``.venv/bin/python bench/failover.py [--rps 200]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import owned_processes
from tests.integration.federations import HOST, ThreeClusters, policy_yaml
from tests.integration.harness import RateLoop, wait_until


def _round(fed: ThreeClusters, rps: float, warmup: float, after: float) -> tuple[int, int, float]:
    with RateLoop(fed.client_port, HOST, rps=rps, max_seconds=warmup + after + 30) as load:
        time.sleep(warmup)
        killed = time.monotonic()
        fed.kill_a()
        time.sleep(after)
        fed.revive_a()
        wait_until(
            lambda: {s.name.split("-")[0] for s in load.samples[-40:]} == {"a"}, 30, "back in a"
        )
    window = [s for s in load.samples if s.at >= killed]
    moved_at = killed
    for s in window:
        if s.at > killed + after:
            break
        if s.status != 200 or s.name.startswith("a-"):
            moved_at = s.at
    failed = sum(1 for s in load.samples if s.status != 200)
    return len(load.samples), failed, moved_at - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rps", type=float, default=200)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--after", type=float, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, owned_processes(Path(tmp)) as procs:
        fed = ThreeClusters(procs, Path(tmp) / "home")
        fed.start()
        rows = []
        for name, policy in [
            ("meshfed defaults", None),
            ("baseline: no retries", "  retries: {attempts: 0}\n"),
        ]:
            if policy:
                fed.meshfed("apply", "-f", "-", input_text=policy_yaml(policy))
                time.sleep(2)
            rows.append((name, *_round(fed, args.rps, args.warmup, args.after)))
        print(f"\nsteady load {args.rps:.0f} rps; all of a's endpoints killed")
        print(f"{'variant':<24}{'requests':>10}{'failed':>8}{'moved after':>13}")
        for name, total, failed, moved in rows:
            print(f"{name:<24}{total:>10}{failed:>8}{moved * 1000:>10.0f} ms")


if __name__ == "__main__":
    main()
