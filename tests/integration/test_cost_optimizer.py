"""Issue #18 on the isolated bed: cost mode ``optimize`` serves 150 % of a cluster's capacity
without a failed request, split by the controller's plan, at the dollars the plan predicted
and far below round robin (:mod:`tests.integration.cost_scenario`; ``bench/cost_live.py``
measures all three policies at three loads)."""

from __future__ import annotations

import pytest

from tests.integration.cost_scenario import CALLER, Measurement, measure, scenario_file
from tests.integration.isolated import A, B, C, isolated_federation

CAPACITY = 40.0


def _check_optimize(m: Measurement) -> None:
    # pytest cuts a long repr in the middle: the shares are what a failure must show
    seen = f"served {m.served}, failed {m.failed}/{m.sent}, p99 {m.p99_ms:.0f} ms"
    assert m.failed == 0, seen
    # the plan: 80 % of A's 40 rps at home (32 of 60), the rest to B (40 ms, $0.02/GB); C
    # is over the 60 ms budget
    assert m.served.get(A, 0.0) == pytest.approx(32 / 60, abs=0.08), seen
    assert m.served.get(B, 0.0) == pytest.approx(28 / 60, abs=0.08), seen
    assert m.served.get(C, 0.0) < 0.03, seen
    assert m.predicted_usd_per_hour is not None
    assert m.usd_per_hour == pytest.approx(m.predicted_usd_per_hour, rel=0.15), m


def test_optimize_serves_150_percent_of_local_capacity_at_the_planned_price(tmp_path) -> None:
    with isolated_federation(tmp_path, scenario_file(CAPACITY)) as fed:
        # a fixed headroom (cost.headroom 0.8): the plan's arithmetic below; a learned one
        # moves with A's load (tests/unit/controller/test_planner.py, bench/cost_live.py)
        optimize = measure(fed, "optimize", 1.5 * CAPACITY, warm_s=10, seconds=20, headroom=0.8)
        _check_optimize(optimize)
        shown = fed.meshfed("explain", "echo.demo", "--from", A, "--locality", CALLER)
        assert "optimizer plan for" in shown and "capacity x headroom binds" in shown
        spread = measure(fed, "round-robin", 1.5 * CAPACITY, warm_s=6, seconds=8)
        assert spread.failed == 0
        assert all(spread.served.get(c, 0.0) > 0.2 for c in (A, B, C)), spread
        assert spread.usd_per_hour > 3 * optimize.usd_per_hour, (spread, optimize)
