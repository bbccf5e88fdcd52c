"""Where a caller's requests go: EDS priorities and locality weights from health, capacity,
RTT and price. Pure and deterministic.

Input: the caller's locality and cluster, one :class:`Candidate` per (cluster, locality) that
serves the service -- healthy endpoint count, capacity (sum of healthy endpoint weights), RTT
(ms; measured, or estimated from region coordinates) and the price of the path (US$/GB, from
:mod:`providers.pricing`) -- and the :class:`PolicyInputs` of the service's TrafficPolicy.
Output: one :class:`Choice` per candidate: EDS ``priority`` (0 first, contiguous), locality
``weight`` (>= 1) and the reason, sorted by (priority, locality).

Order of candidates (each line breaks the ties of the one above):

1. candidates with a healthy endpoint before those without (a priority level never consists
   only of dead endpoints);
2. ``distribute`` (a rule whose ``from`` matches the caller): the localities it names share
   priority 0 with its percentages;
3. within the latency budget before over it (unknown RTT counts as within), and at most
   ``maxCostPerGB`` before dearer;
4. cost mode ``prefer-cheaper``: lower US$/GB first; ``optimize``: lower
   ``US$/GB + RTT * OPTIMIZE_USD_PER_GB_PER_MS`` first;
5. locality rank: ``failoverPriority`` labels (more leading labels equal to the caller's
   first), else Istio's default -- same zone, same region, the ``failover`` target of the
   caller's region, same cloud, other clouds.

Candidates with equal keys share a priority; weights within a priority are the capacities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from federation.lb.locality import proximity_rank
from federation.lb.paths import RttSource
from federation.model.locality import Locality
from federation.model.policy import FAILOVER_LABELS, TrafficPolicy, locality_matches

#: Latency charge of cost mode ``optimize``: 100 ms of RTT weigh as much as $0.02/GB, the price
#: of one cross-region hop on AWS or GCP.
OPTIMIZE_USD_PER_GB_PER_MS = 0.0002
#: Envoy's default overprovisioning factor (``ClusterLoadAssignment.Policy``): a priority
#: keeps all traffic while at least 1/1.4 = 71 % of its endpoints are healthy.
OVERPROVISIONING = 1.4

CostMode = Literal["off", "prefer-cheaper", "optimize"]

_RANK_REASON = {0.0: "same zone", 1.0: "same region", 1.5: "failover region", 2.0: "same cloud"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """Endpoints of one cluster in one locality.

    Attributes:
        cluster: the member cluster serving them.
        locality: where they run.
        healthy / total: endpoint counts.
        capacity: sum of healthy endpoints' weights (relative).
        rtt_ms: round trip from the caller (ms), None when unknown.
        rtt_source: ``measured`` (the control plane's probe), ``estimated`` or ``unknown``.
        usd_per_gb: price of the path from these endpoints to the caller.
        path: its path class (``same-zone`` ... ``cross-cloud``).
        via: the hop that reaches them, when not dialled directly: ``gateway HOST:PORT`` (a
            remote cluster's east-west gateway) or ``zone gateway HOST:PORT`` (its zone's own).
    """

    cluster: str
    locality: Locality
    healthy: int
    total: int
    capacity: int
    rtt_ms: float | None = None
    rtt_source: RttSource = "unknown"
    usd_per_gb: float = 0.0
    path: str = ""
    via: str = ""


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    """The decision-relevant part of a TrafficPolicy (defaults: no policy)."""

    mode: CostMode = "off"
    latency_budget_ms: float | None = None
    max_cost_per_gb: float | None = None
    #: the locality parts the failoverPriority labels compare, in order (``cloud``,
    #: ``region``, ``zone``, ``sub_zone``, ``cluster``; see ``model.policy.FAILOVER_LABELS``)
    failover_priority: tuple[str, ...] = ()
    failover: tuple[tuple[str, str], ...] = ()
    distribute: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()

    @classmethod
    def from_policy(cls, policy: TrafficPolicy | None) -> PolicyInputs:
        """The decision inputs of a TrafficPolicy (defaults without one)."""
        if policy is None:
            return cls()
        spec = policy.spec
        return cls(
            mode=spec.cost.mode,
            latency_budget_ms=spec.cost.latency_budget_ms,
            max_cost_per_gb=spec.cost.max_cost_per_gb,
            failover=tuple((f.from_, f.to) for f in spec.locality.failover),
            distribute=tuple(
                (d.from_, tuple(sorted(d.to.items()))) for d in spec.locality.distribute
            ),
            failover_priority=tuple(
                FAILOVER_LABELS[label] for label in spec.locality.failover_priority
            ),
        )


@dataclass(frozen=True, slots=True)
class Choice:
    """One candidate's placement: ``priority`` (0 first), ``weight`` (>= 1), ``reason``."""

    candidate: Candidate
    priority: int
    weight: int
    reason: str

    @property
    def locality(self) -> Locality:
        """The candidate's locality."""
        return self.candidate.locality


def _matches(pattern: str, locality: Locality) -> bool:
    return locality_matches(pattern, str(locality))


def _part(locality: Locality, cluster: str, part: str) -> str:
    if part == "cluster":
        return cluster
    if part == "cloud":
        return locality.cloud
    return str(getattr(locality, part))


def locality_rank(
    caller: Locality, caller_cluster: str, c: Candidate, policy: PolicyInputs
) -> tuple[float, str]:
    """The rank of rule 5 (lower first) and its reason."""
    parts = policy.failover_priority
    if parts:
        matched = 0
        for part in parts:
            if _part(caller, caller_cluster, part) != _part(c.locality, c.cluster, part):
                break
            matched += 1
        return float(len(parts) - matched), f"{matched}/{len(parts)} failoverPriority labels match"
    rank = float(proximity_rank(caller, c.locality))
    if rank >= 2 and any(
        _matches(src, caller) and _matches(dst, c.locality) for src, dst in policy.failover
    ):
        rank = 1.5
    return rank, _RANK_REASON.get(rank, "other cloud")


def _distribute_rule(caller: Locality, policy: PolicyInputs) -> tuple[tuple[str, int], ...] | None:
    for src, targets in policy.distribute:
        if _matches(src, caller):
            return targets
    return None


def _fmt(c: Candidate) -> str:
    rtt = f"{c.rtt_ms:.1f} ms {c.rtt_source}" if c.rtt_ms is not None else "RTT unknown"
    return f"{c.path or 'path'} ${c.usd_per_gb:.3f}/GB, {rtt}"


def decide(
    caller: Locality,
    caller_cluster: str,
    candidates: Sequence[Candidate],
    policy: PolicyInputs = PolicyInputs(),
) -> list[Choice]:
    """Priorities and weights for ``candidates`` (see the module docstring).

    Returns:
        One Choice per candidate, sorted by (priority, locality, cluster); weights >= 1.
    """
    targets = _distribute_rule(caller, policy)
    keyed: list[tuple[tuple[float | int | str, ...], Candidate, str, int]] = []
    rules_of: dict[int, tuple[str, ...]] = {}  # the distribute targets a candidate matches
    for c in candidates:
        reasons: list[str] = []
        dead = c.healthy == 0
        share = 0
        if targets is not None and not dead:
            matched = tuple(p for p, w in targets if w and _matches(p, c.locality))
            rules_of[id(c)] = matched
            share = sum(w for pattern, w in targets if pattern in matched)
        distributed = 0 if share > 0 else 1
        over_budget = int(
            policy.latency_budget_ms is not None
            and c.rtt_ms is not None
            and c.rtt_ms > policy.latency_budget_ms
        )
        over_cost = int(
            policy.max_cost_per_gb is not None and c.usd_per_gb > policy.max_cost_per_gb + 1e-12
        )
        if policy.mode == "prefer-cheaper":
            cost_key = round(c.usd_per_gb, 6)
        elif policy.mode == "optimize":
            cost_key = round(c.usd_per_gb + (c.rtt_ms or 0.0) * OPTIMIZE_USD_PER_GB_PER_MS, 5)
        else:
            cost_key = 0.0
        rank, rank_reason = locality_rank(caller, caller_cluster, c, policy)
        if dead:
            reasons.append("no healthy endpoint: last resort")
        if share:
            reasons.append(f"distribute: {share}%")
        if over_budget:
            reasons.append(f"RTT over the {policy.latency_budget_ms:g} ms budget")
        if over_cost:
            reasons.append(f"over maxCostPerGB ${policy.max_cost_per_gb:g}")
        if policy.mode == "prefer-cheaper":
            reasons.append("cheapest first")
        elif policy.mode == "optimize":
            reasons.append(f"score ${cost_key:.4f}/GB incl. latency")
        reasons.append(rank_reason)
        reasons.append(_fmt(c))
        if distributed == 0:
            key: tuple[float | int | str, ...] = (int(dead), 0)
        else:
            key = (int(dead), 1, over_budget, over_cost, cost_key, rank)
        keyed.append((key, c, "; ".join(reasons), share))
    return _placed(keyed, rules_of)


def _placed(
    keyed: list[tuple[tuple[float | int | str, ...], Candidate, str, int]],
    rules_of: dict[int, tuple[str, ...]],
) -> list[Choice]:
    """Priorities from the sort keys, weights from capacity -- for a ``distribute`` target,
    its percentage shared by capacity among the candidates that match the same targets."""
    levels = sorted({k for k, _, _, _ in keyed})
    priority_of = {k: i for i, k in enumerate(levels)}
    choices = []
    for key, c, reason, share in keyed:
        if share:
            peers = [
                x for k, x, _, s in keyed if k == key and rules_of.get(id(x)) == rules_of[id(c)]
            ]
            total_capacity = sum(max(1, p.capacity) for p in peers)
            weight = max(1, round(share * 100 * max(1, c.capacity) / total_capacity))
        else:
            weight = max(1, c.capacity)
        choices.append(Choice(c, priority_of[key], weight, reason))
    choices.sort(key=lambda ch: (ch.priority, str(ch.locality), ch.candidate.cluster))
    return choices


def priority_loads(choices: Sequence[Choice]) -> list[float]:
    """Share of traffic (0-1) each priority gets in Envoy, with overprovisioning 1.4.

    As Envoy computes it ("Priority levels" in the load balancing docs): each priority takes
    ``min(remaining, healthy% * 1.4)``; what is left goes to the next. When no priority is
    fully healthy the loads are normalised (Envoy's "degraded" handling is not modelled).
    """
    levels = sorted({ch.priority for ch in choices})
    remaining, loads = 1.0, []
    for p in levels:
        members = [ch.candidate for ch in choices if ch.priority == p]
        total = sum(c.total for c in members) or 1
        health = sum(c.healthy for c in members) / total
        take = min(remaining, health * OVERPROVISIONING)
        loads.append(take)
        remaining -= take
    if remaining > 1e-9 and sum(loads) > 0:
        scale = 1.0 / sum(loads)
        loads = [x * scale for x in loads]
    return loads


def spill_for_grpc(choices: Sequence[Choice]) -> list[Choice]:
    """Priorities for proxyless gRPC, which ignores the overprovisioning factor.

    gRPC sends everything to the first priority with a reachable endpoint, so a half-dead
    priority 0 would get all the traffic. Where Envoy would spill (:func:`priority_loads`),
    the spilled-to localities join priority 0 with weights that reproduce Envoy's split;
    the priorities after them keep their order.
    """
    if not choices:
        return []
    loads = priority_loads(choices)
    levels = sorted({ch.priority for ch in choices})
    merged_levels = []
    for p, load in zip(levels, loads, strict=True):
        if load > 1e-9:
            merged_levels.append(p)
    if len(merged_levels) <= 1:
        return list(choices)
    out: list[Choice] = []
    scale = 10000
    for p, load in zip(levels, loads, strict=True):
        members = [ch for ch in choices if ch.priority == p]
        capacity = sum(ch.weight for ch in members) or 1
        for ch in members:
            if p in merged_levels:
                weight = max(1, round(scale * load * ch.weight / capacity))
                reason = ch.reason + f"; gRPC spill {load:.0%} of traffic"
                out.append(Choice(ch.candidate, 0, weight, reason))
            else:
                rest = sorted({q for q in levels if q not in merged_levels})
                out.append(Choice(ch.candidate, 1 + rest.index(p), ch.weight, ch.reason))
    out.sort(key=lambda ch: (ch.priority, str(ch.locality), ch.candidate.cluster))
    return out


#: Locality weight of a whole plan share (Envoy weights are integers; 0.01 % resolution).
PLAN_WEIGHT_SCALE = 10000


def with_plan(
    choices: Sequence[Choice], shares: Sequence[tuple[str, Locality, float]]
) -> list[Choice]:
    """``choices`` with the controller's split at priority 0 (cost mode ``optimize``;
    :mod:`federation.lb.optimizer`).

    A candidate with a healthy endpoint gets the plan's shares of its cluster in its
    locality -- or, for a remote cluster behind its gateway (a candidate without a zone), in
    any zone of its region -- as its weight (``share x`` :data:`PLAN_WEIGHT_SCALE`, >= 1)
    at priority 0; the other candidates keep their decided order behind it (priorities 1...),
    which is where Envoy goes when priority 0's endpoints fail health checks. Without a
    candidate the plan covers, ``choices`` unchanged.
    """

    def share_of(c: Candidate) -> float:
        return sum(
            share
            for cluster, loc, share in shares
            if cluster == c.cluster
            and (loc == c.locality or (not c.locality.zone and loc.region == c.locality.region))
        )

    planned = [(ch, share_of(ch.candidate)) for ch in choices if ch.candidate.healthy > 0]
    first = [(ch, s) for ch, s in planned if s > 0]
    if not first:
        return list(choices)
    chosen = {id(ch) for ch, _ in first}
    rest = [ch for ch in choices if id(ch) not in chosen]
    levels = sorted({ch.priority for ch in rest})
    out = [
        Choice(
            ch.candidate,
            0,
            max(1, round(s * PLAN_WEIGHT_SCALE)),
            f"plan: {s:.1%} of this locality's requests (optimizer); {ch.reason}",
        )
        for ch, s in first
    ]
    out += [
        Choice(ch.candidate, 1 + levels.index(ch.priority), ch.weight, ch.reason) for ch in rest
    ]
    out.sort(key=lambda ch: (ch.priority, str(ch.locality), ch.candidate.cluster))
    return out
