"""The proxy agent (``meshfed proxy sidecar``) supervising a real Envoy: restart after a crash,
and a drain on SIGTERM that fails no in-flight request."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from federation.agent.supervisor import IN_FLIGHT_STATS, requests_in_flight
from federation.client import call
from tests.integration.harness import (
    ControlPlaneHandle,
    LoadLoop,
    free_port,
    get,
    start_echo,
    wait_until,
)
from tests.integration.test_eastwest import sidecar_agent

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EAST = "aws/us-east-1/us-east-1a"
HOST = "echo.demo.svc.clusterset.local"


def _in_flight(admin_port: int) -> int:
    """Requests the Envoy with this admin port is serving now, as the agent's drain reads
    them (:func:`federation.agent.supervisor.requests_in_flight`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}{IN_FLIGHT_STATS}", timeout=2) as r:
        return requests_in_flight(r.read().decode())


def _envoy_pid(admin_port: int) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                state = (proc / "stat").read_text().split()[2]
            except OSError:
                continue
            if (
                state != "Z"
                and b"--base-id" in cmdline
                and cmdline[cmdline.index(b"--base-id") + 1] == str(admin_port).encode()
            ):
                return int(proc.name)
    raise AssertionError(f"no envoy with --base-id {admin_port}")


@pytest.fixture
def cluster(procs, mesh_home):
    cp = ControlPlaneHandle(procs, mesh_home, "east", EAST)
    cp.start()
    agents = {}
    for i, name in enumerate(("echo-a", "echo-b"), start=1):
        app = free_port()
        start_echo(procs, name, app, "east")
        admin = free_port()
        proc, _ = sidecar_agent(
            procs,
            mesh_home,
            cp,
            service="echo",
            address=f"127.0.1.{20 + i}",
            app_port=app,
            service_port=8080,
            admin_port=admin,
            name=name,
        )
        agents[name] = (proc, admin)
    client_port = free_port()
    sidecar_agent(
        procs,
        mesh_home,
        cp,
        service="frontend",
        address="127.0.1.10",
        app_port=free_port(),
        service_port=8080,
        outbound_port=client_port,
    )
    _wait_both_answer(client_port, 45)
    return {"cp": cp, "agents": agents, "client_port": client_port, "procs": procs}


def _wait_both_answer(client_port: int, timeout_s: float) -> None:
    """Until requests through the frontend's sidecar have been answered by echo-a and by
    echo-b since the call (each test that needs both waits itself: the one before may
    have just restarted echo-a's Envoy, which its caller's outlier detection can still be
    ejecting)."""
    seen: set[str] = set()

    def both() -> bool:
        status, data, _ = get(client_port, HOST)
        if status == 200:
            seen.add(data["name"])
        return seen == {"echo-a", "echo-b"}

    wait_until(both, timeout_s, "both echo workloads answering")


def test_agent_restarts_a_crashed_envoy(cluster) -> None:
    proc, admin = cluster["agents"]["echo-a"]
    old = _envoy_pid(admin)
    os.kill(old, signal.SIGKILL)
    log_name = next(n for n, p in cluster["procs"].popens if p is proc)
    try:
        new = wait_until(
            lambda: (pid := _envoy_pid(admin)) != old and pid, 10, "a new Envoy for echo-a"
        )
    except AssertionError as err:  # say why: the agent's own account of the restart
        raise AssertionError(
            f"{err}\nagent log:\n{cluster['procs'].log(log_name)[-3000:]}"
        ) from None
    assert new != old
    seen: set[str] = set()

    def echo_a_back() -> bool:
        status, data, _ = get(cluster["client_port"], HOST)
        seen.add(data.get("name", "")) if status == 200 else None
        return "echo-a" in seen

    started = time.monotonic()
    wait_until(echo_a_back, 10, "requests answered by echo-a again")
    assert time.monotonic() - started < 10
    assert proc.poll() is None
    assert "restarting in" in cluster["procs"].log(log_name)


def test_sigterm_drains_without_failing_in_flight_requests(cluster) -> None:
    proc, admin = cluster["agents"]["echo-a"]
    port = cluster["client_port"]
    _wait_both_answer(port, 30)  # the slow requests below must be able to reach echo-a
    with (
        LoadLoop(port, HOST, max_requests=3000, max_seconds=30) as load,
        ThreadPoolExecutor(32) as pool,
    ):
        slow = [pool.submit(get, port, HOST, "/?delay_ms=1500", 10.0) for _ in range(8)]

        def some_on_echo_a() -> bool:
            # the balancer may have sent the first ones to echo-b (CI: all 8 once): more
            # until one is in flight on echo-a, at most 32
            if _in_flight(admin) > 0:
                return True
            if len(slow) < 32:
                slow.append(pool.submit(get, port, HOST, "/?delay_ms=1500", 10.0))
            return False

        wait_until(some_on_echo_a, 10, "a slow request in flight on echo-a")
        proc.send_signal(signal.SIGTERM)
        results = [f.result(timeout=20) for f in slow]
        proc.wait(30)
        load.wait_tail({"echo-b"}, 30, 10)
    assert [r[0] for r in results] == [200] * len(slow)
    assert "echo-a" in {r[1]["name"] for r in results}  # some were in flight on the draining one
    assert load.failures() == [], load.failures()[:5]
    assert proc.returncode == 0
    assert wait_until(lambda: not _alive_with_base_id(admin), 5, "echo-a's Envoy gone")
    cp = cluster["cp"]
    token = (cp.home / "controlplanes" / "east" / "api-token").read_text().strip()
    names = {
        w["name"]
        for w in call("GET", cp.api_url, "/v1/workloads", token=token, home=cp.home)["workloads"]
    }
    assert "echo-a" not in names and "echo-b" in names  # deregistered on the way out


def _alive_with_base_id(admin: int) -> bool:
    try:
        _envoy_pid(admin)
    except AssertionError:
        return False
    return True
