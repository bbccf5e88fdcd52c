"""``meshfed shift``'s plan and verdicts (issue #21). Pure."""

from __future__ import annotations

import pytest
import yaml

from federation.model.documents import load_documents
from federation.shift.plan import (
    SHIFT_ROUTE,
    TELEMETRY_LAG_S,
    ShiftError,
    StepStats,
    destination,
    parse_rate,
    parse_steps,
    stats_of,
    step_over,
    step_policy,
    verdict,
)

BASE = {
    "apiVersion": "meshfed.io/v1alpha1",
    "kind": "TrafficPolicy",
    "metadata": {"name": "echo", "namespace": "demo"},
    "spec": {
        "host": "echo.demo.svc.clusterset.local",
        "subsets": [{"name": "v2", "labels": {"version": "v2"}}],
        "http": [{"name": "canary", "match": [{"headers": {"x-canary": {"exact": "1"}}}]}],
    },
}


def test_steps_and_rates_parse_and_bad_ones_say_why() -> None:
    assert parse_steps("10,25,50,100") == [10, 25, 50, 100]
    assert parse_rate("1%") == 0.01 and parse_rate("0.5") == 0.005
    for text, why in (("10,5", "increase"), ("0,50", "1-100"), ("a", "whole"), ("", "1-100")):
        with pytest.raises(ShiftError, match=why):
            parse_steps(text)
    with pytest.raises(ShiftError, match="percentage"):
        parse_rate("lots")


def test_targets_are_members_or_subsets_and_ambiguity_is_refused() -> None:
    assert destination("b", ["a", "b"], ["v2"], "--to") == {"cluster": "b"}
    assert destination("v2", ["a", "b"], ["v2"], "--to") == {"subset": "v2"}
    assert destination("subset:b", ["a", "b"], ["b"], "--to") == {"subset": "b"}
    with pytest.raises(ShiftError, match="cluster and a subset"):
        destination("b", ["b"], ["b"], "--to")
    with pytest.raises(ShiftError, match="not a member cluster"):
        destination("zz", ["a"], [], "--to")


def test_each_step_closes_the_policys_routes_with_the_shift_route_and_stays_valid() -> None:
    docs = [step_policy(BASE, {"subset": "v2"}, {}, w) for w in (10, 100)]
    first, last = (d["spec"]["http"] for d in docs)
    assert first[0]["name"] == "canary"  # the policy's own routes stay in front
    shares = [{"destination": {"subset": "v2"}, "weight": 10}, {"destination": {}, "weight": 90}]
    # idempotent methods: a 5xx of the target is retried (on another priority), the
    # policy's defaults otherwise, without a per-try timeout the policy did not ask for
    assert first[1] == {
        "name": SHIFT_ROUTE,
        "match": [{"method": {"regex": "GET|HEAD|OPTIONS|TRACE|PUT|DELETE"}}],
        "route": shares,
        "retries": {
            "perTryTimeoutMs": 0,
            "retryOn": "connect-failure,reset,refused-stream,unavailable,503,5xx",
            "attempts": 2,
        },
    }
    assert first[2] == {"name": SHIFT_ROUTE, "route": shares}  # POST and the rest: as before
    assert (
        last[1]["route"] == last[2]["route"] == [{"destination": {"subset": "v2"}, "weight": 100}]
    )
    again = step_policy(docs[0], {"cluster": "b"}, {}, 50)  # a second shift replaces the first
    assert [r["name"] for r in again["spec"]["http"]] == ["canary", SHIFT_ROUTE, SHIFT_ROUTE]
    assert BASE["spec"]["http"] == [
        {"name": "canary", "match": [{"headers": {"x-canary": {"exact": "1"}}}]}
    ]  # not modified
    for doc in docs:  # what the controller will be sent validates
        assert load_documents(yaml.safe_dump(doc))


def test_a_split_or_a_catch_all_route_is_refused() -> None:
    split = {**BASE, "spec": {**BASE["spec"], "split": {"a": 100}}}
    with pytest.raises(ShiftError, match=r"spec\.split"):
        step_policy(split, {"cluster": "b"}, {}, 10)
    catch_all = {**BASE, "spec": {**BASE["spec"], "http": [{"timeoutMs": 5}]}}
    with pytest.raises(ShiftError, match=r"spec\.http\[0\] already routes every request"):
        step_policy(catch_all, {"cluster": "b"}, {}, 10)


def test_stats_sum_the_services_rows_and_verdicts_name_the_breach() -> None:
    rows = [
        {"destination_service": "echo.demo", "requests": 100, "errorShare": 0.02, "p99Ms": 40.0},
        {"destination_service": "echo.demo", "requests": 50, "errorShare": 0.0, "p99Ms": 90.0},
        {"destination_service": "other.demo", "requests": 999, "errorShare": 1.0, "p99Ms": 1.0},
    ]
    stats = stats_of(rows, "echo.demo")
    assert stats == StepStats(150, 2, 90.0)
    assert verdict(stats, 0.02, None, 20, final=False) is None  # 1.33 % <= 2 %
    reason = verdict(stats, 0.01, None, 20, final=False)
    assert reason is not None and "error rate 1.33% (2 failed of 150 requests)" in reason
    reason = verdict(stats, 0.05, 50, 20, final=False)
    assert reason is not None and "p99 90 ms" in reason
    few = StepStats(5, 5, None)
    assert verdict(few, 0.01, None, 20, final=False) is None  # not judged yet
    reason = verdict(few, 0.01, None, 20, final=True)
    assert reason is not None and "not enough traffic" in reason


def test_a_step_short_of_requests_at_its_end_waits_for_the_telemetry_still_on_its_way() -> None:
    few, enough = StepStats(0, 0, None), StepStats(20, 0, 5.0)
    assert not step_over(3.9, 4, enough, 20)  # the interval has not passed
    assert step_over(4.0, 4, enough, 20)
    assert not step_over(4.0, 4, few, 20)  # its last requests may not have been reported
    assert not step_over(4 + TELEMETRY_LAG_S - 0.1, 4, few, 20)
    assert step_over(4 + TELEMETRY_LAG_S, 4, few, 20)  # then it is judged: too few


def test_egress_dollars_over_the_ceiling_roll_a_step_back() -> None:
    """Issue 42: ``--max-usd-per-hour``: a step whose callers' egress costs more than the
    ceiling rolls back, naming both figures."""
    from federation.shift.plan import StepStats, stats_of, verdict

    rows = [
        {"destination_service": "echo.demo", "requests": 100, "errorShare": 0, "p99Ms": 4,
         "usdPerHour": 0.03, "rps": 10},
        {"destination_service": "echo.demo", "requests": 100, "errorShare": 0, "p99Ms": 5,
         "usdPerHour": 0.01, "rps": 10},
        {"destination_service": "other.demo", "requests": 9, "errorShare": 0, "p99Ms": 5,
         "usdPerHour": 5.0, "rps": 1},
    ]  # fmt: skip
    stats = stats_of(rows, "echo.demo")
    assert (stats.usd_per_hour, stats.rps) == (pytest.approx(0.04), 20)
    assert verdict(stats, 0.01, None, 20, final=False, max_usd_per_hour=0.05) is None
    reason = verdict(stats, 0.01, None, 20, final=False, max_usd_per_hour=0.02)
    assert reason == "egress $0.04/hour is over --max-usd-per-hour $0.02"
    # not judged on dollars before it has enough requests to be judged at all
    few = StepStats(5, 0, 3.0, 9.0, 1.0)
    assert verdict(few, 0.01, None, 20, final=False, max_usd_per_hour=0.02) is None


def test_the_next_steps_dollars_are_projected_from_before_the_shift_and_the_last_step() -> None:
    """A request's egress dollars move linearly with the target's weight; the projection is
    at the current load. A step projected over the ceiling does not start."""
    from federation.shift.plan import StepStats, projected_usd_per_hour
    from federation.shift.run import over_budget

    before = StepStats(200, 0, 3.0, usd_per_hour=0.0, rps=20)  # all local: free
    at_10 = StepStats(400, 0, 3.0, usd_per_hour=0.5, rps=40)  # twice the load at 10 %
    # per request: 0 at 0 %, 0.0125 at 10 % -> 0.125 at 100 %, times 40 req/s
    assert projected_usd_per_hour(before, at_10, 10, 100) == pytest.approx(5.0)
    assert projected_usd_per_hour(before, at_10, 10, 25) == pytest.approx(1.25)
    assert projected_usd_per_hour(StepStats(0, 0, None), at_10, 10, 25) is None
    assert over_budget(before, (10, at_10), 25, 2.0) is None
    reason = over_budget(before, (10, at_10), 100, 2.0)
    assert reason == (
        "would spend about $5.00/hour (before the shift $0/hour, at 10% $0.50/hour),"
        " over --max-usd-per-hour $2.00"
    )
    assert over_budget(before, None, 10, 2.0) is None  # the first step: nothing to project
    assert over_budget(before, (10, at_10), 100, None) is None


def test_attempts_retried_unseen_count_as_failures_of_the_step() -> None:
    """Issue 42: during a shift the callers' sidecars retry the target's failures elsewhere,
    so the callers see none; the step is judged on failed attempts -- the errors seen and the
    retries -- over all attempts."""
    rows = [
        {"destination_service": "echo.demo", "destination_cluster": "a", "requests": 180,
         "errorShare": 0.0, "p99Ms": 9.0, "retries": 12},
        {"destination_service": "echo.demo", "destination_cluster": "c", "requests": 20,
         "errorShare": 0.0, "p99Ms": 4.0},
    ]  # fmt: skip
    stats = stats_of(rows, "echo.demo")
    assert (stats.requests, stats.errors, stats.retries) == (200, 0, 12)
    assert stats.served == {"a": 180, "c": 20}
    assert stats.error_rate == pytest.approx(12 / 212)
    reason = verdict(stats, 0.02, None, 20, final=False)
    assert reason is not None
    assert "error rate 5.66% (0 failed of 200 requests; 12 retried unseen)" in reason
    assert verdict(StepStats(200, 0, 5.0), 0.02, None, 20, final=False) is None


def test_a_target_that_answers_too_little_of_its_share_fails_the_step() -> None:
    """A failing target ejected by outlier detection leaves no failed attempts to count: its
    share goes elsewhere at once. At a step's end the target cluster must have answered at
    least half its weight of the requests."""
    from federation.shift.plan import under_served

    ejected = StepStats(400, 0, 5.0, served={"a": 390, "c": 10})
    reason = under_served(ejected, "c", 50)
    assert reason is not None and "cluster c answered 2.5% of the requests" in reason
    assert "under half its 50%" in reason
    assert under_served(StepStats(400, 0, 5.0, served={"a": 220, "c": 180}), "c", 50) is None
    assert under_served(StepStats(400, 0, 5.0, served={"c": 400}), "c", 100) is None
    assert under_served(StepStats(400, 0, 5.0, served={"c": 150, "a": 250}), "c", 100) is not None
    assert under_served(StepStats(0, 0, None), "c", 50) is None  # nothing to judge
