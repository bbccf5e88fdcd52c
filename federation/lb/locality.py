"""Proximity between localities: the default "nearest first" order used by
:mod:`federation.lb.decision` (the same order as Istio's default locality failover):

====  =============================  =========================================
rank  relation to the caller         example (caller aws/us-east-1/us-east-1a)
====  =============================  =========================================
0     same region and zone           aws/us-east-1/us-east-1a
1     same region, other zone        aws/us-east-1/us-east-1b
2     same cloud, other region       aws/eu-west-1/...
3     other cloud                    gcp/europe-west1/...
====  =============================  =========================================
"""

from __future__ import annotations

from federation.model.locality import Locality


def proximity_rank(caller: Locality, candidate: Locality) -> int:
    """0 same zone, 1 same region, 2 same cloud, 3 other cloud (see the module table)."""
    if candidate.region == caller.region:
        return 0 if candidate.zone == caller.zone else 1
    if candidate.cloud == caller.cloud:
        return 2
    return 3
