"""Progressive traffic shift (``meshfed shift``, issue #21): the plan and the verdicts. Pure.

A shift moves a service's traffic to a target -- a member cluster or a TrafficPolicy subset --
step by step (percentages such as 10, 25, 50, 100). Each step is the service's TrafficPolicy
with one closing ``http`` route named :data:`SHIFT_ROUTE`: the target at the step's weight,
the rest (the whole service, or ``--from``'s cluster or subset) at 100 minus it. Other
``http`` routes of the policy stay in front of it, untouched. Between steps the mesh's own
telemetry (the controller's ``GET /v1/traffic``: every caller's requests to the service over
the step so far) is judged against the error-rate and p99 thresholds; a breach rolls the
policy back to what it was before the shift.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from federation.errors import FederationError
from federation.model.policy import RetrySettings
from federation.traffic import format_usd

#: meshfed's retry conditions when a policy gives none (``RetrySettings.retryOn``).
DEFAULT_RETRY_ON: str = RetrySettings().retry_on

#: The name of the closing route a shift writes (and replaces when it runs again).
SHIFT_ROUTE = "meshfed-shift"


class ShiftError(FederationError):
    """A shift cannot be planned from this input (named in the message); nothing changed."""


def parse_steps(text: str) -> list[int]:
    """``"10,25,50,100"`` -> ``[10, 25, 50, 100]``: integer percentages, strictly increasing,
    each 1-100.

    Raises:
        ShiftError: anything else.
    """
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise ShiftError(f"--steps {text!r}: comma-separated whole percentages") from err
    if not steps or any(not 0 < s <= 100 for s in steps):
        raise ShiftError(f"--steps {text!r}: each step must be 1-100")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ShiftError(f"--steps {text!r}: steps must increase")
    return steps


def parse_rate(text: str) -> float:
    """``"1%"`` or ``"1"`` (percent) -> 0.01.

    Raises:
        ShiftError: not a number of percent in 0-100.
    """
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError as err:
        raise ShiftError(f"--max-error-rate {text!r}: a percentage such as 1% or 0.5%") from err
    if not 0 <= value <= 100:
        raise ShiftError(f"--max-error-rate {text!r}: must be 0-100 %")
    return value / 100


def destination(
    name: str, members: Sequence[str], subsets: Sequence[str], what: str
) -> dict[str, str]:
    """``--to`` / ``--from`` as a route destination: a member cluster's name, or a subset of
    the service's policy (``subset:NAME`` or ``cluster:NAME`` when a name is both).

    Raises:
        ShiftError: neither a member nor a subset.
    """
    kind, sep, value = name.partition(":")
    if sep and kind in ("cluster", "subset"):
        known = members if kind == "cluster" else subsets
        if value not in known:
            raise ShiftError(f"{what} {name!r}: no {kind} {value!r}")
        return {kind: value}
    if name in members and name in subsets:
        raise ShiftError(
            f"{what} {name!r} is a cluster and a subset: say cluster:{name} or subset:{name}"
        )
    if name in members:
        return {"cluster": name}
    if name in subsets:
        return {"subset": name}
    raise ShiftError(
        f"{what} {name!r}: not a member cluster ({', '.join(members) or 'none'}) nor a subset"
        f" of the service's TrafficPolicy ({', '.join(subsets) or 'none'})"
    )


def step_policy(
    base: Mapping[str, Any],
    target: Mapping[str, str],
    rest: Mapping[str, str],
    weight: int,
) -> dict[str, Any]:
    """The TrafficPolicy document of one step: ``base`` (the policy before the shift) with its
    ``http`` routes but a previous shift's, then the two shift routes, both ``target`` at
    ``weight`` % and ``rest`` at the remainder: the first for idempotent methods
    (:data:`IDEMPOTENT_METHODS`), retrying the target's 5xx elsewhere
    (:func:`shift_retries`), the second for every other request.

    Raises:
        ShiftError: ``base`` has a ``split`` (the shift's weights would replace it: move it
            into a route first), or an ``http`` route other than a shift's that already
            matches every request (the shift's route would never match).
    """
    doc = copy.deepcopy(dict(base))
    spec = doc.setdefault("spec", {})
    if spec.get("split"):
        raise ShiftError(
            "spec.split: the shift would replace it; give the split as an http route's weights"
            " or remove it first"
        )
    routes = [r for r in spec.get("http") or [] if r.get("name") != SHIFT_ROUTE]
    for i, route in enumerate(routes):
        if not route.get("match"):
            raise ShiftError(
                f"spec.http[{i}] already routes every request, so the shift's route would"
                " never match; remove it or give it a match"
            )
    shares = [{"destination": dict(target), "weight": weight}]
    if weight < 100:
        shares.append({"destination": dict(rest), "weight": 100 - weight})
    retried = {
        "name": SHIFT_ROUTE,
        "match": [{"method": {"regex": IDEMPOTENT_METHODS}}],
        "route": shares,
        "retries": shift_retries(spec.get("retries")),
    }
    spec["http"] = [*routes, retried, {"name": SHIFT_ROUTE, "route": copy.deepcopy(shares)}]
    return doc


#: The methods whose requests a shift retries after a 5xx: RFC 9110 section 9.2.2's
#: idempotent methods (a retry cannot do the work twice). Others (POST, PATCH) keep the
#: policy's retries: an attempt the server may have acted on is not sent again.
IDEMPOTENT_METHODS = "GET|HEAD|OPTIONS|TRACE|PUT|DELETE"


def shift_retries(base: Mapping[str, Any] | None) -> dict[str, Any]:
    """The retries of a shift's route for idempotent methods: the policy's ``retries``
    (else meshfed's defaults, without a per-try timeout) retrying on any 5xx too. A retry
    prefers another priority (``previous_priorities``), and a cluster target's Envoy
    cluster holds the target's localities first and the rest of the service after them
    (:func:`federation.controlplane.generate.endpoints.prefer_cluster`): an attempt the
    target failed is retried where the caller's traffic went before, and the caller does not
    see it. Each such retry is counted (``retries`` in ``GET /v1/traffic``) and judged as a
    failure of the step."""
    out: dict[str, Any] = dict(base or {"perTryTimeoutMs": 0})
    conditions = [c for c in str(out.get("retryOn", DEFAULT_RETRY_ON)).split(",") if c]
    if "5xx" not in conditions:
        conditions.append("5xx")
    out["retryOn"] = ",".join(conditions)
    out["attempts"] = max(1, int(out.get("attempts", 2)))
    return out


#: How long a step that ends with too few requests waits for more telemetry (s): sidecars
#: report to their control plane and control planes to the controller every 2 s each, so a
#: step's last requests reach ``GET /v1/traffic`` up to about 5 s after they were served.
TELEMETRY_LAG_S = 5.0


@dataclass(frozen=True, slots=True)
class StepStats:
    """What callers saw of the service during a step (from ``GET /v1/traffic``)."""

    requests: int
    errors: int
    p99_ms: float | None
    #: the service's egress US$/hour over the window, and its requests/s
    usd_per_hour: float = 0.0
    rps: float = 0.0
    #: failed attempts the callers' sidecars retried (callers did not see them)
    retries: int = 0
    #: requests answered by each serving cluster
    served: Mapping[str, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        """Failed attempts per attempt, 0-1 (0 without requests): errors the callers saw
        (5xx, no response) and attempts retried unseen, over requests and retries."""
        attempts = self.requests + self.retries
        return (self.errors + self.retries) / attempts if attempts else 0.0


def stats_of(rows: Sequence[Mapping[str, Any]], service: str) -> StepStats:
    """Sum ``/v1/traffic`` rows (any grouping that includes ``destination_service``; with
    ``destination_cluster`` too, :attr:`StepStats.served` is filled) for ``service``
    (``<name>.<namespace>``); p99 is the largest of the rows' (an upper bound of the
    whole's)."""
    mine = [r for r in rows if r.get("destination_service") == service]
    requests = sum(int(r["requests"]) for r in mine)
    errors = sum(round(float(r["errorShare"]) * int(r["requests"])) for r in mine)
    p99s = [float(r["p99Ms"]) for r in mine if r.get("p99Ms") is not None]
    usd = sum(float(r.get("usdPerHour") or 0) for r in mine)
    rps = sum(float(r.get("rps") or 0) for r in mine)
    retries = sum(int(r.get("retries") or 0) for r in mine)
    served: dict[str, int] = {}
    for r in mine:
        if r.get("destination_cluster"):
            served[r["destination_cluster"]] = served.get(r["destination_cluster"], 0) + int(
                r["requests"]
            )
    return StepStats(requests, errors, max(p99s) if p99s else None, usd, rps, retries, served)


#: A step ends with its target cluster having served less than this fraction of its weight
#: (e.g. under 25 % of the requests at a 50 % step): the shift rolls back. Outlier detection
#: ejects a failing target and its share then goes elsewhere without failed attempts to
#: count; this is what shows it. The fraction leaves room for the step's first seconds,
#: before the step's routes reached every caller.
MIN_SERVED_FRACTION = 0.5


def under_served(stats: StepStats, target_cluster: str, weight: int) -> str | None:
    """Why a step whose target is the member cluster ``target_cluster`` failed although its
    callers saw no errors: the target answered under :data:`MIN_SERVED_FRACTION` of its
    ``weight`` (%) share of ``stats``' requests; None when it did not, or without requests."""
    if not stats.requests:
        return None
    share = stats.served.get(target_cluster, 0) / stats.requests
    if share >= MIN_SERVED_FRACTION * weight / 100:
        return None
    return (
        f"cluster {target_cluster} answered {share:.1%} of the requests, under half its"
        f" {weight}% (failing attempts were retried elsewhere, or it was ejected)"
    )


def projected_usd_per_hour(
    before: StepStats, at: StepStats, weight: int, next_weight: int
) -> float | None:
    """US$/hour the step at ``next_weight`` % would spend at ``at``'s load: a request's egress
    dollars move linearly with the target's weight, from ``before`` (measured before the
    shift, at 0 %) to ``at`` (measured at ``weight`` %). None without requests in either."""
    if before.rps <= 0 or at.rps <= 0 or weight <= 0:
        return None
    per_request_0 = before.usd_per_hour / before.rps
    per_request = at.usd_per_hour / at.rps
    projected = per_request_0 + (per_request - per_request_0) * next_weight / weight
    return max(0.0, projected) * at.rps


def verdict(
    stats: StepStats,
    max_error_rate: float,
    max_p99_ms: float | None,
    min_requests: int,
    *,
    final: bool,
    max_usd_per_hour: float | None = None,
) -> str | None:
    """Why the shift must roll back, or None to go on. Before ``min_requests`` requests a
    step is not judged, except at its end (``final``): too little traffic to judge is a
    reason to stop, not to go on blind."""
    if stats.requests < min_requests:
        if final:
            return (
                f"only {stats.requests} requests in the step (fewer than --min-requests"
                f" {min_requests}): not enough traffic to judge"
            )
        return None
    if stats.error_rate > max_error_rate:
        retried = f"; {stats.retries} retried unseen" if stats.retries else ""
        return (
            f"error rate {stats.error_rate:.2%} ({stats.errors} failed of {stats.requests}"
            f" requests{retried}) is over --max-error-rate {max_error_rate:.2%}"
        )
    if max_p99_ms is not None and stats.p99_ms is not None and stats.p99_ms > max_p99_ms:
        return f"p99 {stats.p99_ms:.0f} ms is over --max-p99 {max_p99_ms:g} ms"
    if max_usd_per_hour is not None and stats.usd_per_hour > max_usd_per_hour:
        return (
            f"egress {format_usd(stats.usd_per_hour)}/hour is over --max-usd-per-hour"
            f" {format_usd(max_usd_per_hour)}"
        )
    return None


def step_over(elapsed_s: float, interval_s: float, stats: StepStats, min_requests: int) -> bool:
    """Whether a step has run its course after ``elapsed_s`` seconds: its ``interval_s``
    passed and it has ``min_requests`` requests, or it has waited :data:`TELEMETRY_LAG_S`
    beyond the interval for them (the telemetry of the step's last seconds is still on its
    way when the interval ends)."""
    if elapsed_s < interval_s:
        return False
    return stats.requests >= min_requests or elapsed_s >= interval_s + TELEMETRY_LAG_S
