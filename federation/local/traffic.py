"""Where the demo frontend's requests went and what they cost. Pure.

Input: a :class:`~federation.local.description.LocalFederation` and the frontend's
``/stats`` (``byCluster``: requests, share, p50/p99 ms, response bytes/s over ``windowS``).
Output: one row per destination cluster with the egress price of its path (the cluster's
first zone to the frontend's, :func:`federation.lb.paths.path_facts`) and the projected
egress $/hour of that byte rate.
"""

from __future__ import annotations

from typing import Any

from federation.lb.paths import egress_usd_per_hour, path_facts
from federation.local.description import LocalFederation


def traffic_rows(desc: LocalFederation, stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Per destination cluster: ``cluster``, ``share`` (0-1), ``rps``, ``p50Ms``, ``p99Ms``,
    ``usdPerGB``, ``path`` and ``usdPerHour``; clusters not in ``desc`` are left out."""
    caller = desc.cluster(desc.spec.frontend.cluster).locality(0)
    rows = []
    window = float(stats.get("windowS", 10) or 10)
    for cluster, s in sorted(stats.get("byCluster", {}).items()):
        try:
            server = desc.cluster(cluster).locality(0)
        except KeyError:
            continue
        facts = path_facts(caller, server)
        rows.append(
            {
                "cluster": cluster,
                "share": s["share"],
                "rps": s["requests"] / window,
                "p50Ms": s["p50Ms"],
                "p99Ms": s["p99Ms"],
                "usdPerGB": facts.usd_per_gb,
                "path": facts.path,
                "usdPerHour": egress_usd_per_hour(s["bytesPerS"], facts.usd_per_gb),
            }
        )
    return rows
