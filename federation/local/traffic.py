"""Where requests went and what they cost, from the controller's ``GET /v1/traffic``. Pure.

Input: the answer of ``GET /v1/traffic?by=source_cluster,destination_service,
destination_cluster,path_class`` (the control planes' counts of what their sidecars sent,
:mod:`federation.traffic`). Output: rows for ``meshfed status`` and the live view of
``meshfed up`` -- per destination cluster of one caller and service (:func:`traffic_rows`),
and per edge of every caller and service (:func:`edge_rows`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from federation.lb.paths import BYTES_PER_GB

#: The grouping ``meshfed status`` asks ``/v1/traffic`` for.
STATUS_GROUP = "source_cluster,destination_service,destination_cluster,path_class"


def service_name(target: str) -> str:
    """``echo.demo.svc.clusterset.local[:8080]`` -> ``echo.demo`` (the metrics' name)."""
    host = target.rsplit(":", 1)[0] if target.count(":") == 1 else target
    return host.removesuffix(".svc.clusterset.local")


def edge_rows(edges: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``/v1/traffic`` rows merged per (source cluster, service, destination cluster): every
    path class of a destination together.

    Returns:
        Per edge: ``from``, ``service``, ``cluster`` (destination), ``share`` (of the
        caller's requests to the service, 0-1), ``rps``, ``errorShare``, ``p50Ms``,
        ``p99Ms`` (the largest of its path classes'), ``path`` (path classes, ``+``-joined),
        ``usdPerGB`` (what its bytes cost on average), ``usdPerHour``.
    """
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for e in edges:
        key = (e["source_cluster"], e["destination_service"], e["destination_cluster"])
        row = merged.get(key)
        if row is None:
            merged[key] = row = {
                "from": key[0],
                "service": key[1],
                "cluster": key[2],
                "share": 0.0,
                "rps": 0.0,
                "errors": 0.0,
                "p50Ms": None,
                "p99Ms": None,
                "paths": [],
                "bytesPerS": 0.0,
                "usdPerHour": 0.0,
            }
        row["share"] += e["share"]
        row["rps"] += e["rps"]
        row["errors"] += e["errorShare"] * e["rps"]
        for q in ("p50Ms", "p99Ms"):
            if e[q] is not None:
                row[q] = max(row[q] or 0.0, e[q])
        row["paths"].append(e.get("path_class", ""))
        row["bytesPerS"] += e["requestBytesPerS"] + e["responseBytesPerS"]
        row["usdPerHour"] += e["usdPerHour"]
    rows = []
    for key in sorted(merged):
        row = merged[key]
        gb_per_hour = row.pop("bytesPerS") * 3600 / BYTES_PER_GB
        row["usdPerGB"] = round(row["usdPerHour"] / gb_per_hour, 6) if gb_per_hour else 0.0
        row["errorShare"] = row.pop("errors") / row["rps"] if row["rps"] else 0.0
        row["path"] = "+".join(sorted(p for p in set(row.pop("paths")) if p))
        rows.append(row)
    return rows


def traffic_rows(traffic: dict[str, Any], source: str, service: str) -> list[dict[str, Any]]:
    """Per destination cluster of ``source``'s requests to ``service``: ``cluster``,
    ``share``, ``rps``, ``p50Ms``, ``p99Ms``, ``errorShare``, ``path``, ``usdPerGB`` and
    ``usdPerHour`` (:func:`edge_rows`)."""
    return [
        {k: v for k, v in row.items() if k not in ("from", "service")}
        for row in edge_rows(traffic.get("edges", []))
        if row["from"] == source and row["service"] == service
    ]


def totals(traffic: dict[str, Any], source: str, service: str) -> dict[str, Any]:
    """``requests``, ``errors`` and ``egressUsd`` of ``source``'s requests to ``service``
    since its control plane started (zeros when none were counted)."""
    for t in traffic.get("totals", []):
        if t["sourceCluster"] == source and t["destinationService"] == service:
            return {k: t[k] for k in ("requests", "errors", "egressUsd")}
    return {"requests": 0, "errors": 0, "egressUsd": 0.0}
