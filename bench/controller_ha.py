"""Replicated controller on PostgreSQL (issue #19): failover, apply throughput, sync fan-out.

Starts a PostgreSQL server of its own (Debian's binaries, as the tests do) and, in the same
run:

1. **Apply throughput**: ``--applies`` TrafficPolicies (one per host, so every one is a
   change) posted to ``POST /v1/apply`` with ``--concurrency`` in flight, against one
   controller on SQLite (the baseline) and then spread over three replicas on PostgreSQL.
   No member cluster is connected: this is the API and store path.
2. **Leader failover**, ``--kills`` times: SIGKILL the leader, then measure (a) until the
   database names a new leader and (b) until the first ``apply`` acknowledged through the
   CLI's replica list (``https://r0,https://r1,https://r2``, tried in order; the killed
   replica may be first). The killed replica is restarted before the next kill.
3. **Sync fan-out**: ``--clusters`` control planes (real ``meshfed controlplane serve``
   processes) joined round-robin through the three replicas; ``--changes`` TrafficPolicy
   changes applied through r0; for each control plane, the time from sending the apply to
   the ``controller update`` line in its log (ms timestamps), and until the replica holding
   its stream logged the update as queued. Control planes whose stream is on r0 are the
   in-run baseline for those that learn the change by NOTIFY on r1/r2. The policies of 1.
   and 2. are deleted first (each update carries every policy: see docs/benchmarks.md).

    sudo .venv/bin/python bench/controller_ha.py [--applies 300] [--concurrency 6]
        [--kills 10] [--clusters 50] [--changes 5] [--keep-policies]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import psycopg

from bench._common import percentile
from federation.client import call, tls_for
from tests.integration.conftest import owned_processes
from tests.integration.federations import Replicas
from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    Processes,
    run_meshfed,
    wait_until,
)
from tests.postgres import fresh_database, postgres_server

POLICY = (
    "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
    "metadata: {{name: {name}, namespace: bench}}\n"
    "spec:\n  host: {name}.bench.svc.clusterset.local\n  retries: {{attempts: {attempts}}}\n"
)


def replicas(procs: Processes, base: Path, dsn: str) -> list[ControllerHandle]:
    """Three replicas on ``dsn`` (:class:`tests.integration.federations.Replicas`)."""
    group = Replicas(procs, base, [dsn] * 3, lease_s=30)
    group.start()
    return group.controllers


async def _post_applies(urls: list[str], home: Path, token: str, count: int, width: int) -> float:
    """Seconds to post ``count`` distinct applies, ``width`` in flight, round-robin on urls."""
    tls = tls_for(urls[0], home)
    assert tls is not None
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = POLICY.format(name=f"p{i}", attempts=2)
            async with session.post(
                f"{urls[i % len(urls)]}/v1/apply",
                data=body,
                headers={"Authorization": f"Bearer {token}"},
                ssl=tls.context,
                server_hostname=tls.server_hostname,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                if resp.status != 200:
                    raise SystemExit(f"apply {i}: {resp.status} {await resp.text()}")

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(width)))
    return time.perf_counter() - started


def throughput(procs: Processes, base: Path, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    sqlite = ControllerHandle(procs, base / "sqlite", lease_s=30, name="sqlite")
    sqlite.start()
    home = base / "sqlite"
    s = asyncio.run(
        _post_applies([sqlite.url], home, sqlite.token(), args.applies, args.concurrency)
    )
    sqlite.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    sqlite.proc.wait(15)  # type: ignore[union-attr]
    ctls = replicas(procs, base / "pg", dsn)
    token = (base / "pg" / "controller-token").read_text().strip()
    p = asyncio.run(
        _post_applies(
            [c.url for c in ctls], base / "pg" / "cli", token, args.applies, args.concurrency
        )
    )
    return {
        "sqlite": args.applies / s,
        "postgres3": args.applies / p,
        "ctls": ctls,
        "token": token,
    }


def lease(dsn: str) -> str | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT holder FROM leader_lease WHERE id = 1 AND expires_at > now()"
        ).fetchone()
    return str(row[0]) if row and row[0] else None


def failover(ctls: list[ControllerHandle], base: Path, dsn: str, kills: int) -> dict[str, Any]:
    cli = base / "pg" / "cli"
    urls = ",".join(c.url for c in ctls)
    token = (base / "pg" / "controller-token").read_text().strip()
    to_leader, to_write = [], []
    for k in range(kills):
        holder = wait_until(lambda: lease(dsn), 15, "a leader")
        victim = next(c for c in ctls if c.name == holder)
        assert victim.proc is not None
        killed = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(5)
        wrote = None
        new = None
        deadline = killed + 30
        n = 0
        while (wrote is None or new is None) and time.monotonic() < deadline:
            if wrote is None:
                n += 1
                try:
                    call("POST", urls, "/v1/apply", token=token, home=cli,
                         body=POLICY.format(name=f"kill{k}", attempts=2 + n % 3))  # fmt: skip
                    wrote = time.monotonic() - killed
                except Exception:
                    pass
            if new is None and lease(dsn) not in (None, holder):
                new = time.monotonic() - killed
            time.sleep(0.02)
        assert wrote is not None and new is not None, f"kill {k}: no failover within 30 s"
        to_leader.append(new)
        to_write.append(wrote)
        print(f"  kill {k + 1}: {holder} killed; new leader {new:.2f} s, first write {wrote:.3f} s")
        victim.start()
    return {"leader": to_leader, "write": to_write}


def _update_times(log: str, after: float, marker: str = "controller update v") -> float | None:
    """Wall time (s) of the first line holding ``marker`` at or after ``after``."""
    for line in log.splitlines():
        if marker not in line:
            continue
        at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if at >= after:
            return at
    return None


def fanout(
    procs: Processes, ctls: list[ControllerHandle], base: Path, args: argparse.Namespace
) -> dict[str, list[float]]:
    cli = base / "pg" / "cli"
    cps: list[tuple[ControlPlaneHandle, str]] = []
    for i in range(args.clusters):
        via = ctls[i % len(ctls)]
        name = f"m{i:02d}"
        out = run_meshfed(
            cli, "cluster", "join", name, "--controller", via.url,
            "--locality", f"aws/us-east-1/us-east-1{'abc'[i % 3]}",
            "--gateway", f"127.0.9.{i + 1}:15443", "-o", "json",
        ).stdout  # fmt: skip
        cp = ControlPlaneHandle(
            procs, cli, name, f"aws/us-east-1/us-east-1{'abc'[i % 3]}",
            extra_args=["--controller", f"127.0.0.1:{via.api_port}",
                        "--join-token", json.loads(out)["token"]],
        )  # fmt: skip
        cp.start()
        cps.append((cp, via.name))
        if (i + 1) % 10 == 0:
            print(f"  {i + 1} control planes joined", flush=True)
    wait_until(
        lambda: all(cp.info()["federation"]["connected"] for cp, _ in cps), 60, "all in sync"
    )
    time.sleep(2)  # let the join updates settle before measuring changes (a scenario step)
    own: list[float] = []
    other: list[float] = []
    queued: list[float] = []
    queued_own: list[float] = []
    queued_other: list[float] = []
    transit: list[float] = []  # queued by the replica -> applied by the control plane
    token = (base / "pg" / "controller-token").read_text().strip()
    for change in range(args.changes):
        sent = time.time()  # the update may reach r0's streams before the answer reaches us
        call("POST", ctls[0].url, "/v1/apply", token=token, home=cli,
             body=POLICY.format(name="fanout", attempts=2 + change % 3 + 1))  # fmt: skip
        logs: dict[str, float] = {}

        def arrived(logs: dict[str, float] = logs, sent: float = sent) -> bool:
            for cp, _ in cps:
                if cp.cluster not in logs:
                    at = _update_times(procs.log(f"controlplane-{cp.cluster}-1"), sent)
                    if at is not None:
                        logs[cp.cluster] = at
            return len(logs) == len(cps)

        # the times are the logs' own: polling every 0.5 s (not 0.1) only keeps this
        # process from re-reading 50 logs ten times a second beside the processes it measures
        wait_until(arrived, 30, f"change {change} everywhere", interval_s=0.5)
        replica_logs = {c.name: procs.log(c.log_name) for c in ctls}
        for cp, via in cps:
            delay_ms = (logs[cp.cluster] - sent) * 1000
            (own if via == "r0" else other).append(delay_ms)
            at = _update_times(replica_logs[via], sent, f"to {cp.cluster}: ")
            if at is not None:
                queued.append((at - sent) * 1000)
                (queued_own if via == "r0" else queued_other).append((at - sent) * 1000)
                transit.append((logs[cp.cluster] - at) * 1000)
        time.sleep(1)  # the next change after this one settled (a scenario step)
    return {
        "own": own,
        "other": other,
        "queued": queued,
        "queued_own": queued_own,
        "queued_other": queued_other,
        "transit": transit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applies", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument(
        "--keep-policies",
        action="store_true",
        help="fan out with the throughput policies still stored (every update carries them)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="meshfed-bench-ha-") as tmp,
        postgres_server() as server,
        fresh_database(server) as dsn,
        owned_processes(Path(tmp)) as procs,
    ):
        base = Path(tmp)
        print(f"apply throughput ({args.applies} applies, {args.concurrency} in flight)")
        t = throughput(procs, base, dsn, args)
        print(f"  SQLite, one controller:        {t['sqlite']:7.1f} applies/s (baseline)")
        print(f"  PostgreSQL, three replicas:    {t['postgres3']:7.1f} applies/s")
        if args.kills:
            print(f"leader failover ({args.kills} SIGKILLs of the leader)")
            f = failover(t["ctls"], base, dsn, args.kills)
            for what, values in (("new leader", f["leader"]), ("first write", f["write"])):
                print(
                    f"  {what:12s} p50 {statistics.median(values):.2f} s, max {max(values):.2f} s"
                )
        stored = call("GET", t["ctls"][1].url, "/v1/policies", token=t["token"],
                      home=base / "pg" / "cli")["policies"]  # fmt: skip
        if not args.keep_policies:
            call("POST", t["ctls"][1].url, "/v1/delete", token=t["token"],
                 home=base / "pg" / "cli",
                 body="---\n".join(POLICY.format(name=p["metadata"]["name"], attempts=2)
                                   for p in stored))  # fmt: skip
        kept = "kept" if args.keep_policies else "deleted first"
        print(f"sync fan-out ({args.clusters} control planes, {args.changes} changes via r0;"
              f" the {len(stored)} policies above {kept})")  # fmt: skip
        d = fanout(procs, t["ctls"], base, args)
        for what, values in (
            ("stream on r0 (baseline)", d["own"]),
            ("stream on r1/r2 (NOTIFY)", d["other"]),
            ("all", d["own"] + d["other"]),
            ("queued by the controller", d["queued"]),
            ("  queued by r0", d["queued_own"]),
            ("  queued by r1/r2", d["queued_other"]),
            ("queued -> applied", d["transit"]),
        ):
            print(
                f"  {what:25s} p50 {percentile(values, 50):6.1f} ms  p99"
                f" {percentile(values, 99):6.1f} ms  max {max(values):6.1f} ms  (n={len(values)})"
            )


if __name__ == "__main__":
    main()
