"""Rich tables of ``meshfed up``'s live view (kept out of the CLI package, which only parses
flags and renders through these)."""

from __future__ import annotations

from typing import Any

from federation.local.description import LocalFederation
from federation.local.traffic import service_name, totals, traffic_rows
from federation.traffic import format_usd


def live_table(desc: LocalFederation, traffic: dict[str, Any]) -> Any:
    """``meshfed up``'s live view: the demo frontend's traffic per destination (a rich
    table of :func:`traffic_rows`)."""
    from rich.table import Table

    f = desc.spec.frontend
    service = service_name(f.target)
    rows = traffic_rows(traffic, f.cluster, service)
    total = totals(traffic, f.cluster, service)
    columns = ("DESTINATION", "SHARE", "REQ/S", "P50 MS", "P99 MS", "ERRORS", "PATH", "$/GB")
    table = Table(
        *columns,
        "EGRESS $/HOUR",
        title=f"{f.cluster} -> {service}: last {traffic.get('windowS', 0):g} s"
        f" (since start: {total['requests']} requests, {total['errors']} errors,"
        f" {format_usd(total['egressUsd'])} egress)",
        box=None,
        title_justify="left",
    )
    for r in rows:
        table.add_row(r["cluster"], *_cells(r), f"{r['usdPerGB']:.3f}", format_usd(r["usdPerHour"]))
    return table


def _cells(r: dict[str, Any]) -> list[str]:
    """A traffic row's share, req/s, p50 and p99 ms, error share and path class."""
    return [
        f"{r['share']:.0%}",
        f"{r['rps']:.1f}",
        format_ms(r["p50Ms"]),
        format_ms(r["p99Ms"]),
        f"{r['errorShare']:.1%}",
        r["path"],
    ]


def format_ms(value: float | None) -> str:
    """Milliseconds with one decimal; ``-`` when unknown."""
    return "-" if value is None else f"{value:.1f}"


def print_status_traffic(data: dict[str, Any]) -> None:
    """``meshfed status``'s traffic table (of :func:`federation.local.status.status_data`)
    on stdout: per caller, service and serving cluster."""
    from rich.console import Console
    from rich.table import Table

    t = Table(
        *("FROM", "SERVICE", "SERVED BY", "SHARE", "REQ/S", "P50 MS", "P99 MS", "ERRORS"),
        *("PATH", "EGRESS $/HOUR"),
        box=None,
        title=f"traffic (last {data['traffic']['windowS']:g} s, counted by the sidecars;"
        f" egress {format_usd(data['egressUsdPerHour'])}/hour)",
        title_justify="left",
    )
    for r in data["edges"]:
        t.add_row(r["from"], r["service"], r["cluster"], *_cells(r), format_usd(r["usdPerHour"]))
    Console(width=200).print(t)
