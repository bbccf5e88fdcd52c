"""``meshfed cost report``: what the federation's traffic cost over a window of UTC days, and
what round robin and locality failover would have cost for the same traffic. Pure; the
controller feeds it its traffic ledger (:mod:`federation.traffic_days`) and price tables.

**Spent** is the ledger's own egress US$: each request's bytes at its path's price when it
ended (:mod:`federation.traffic`).

**The alternatives** are priced per UTC day, service and caller locality: the caller's
request and response bytes of that day, split over the serving localities the service had
that day (every ``(cluster, locality)`` that answered it, from any caller):

- *round robin*: equal shares (the ledger keeps no capacities; the optimizer's own
  comparison in ``explain`` weighs by declared capacity);
- *locality failover*: equal shares over the nearest of them (same zone, then region, then
  cloud: :func:`federation.lb.locality.proximity_rank`, Istio's default order without
  ``failoverPriority``).

Request bytes are priced caller -> server and response bytes server -> caller, at the price
tables in force now (:func:`federation.lb.paths.path_facts`); so are both alternatives, and a
PriceTable changed within the window moves them, not what was spent. Requests no sidecar
answered (destination ``unknown``) are in the paths, at $0, and not in the alternatives.

**Gateway hops** (a serving cluster's east-west gateway -> the sidecar it forwarded to,
:data:`federation.traffic_days.HOP_PREFIX`) are paths of their service (``connections``, not
requests) and are in what was spent; both alternatives count them as spent, since where a
gateway forwards depends on the cluster's gateways (zone-local or not), not on the callers'
policy. They are neither callers nor servers of the alternatives.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from federation.durations import parse_duration
from federation.lb.locality import proximity_rank
from federation.lb.paths import BYTES_PER_GB, path_facts
from federation.model.locality import Locality
from federation.traffic import format_usd
from federation.traffic_days import HOP_PREFIX, DayCounts, LedgerKey, is_hop, utc_day
from providers.pricing import PriceTable

#: Columns of ``-o csv`` (one row per service and path, then one per service with ``*``).
CSV_COLUMNS = (
    "service", "source_cluster", "destination_cluster", "path_class", "requests",
    "request_bytes", "response_bytes", "usd", "round_robin_usd", "locality_failover_usd",
    "connections",
)  # fmt: skip
#: The longest window (days) a report covers.
MAX_DAYS = 366

LedgerRow = tuple[str, LedgerKey, DayCounts]


def window(since: str, now: float) -> tuple[str, str]:
    """``(first day, last day)`` (UTC, ``YYYY-MM-DD``) of ``--since``: a duration back from
    ``now`` (``7d``, ``24h``: every UTC day it touches) or a day (``2026-11-29``).

    Raises:
        ValueError: neither, a day after today, or more than :data:`MAX_DAYS` days.
    """
    today = utc_day(now)
    try:
        first = dt.date.fromisoformat(since).isoformat()
    except ValueError:
        try:
            back = parse_duration(since).total_seconds()
        except ValueError as err:
            raise ValueError(
                f"{err}; give a duration back from now (7d, 24h) or a day (YYYY-MM-DD)"
            ) from None
        if back > MAX_DAYS * 86400.0:
            raise ValueError(f"{since}: a report covers at most {MAX_DAYS} days") from None
        first = utc_day(now - back)
    if first > today:
        raise ValueError(f"{since} is after today ({today}, UTC)")
    span = (dt.date.fromisoformat(today) - dt.date.fromisoformat(first)).days + 1
    if span > MAX_DAYS:
        raise ValueError(f"{since}: {span} days; a report covers at most {MAX_DAYS}")
    return first, today


def _usd(
    caller: Locality,
    server: Locality,
    counts: DayCounts,
    prices: Mapping[str, PriceTable],
) -> float:
    """US$ of a caller's bytes had they all gone to ``server``."""
    answer = path_facts(caller, server, prices=prices).usd_per_gb  # response: server -> caller
    ask = path_facts(server, caller, prices=prices).usd_per_gb  # request: caller -> server
    return (counts.request_bytes * ask + counts.response_bytes * answer) / BYTES_PER_GB


def _locality(text: str) -> Locality | None:
    try:
        return Locality.parse(text)
    except ValueError:
        return None


def alternatives(
    rows: Iterable[LedgerRow], prices: Mapping[str, PriceTable]
) -> dict[tuple[str, str], tuple[float, float]]:
    """``(service, day)`` -> ``(round robin US$, locality failover US$)`` for the traffic of
    ``rows`` (see the module docstring)."""
    servers: dict[tuple[str, str], set[Locality]] = defaultdict(set)
    callers: dict[tuple[str, str, str], DayCounts] = defaultdict(DayCounts)
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for day, key, counts in rows:
        src_loc, service, dst_cluster, dst_loc = key[1], key[2], key[3], key[4]
        if is_hop(key):
            spread, failover = out.get((service, day), (0.0, 0.0))
            out[(service, day)] = (spread + counts.egress_usd, failover + counts.egress_usd)
            continue
        where = _locality(dst_loc)
        if dst_cluster == "unknown" or where is None:
            continue
        servers[(day, service)].add(where)
        callers[(day, service, src_loc)] += counts
    for (day, service, src_loc), counts in sorted(callers.items()):
        caller = _locality(src_loc)
        options = sorted(servers[(day, service)])
        if caller is None or not options:
            continue
        costs = [_usd(caller, s, counts, prices) for s in options]
        ranks = [proximity_rank(caller, s) for s in options]
        nearest = [c for c, r in zip(costs, ranks, strict=True) if r == min(ranks)]
        spread, failover = out.get((service, day), (0.0, 0.0))
        out[(service, day)] = (
            spread + sum(costs) / len(costs),
            failover + sum(nearest) / len(nearest),
        )
    return out


def _sums(
    others: Mapping[tuple[str, str], tuple[float, float]], part: int
) -> dict[str, tuple[float, float]]:
    """:func:`alternatives` added up by service (``part`` 0) or by day (1)."""
    out: dict[str, tuple[float, float]] = {}
    for key, (spread, failover) in others.items():
        was = out.get(key[part], (0.0, 0.0))
        out[key[part]] = (was[0] + spread, was[1] + failover)
    return out


def _days(
    rows: list[LedgerRow], others: Mapping[tuple[str, str], tuple[float, float]]
) -> list[dict[str, Any]]:
    """Per UTC day of ``rows``: bytes, spent and the alternatives, every service together."""
    spent: dict[str, DayCounts] = defaultdict(DayCounts)
    for day, _, counts in rows:
        spent[day] += counts
    per_day = _sums(others, 1)
    out = []
    for day in sorted(spent):
        spread, failover = per_day.get(day, (0.0, 0.0))
        out.append({"day": day, "bytes": spent[day].bytes, "usd": spent[day].egress_usd,
                    "roundRobinUsd": spread, "localityFailoverUsd": failover})  # fmt: skip
    return out


def report(
    rows: list[LedgerRow], prices: Mapping[str, PriceTable], first: str, last: str
) -> dict[str, Any]:
    """The report (``GET /v1/cost/report``; ``-o json`` prints it)::

        {"since": day, "until": day, "services": [{"service", "requests",
          "gatewayHopConnections", "bytes", "usd", "roundRobinUsd", "localityFailoverUsd",
          "paths": [{"sourceCluster", "destinationCluster", "pathClass", "requests",
          "connections", "requestBytes", "responseBytes", "usd"}]}], "days": [{"day",
          "bytes", "usd", "roundRobinUsd", "localityFailoverUsd"}], "total": {...the same
          sums...}, "prices": {cloud: source}}

    ``bytes`` are request plus response bytes; US$ as the module docstring says.
    """
    paths: dict[str, dict[tuple[str, str, str], DayCounts]] = defaultdict(dict)
    for _, key, counts in rows:
        src, service, dst, path = key[0], key[2], key[3], key[5]
        by_path = paths[service]
        by_path[(src, dst, path)] = by_path.get((src, dst, path), DayCounts()) + counts
    others = alternatives(rows, prices)
    per_service = _sums(others, 0)
    services: list[dict[str, Any]] = []
    for service, by_path in sorted(paths.items()):
        spent = sum(by_path.values(), DayCounts())
        hops = sum((c for k, c in by_path.items() if k[2].startswith(HOP_PREFIX)), DayCounts())
        spread, failover = per_service.get(service, (0.0, 0.0))
        services.append(
            {
                "service": service,
                "requests": spent.requests - hops.requests,
                "gatewayHopConnections": hops.requests,
                "bytes": spent.bytes,
                "usd": spent.egress_usd,
                "roundRobinUsd": spread,
                "localityFailoverUsd": failover,
                "paths": [
                    {
                        "sourceCluster": src,
                        "destinationCluster": dst,
                        "pathClass": path,
                        "requests": 0 if path.startswith(HOP_PREFIX) else c.requests,
                        "connections": c.requests if path.startswith(HOP_PREFIX) else 0,
                        "requestBytes": c.request_bytes,
                        "responseBytes": c.response_bytes,
                        "usd": c.egress_usd,
                    }
                    for (src, dst, path), c in sorted(by_path.items())
                ],
            }
        )
    total = {
        k: sum(s[k] for s in services)
        for k in (
            "requests",
            "gatewayHopConnections",
            "bytes",
            "usd",
            "roundRobinUsd",
            "localityFailoverUsd",
        )
    }
    return {
        "since": first,
        "until": last,
        "services": services,
        "days": _days(rows, others),
        "total": total,
        "prices": {cloud: f"{t.source} (read {t.read_on or 'n/a'})" for cloud, t in prices.items()},
    }


def csv_rows(data: Mapping[str, Any]) -> list[list[Any]]:
    """``-o csv``'s rows (:data:`CSV_COLUMNS`) of a :func:`report`."""
    out: list[list[Any]] = []
    for s in data["services"]:
        for p in s["paths"]:
            out.append([s["service"], p["sourceCluster"], p["destinationCluster"],
                        p["pathClass"], p["requests"], p["requestBytes"], p["responseBytes"],
                        p["usd"], "", "", p["connections"]])  # fmt: skip
        out.append([s["service"], "*", "*", "*", s["requests"], "", "", s["usd"],
                    s["roundRobinUsd"], s["localityFailoverUsd"],
                    s["gatewayHopConnections"]])  # fmt: skip
    return out


def _times(spent: float, other: float) -> str:
    return f" ({other / spent:.1f}x)" if spent > 0 and other > 0 else ""


def summary_lines(data: Mapping[str, Any]) -> list[str]:
    """The table output's lines above each service's paths, and the total."""
    lines = [f"egress from {data['since']} to {data['until']} (UTC days)"]
    for s in [*data["services"], {"service": "total", **data["total"]}]:
        lines.append(
            f"{s['service']}: {s['requests']} requests, {s['bytes'] / BYTES_PER_GB:.3f} GB,"
            f" spent {format_usd(s['usd'])}; round robin {format_usd(s['roundRobinUsd'])}"
            f"{_times(s['usd'], s['roundRobinUsd'])}, locality failover"
            f" {format_usd(s['localityFailoverUsd'])}{_times(s['usd'], s['localityFailoverUsd'])}"
        )
    return lines


def path_table(data: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The table output's path rows: service, from, to, path class, requests, GB, US$."""
    head = ["SERVICE", "FROM", "TO", "PATH", "REQUESTS", "GB", "USD"]
    rows = [
        [
            s["service"],
            p["sourceCluster"],
            p["destinationCluster"],
            p["pathClass"],
            f"{p['connections']} connections" if p["connections"] else str(p["requests"]),
            f"{(p['requestBytes'] + p['responseBytes']) / BYTES_PER_GB:.3f}",
            format_usd(p["usd"]),
        ]
        for s in data["services"]
        for p in s["paths"]
    ]
    return head, rows
