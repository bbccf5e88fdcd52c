"""Issue 42, the learned headroom against real load (loopback, real Envoy and sidecars).

One cluster ``a`` (aws/us-east-1) with an ``echo`` replica in each of two zones, each
declaring 20 requests/s (``--capacity-rps``) and shedding beyond it (echo ``--max-rps``);
every request takes 30 ms (:data:`SERVICE_TIME`); the replica in ``us-east-1a`` also gets
slower as it fills (echo ``--busy-ms``: a queue's service time), the one in ``us-east-1b``
does not. The caller's sidecar runs in a third zone
(``us-east-1c``), so both zones cost and take the same: cost mode ``optimize`` plans by
capacity x headroom alone, and shares equally, as locality failover does, while both fit.
After 20 s of baseline (16 requests/s: 40 % of each zone), 34 requests/s push both zones
near their caps: the zone whose p99 turns up gets a smaller headroom than the declared 0.8,
the one whose p99 does not a larger one, and ``explain`` says why.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.conftest import owned_processes
from tests.integration.federations import HOST, policy_yaml
from tests.integration.harness import (
    ControllerHandle,
    RateLoop,
    free_port,
    join_cluster,
    run_meshfed,
    start_echo,
    start_sidecar_agent,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REGION = "aws/us-east-1"
CALLER = f"{REGION}/us-east-1c"
CAPACITY = 20.0
EXPORT = (
    "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
    "metadata: {name: echo, namespace: demo}\nspec: {cluster: a}\n"
)
#: Every request takes 30 ms in either zone (echo's ``delay_ms``), as a real handler does: on
#: a busy 2-core host p99 moves by up to ~13 ms at random, which against a bare echo's 3 ms
#: crossed the headroom's latency turn (1.5 x the lowest p99 + 2 ms) in the steady zone too.
SERVICE_TIME = "/?delay_ms=30"
OPTIMIZE = policy_yaml("  cost: {mode: optimize, latencyBudgetMs: 60}\n")


def _headrooms(home, locality: str = CALLER) -> dict[str, tuple[float, str]]:
    out = run_meshfed(
        home, "explain", "echo.demo", "--from", "a", "--locality", locality, "-o", "json"
    ).stdout
    plan = json.loads(out)["plan"] or {"localities": []}
    return {
        r["locality"].rsplit("/", 1)[1]: (r["headroom"], r["headroomReason"] or "")
        for r in plan["localities"]
        if r["headroom"] is not None
    }


def test_a_zone_whose_latency_rises_with_load_gets_a_smaller_headroom(tmp_path) -> None:
    home = tmp_path / "home"
    with owned_processes(tmp_path) as procs:
        ctl = ControllerHandle(procs, home)
        ctl.start()
        a = join_cluster(procs, home, ctl, "a", f"{REGION}/us-east-1a", "127.0.1.1:15443", [])
        for i, (zone, busy) in enumerate((("us-east-1a", ["--busy-ms", "10"]), ("us-east-1b", []))):
            app = free_port()
            start_echo(procs, f"a-echo-{zone}", app, "a",
                       extra_args=["--max-rps", f"{CAPACITY:g}", *busy])  # fmt: skip
            start_sidecar_agent(
                procs, home, a, service="echo", address=f"127.0.1.{11 + i}", app_port=app,
                service_port=8080, name=f"a-echo-{zone}", locality=f"{REGION}/{zone}",
                capacity_rps=CAPACITY,
            )  # fmt: skip
        run_meshfed(home, "apply", "-f", "-", input_text=EXPORT + "---\n" + OPTIMIZE)
        client = free_port()
        start_sidecar_agent(
            procs, home, a, service="frontend", address="127.0.1.10", app_port=free_port(),
            service_port=8080, outbound_port=client, locality=CALLER,
        )  # fmt: skip
        # the baseline: both zones at 40 % of capacity for two planning windows (10 s each,
        # at least 50 requests of a zone in one: federation.lb.headroom.MIN_REQUESTS); with
        # less, the first window measured mixed quiet and busy requests, and a zone's
        # "lowest p99" was already its busy one
        with RateLoop(client, HOST, rps=16, max_seconds=30, path=SERVICE_TIME) as quiet:
            wait_until(lambda: len(quiet.samples) >= 16 * 20, 30, "20 s of quiet traffic")
        # near the caps: 34 requests/s (85 % of each zone); zone a turns slow, zone b does not
        started = time.monotonic()
        with RateLoop(client, HOST, rps=34, max_seconds=45, path=SERVICE_TIME) as busy:

            def apart() -> dict[str, tuple[float, str]] | None:
                # the learned headrooms follow the measured p99s window by window: on a busy
                # host us-east-1b's p99 can rise for a window too (CI saw 29 ms against its
                # lowest 9 ms, and 0.68), so wait for the verdict, not for the first window
                # in which the two differ
                rooms = _headrooms(home)
                seen.append(rooms)
                slow, steady = rooms.get("us-east-1a"), rooms.get("us-east-1b")
                judged = steady is not None and "steady" in steady[1]
                return rooms if slow and steady and judged and slow[0] < 0.8 <= steady[0] else None

            seen: list[dict[str, tuple[float, str]]] = []
            try:  # every 2 s: each look is a CLI process, which loads the 2 cores it measures
                rooms = wait_until(
                    apart, 40, "us-east-1a's headroom below 0.8, us-east-1b's judged steady", 2.0
                )
            except AssertionError as err:
                raise AssertionError(f"{err}; the last headrooms: {seen[-3:]}") from err
        print(f"after {time.monotonic() - started:.0f} s of load: {rooms}")
        assert rooms["us-east-1a"][0] < 0.8 <= rooms["us-east-1b"][0], rooms
        assert "steady" in rooms["us-east-1b"][1], rooms  # explain says why
        assert busy.failures() == [], busy.failures()[:5]
