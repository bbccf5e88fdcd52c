"""How ``meshfed explain SERVICE``'s answer (:func:`federation.controlplane.explain.explain`,
as JSON) is printed: ports alike in one table (issue 41: every port was printed twice when
identical). Pure; no import of the control plane (the CLI loads this on every explain)."""

from __future__ import annotations

import json
import sys
from typing import Any

from federation.traffic import format_usd


def port_groups(ports: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """:func:`explain`'s ports as the tables to print: ports whose destinations and rows are
    the same share one, titled ``port 8080 (http), 9090 (grpc) -- every request: 80% cluster
    a, 20% cluster b``. Pure."""
    groups: list[tuple[list[str], dict[str, Any]]] = []
    for port in ports:
        same = next((g for g in groups if _same_traffic(g[1], port)), None)
        name = f"{port['port']} ({port['protocol']})"
        if same is None:
            groups.append(([name], port))
        else:
            same[0].append(name)
    out = []
    for names, port in groups:
        to = ", ".join(f"{d['percent']}% {d['to']}" for d in port["destinations"]) or "redirected"
        title = f"port{'s' if len(names) > 1 else ''} {', '.join(names)} -- {port['appliesTo']}"
        out.append((f"{title}: {to}", port["rows"]))
    return out


def _same_traffic(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("appliesTo", "rows", "destinations")
    return all(a[k] == b[k] for k in keys)


def _rows_table(title: str, rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title=title, box=None, title_justify="left")
    for name in ("PRIORITY", "CLUSTER", "LOCALITY", "WEIGHT", "SHARE", "RTT MS", "$/GB", "REASON"):
        t.add_column(name, overflow="fold")  # never an ellipsis: nothing hidden
    for r in rows:
        rtt = "-" if r["rttMs"] is None else f"{r['rttMs']:g} ({r['rttSource'][0]})"
        t.add_row(
            str(r["priority"]), r["cluster"], r["locality"], str(r["weight"]),
            f"{r['share']:.0%}", rtt, f"{r['usdPerGB']:.3f}", r["reason"],
        )  # fmt: skip
    return t


def _plan_lines(plan: dict[str, Any]) -> list[Any]:
    from rich.table import Table

    t = Table(
        "CLUSTER", "LOCALITY", "CAPACITY RPS", "HEADROOM", "PLANNED RPS", "SHARE",
        title=f"optimizer plan for {plan['demandRps']:g} rps from here",
        box=None, title_justify="left",
    )  # fmt: skip
    why = []
    for loc in plan["localities"]:
        cap, room = loc["capacityRps"], loc.get("headroom")
        t.add_row(
            loc["cluster"], loc["locality"], "unbounded" if cap is None else f"{cap:g}",
            "-" if room is None else f"{room:.0%}", f"{loc['rps']:g}", f"{loc['share']:.1%}",
        )  # fmt: skip
        if loc.get("headroomReason"):
            why.append(f"headroom of {loc['cluster']} {loc['locality']}: {loc['headroomReason']}")
    binding = plan["binding"] or ["no constraint binds: every request on its cheapest path"]
    return [
        t,
        f"egress $/hour: plan {format_usd(plan['usdPerHour'])}, locality failover"
        f" {format_usd(plan['failoverUsdPerHour'])}, round robin"
        f" {format_usd(plan['roundRobinUsdPerHour'])}",
        *why,
        *(f"binding: {line}" for line in binding),
    ]


def _routes_table(routes: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table("ROUTE", "MATCH", "TO", "ALSO", title="routes, in order", box=None,
              title_justify="left")  # fmt: skip
    for r in routes:
        also = [f"timeout {r['timeoutMs']} ms"] if r.get("timeoutMs") else []
        also += [f"fault {json.dumps(r['fault'])}"] if r.get("fault") else []
        also += [f"mirror {r['mirror']}"] if r.get("mirror") else []
        also += [f"{k} {r[k]}" for k in ("headers", "rewrite") if r.get(k)]
        t.add_row(
            f"{r['kind']} {r['name']}", " | ".join(r["match"]), ", ".join(r["to"]),
            "; ".join(also) or "-",
        )  # fmt: skip
    return t


def render_explain(data: dict[str, Any]) -> None:
    """``meshfed explain SERVICE``'s tables: the optimizer's plan, the routes, then per group
    of ports alike the endpoints' priorities and shares of all requests no narrower route
    takes. Prints to stdout."""
    from rich.console import Console

    # a terminal's width, long cells folded; piped elsewhere, lines stay whole (as kubectl)
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(
        f"{data['service']} from {data['from']['cluster']} ({data['from']['locality']});"
        f" policy: {data['policy'] or 'none'}"
        + (f" (from {data['policyFrom']})" if data.get("policyFrom") else "")
        + f", cost mode: {data['costMode']}"
    )
    plan = data.get("plan")
    if plan:
        for line in _plan_lines(plan):
            console.print(line)
    elif data["costMode"] == "optimize":
        console.print("no optimizer plan yet (no demand measured from this locality)")
    if data.get("routes"):
        console.print(_routes_table(data["routes"]))
    for title, rows in port_groups(data["ports"]):
        console.print(_rows_table(title, rows))
