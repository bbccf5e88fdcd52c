"""Locality-aware priorities: the default "nearest healthy first" decision.

Input: the caller's locality and, per candidate locality, its healthy endpoint count and
capacity (sum of healthy endpoint weights). Output: one :class:`LocalityDecision` per locality
with an EDS ``priority`` (0 is tried first) and a ``locality_weight``, plus the reason.

Rule (the same order as Istio's default locality failover):

====  =============================  =========================================
rank  relation to the caller         example (caller aws/us-east-1/us-east-1a)
====  =============================  =========================================
0     same region and zone           aws/us-east-1/us-east-1a
1     same region, other zone        aws/us-east-1/us-east-1b
2     same cloud, other region       aws/eu-west-1/...
3     other cloud                    gcp/europe-west1/...
====  =============================  =========================================

Ranks present are numbered 0..n-1 without gaps (Envoy and gRPC expect contiguous
priorities). Localities with no healthy endpoint go after every healthy one, so a priority
level never consists only of dead endpoints. Weights are the healthy capacity, at least 1
(gRPC ignores localities of weight 0; Envoy field ``LocalityLbEndpoints.load_balancing_weight``
must be >= 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from federation.model.locality import Locality

_RANK_REASON = {
    0: "same zone",
    1: "same region, other zone",
    2: "same cloud, other region",
    3: "other cloud",
}


@dataclass(frozen=True, slots=True)
class LocalityGroup:
    """Candidate endpoints in one locality.

    Attributes:
        locality: where they run.
        healthy: endpoints that may take traffic.
        capacity: sum of the healthy endpoints' weights (relative units).
    """

    locality: Locality
    healthy: int
    capacity: int


@dataclass(frozen=True, slots=True)
class LocalityDecision:
    """EDS placement of one locality: ``priority`` (0 first), ``weight`` (>= 1), ``reason``."""

    locality: Locality
    priority: int
    weight: int
    reason: str


def proximity_rank(caller: Locality, candidate: Locality) -> int:
    """0 same zone, 1 same region, 2 same cloud, 3 other cloud (see the module table)."""
    if candidate.region == caller.region:
        return 0 if candidate.zone == caller.zone else 1
    if candidate.cloud == caller.cloud:
        return 2
    return 3


def assign_priorities(caller: Locality, groups: Sequence[LocalityGroup]) -> list[LocalityDecision]:
    """Nearest healthy first; see the module docstring.

    Returns:
        Decisions sorted by (priority, locality); deterministic for equal inputs.
    """
    ranked = sorted(
        groups,
        key=lambda g: (g.healthy == 0, proximity_rank(caller, g.locality), g.locality),
    )
    levels = sorted({(g.healthy == 0, proximity_rank(caller, g.locality)) for g in groups})
    priority_of = {level: i for i, level in enumerate(levels)}
    decisions = []
    for g in ranked:
        rank = proximity_rank(caller, g.locality)
        reason = _RANK_REASON[rank]
        if g.healthy == 0:
            reason += "; no healthy endpoint, tried last"
        decisions.append(
            LocalityDecision(
                g.locality, priority_of[(g.healthy == 0, rank)], max(1, g.capacity), reason
            )
        )
    return decisions
