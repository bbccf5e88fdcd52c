"""The controller's routing plans (issue #18): measured demand and declared capacity in, one
plan per caller locality out; solved again only when inputs move, moved gently, kept when
demand goes missing, jumped when a locality fails."""

from __future__ import annotations

from typing import Any

import pytest

from federation.controller.imports import ExportStatus
from federation.controller.planner import Planner, PlannerSettings, servers_of
from federation.controller.store import ClusterRecord
from federation.lb.paths import tables_in_force
from federation.model.documents import validate_documents
from federation.model.policy import TrafficPolicy
from federation.sync.messages import ClusterReport

A, B, C = "aws-us-east-1", "aws-eu-west-1", "gcp-europe-west1"
LOCALITY = {A: "aws/us-east-1", B: "aws/eu-west-1", C: "gcp/europe-west1"}
ZONE = {A: "us-east-1a", B: "eu-west-1a", C: "europe-west1-b"}
CALLER = "aws/us-east-1/us-east-1a"


def _policy(**cost: Any) -> TrafficPolicy:
    doc = {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "echo", "namespace": "demo"},
        "spec": {"host": "echo.demo.svc.clusterset.local", "cost": {"mode": "optimize", **cost}},
    }
    (policy,) = validate_documents([doc], source="test")
    assert isinstance(policy, TrafficPolicy)
    return policy


def _report(cluster: str, capacity: float, healthy: bool = True) -> ClusterReport:
    return ClusterReport.model_validate(
        {
            "cluster": cluster,
            "services": [
                {
                    "namespace": "demo",
                    "name": "echo",
                    "ports": [{"name": "http", "port": 80, "protocol": "http"}],
                    "healthy_endpoints_by_zone": {ZONE[cluster]: int(healthy)},
                    "endpoints": [
                        {
                            "address": "10.0.0.1",
                            "zone": ZONE[cluster],
                            "healthy": healthy,
                            "ports": {"http": 15006},
                            "capacity_rps": capacity,
                        }
                    ],
                }
            ],
            "exports": ["demo/echo"],
            "gateway": f"{cluster}.example:15443",
        }
    )


class World:
    """Three clusters serving demo/echo with 100 rps each, a caller in A's zone a."""

    def __init__(self) -> None:
        self.records = {
            c: ClusterRecord(c, LOCALITY[c], "n-" + c, f"{c}.example:15443", "local", 0.0)
            for c in (A, B, C)
        }
        self.reports = {c: _report(c, 100.0) for c in (A, B, C)}
        self.exports = [ExportStatus(c, "demo", "echo", 0.0, "Exported") for c in (A, B, C)]
        self.policies = [_policy()]
        self.now = 1000.0
        self.planner = Planner(
            PlannerSettings(smoothing=1.0, max_shift=0.25), clock=lambda: self.now
        )

    def round(self, rps: float | None) -> bool:
        rows = (
            []
            if rps is None
            else [
                {
                    "source_cluster": A,
                    "source_locality": CALLER,
                    "destination_service": "echo.demo",
                    "rps": rps,
                    "requestBytesPerS": rps * 1000,
                    "responseBytesPerS": rps * 9000,
                }
            ]
        )
        self.now += 5
        return self.planner.plan(
            self.policies, self.exports, self.records, self.reports, rows, tables_in_force([])
        )

    def shares(self) -> dict[str, float]:
        (plan,) = self.planner.plans()[A]
        return {cluster: share for cluster, _, share in plan.shares}


def test_the_plan_keeps_local_what_fits_and_sends_the_rest_to_the_cheapest_region() -> None:
    world = World()
    assert world.round(150.0)
    assert world.shares() == pytest.approx({A: 80 / 150, B: 70 / 150}, abs=1e-4)
    (plan,) = world.planner.plans()[A]
    assert (plan.namespace, plan.service, plan.caller_locality) == ("demo", "echo", CALLER)
    assert plan.demand_rps == 150.0
    # 70 rps x 10 kB x $0.02/GB, per hour; failover keeps everything local (0 $)
    assert plan.usd_per_hour == pytest.approx(70 * 10_000 * 0.02e-9 * 3600, rel=1e-3)
    assert plan.failover_usd_per_hour == 0.0
    assert plan.round_robin_usd_per_hour > 3 * plan.usd_per_hour
    assert any("capacity x headroom binds" in b for b in plan.binding)
    assert world.planner.plans().keys() == {A}  # only the caller's cluster gets a plan


def test_small_changes_are_not_solved_again_and_big_ones_move_at_most_the_step() -> None:
    world = World()
    world.round(150.0)
    solves = world.planner.solves
    assert not world.round(155.0)  # within 10 %: same plan, nothing sent
    assert world.planner.solves == solves
    before = world.shares()
    assert world.round(240.0)  # the optimum is now 80 A, 80 B, 80 C... at most 25 % moves
    after = world.shares()
    moved = 0.5 * sum(abs(after.get(k, 0) - before.get(k, 0)) for k in {*before, *after})
    assert moved == pytest.approx(0.25, abs=1e-3)
    for _ in range(5):
        world.round(240.0)
    assert world.shares() == pytest.approx({A: 1 / 3, B: 1 / 3, C: 1 / 3}, abs=1e-3)


def test_missing_demand_keeps_the_plan_and_a_failed_locality_is_left_at_once() -> None:
    world = World()
    world.round(150.0)
    plan = world.planner.plans()[A]
    assert not world.round(None)
    assert world.planner.plans()[A] == plan
    world.reports[B] = _report(B, 100.0, healthy=False)
    assert world.round(150.0)
    assert world.shares() == pytest.approx({A: 80 / 150, C: 70 / 150}, abs=1e-4)


def test_servers_are_the_exported_zones_with_healthy_endpoints_and_their_capacity() -> None:
    world = World()
    world.exports[2] = ExportStatus(C, "demo", "echo", 0.0, "Conflict")
    world.reports[B] = _report(B, 0.0)  # declares nothing: unbounded
    servers = servers_of(("demo", "echo"), world.exports, world.records, world.reports)
    assert [(s.cluster, str(s.locality), s.capacity_rps) for s in servers] == [
        (A, CALLER, 100.0),
        (B, "aws/eu-west-1/eu-west-1a", None),
    ]


def test_a_policy_that_leaves_optimize_takes_its_plans_with_it() -> None:
    world = World()
    world.round(150.0)
    world.policies = []
    assert world.round(150.0)
    assert world.planner.plans() == {}


def test_headroom_and_budget_of_the_policy_are_used() -> None:
    world = World()
    world.policies = [_policy(headroom=0.5, latencyBudgetMs=50)]
    world.round(150.0)
    (plan,) = world.planner.plans()[A]
    # 50 local; B (estimated ~70 ms away) and C are over the 50 ms budget: the reserve
    # of A (50 more) first, then the cheapest excluded path for the last 50
    assert world.shares()[A] == pytest.approx(100 / 150, abs=1e-3)
    assert any("over the 50 ms budget" in b for b in plan.binding)


def test_a_caller_without_a_locality_is_left_out_not_fatal() -> None:
    world = World()
    rows = [
        {
            "source_cluster": A,
            "source_locality": "unknown",
            "destination_service": "echo.demo",
            "rps": 10.0,
            "requestBytesPerS": 1.0,
            "responseBytesPerS": 1.0,
        }
    ]
    assert not world.planner.plan(
        world.policies, world.exports, world.records, world.reports, rows, tables_in_force([])
    )
    assert world.round(150.0) and set(world.planner.plans()) == {A}


def test_a_round_leaves_a_converged_service_with_unmoved_inputs_alone(monkeypatch) -> None:
    """Issue #37: once a service's plans converged, a round whose inputs moved less than
    the threshold prices no path at all (a round over 1,000 services used to price every
    path of every service); a bigger move is priced and solved again."""
    import federation.controller.planner as planner_module

    world = World()
    for _ in range(8):  # converge: each round moves at most 25 %
        world.round(150.0)
    priced: list[int] = []
    real = planner_module.link
    monkeypatch.setattr(planner_module, "link", lambda *a, **k: priced.append(1) or real(*a, **k))
    solves = world.planner.solves
    assert not world.round(155.0)  # +3 %: within the threshold
    assert priced == [] and world.planner.skipped >= 1
    assert world.round(200.0)  # +33 %: priced, solved, stepped
    assert priced and world.planner.solves == solves + 1


def _served_rows(world: World, rps: float, p99_of) -> list[dict[str, Any]]:
    """What the sidecars would count of the plan in force: per serving zone, its share of
    the caller's ``rps`` and the p99 ``p99_of(cluster, served rps)``."""
    plans = world.planner.plans().get(A)
    shares = {c: s for c, _, s in plans[0].shares} if plans else {A: 1.0}
    return [
        {"destination_service": "echo.demo", "destination_cluster": c,
         "destination_locality": f"{LOCALITY[c]}/{ZONE[c]}", "source_locality": CALLER,
         "requests": int(rps * share * 10), "rps": rps * share, "errorShare": 0.0,
         "p99Ms": p99_of(c, rps * share)}
        for c, share in shares.items()
    ]  # fmt: skip


def _learning_round(world: World, rps: float, p99_of) -> None:
    rows = [{"source_cluster": A, "source_locality": CALLER, "destination_service": "echo.demo",
             "rps": rps, "requestBytesPerS": rps * 1000, "responseBytesPerS": rps * 9000}]  # fmt: skip
    world.now += 5
    world.planner.plan(world.policies, world.exports, world.records, world.reports, rows,
                       tables_in_force([]), _served_rows(world, rps, p99_of))  # fmt: skip


def _headrooms(world: World) -> dict[str, tuple[float, str]]:
    (plan,) = world.planner.plans()[A]
    return {c: (h, why) for c, _, h, why in plan.headrooms}


def test_a_zone_whose_latency_turns_up_gets_less_headroom_than_one_that_does_not() -> None:
    """Issue 42: A's p99 turns up above 70 rps, B's stays flat at any load: as demand grows
    from a quiet start, A ends with the smaller headroom, below where its latency turned,
    and the plan says why."""
    world = World()

    def p99(cluster: str, served: float) -> float:
        if cluster == A:
            return 3.0 if served <= 70 else 25.0
        return 80.0  # B and C are far from the caller, but not slower under load

    for rps in [50.0] * 3 + [150.0] * 30:
        _learning_round(world, rps, p99)
    rooms = _headrooms(world)
    assert rooms[A][0] <= 0.72 and rooms[A][0] < rooms[B][0] - 0.1, rooms
    assert world.shares()[A] * 150 <= 70.1  # where its latency stays low
    reasons = set()
    for _ in range(10):  # where it settles, it tries a step up and is pushed back
        _learning_round(world, 150.0, p99)
        reasons.add(_headrooms(world)[A][1])
    assert any("p99 25.0 ms from aws/us-east-1/us-east-1a (lowest 3.0 ms)" in r for r in reasons)


def test_at_exactly_full_load_a_steady_zone_keeps_its_callers_like_failover_does() -> None:
    """Issue 42: with a fixed 0.8 headroom, 100 % of the local zone's capacity sent 20 % to
    another region -- dearer and slower than locality failover. Learned from a flat p99, the
    headroom reaches (nearly) the whole capacity, the little spill left is within the
    demand's noise and not taken, and the plan costs what failover costs."""
    world = World()
    for _ in range(60):
        _learning_round(world, 100.0, lambda cluster, served: 3.0)
    (plan,) = world.planner.plans()[A]
    assert _headrooms(world)[A][0] >= 0.96
    assert world.shares() == {A: 1.0}
    assert plan.usd_per_hour == plan.failover_usd_per_hour == 0.0
    fixed = World()
    fixed.policies = [_policy(headroom=0.8)]  # a policy's cost.headroom is not learned
    for _ in range(40):
        _learning_round(fixed, 100.0, lambda cluster, served: 3.0)
    assert _headrooms(fixed)[A] == (0.8, "cost.headroom (fixed by the policy)")
    assert fixed.shares()[A] == pytest.approx(0.8, abs=1e-3)


def test_a_spill_within_the_demands_noise_that_only_costs_more_is_not_taken() -> None:
    """Issue 42, bench/cost_live.py --zones at 100 % load: demand measured 2 % over the
    local zone's whole capacity made the plan send 4 % to another region -- dearer and
    slower than failover. A move of at most 5 % off failover's order that only costs more
    is not taken (the zone's overflow is retried on the next priority, as under failover);
    beyond it, or when it is cheaper, the optimum stands. (The plan in force shows the
    headroom of the last solve: it showed 0.98 here while the planner had learned 1.0, plans
    being built again only when their shares moved.)"""
    world = World()
    for _ in range(60):  # A's headroom learned to its whole capacity (flat p99)
        _learning_round(world, 100.0, lambda cluster, served: 3.0)
    assert _headrooms(world)[A][0] == 1.0
    # 85 rps (not near the cap: the headroom stays), then 103: each moves demand beyond the
    # resolve threshold, so each is solved (a 3 % move from 100 would not be)
    for rps in (85.0, 103.0, 103.0, 103.0):
        _learning_round(world, rps, lambda cluster, served: 3.0)
    (plan,) = world.planner.plans()[A]
    assert plan.demand_rps > 100.0 and _headrooms(world)[A][0] == 1.0
    assert world.shares() == {A: 1.0}
    assert plan.usd_per_hour == plan.failover_usd_per_hour == 0.0
    assert any("move off locality failover is within" in b for b in plan.binding), plan
    for _ in range(8):  # 20 % over: a real overflow, planned
        _learning_round(world, 120.0, lambda cluster, served: 3.0)
    assert world.shares()[A] == pytest.approx(100 / 120, abs=1e-3)
    assert not any("within the demand" in b for b in world.planner.plans()[A][0].binding)
