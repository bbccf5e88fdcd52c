"""The placement decision (federation.lb.decision): examples, then hypothesis properties."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from federation.lb.decision import (
    Candidate,
    PolicyInputs,
    decide,
    priority_loads,
    spill_for_grpc,
)
from federation.lb.locality import proximity_rank
from federation.model.locality import Locality

CALLER = Locality("aws/us-east-1", "us-east-1a")


def _c(cluster, locality, healthy=2, capacity=None, rtt=1.0, price=0.0, total=None):
    return Candidate(
        cluster,
        Locality.parse(locality),
        healthy,
        total if total is not None else max(healthy, 1),
        capacity if capacity is not None else healthy,
        rtt,
        "estimated",
        price,
        "",
    )


def test_default_order_zone_region_cloud_other_and_dead_last() -> None:
    cands = [
        _c("g", "gcp/europe-west1/europe-west1-b"),
        _c("e", "aws/eu-west-1/eu-west-1a"),
        _c("l", "aws/us-east-1/us-east-1b"),
        _c("l", "aws/us-east-1/us-east-1a", healthy=0),
    ]
    got = [(c.candidate.cluster, c.locality.zone, c.priority) for c in decide(CALLER, "l", cands)]
    assert got == [
        ("l", "us-east-1b", 0),
        ("e", "eu-west-1a", 1),
        ("g", "europe-west1-b", 2),
        ("l", "us-east-1a", 3),
    ]


def test_cost_modes_and_budget() -> None:
    b = _c("b", "aws/us-west-2/us-west-2a", rtt=54, price=0.02)
    c = _c("c", "gcp/us-east4/us-east4-a", rtt=1.2, price=0.12)
    order = lambda policy: [ch.candidate.cluster for ch in decide(CALLER, "a", [c, b], policy)]  # noqa: E731
    assert order(PolicyInputs()) == ["b", "c"]  # same cloud first
    assert order(PolicyInputs(mode="prefer-cheaper")) == ["b", "c"]
    assert order(PolicyInputs(mode="prefer-cheaper", latency_budget_ms=20)) == ["c", "b"]
    assert order(PolicyInputs(max_cost_per_gb=0.05, failover_priority=())) == ["b", "c"]
    # optimize: 0.02 + 54 * 0.0002 = 0.0308 vs 0.12 + 0.00024: still b
    assert order(PolicyInputs(mode="optimize")) == ["b", "c"]
    reasons = decide(CALLER, "a", [c, b], PolicyInputs(mode="prefer-cheaper", latency_budget_ms=20))
    assert "RTT over the 20 ms budget" in reasons[1].reason


def test_failover_target_region_and_failover_priority_labels() -> None:
    eu = _c("eu", "aws/eu-west-1/eu-west-1a")
    us2 = _c("us2", "aws/us-east-2/us-east-2a")
    policy = PolicyInputs(failover=(("aws/us-east-1", "aws/eu-west-1"),))
    assert [ch.candidate.cluster for ch in decide(CALLER, "a", [us2, eu], policy)] == ["eu", "us2"]
    # failoverPriority by cluster only: a's own endpoints in another zone come before b's
    own = _c("a", "aws/us-east-1/us-east-1b")
    same_zone_other_cluster = _c("b", "aws/us-east-1/us-east-1a")
    got = decide(
        CALLER, "a", [same_zone_other_cluster, own], PolicyInputs(failover_priority=("cluster",))
    )
    assert [ch.candidate.cluster for ch in got] == ["a", "b"]


def test_distribute_shares_priority_zero_by_percent() -> None:
    a = _c("a", "aws/us-east-1/us-east-1a", capacity=1)
    b = _c("b", "aws/us-east-1/us-east-1b", capacity=3)
    policy = PolicyInputs(
        distribute=(
            (
                "aws/us-east-1/*",
                (("aws/us-east-1/us-east-1a", 80), ("aws/us-east-1/us-east-1b", 20)),
            ),
        )
    )
    got = {ch.candidate.cluster: ch for ch in decide(CALLER, "a", [a, b], policy)}
    assert got["a"].priority == got["b"].priority == 0
    assert got["a"].weight == 4 * got["b"].weight


def test_grpc_spill_reproduces_envoys_overprovisioning() -> None:
    half_dead = _c("a", "aws/us-east-1/us-east-1a", healthy=1, total=2, capacity=1)
    backup = _c("b", "aws/us-west-2/us-west-2a", healthy=2, capacity=2)
    choices = decide(CALLER, "a", [half_dead, backup])
    assert [round(x, 2) for x in priority_loads(choices)] == [0.7, 0.3]
    spilled = spill_for_grpc(choices)
    assert {ch.priority for ch in spilled} == {0}
    weights = {ch.candidate.cluster: ch.weight for ch in spilled}
    assert abs(weights["a"] / (weights["a"] + weights["b"]) - 0.7) < 0.01
    healthy = decide(CALLER, "a", [_c("a", "aws/us-east-1/us-east-1a"), backup])
    assert spill_for_grpc(healthy) == healthy  # nothing to spill


_LOCS = [
    "aws/us-east-1/us-east-1a",
    "aws/us-east-1/us-east-1b",
    "aws/us-west-2/us-west-2a",
    "aws/eu-west-1/eu-west-1a",
    "gcp/us-east4/us-east4-a",
    "gcp/europe-west1/europe-west1-b",
    "local/lab/a",
]
_candidates = st.lists(
    st.builds(
        lambda loc, cluster, healthy, extra, rtt, price: _c(
            cluster,
            loc,
            healthy=healthy,
            capacity=healthy + extra if healthy else 0,
            rtt=rtt,
            price=price,
            total=healthy + 1,
        ),
        st.sampled_from(_LOCS),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 4),
        st.integers(0, 10),
        st.floats(0, 200),
        st.sampled_from([0.0, 0.01, 0.02, 0.05, 0.09, 0.12]),
    ),
    max_size=12,
    unique_by=lambda c: (c.cluster, c.locality),
)
_policies = st.builds(
    PolicyInputs,
    mode=st.sampled_from(["off", "prefer-cheaper", "optimize"]),
    latency_budget_ms=st.one_of(st.none(), st.floats(1, 150)),
    max_cost_per_gb=st.one_of(st.none(), st.sampled_from([0.0, 0.02, 0.1])),
)


@settings(max_examples=300)
@given(_candidates, _policies)
def test_properties(cands: list[Candidate], policy: PolicyInputs) -> None:
    choices = decide(CALLER, "a", cands, policy)
    assert len(choices) == len(cands)
    assert all(ch.weight >= 1 for ch in choices)  # Envoy and gRPC need weights >= 1
    levels = sorted({ch.priority for ch in choices})
    assert levels == list(range(len(levels)))  # contiguous from 0
    loads = priority_loads(choices)
    if choices:
        assert abs(sum(loads) - 1.0) < 1e-6 or sum(c.healthy for c in cands) == 0
        assert all(x >= 0 for x in loads)
    healthy = [ch for ch in choices if ch.candidate.healthy > 0]
    dead = [ch for ch in choices if ch.candidate.healthy == 0]
    if healthy:
        assert max(ch.priority for ch in healthy) < min((ch.priority for ch in dead), default=99)
        for ch in dead:  # an unhealthy locality never gets traffic while a healthy one exists
            assert loads[levels.index(ch.priority)] == 0
    if policy.mode != "off":
        # never a pricier locality ahead of a cheaper one of equal RTT and capacity
        for x in healthy:
            for y in healthy:
                cx, cy = x.candidate, y.candidate
                if (
                    cx.rtt_ms == cy.rtt_ms
                    and cx.capacity == cy.capacity
                    and cx.usd_per_gb < cy.usd_per_gb
                    and (policy.max_cost_per_gb is None or cx.usd_per_gb <= policy.max_cost_per_gb)
                ):
                    assert x.priority <= y.priority
    else:
        for x in healthy:  # locality order holds between equally budgeted candidates
            for y in healthy:
                same_limits = (
                    (x.candidate.rtt_ms or 0) <= (policy.latency_budget_ms or 1e9)
                    and (y.candidate.rtt_ms or 0) <= (policy.latency_budget_ms or 1e9)
                    and policy.max_cost_per_gb is None
                )
                if same_limits and proximity_rank(CALLER, x.locality) < proximity_rank(
                    CALLER, y.locality
                ):
                    assert x.priority < y.priority
    shuffled = list(cands)
    random.Random(7).shuffle(shuffled)
    assert decide(CALLER, "a", shuffled, policy) == choices  # deterministic
    spilled = spill_for_grpc(choices)
    assert all(ch.weight >= 1 for ch in spilled)
    assert sorted({ch.priority for ch in spilled}) == list(
        range(len({ch.priority for ch in spilled}))
    )


def test_a_plan_puts_its_split_at_priority_zero_and_keeps_the_failover_order_behind() -> None:
    """Issue #18: the controller's shares become the locality weights of priority 0 (a remote
    cluster behind its gateway, a candidate without a zone, takes the shares of its zones);
    the rest keep their order; a dead candidate never joins priority 0; no plan share for any
    candidate leaves the choices as decided."""
    from federation.lb.decision import PLAN_WEIGHT_SCALE, with_plan

    local = _c("a", "aws/us-east-1/us-east-1a")
    other_zone = _c("a", "aws/us-east-1/us-east-1b")
    west = _c("b", "aws/eu-west-1")  # behind B's gateway
    gcp = _c("c", "gcp/europe-west1/europe-west1-b")
    decided = decide(CALLER, "a", [local, other_zone, west, gcp])
    shares = [
        ("a", Locality.parse("aws/us-east-1/us-east-1a"), 0.6),
        ("b", Locality.parse("aws/eu-west-1/eu-west-1a"), 0.4),
    ]
    got = with_plan(decided, shares)
    assert [(c.candidate.cluster, c.locality.zone, c.priority, c.weight) for c in got] == [
        ("b", "", 0, 0.4 * PLAN_WEIGHT_SCALE),
        ("a", "us-east-1a", 0, 0.6 * PLAN_WEIGHT_SCALE),
        ("a", "us-east-1b", 1, other_zone.capacity),
        ("c", "europe-west1-b", 2, gcp.capacity),
    ]
    assert "plan: 60.0%" in got[1].reason
    dead = with_plan(decide(CALLER, "a", [_c("a", "aws/us-east-1/us-east-1a", 0), west]), shares)
    assert [(c.candidate.cluster, c.priority) for c in dead] == [("b", 0), ("a", 1)]
    assert with_plan(decided, [("z", Locality.parse("aws/us-east-1"), 1.0)]) == decided


def test_distribute_targets_with_equal_percentages_each_keep_their_own() -> None:
    """Two targets of 33 % each were once pooled as one 33 % (each got 16.5 %); every target's
    percentage is shared only by the candidates matching that target."""
    cands = [
        _c("a", "aws/us-east-1/us-east-1a", healthy=1),
        _c("a", "aws/us-east-1/us-east-1b", healthy=1),
        _c("b", "aws/eu-west-1", healthy=1),
        _c("c", "gcp/europe-west1", healthy=1),
    ]
    targets = (("aws/us-east-1/*", 34), ("aws/eu-west-1/*", 33), ("gcp/europe-west1/*", 33))
    got = decide(CALLER, "a", cands, PolicyInputs(distribute=(("*", targets),)))
    weights = {(c.candidate.cluster, c.locality.zone): c.weight for c in got}
    assert weights == {
        ("a", "us-east-1a"): 1700,
        ("a", "us-east-1b"): 1700,
        ("b", ""): 3300,
        ("c", ""): 3300,
    }
    assert {c.priority for c in got} == {0}
