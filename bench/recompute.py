"""One recompute of the controller (issue #37's policy fan-out): :meth:`SyncHub.recompute`
after a change, with M members each exporting one service (every other member imports it
through its gateway; a tenth of the members share the exporter's network and dial its
endpoints directly) and P TrafficPolicies stored, in process on SQLite (or, with
``--postgres``, on a PostgreSQL server of its own, a new database for each checkout, as the
replicas of ``bench/controller_ha.py`` are) -- this checkout beside an earlier revision in
the same run (``--baseline-rev``, from a ``git worktree`` in a subprocess with the same
Python).

What it times is the controller's share of a fan-out before the updates leave it: every
member's imports computed, the view and each member's update made and compared with the last
one. Median of ``--rounds``.

    python bench/recompute.py [--members 50] [--policies 300] [--rounds 20] [--baseline-rev REV]
        [--postgres]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# nothing of meshfed is imported at module level: with --tree, that checkout's federation
# package must be the first one imported


def measure(members: int, policies: int, rounds: int, server: str = "") -> dict[str, Any]:
    """Recompute ``rounds`` times with the code on ``sys.path``; median and max ms. On
    SQLite, or in a new database of the PostgreSQL ``server`` (a connection string)."""
    from contextlib import nullcontext

    from federation.controller.hub import SyncHub
    from federation.controller.pgstore import PostgresStore
    from federation.controller.store import ClusterRecord, SqliteStore, SqlStore
    from federation.sync.join_token import token_digest
    from federation.sync.messages import ClusterReport
    from tests.postgres import fresh_database

    print(f"measuring {sys.modules['federation'].__file__}", file=sys.stderr)
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(server) if server else nullcontext("") as dsn,
    ):
        store: SqlStore = PostgresStore(dsn) if dsn else SqliteStore(Path(tmp) / "c.db")
        now = time.time()
        names = [f"c{i:02d}" for i in range(members)]
        for i, name in enumerate(names):
            record = ClusterRecord(
                name, "aws/us-east-1/us-east-1a", f"net{i // 10}" if i % 10 == 0 else f"n{i}",
                f"127.0.{i}.1:15443", "local", 0,
            )  # fmt: skip
            store.add_cluster(record, token_digest(name), 1e12)
            store.join(token_digest(name), name, "PEM", now)
        docs = [
            (("TrafficPolicy", "demo", f"p{i}", ""), {
                "apiVersion": "meshfed.io/v1alpha1", "kind": "TrafficPolicy",
                "metadata": {"name": f"p{i}", "namespace": "demo"},
                "spec": {"host": f"svc{i}.demo.svc.clusterset.local"},
            })
            for i in range(policies)
        ]  # fmt: skip
        store.put_documents(docs, now)
        hub = SyncHub(store, lambda: b"BUNDLE", lease_s=30, clock=time.time)
        for name in names:
            hub.attach(name)
        for i, name in enumerate(names):
            report = ClusterReport.model_validate({
                "cluster": name, "exports": [f"demo/svc{i}"],
                "services": [{
                    "namespace": "demo", "name": f"svc{i}",
                    "ports": [{"name": "http", "port": 8080, "protocol": "http"}],
                    "healthy_endpoints_by_zone": {"us-east-1a": 2},
                    "endpoints": [{"address": f"10.{i}.0.{k}", "zone": "us-east-1a",
                                   "healthy": True, "ports": {"http": 15006}} for k in (1, 2)],
                }],
            })  # fmt: skip
            hub.report(name, report)
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            hub.recompute()
            times.append((time.perf_counter() - started) * 1000)
        store.close()
    return {"median": statistics.median(times), "max": max(times)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--policies", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--baseline-rev", default="HEAD~1")
    parser.add_argument("--postgres", action="store_true", help="on PostgreSQL, not SQLite")
    parser.add_argument("--tree", help=argparse.SUPPRESS)  # internal: measure that checkout
    parser.add_argument("--server", default="", help=argparse.SUPPRESS)  # internal: PG server
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
        print(json.dumps(measure(args.members, args.policies, args.rounds, args.server)))
        return
    sys.path.insert(0, str(REPO))
    from contextlib import nullcontext

    from bench._common import measure_beside_baseline
    from tests.postgres import postgres_server

    sizes = ["--members", str(args.members), "--policies", str(args.policies)]
    with postgres_server() if args.postgres else nullcontext("") as server:
        results = measure_beside_baseline(
            __file__,
            args.baseline_rev,
            [*sizes, "--rounds", str(args.rounds), *(["--server", server] if server else [])],
        )
    print(
        f"controller recompute on {'PostgreSQL' if args.postgres else 'SQLite'}: {args.members}"
        f" members, each exporting one service to all, {args.policies} TrafficPolicies;"
        f" median of {args.rounds}"
    )
    print(f"{'code':<24}{'median ms':>10}{'max ms':>9}")
    for label, r in results.items():
        print(f"{label:<24}{r['median']:>10.1f}{r['max']:>9.1f}")


if __name__ == "__main__":
    main()
