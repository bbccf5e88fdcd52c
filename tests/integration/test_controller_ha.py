"""Controller replicas on one real PostgreSQL (issue #19), real processes throughout.

1. Three replicas; clusters join through different replicas and documents are applied
   through different replicas: every cluster converges to the same imports.
2. The leader is SIGKILLed under 200 rps of cross-cluster traffic and during a stream of
   ``apply`` calls: no request fails, a new leader within 10 s, every acknowledged apply is
   stored, nothing unacknowledged but the one in flight.
3. A replica cut off from PostgreSQL (a relay that resets its connections) stops acting as
   leader before its lease could be taken over, answers 503, and its control plane and the
   CLI move to another replica; healed, it serves again.
4. Every replica restarted: the state is identical, sync streams resume, no cluster re-joins.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from federation.client import call
from federation.controller.pgstore import PostgresStore
from federation.controlplane.link.state import load_last_update
from federation.errors import ApiError
from federation.sync.messages import ControllerUpdate
from tests.integration.federations import EXPORT, HOST, Replicas, ThreeClusters, policy_yaml
from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    Processes,
    RateLoop,
    run_meshfed,
    wait_until,
)
from tests.tcp_proxy import TcpRelay

#: Kept state: everything but heartbeat times and the reports they come with.
STATE_TABLES = ("documents", "exports", "join_tokens")


def lease_row(dsn: str) -> tuple[str, int, bool]:
    """``(holder, fencing, unexpired)`` of the leader lease, straight from the database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT holder, fencing, expires_at > now() FROM leader_lease WHERE id = 1"
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), bool(row[2])


def leader(dsn: str) -> str | None:
    holder, _, live = lease_row(dsn)
    return holder if live and holder else None


def state_rows(dsn: str) -> dict[str, Any]:
    store = PostgresStore(dsn)
    try:
        out: dict[str, Any] = {t: store.rows(t) for t in STATE_TABLES}
        out["clusters"] = [  # all but last_heartbeat
            (c.name, c.locality, c.network, c.gateway, c.joined_at, c.intermediate_pem)
            for c in store.clusters()
        ]
        return out
    finally:
        store.close()


def synced_imports(cp: ControlPlaneHandle) -> list[tuple[str, str, tuple[str, ...]]]:
    """What a control plane holds from the controller (its persisted last update)."""
    path = next((cp.home / "controlplanes").glob(f"{cp.cluster}*/federation.json"))
    update = load_last_update(path.parent) or ControllerUpdate()
    return sorted(
        (
            i.metadata.namespace,
            i.metadata.name,
            tuple(sorted(c.cluster for c in i.spec.clusters)),
        )
        for i in update.imports
    )


@pytest.fixture
def ha(procs: Processes, tmp_path: Path, postgres_dsn: str) -> Iterator[ThreeClusters]:
    replicas = Replicas(procs, tmp_path, [postgres_dsn] * 3)
    replicas.start()
    fed = ThreeClusters(procs, replicas.cli_home, controllers=replicas.controllers)
    fed.replicas = replicas  # type: ignore[attr-defined]
    fed.start()
    yield fed


def test_replicas_converge_survive_a_killed_leader_and_restart(ha, postgres_dsn) -> None:
    replicas: Replicas = ha.replicas
    ctls = replicas.controllers
    # -- 1: joined through r0, r1, r2; documents applied through r1 and r2 ------------------
    joined_via = {
        name: next(c.name for c in ctls if f":{c.api_port}" in cp.extra_args[3])
        for name, cp in ha.cps.items()
    }
    assert sorted(joined_via.values()) == ["r0", "r1", "r2"]
    run_meshfed(
        replicas.cli_home, "apply", "--controller", ctls[1].url, "-f", "-",
        input_text=policy_yaml("  split: {b: 50, c: 50}\n"),
    )  # fmt: skip
    export_c = EXPORT.format(cluster="c")

    def expected(without: set[str]) -> dict[str, set[tuple[str, str, tuple[str, ...]]]]:
        exporting = {"a", "b", "c"} - without
        return {
            n: {("demo", "echo", tuple(sorted(exporting - {n})))} if exporting - {n} else set()
            for n in ha.cps
        }

    def converged(want: dict[str, set[Any]]) -> bool:
        return {n: set(synced_imports(cp)) for n, cp in ha.cps.items()} == want

    run_meshfed(
        replicas.cli_home, "delete", "--controller", ctls[2].url, "-f", "-", input_text=export_c
    )
    wait_until(lambda: converged(expected({"c"})), 20, "c's export withdrawn everywhere")
    run_meshfed(
        replicas.cli_home, "apply", "--controller", ctls[0].url, "-f", "-", input_text=export_c
    )
    wait_until(lambda: converged(expected(set())), 20, "c's export back everywhere")
    views = [
        sorted(
            json.dumps(i, sort_keys=True) for i in replicas.api(k, "GET", "/v1/imports")["imports"]
        )
        for k in range(3)
    ]
    assert views[0] == views[1] == views[2]
    wait_until(lambda: set(ha.clusters_of(40)) <= {"b", "c"}, 20, "the split sends a's calls away")

    # -- 2: SIGKILL the leader under 200 rps and a stream of applies -------------------------
    first = leader(postgres_dsn)
    assert first in {"r0", "r1", "r2"}
    victim = next(c for c in ctls if c.name == first)
    acked: list[str] = []
    attempted: list[str] = []
    stop = threading.Event()

    def applies() -> None:
        for n in range(400):  # bounded: 400 applies, or until stopped
            if stop.is_set():
                return
            name = f"ha-{n}"
            attempted.append(name)
            doc = (
                "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
                f"metadata: {{name: {name}, namespace: ha}}\nspec: {{cluster: a}}\n"
            )
            result = run_meshfed(replicas.cli_home, "apply", "-f", "-", input_text=doc, check=False)
            if result.returncode == 0:
                acked.append(name)
            time.sleep(0.05)

    writer = threading.Thread(target=applies, daemon=True)
    with RateLoop(ha.client_port, HOST, rps=200, max_seconds=40) as load:
        writer.start()
        time.sleep(3)  # load and applies running before the kill (a scenario step, not a wait)
        killed_at = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(5)
        wait_until(lambda: leader(postgres_dsn) not in (None, first), 10, "a new leader")
        new_leader_s = time.monotonic() - killed_at
        after = len(acked)
        wait_until(lambda: len(acked) >= after + 5, 20, "applies acknowledged after the kill")
        stop.set()
        writer.join(60)
    assert not load.failures(), load.failures()[:5]
    assert len(load.samples) > 1000  # 200 rps for the whole scenario (>= 8 s); printed below
    stored = {
        d["metadata"]["name"]
        for d in replicas.api(
            next(i for i, c in enumerate(ctls) if c is not victim), "GET", "/v1/exports"
        )["documents"]
        if d["metadata"].get("namespace") == "ha"
    }
    assert set(acked) <= stored, sorted(set(acked) - stored)
    assert stored <= set(attempted)
    assert len(stored - set(acked)) <= 1  # at most the apply in flight at the kill
    print(
        f"new leader {leader(postgres_dsn)} {new_leader_s:.2f} s after the kill;"
        f" {len(acked)} applies acknowledged, {len(load.samples)} requests"
        f" ({len(load.samples) / (load.samples[-1].at - load.samples[0].at):.0f}/s), 0 failed"
    )
    victim.start()

    # -- 4: restart every replica: same state, streams resume, no re-join --------------------
    before = state_rows(postgres_dsn)
    for ctl in ctls:
        ctl.proc.send_signal(signal.SIGTERM)
        ctl.proc.wait(15)
    wait_until(
        lambda: not any(cp.info()["federation"]["connected"] for cp in ha.cps.values()),
        10,
        "every sync stream broken",
    )
    for ctl in ctls:
        ctl.start()
    wait_until(
        lambda: all(cp.info()["federation"]["connected"] for cp in ha.cps.values()),
        30,
        "every control plane back in sync",
    )
    assert state_rows(postgres_dsn) == before  # no join token used, no joined_at changed
    assert all(cp.starts == 1 for cp in ha.cps.values())  # no control plane restarted
    assert converged(expected(set()))


def _health(ctl: ControllerHandle, home: Path) -> int:
    """``GET /healthz`` status of one replica (0 when unreachable)."""
    try:
        call("GET", ctl.url, "/healthz", home=home)
        return 200
    except ApiError as err:
        return err.status


def test_a_replica_cut_off_from_postgresql_steps_down_and_its_clients_move(
    procs: Processes, tmp_path: Path, postgres_dsn: str
) -> None:
    """r0 reaches PostgreSQL through a relay and is the leader (it starts first); the relay
    is cut: r0 answers 503 before the lease could pass to another replica, its control
    plane syncs with another replica and the CLI (r0 first in its list) still works; healed,
    r0 serves again as a follower."""
    parts = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    relay = TcpRelay((str(parts["host"]), int(parts["port"])))
    try:
        via_relay = psycopg.conninfo.make_conninfo(postgres_dsn, port=relay.port)
        replicas = Replicas(procs, tmp_path, [via_relay, postgres_dsn, postgres_dsn])
        replicas.start()
        r0 = replicas.controllers[0]
        assert leader(postgres_dsn) == "r0"
        out = replicas.meshfed(
            "cluster", "join", "a", "--controller", r0.url,
            "--locality", "aws/us-east-1/us-east-1a", "--gateway", "127.0.1.1:15443",
            "-o", "json",
        ).stdout  # fmt: skip
        cp = ControlPlaneHandle(
            procs, replicas.cli_home, "a", "aws/us-east-1/us-east-1a",
            extra_args=[
                "--controller", f"127.0.0.1:{r0.api_port}",
                "--join-token", json.loads(out)["token"],
            ],
        )  # fmt: skip
        cp.start()
        wait_until(lambda: cp.info()["federation"]["connected"], 15, "a in sync")
        assert cp.info()["federation"]["syncAddress"] == r0.sync_address
        _, fencing, _ = lease_row(postgres_dsn)

        relay.cut()
        cut_at = time.monotonic()
        stepped_down_s = took_over_s = None
        deadline = cut_at + 15
        while (stepped_down_s is None or took_over_s is None) and time.monotonic() < deadline:
            now = time.monotonic() - cut_at
            if stepped_down_s is None and _health(r0, replicas.cli_home) == 503:
                stepped_down_s = now
            if took_over_s is None and leader(postgres_dsn) not in (None, "r0"):
                took_over_s = now
            time.sleep(0.05)
        assert stepped_down_s is not None and took_over_s is not None
        print(f"r0 answered 503 {stepped_down_s:.2f} s after the cut;"
              f" {leader(postgres_dsn)} took the lease at {took_over_s:.2f} s")  # fmt: skip
        assert stepped_down_s < took_over_s
        assert lease_row(postgres_dsn)[1] == fencing + 1  # a new term
        wait_until(
            lambda: (
                cp.info()["federation"]["connected"]
                and cp.info()["federation"]["syncAddress"] != r0.sync_address
            ),
            20,
            "a's control plane in sync with another replica",
        )
        clusters = json.loads(replicas.meshfed("get", "clusters", "-o", "json").stdout)
        assert [c["name"] for c in clusters] == ["a"]  # the CLI skipped r0's 503

        relay.heal()
        wait_until(lambda: _health(r0, replicas.cli_home) == 200, 15, "r0 serving again")
        assert leader(postgres_dsn) != "r0"
        assert replicas.api(0, "GET", "/v1/replicas")["leader"] == leader(postgres_dsn)
        shown = json.loads(replicas.meshfed("controller", "replicas", "-o", "json").stdout)
        assert shown["leader"] == leader(postgres_dsn)
        assert sorted(r["name"] for r in shown["replicas"]) == ["r0", "r1", "r2"]
    finally:
        relay.close()
