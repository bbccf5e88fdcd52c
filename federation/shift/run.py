"""The shift's control loop against the controller's REST API (:mod:`federation.client`).

:func:`plan_shift` reads the service's TrafficPolicy (``GET /v1/policies``) and the members
(``GET /v1/clusters``) and builds every step's document (:mod:`federation.shift.plan`);
:func:`run_shift` applies them one by one (``POST /v1/apply``), judging each step every
:data:`CHECK_EVERY_S` from ``GET /v1/traffic`` until it is over, and puts the policy back as it
was (``POST /v1/apply`` of the old one, or ``POST /v1/delete`` of one the shift created) when a
step breaks a limit (its error rate, p99, or egress dollars; or, before it starts, the dollars
it is projected to spend) or the user interrupts (``KeyboardInterrupt`` is re-raised after the
rollback). Progress goes to ``say`` one line at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import yaml

from federation.client import call
from federation.shift.plan import (
    TELEMETRY_LAG_S,
    StepStats,
    destination,
    parse_rate,
    parse_steps,
    projected_usd_per_hour,
    stats_of,
    step_over,
    step_policy,
    under_served,
    verdict,
)
from federation.traffic import format_usd

#: How often a step is judged while it runs (s; or the interval, if shorter). The numbers
#: themselves lag more: sidecars report to their control plane and control planes to the
#: controller every 2 s each (``federation.agent.tap``, ``controlplane.link.session``), so a
#: target that starts failing is seen 2-5 s later.
CHECK_EVERY_S = 1.0

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ShiftRequest:
    """What the user asked for (``meshfed shift``'s arguments).

    Attributes:
        service: ``<name>.<namespace>``.
        to / from_: ``--to`` and ``--from`` (a member cluster or a subset; ``from_`` None:
            the whole service keeps the rest).
        steps: ``--steps`` text, e.g. ``10,25,50,100``.
        interval_s: how long each step runs (s).
        max_error_rate: ``--max-error-rate`` text, e.g. ``1%``.
        max_p99_ms: the p99 limit (ms) or None.
        min_requests: requests a step needs to be judged.
        max_usd_per_hour: the service's egress ceiling (US$/hour) or None.
    """

    service: str
    to: str
    from_: str | None
    steps: str
    interval_s: float
    max_error_rate: str
    max_p99_ms: float | None
    min_requests: int
    max_usd_per_hour: float | None = None


@dataclass(frozen=True)
class ShiftPlan:
    """A shift ready to run: the policy before it (None: the shift creates one), the target
    and the rest as route destinations, and each step's weight and document."""

    request: ShiftRequest
    base: dict[str, Any] | None
    target: dict[str, str]
    rest: dict[str, str]
    limit: float
    weights: list[int]
    docs: list[dict[str, Any]]

    def limits(self) -> str:
        """``the error rate exceeds 1.00% or p99 exceeds 300 ms or egress exceeds $2/hour``."""
        r = self.request
        return (
            f"the error rate exceeds {self.limit:.2%}"
            + (f" or p99 exceeds {r.max_p99_ms:g} ms" if r.max_p99_ms else "")
            + (f" or egress exceeds ${r.max_usd_per_hour:g}/hour" if r.max_usd_per_hour else "")
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as ``meshfed shift -o json|yaml`` prints it."""
        r = self.request
        return {
            "service": r.service,
            "target": self.target,
            "rest": self.rest,
            "intervalS": r.interval_s,
            "maxErrorRate": self.limit,
            "maxP99Ms": r.max_p99_ms,
            "maxUsdPerHour": r.max_usd_per_hour,
            "steps": [
                {"weight": w, "policy": d} for w, d in zip(self.weights, self.docs, strict=True)
            ],
        }


@dataclass
class ShiftOutcome:
    """How a shift ended: ``result`` ``done`` or ``rolled back`` (with ``reason``), and a row
    per judged step (``weight``, ``requests``, ``errorRate``, ``p99Ms``)."""

    result: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None


def describe(d: dict[str, str]) -> str:
    """A destination as words: ``cluster b`` (``the whole service`` when empty)."""
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "the whole service"


def plan_shift(url: str, token: str | None, request: ShiftRequest) -> ShiftPlan:
    """Read the service's policy and the members from the controller and plan every step.

    Raises:
        federation.shift.plan.ShiftError: the input cannot be planned (nothing changed).
        federation.errors.ApiError / UnreachableError: the controller.
    """
    name, _, namespace = request.service.partition(".")
    host = f"{name}.{namespace}.svc.clusterset.local"
    weights = parse_steps(request.steps)
    limit = parse_rate(request.max_error_rate)
    policies = call("GET", url, "/v1/policies", token=token)["policies"]
    base = next(
        (p for p in policies if p.get("kind") == "TrafficPolicy" and p["spec"].get("host") == host),
        None,
    )
    members = [c["name"] for c in call("GET", url, "/v1/clusters", token=token)["clusters"]]
    subsets = [s["name"] for s in ((base or {}).get("spec") or {}).get("subsets") or []]
    target = destination(request.to, members, subsets, "--to")
    rest = destination(request.from_, members, subsets, "--from") if request.from_ else {}
    start = base or {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"host": host},
    }
    docs = [step_policy(start, target, rest, w) for w in weights]
    return ShiftPlan(request, base, target, rest, limit, weights, docs)


def _row(weight: int, stats: StepStats) -> dict[str, Any]:
    return {
        "weight": weight,
        "requests": stats.requests,
        "errorRate": stats.error_rate,
        "retries": stats.retries,
        "p99Ms": stats.p99_ms,
        "usdPerHour": stats.usd_per_hour,
    }


def stats_line(stats: StepStats) -> str:
    """``N requests, errors E% [(R retried)], p99 P ms, $/hour``."""
    p99 = f"{stats.p99_ms:.0f} ms" if stats.p99_ms is not None else "-"
    usd = format_usd(stats.usd_per_hour)
    retried = f" ({stats.retries} retried)" if stats.retries else ""
    return (
        f"{stats.requests} requests, errors {stats.error_rate:.2%}{retried}, p99 {p99}, {usd}/hour"
    )


def traffic_now(url: str, token: str | None, service: str, window_s: float) -> StepStats:
    """``service``'s traffic over the last ``window_s`` seconds (``GET /v1/traffic``), per
    serving cluster too."""
    query = urlencode(
        {
            "window": f"{max(1.0, min(300.0, window_s)):.0f}",
            "by": "destination_service,destination_cluster",
        }
    )
    return stats_of(call("GET", url, f"/v1/traffic?{query}", token=token)["edges"], service)


def served_check(
    url: str, token: str | None, plan: ShiftPlan, weight: int, elapsed_s: float
) -> str | None:
    """At a step's end, with a member cluster as the target: why it must roll back because
    the target answered too little of the traffic (:func:`federation.shift.plan.under_served`),
    judged over the telemetry of the step's own requests only -- the last ``elapsed_s`` less
    :data:`~federation.shift.plan.TELEMETRY_LAG_S` seconds. None to go on; also when the
    target is a subset (the telemetry does not tell subsets apart), or when the step was too
    short to leave :data:`MIN_SERVED_WINDOW_S` of its own telemetry."""
    cluster = plan.target.get("cluster")
    window = elapsed_s - TELEMETRY_LAG_S
    if cluster is None or window < MIN_SERVED_WINDOW_S:
        return None
    return under_served(traffic_now(url, token, plan.request.service, window), cluster, weight)


#: The least telemetry of a step's own requests (s) its served share is judged over.
MIN_SERVED_WINDOW_S = 2.0


def watch_step(
    url: str, token: str | None, plan: ShiftPlan, weight: int, say: Say
) -> tuple[StepStats, str | None]:
    """Judge one step (at ``weight`` %) every :data:`CHECK_EVERY_S` until it is over
    (:func:`federation.shift.plan.step_over`), and at its end what the target served
    (:func:`served_check`); the last stats and the reason to roll back (None: the step
    passed)."""
    r = plan.request
    began = time.monotonic()
    while True:
        time.sleep(min(CHECK_EVERY_S, r.interval_s))
        elapsed = time.monotonic() - began
        stats = traffic_now(url, token, r.service, elapsed)
        say(f"  {elapsed:5.0f} s  {stats_line(stats)}")
        final = step_over(elapsed, r.interval_s, stats, r.min_requests)
        reason = verdict(
            stats, plan.limit, r.max_p99_ms, r.min_requests, final=final,
            max_usd_per_hour=r.max_usd_per_hour,
        )  # fmt: skip
        if reason is None and final:
            reason = served_check(url, token, plan, weight, elapsed)
        if reason is not None or final:
            return stats, reason


def roll_back(url: str, token: str | None, plan: ShiftPlan, reason: str, say: Say) -> None:
    """Put the service's TrafficPolicy back as it was before the shift."""
    say(f"rolling back: {reason}")
    if plan.base is not None:
        call("POST", url, "/v1/apply", token=token, body=yaml.safe_dump(plan.base))
    else:
        call("POST", url, "/v1/delete", token=token, body=yaml.safe_dump(plan.docs[0]))
    say(f"rolled back: {plan.request.service}'s TrafficPolicy is as it was before the shift")


def over_budget(
    before: StepStats | None,
    last: tuple[int, StepStats] | None,
    weight: int,
    ceiling: float | None,
) -> str | None:
    """Why the step at ``weight`` % must not start: its projected dollars
    (:func:`~federation.shift.plan.projected_usd_per_hour` from ``before`` the shift and the
    ``last`` step's (weight, stats)) are over ``ceiling`` (US$/hour); None to go on, or when
    there is nothing to project from."""
    if ceiling is None or before is None or last is None:
        return None
    projected = projected_usd_per_hour(before, last[1], last[0], weight)
    if projected is None or projected <= ceiling:
        return None
    return (
        f"would spend about {format_usd(projected)}/hour (before the shift"
        f" {format_usd(before.usd_per_hour)}/hour, at {last[0]}%"
        f" {format_usd(last[1].usd_per_hour)}/hour), over --max-usd-per-hour"
        f" {format_usd(ceiling)}"
    )


def run_shift(url: str, token: str | None, plan: ShiftPlan, say: Say) -> ShiftOutcome:
    """Run every step (see the module docstring).

    Raises:
        KeyboardInterrupt: after rolling back.
        federation.errors.ApiError / UnreachableError: the controller.
    """
    rows: list[dict[str, Any]] = []
    seconds, ceiling = plan.request.interval_s, plan.request.max_usd_per_hour
    # the service's dollars before the shift: with a step's, they project the next step's
    before = traffic_now(url, token, plan.request.service, 10) if ceiling is not None else None
    last: tuple[int, StepStats] | None = None
    try:
        for i, (weight, doc) in enumerate(zip(plan.weights, plan.docs, strict=True), start=1):
            reason = over_budget(before, last, weight, ceiling)
            if reason is not None:
                roll_back(url, token, plan, f"step {i} ({weight}%) {reason}", say)
                return ShiftOutcome("rolled back", rows, reason)
            call("POST", url, "/v1/apply", token=token, body=yaml.safe_dump(doc))
            say(
                f"step {i}/{len(plan.docs)}: {weight}% to {describe(plan.target)} for {seconds:g} s"
            )
            stats, reason = watch_step(url, token, plan, weight, say)
            if reason is not None:
                roll_back(url, token, plan, f"step {i} ({weight}%): {reason}", say)
                return ShiftOutcome("rolled back", [*rows, _row(weight, stats)], reason)
            rows.append(_row(weight, stats))
            last = (weight, stats)
    except KeyboardInterrupt:
        roll_back(url, token, plan, "interrupted", say)
        raise
    return ShiftOutcome("done", rows)
