"""The federation-wide split (issue #18, proof 1): the linear program's answer against known
and brute-force optima, graceful degradation when demand does not fit, invariants on random
problems, and the hysteresis between intervals."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.lb.optimizer import (
    SHARE_FLOOR,
    Caller,
    Link,
    Problem,
    Server,
    failover_shares,
    inputs_moved,
    limit_shift,
    round_robin_shares,
    solve,
    usd_per_hour,
)
from federation.model.locality import Locality

EAST_A = Locality("aws/us-east-1", "us-east-1a")
EAST_B = Locality("aws/us-east-1", "us-east-1b")
WEST = Locality("aws/eu-west-1", "eu-west-1a")
GCP = Locality("gcp/europe-west1", "europe-west1-b")
#: US$ per request of 1 MB (10^6 bytes) at 0, 0.01, 0.02 and 0.09 US$/GB
PRICE = {EAST_A: 0.0, EAST_B: 0.01e-3, WEST: 0.02e-3, GCP: 0.09e-3}
RANK = {EAST_A: 0, EAST_B: 1, WEST: 2, GCP: 3}


def _problem(
    demand: dict[Locality, float],
    capacity: dict[Locality, float | None],
    *,
    headroom: float = 0.8,
    excluded: frozenset[Locality] = frozenset(),
) -> Problem:
    """Callers in ``demand``'s localities of cluster ``a``, servers in ``capacity``'s; the
    price of a path is the server's PRICE (a caller in EAST_A's view), no RTT charge."""
    callers = [Caller("a", loc, rps, 500_000, 500_000) for loc, rps in demand.items()]
    servers = [Server(f"c-{loc.zone}", loc, cap) for loc, cap in capacity.items()]
    links = [
        [
            Link(
                PRICE[s.locality] if s.locality != c.locality else 0.0,
                rank=RANK[s.locality] if s.locality != c.locality else 0,
                excluded="over budget" if s.locality in excluded else "",
            )
            for s in servers
        ]
        for c in callers
    ]
    return Problem(callers, servers, links, headroom=headroom)


def _rps(problem: Problem, shares: list[dict[int, float]]) -> list[float]:
    """Requests/s each server gets."""
    out = [0.0] * len(problem.servers)
    for c, split in zip(problem.callers, shares, strict=True):
        for j, s in split.items():
            out[j] += c.rps * s
    return out


def test_one_caller_fills_the_cheapest_locality_up_to_its_headroom_then_the_next() -> None:
    """Known optimum: 150 rps from EAST_A, 100 rps of capacity in each locality: 80 stay local
    (headroom 0.8), 70 go to the next cheapest (EAST_B), nothing further."""
    problem = _problem({EAST_A: 150}, {EAST_A: 100, EAST_B: 100, WEST: 100, GCP: 100})
    solution = solve(problem)
    assert solution.shares[0] == pytest.approx({0: 80 / 150, 1: 70 / 150})
    assert solution.usd_per_hour[0] == pytest.approx(3600 * 70 * 0.01e-3)
    assert solution.overloaded_rps == pytest.approx(0)
    assert any("capacity x headroom binds (80.0 of 100 rps)" in b for b in solution.binding)


def test_demand_that_fits_stays_local_exactly_as_locality_failover() -> None:
    problem = _problem({EAST_A: 50}, {EAST_A: 100, WEST: 100, GCP: 100})
    solution = solve(problem)
    assert solution.shares == [{0: 1.0}]
    assert solution.shares == failover_shares(problem)
    assert solution.total_usd_per_hour == 0.0
    assert solution.binding == []


def test_equal_paths_share_by_capacity_as_failover_does_until_one_would_pass_its_headroom() -> None:
    """A caller in a third zone, two zones equally far and dear (issue 42's live test): the
    program's optima are every split; HiGHS gave one zone everything (12 of 12 rps) and the
    other nothing, so the idle zone's headroom was never learned. Failover's split is an
    optimum: it is kept. At 34 rps failover (17 each) passes headroom x capacity (16): the
    program's split, both zones at 16 and the rest in a reserve."""
    caller = Locality("aws/us-east-1", "us-east-1c")
    zones = [Server("a", EAST_A, 20.0), Server("a", EAST_B, 20.0)]
    same = [Link(0.0, rtt_ms=1.0, rank=1), Link(0.0, rtt_ms=1.0, rank=1)]
    quiet = Problem([Caller("a", caller, 12.0, 500, 500)], zones, [same], headroom=0.8)
    assert solve(quiet).shares == [{0: 0.5, 1: 0.5}]
    busy = Problem([Caller("a", caller, 34.0, 500, 500)], zones, [same], headroom=0.8)
    assert min(_rps(busy, solve(busy).shares)) >= 16.0 - 1e-6
    # a dearer second zone still gets nothing while the first has room
    dear = [Link(0.0, rtt_ms=1.0, rank=1), Link(0.01e-3, rtt_ms=1.0, rank=1)]
    priced = Problem([Caller("a", caller, 12.0, 500_000, 500_000)], zones, [dear])
    assert solve(priced).shares == [{0: 1.0}]


def test_the_optimum_equals_brute_force_over_every_integral_split() -> None:
    """Two callers, three servers, integral demand and capacity x headroom: a transportation
    problem, whose optimum is integral (its matrix is totally unimodular), so enumerating every
    integral split finds it."""
    problem = Problem(
        callers=[
            Caller("a", EAST_A, 6, 1_000_000, 0),
            Caller("b", WEST, 5, 1_000_000, 0),
        ],
        servers=[Server("a", EAST_A, 5), Server("b", WEST, 5), Server("c", GCP, 5)],
        links=[
            [Link(0.0), Link(0.02e-3), Link(0.09e-3)],
            [Link(0.02e-3), Link(0.0), Link(0.05e-3)],
        ],
        headroom=0.8,
    )
    cap = [4, 4, 4]
    best = None
    for x0 in itertools.product(range(7), repeat=3):
        if sum(x0) != 6:
            continue
        for x1 in itertools.product(range(6), repeat=3):
            if sum(x1) != 5 or any(x0[j] + x1[j] > cap[j] for j in range(3)):
                continue
            usd = sum(
                3600 * x[j] * problem.links[i][j].usd_per_request
                for i, x in enumerate((x0, x1))
                for j in range(3)
            )
            best = usd if best is None else min(best, usd)
    solution = solve(problem)
    assert best is not None
    assert solution.total_usd_per_hour == pytest.approx(best, rel=1e-6)
    assert solution.overloaded_rps == pytest.approx(0)


def test_demand_beyond_every_capacity_is_served_by_cost_then_spilled_in_failover_order() -> None:
    """300 rps against 200 of capacity: the reserve of every locality is used, then the
    remaining 100 rps go to the caller's own (rank 0) locality -- where locality failover would
    send them -- and the binding constraints say so. No share is empty or negative."""
    problem = _problem({EAST_A: 300}, {EAST_A: 100, WEST: 100})
    solution = solve(problem)
    rps = _rps(problem, solution.shares)
    assert rps == pytest.approx([200, 100])
    assert solution.overloaded_rps == pytest.approx(100)
    assert all(s > 0 for s in solution.shares[0].values())
    assert sum(solution.shares[0].values()) == pytest.approx(1)
    assert any("over its capacity (100 rps) by 100.0 rps" in b for b in solution.binding)


def test_the_reserve_is_used_before_the_latency_budget_is_broken() -> None:
    """GCP is over the budget: 95 rps use EAST_A's reserve (80 + 15), not GCP; at 120 rps the
    reserve is not enough and GCP takes the excess, which the binding list names."""
    fits = _problem({EAST_A: 95}, {EAST_A: 100, GCP: 1000}, excluded=frozenset({GCP}))
    assert solve(fits).shares == [{0: 1.0}]
    assert any("reserve used" in b for b in solve(fits).binding)
    over = _problem({EAST_A: 120}, {EAST_A: 100, GCP: 1000}, excluded=frozenset({GCP}))
    solution = solve(over)
    assert _rps(over, solution.shares) == pytest.approx([100, 20])
    assert any("over budget, used because nothing within the policy" in b for b in solution.binding)


def test_an_excluded_path_is_avoided_while_another_has_capacity_even_if_dearer() -> None:
    """EAST_B (cheap) is excluded by the policy, GCP (dear) is not and has room: the excess
    goes to GCP, and neither EAST_A's reserve nor EAST_B is touched."""
    problem = _problem(
        {EAST_A: 150}, {EAST_A: 100, EAST_B: 100, GCP: 1000}, excluded=frozenset({EAST_B})
    )
    assert _rps(problem, solve(problem).shares) == pytest.approx([80, 0, 70], abs=1e-6)


def test_latency_charge_trades_dollars_for_round_trips() -> None:
    """Two free paths, one 100 ms away: the near one first; the far one only for what the
    near one cannot take."""
    problem = Problem(
        callers=[Caller("a", EAST_A, 100, 10_000, 10_000)],
        servers=[Server("x", WEST, 50), Server("y", GCP, 500)],
        links=[[Link(0.0, rtt_ms=10, rank=2), Link(0.0, rtt_ms=100, rank=3)]],
    )
    solution = solve(problem)
    assert solution.shares[0] == pytest.approx({0: 0.4, 1: 0.6})


def test_bad_problems_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="at least one caller"):
        solve(Problem([], [Server("a", EAST_A)], []))
    with pytest.raises(ValueError, match="must be > 0 rps"):
        solve(_problem({EAST_A: 0}, {EAST_A: 10}))
    with pytest.raises(ValueError, match="capacity 0 must be > 0"):
        solve(_problem({EAST_A: 1}, {EAST_A: 0}))
    with pytest.raises(ValueError, match=r"headroom 1\.5"):
        solve(_problem({EAST_A: 1}, {EAST_A: 10}, headroom=1.5))
    with pytest.raises(ValueError, match="links must be 1 rows of 1"):
        solve(Problem([Caller("a", EAST_A, 1)], [Server("a", EAST_A)], [[]]))


LOCS = [EAST_A, EAST_B, WEST, GCP]


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    callers = draw(st.lists(st.sampled_from(LOCS), min_size=1, max_size=4, unique=True))
    servers = draw(st.lists(st.sampled_from(LOCS), min_size=1, max_size=4, unique=True))
    demand = {loc: draw(st.floats(1, 500)) for loc in callers}
    capacity = {loc: draw(st.one_of(st.none(), st.floats(1, 500))) for loc in servers}
    excluded = frozenset(draw(st.lists(st.sampled_from(servers), max_size=2)))
    return _problem(demand, capacity, headroom=draw(st.floats(0.5, 1.0)), excluded=excluded)


@settings(max_examples=150, deadline=None)
@given(problems())
def test_invariants_on_random_problems(problem: Problem) -> None:
    """Every caller gets a split: shares above the floor, summing to 1, only over existing
    servers; when the demand fits every capacity x headroom within the policy, nothing is
    overloaded, no capacity x headroom is exceeded and the plan costs no more than locality
    failover or round robin wherever those fit too."""
    solution = solve(problem)
    for split in solution.shares:
        assert split
        assert all(0 <= j < len(problem.servers) for j in split)
        assert all(s >= SHARE_FLOOR * 0.99 for s in split.values())
        assert sum(split.values()) == pytest.approx(1)
    assert all(usd >= 0 for usd in solution.usd_per_hour)
    allowed = [
        j
        for j in range(len(problem.servers))
        if all(not problem.links[i][j].excluded for i in range(len(problem.callers)))
    ]
    caps = [s.capacity_rps for s in problem.servers]
    room = sum(problem.headroom * (caps[j] or 1e12) for j in allowed)
    if sum(c.rps for c in problem.callers) <= 0.999 * room:
        assert solution.overloaded_rps == pytest.approx(0, abs=1e-6)
        for j, rps in enumerate(_rps(problem, solution.shares)):
            if caps[j] is not None:
                # the floor's renormalisation may move up to 0.1 % of a caller's requests
                assert rps <= problem.headroom * caps[j] * 1.002 + 1e-6

    def fits(shares: list[dict[int, float]]) -> bool:
        rps = _rps(problem, shares)
        return all(
            (caps[j] is None or rps[j] <= problem.headroom * caps[j])
            and (rps[j] == 0 or j in allowed)
            for j in range(len(caps))
        )

    for other in (failover_shares(problem), round_robin_shares(problem)):
        if fits(other):
            cheaper = sum(usd_per_hour(problem, other))
            assert solution.total_usd_per_hour <= cheaper * 1.01 + 1e-9


def test_hysteresis_moves_at_most_the_step_and_jumps_when_a_locality_fails() -> None:
    local, remote = ("a", "aws/us-east-1/us-east-1a"), ("b", "aws/eu-west-1/eu-west-1a")
    before = {local: 1.0}
    target = {local: 0.5, remote: 0.5}
    step = limit_shift(before, target, 0.2, available={local, remote})
    assert step == pytest.approx({local: 0.8, remote: 0.2})
    assert limit_shift(step, target, 0.5, available={local, remote}) == target
    # the local locality failed: no gradual move away from it
    assert limit_shift(before, {remote: 1.0}, 0.2, available={remote}) == {remote: 1.0}
    assert limit_shift({}, target, 0.2, available={local, remote}) == target


def test_inputs_are_solved_again_only_when_they_move_beyond_the_threshold() -> None:
    assert not inputs_moved({"d": 100.0}, {"d": 109.0}, 0.1)
    assert inputs_moved({"d": 100.0}, {"d": 111.0}, 0.1)
    assert inputs_moved({"d": 100.0}, {"d": 100.0, "c": 5.0}, 0.1)
    assert not inputs_moved({}, {}, 0.1)
