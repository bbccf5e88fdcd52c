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
    assert first[1] == {
        "name": SHIFT_ROUTE,
        "route": [
            {"destination": {"subset": "v2"}, "weight": 10},
            {"destination": {}, "weight": 90},
        ],
    }
    assert last[1]["route"] == [{"destination": {"subset": "v2"}, "weight": 100}]
    again = step_policy(docs[0], {"cluster": "b"}, {}, 50)  # a second shift replaces the first
    assert [r["name"] for r in again["spec"]["http"]] == ["canary", SHIFT_ROUTE]
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
    assert reason is not None and "error rate 1.33% (2 of 150 requests)" in reason
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
