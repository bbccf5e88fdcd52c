"""A serving zone's learned headroom (issue 42): up while it runs near its cap without
trouble, down when latency turns up or errors appear there, never moved by what low load or
a far caller's round trip shows, and fixed by a policy's ``cost.headroom``."""

from __future__ import annotations

from federation.lb.headroom import (
    HIGHEST,
    LOWEST,
    Headroom,
    ZoneLoad,
    declared,
    learn,
    zone_loads,
)

NEAR, FAR = "aws/us-east-1/us-east-1a", "aws/eu-west-1/eu-west-1a"


def _run(h: Headroom, loads: list[ZoneLoad], capacity: float = 100.0) -> Headroom:
    for load in loads:
        h = learn(h, capacity, load, fixed=False)
    return h


def test_flat_latency_at_the_cap_raises_the_headroom_to_the_whole_capacity() -> None:
    h = declared(0.8, fixed=False)
    assert not h.learned and "declared" in h.reason
    # the zone serves what the plan gives it: its cap, then a little more each round
    for _ in range(20):
        h = learn(h, 100.0, ZoneLoad(h.value * 100, 800, 0.0, {NEAR: 3.0, FAR: 80.0}), fixed=False)
    assert h.value == HIGHEST and h.learned
    assert "steady at" in h.reason and "p99 80.0 ms" in h.reason


def test_latency_that_turns_up_or_errors_bring_it_below_where_they_began() -> None:
    calm = ZoneLoad(75.0, 500, 0.0, {NEAR: 4.0})
    h = _run(declared(0.8, fixed=False), [calm])
    hot = ZoneLoad(82.0, 500, 0.0, {NEAR: 9.0})  # 4 ms x 1.5 + 2 < 9 ms
    down = learn(h, 100.0, hot, fixed=False)
    assert down.value == 0.77 and "p99 9.0 ms from" in down.reason and "82%" in down.reason
    shedding = ZoneLoad(95.0, 1000, 0.05, {NEAR: 4.0})  # the app's 503s beyond --max-rps
    assert learn(h, 100.0, shedding, fixed=False).value == 0.77  # below its own 0.82
    # never below the floor
    worst = _run(h, [ZoneLoad(h.value * 100, 500, 0.5, {}) for _ in range(30)])
    assert worst.value == LOWEST


def test_low_load_far_callers_few_requests_and_fixed_headrooms_move_nothing() -> None:
    h = declared(0.8, fixed=False)
    assert learn(h, 100.0, ZoneLoad(30.0, 500, 0.2, {NEAR: 50.0}), fixed=False).value == 0.8
    assert learn(h, 100.0, ZoneLoad(80.0, 10, 0.5, {}), fixed=False) == h  # too few
    assert learn(h, None, ZoneLoad(80.0, 500, 0.5, {}), fixed=False) == h  # unbounded zone
    # a far caller's p99 is judged against its own lowest, not the near one's
    seen = _run(h, [ZoneLoad(60.0, 500, 0.0, {NEAR: 3.0, FAR: 80.0})])
    assert (
        learn(seen, 100.0, ZoneLoad(79.0, 500, 0.0, {NEAR: 3.1, FAR: 81.0}), fixed=False).value
        > 0.8
    )
    fixed = declared(0.7, fixed=True)
    assert learn(fixed, 100.0, ZoneLoad(70.0, 500, 0.5, {}), fixed=True) == fixed


def test_zone_loads_add_callers_up_and_keep_each_callers_p99() -> None:
    rows = [
        {"destination_service": "echo.demo", "destination_cluster": "a",
         "destination_locality": NEAR, "source_locality": NEAR, "requests": 900, "rps": 90.0,
         "errorShare": 0.0, "p99Ms": 4.0},
        {"destination_service": "echo.demo", "destination_cluster": "a",
         "destination_locality": NEAR, "source_locality": FAR, "requests": 100, "rps": 10.0,
         "errorShare": 0.1, "p99Ms": 85.0},
        {"destination_service": "echo.demo", "destination_cluster": "unknown",
         "destination_locality": "unknown", "source_locality": NEAR, "requests": 5, "rps": 0.5,
         "errorShare": 1.0, "p99Ms": None},
    ]  # fmt: skip
    [(key, load)] = zone_loads(rows).items()
    assert key == ("echo.demo", "a", NEAR)
    assert (load.rps, load.requests) == (100.0, 1000)
    assert abs(load.error_share - 0.01) < 1e-12 and load.p99_ms == {NEAR: 4.0, FAR: 85.0}
