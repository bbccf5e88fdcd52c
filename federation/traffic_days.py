"""The traffic ledger: what each path carried per UTC day, kept by the controller for as long
as its store lives (``meshfed cost report``, ``meshfed cost reconcile``). Pure; no I/O.

A control plane's :class:`~federation.traffic.TrafficTable` is cumulative since its
``started_at``. The controller keeps, per cluster, the totals it last wrote to the ledger (a
**mark**); the next write adds ``current - mark`` to the day it is written on and replaces
the mark, in one transaction (:meth:`federation.controller.store.SqlStore.record_traffic`).
So a restarted controller loses nothing: the first table after the restart is compared
with the stored mark. What the ledger can miss: a control plane's traffic after the last
write before that control plane restarted (at most
:data:`federation.controller.traffic_feed.LEDGER_INTERVAL_S`), since its counters restart
from zero; and bytes are dated by the write that carries them, so a write just after
midnight UTC puts up to that interval of the day before into the new day.

A ledger **key** is the edge without its response code class (:data:`LEDGER_LABELS`), or a
gateway hop (:class:`~federation.traffic.GatewayHop`) in the same six labels: the serving
cluster as both clusters, the gateway's locality as the source locality, the sidecar's as the
destination's, and its path class after :data:`HOP_PREFIX` (``gateway-hop:cross-zone``); its
``requests`` are connections. A hop's bytes are the gateway's upstream wire bytes: request
bytes leave the gateway, response bytes the sidecar -- so the billing side
(:mod:`federation.billing`) reads them as it reads an edge's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.traffic import Counters, TrafficTable

#: The labels of a ledger row, in key order.
LEDGER_LABELS = (
    "source_cluster",
    "source_locality",
    "destination_service",
    "destination_cluster",
    "destination_locality",
    "path_class",
)
LedgerKey = tuple[str, str, str, str, str, str]
#: The path class prefix of a gateway hop's ledger key.
HOP_PREFIX = "gateway-hop:"


def is_hop(key: LedgerKey) -> bool:
    """Whether a ledger key is a gateway hop's (:data:`HOP_PREFIX`), not an edge's."""
    return key[5].startswith(HOP_PREFIX)


@dataclass(frozen=True, slots=True)
class DayCounts:
    """What one ledger key carried: requests; request and response bytes (Envoy's upstream
    wire bytes, :mod:`federation.traffic`); egress US$ at the prices in force when the
    requests ended."""

    requests: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    egress_usd: float = 0.0

    def __add__(self, other: DayCounts) -> DayCounts:
        return DayCounts(
            self.requests + other.requests,
            self.request_bytes + other.request_bytes,
            self.response_bytes + other.response_bytes,
            self.egress_usd + other.egress_usd,
        )

    def __sub__(self, other: DayCounts) -> DayCounts:
        return DayCounts(
            self.requests - other.requests,
            self.request_bytes - other.request_bytes,
            self.response_bytes - other.response_bytes,
            self.egress_usd - other.egress_usd,
        )

    @property
    def bytes(self) -> int:
        """Request and response bytes together."""
        return self.request_bytes + self.response_bytes

    def as_list(self) -> list[float]:
        """``[requests, request_bytes, response_bytes, egress_usd]``."""
        return [self.requests, self.request_bytes, self.response_bytes, self.egress_usd]


def totals(table: TrafficTable) -> dict[LedgerKey, DayCounts]:
    """A table's cumulative counts per ledger key: its edges (response code classes added
    up) and its gateway hops (see the module docstring)."""
    out: dict[LedgerKey, DayCounts] = {}
    keyed: list[tuple[LedgerKey, Counters]] = [
        (
            (
                edge.source_cluster,
                edge.source_locality,
                edge.destination_service,
                edge.destination_cluster,
                edge.destination_locality,
                edge.path_class,
            ),
            c,
        )
        for edge, c in table.edges.items()
    ]
    keyed += [
        (
            (
                hop.cluster,
                hop.gateway_locality,
                hop.destination_service,
                hop.cluster,
                hop.destination_locality,
                HOP_PREFIX + hop.path_class,
            ),
            c,
        )
        for hop, c in table.hops.items()
    ]
    for key, c in keyed:
        here = DayCounts(c.requests, c.request_bytes, c.response_bytes, c.egress_usd)
        out[key] = out[key] + here if key in out else here
    return out


def increments(
    started_at: float,
    current: Mapping[LedgerKey, DayCounts],
    mark: tuple[float, Mapping[LedgerKey, DayCounts]] | None,
) -> dict[LedgerKey, DayCounts] | None:
    """What the ledger gains from ``current`` (cumulative since ``started_at``) given the
    ``mark`` last written (its ``started_at`` and totals; None: nothing written yet), or
    None when ``current`` is older than the mark (a key counted less, or gone: a stale copy,
    e.g. another replica's; the ledger and the mark stay as they are).

    Counters of another start count whole. Keys that carried nothing new are left out.
    """
    base: Mapping[LedgerKey, DayCounts] = {}
    if mark is not None and mark[0] == started_at:
        base = mark[1]
    if any(key not in current for key in base):
        return None
    out = {}
    for key, now in current.items():
        delta = now - base[key] if key in base else now
        if min(delta.requests, delta.request_bytes, delta.response_bytes) < 0:
            return None
        if delta.requests or delta.bytes:
            out[key] = delta
    return out


def mark_to_json(started_at: float, current: Mapping[LedgerKey, DayCounts]) -> str:
    """A mark as stored (JSON)."""
    rows = [[*key, *counts.as_list()] for key, counts in sorted(current.items())]
    return json.dumps({"startedAt": started_at, "rows": rows}, separators=(",", ":"))


def mark_from_json(body: str) -> tuple[float, dict[LedgerKey, DayCounts]]:
    """A stored mark (:func:`mark_to_json`)."""
    data = json.loads(body)
    out: dict[LedgerKey, DayCounts] = {}
    for row in data["rows"]:
        key: LedgerKey = tuple(str(v) for v in row[:6])  # type: ignore[assignment]
        out[key] = DayCounts(int(row[6]), int(row[7]), int(row[8]), float(row[9]))
    return float(data["startedAt"]), out


def utc_day(unix_s: float) -> str:
    """``YYYY-MM-DD`` of a Unix time, in UTC (the day clouds' billing exports use)."""
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).date().isoformat()


#: JSON names of a ledger row's fields (``GET /v1/cost/ledger``).
_JSON_KEYS = (
    "sourceCluster",
    "sourceLocality",
    "destinationService",
    "destinationCluster",
    "destinationLocality",
    "pathClass",
)


def ledger_rows_to_json(rows: list[tuple[str, LedgerKey, DayCounts]]) -> list[dict[str, Any]]:
    """Ledger rows as ``GET /v1/cost/ledger`` gives them."""
    return [
        {
            "day": day,
            **dict(zip(_JSON_KEYS, key, strict=True)),
            "requests": c.requests,
            "requestBytes": c.request_bytes,
            "responseBytes": c.response_bytes,
            "usd": c.egress_usd,
        }
        for day, key, c in rows
    ]


def ledger_rows_from_json(rows: list[dict[str, Any]]) -> list[tuple[str, LedgerKey, DayCounts]]:
    """:func:`ledger_rows_to_json` read back.

    Raises:
        KeyError, TypeError, ValueError: not rows of that shape.
    """
    return [
        (
            str(r["day"]),
            tuple(str(r[k]) for k in _JSON_KEYS),  # type: ignore[misc]
            DayCounts(
                int(r["requests"]),
                int(r["requestBytes"]),
                int(r["responseBytes"]),
                float(r["usd"]),
            ),
        )
        for r in rows
    ]
