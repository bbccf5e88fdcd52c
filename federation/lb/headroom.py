"""A serving zone's headroom learned from how it behaves under load (cost mode ``optimize``).
Pure.

The optimizer plans at most ``headroom x capacity`` of a zone's declared capacity before it
uses its reserve (:mod:`federation.lb.optimizer`). A fixed headroom (0.8) makes it send
traffic away from a zone that would have served it as fast, and pay for the trip -- dearer
and slower than locality failover. Here each zone's headroom moves with what the callers'
sidecars measure of the requests it served, one planning round at a time, while the zone
runs near its cap (within :data:`NEAR_CAP` below it; the only load that says anything):

- **latency turns up** (a caller locality with at least :data:`MIN_REQUESTS` requests sees a
  p99 over :data:`LATENCY_TURN` x the lowest p99 it ever saw from this zone, plus
  :data:`LATENCY_SLACK_MS`) **or errors** (5xx and no response over :data:`ERROR_TURN` of the
  zone's requests, e.g. the app shedding load with 503): the headroom falls to
  :data:`STEP_DOWN` below the lower of itself and the utilisation that did it;
- **otherwise**, at :data:`STEP_UP_AT` below the cap or closer: it rises by :data:`STEP_UP`.

Always within [:data:`LOWEST`, :data:`HIGHEST`]; the declared value (the policy's
``cost.headroom``, else :data:`federation.lb.optimizer.DEFAULT_HEADROOM`) until there is a
measurement; a policy that sets ``cost.headroom`` fixes it (no learning). Each caller
locality's own lowest p99 is its baseline, so the round trip to a far caller is not taken
for load. Errors at low load are not the load's doing and move nothing (outlier detection
deals with a failing endpoint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Bounds of a learned headroom (share of declared capacity).
LOWEST, HIGHEST = 0.5, 1.0
#: A round moves a headroom up by this much ...
STEP_UP = 0.02
#: ... when the zone ran at least this close below its cap without trouble.
STEP_UP_AT = 0.05
#: Trouble puts the headroom this far below the utilisation it was seen at.
STEP_DOWN = 0.05
#: A zone is judged only when its utilisation is within this below its headroom.
NEAR_CAP = 0.1
#: Latency has turned up when a caller's p99 exceeds its baseline x this, plus the slack.
LATENCY_TURN = 1.5
LATENCY_SLACK_MS = 2.0
#: Error share (0-1) of a zone's requests that counts as trouble.
ERROR_TURN = 0.01
#: Requests a zone (or a caller locality, for latency) needs in the window to be judged.
MIN_REQUESTS = 50


@dataclass(frozen=True, slots=True)
class ZoneLoad:
    """What one planning window saw of one serving zone.

    Attributes:
        rps: requests/s it served, every caller together.
        requests: requests in the window.
        error_share: share (0-1) of those that failed (5xx, no response).
        p99_ms: per caller locality with at least :data:`MIN_REQUESTS` requests, the p99 of
            its requests (ms, as its sidecars measured: round trip included).
    """

    rps: float
    requests: int
    error_share: float
    p99_ms: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Headroom:
    """A zone's headroom, why, and the per-caller baselines it judges latency by.

    Attributes:
        value: share (0-1] of declared capacity the optimizer plans before the reserve.
        reason: in words, for ``meshfed explain``.
        learned: False while it is the declared value.
        baselines_ms: caller locality -> the lowest p99 seen (ms).
    """

    value: float
    reason: str
    learned: bool = False
    baselines_ms: Mapping[str, float] = field(default_factory=dict)


def declared(value: float, *, fixed: bool) -> Headroom:
    """The starting headroom: the policy's (``fixed``: ``cost.headroom`` set, never learned)
    or the default."""
    why = "cost.headroom (fixed by the policy)" if fixed else "declared default (nothing measured)"
    return Headroom(value, why)


def learn(
    previous: Headroom, capacity_rps: float | None, load: ZoneLoad | None, *, fixed: bool
) -> Headroom:
    """One round's headroom of a zone from the last (``previous``) and what this window saw
    (see the module docstring). A zone without declared capacity, a fixed headroom, or no
    measurement keeps the previous value."""
    if fixed or capacity_rps is None or capacity_rps <= 0 or load is None:
        return previous
    if load.requests < MIN_REQUESTS or load.rps <= 0:
        return previous
    baselines = dict(previous.baselines_ms)
    turned: list[str] = []
    for caller, p99 in sorted(load.p99_ms.items()):
        base = baselines.get(caller)
        if base is not None and p99 > base * LATENCY_TURN + LATENCY_SLACK_MS:
            turned.append(f"p99 {p99:.1f} ms from {caller} (lowest {base:.1f} ms)")
        baselines[caller] = p99 if base is None else min(base, p99)
    if load.error_share > ERROR_TURN:
        turned.append(f"{load.error_share:.1%} errors")
    used = load.rps / capacity_rps
    h = previous.value
    if used < h - NEAR_CAP:
        return Headroom(h, previous.reason, previous.learned, baselines)
    if turned:
        value = max(LOWEST, min(h, used) - STEP_DOWN)
        why = f"{'; '.join(turned)} at {used:.0%} of capacity"
        return Headroom(round(value, 4), why, True, baselines)
    if used >= h - STEP_UP_AT:
        value = min(HIGHEST, h + STEP_UP)
        worst = max(load.p99_ms.values(), default=None)
        seen = f"p99 {worst:.1f} ms" if worst is not None else "latency"
        why = f"{seen} and {load.error_share:.1%} errors steady at {used:.0%} of capacity"
        return Headroom(round(value, 4), why, True, baselines)
    return Headroom(h, previous.reason, previous.learned, baselines)


def zone_loads(
    rows: Sequence[Mapping[str, object]],
) -> dict[tuple[str, str, str], ZoneLoad]:
    """``(service "<name>.<namespace>", cluster, locality)`` -> :class:`ZoneLoad` from rate
    rows grouped by ``destination_service, destination_cluster, destination_locality,
    source_locality`` (:meth:`federation.controller.traffic.TrafficHistory.rates`)."""
    acc: dict[tuple[str, str, str], list[Mapping[str, object]]] = {}
    for row in rows:
        key = (
            str(row["destination_service"]),
            str(row["destination_cluster"]),
            str(row["destination_locality"]),
        )
        if key[1] != "unknown":
            acc.setdefault(key, []).append(row)
    out = {}
    for key, group in acc.items():
        requests = sum(int(_num(r, "requests")) for r in group)
        if requests <= 0:
            continue
        errors = sum(_num(r, "errorShare") * _num(r, "requests") for r in group)
        p99 = {
            str(r["source_locality"]): _num(r, "p99Ms")
            for r in group
            if r.get("p99Ms") is not None and _num(r, "requests") >= MIN_REQUESTS
        }
        rps = sum(_num(r, "rps") for r in group)
        out[key] = ZoneLoad(rps, requests, errors / requests, p99)
    return out


def _num(row: Mapping[str, object], key: str) -> float:
    value = row[key]
    return float(value) if isinstance(value, int | float) else 0.0
