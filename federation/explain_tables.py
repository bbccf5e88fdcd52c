"""How ``meshfed explain SERVICE``'s answer (:func:`federation.controlplane.explain.explain`,
as JSON) is printed: ports alike in one table (issue 41: every port was printed twice when
identical). Pure; no import of the control plane (the CLI loads this on every explain)."""

from __future__ import annotations

from typing import Any


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
