"""What ``meshfed status`` and ``meshfed up``'s live view show of a local federation, read
from its controller and control planes (the CLI renders it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from federation.client import call
from federation.errors import FederationError
from federation.local.description import load
from federation.local.processes import Record
from federation.local.traffic import (
    STATUS_GROUP,
    edge_rows,
    service_name,
    totals,
    traffic_rows,
)


def controller_traffic(home: Path, controller: str, window: float = 10) -> dict[str, Any]:
    """The controller's ``GET /v1/traffic`` grouped for status ({} when it does not answer)."""
    token = (home / "controller-token").read_text().strip()
    try:
        data: dict[str, Any] = call(
            "GET", controller, f"/v1/traffic?window={window:g}&by={STATUS_GROUP}", token=token
        )
    except FederationError:
        return {}
    return data


def status_data(home: Path, record: Record) -> dict[str, Any]:
    """What ``meshfed status`` shows of the federation of ``home`` (``record``: its running
    processes): clusters, imports (from other clusters), proxies in sync, traffic shares,
    federated trust domains and their bundles (``GET /v1/trustdomains``).

    Raises:
        federation.errors.FederationError: the controller does not answer.
    """
    desc = load(Path(record.info["file"])) if record.info.get("file") else load(None)
    controller = record.info["controller"]
    token = (home / "controller-token").read_text().strip()
    clusters = call("GET", controller, "/v1/clusters", token=token)["clusters"]
    imports = call("GET", controller, "/v1/imports", token=token)["imports"]
    domains = call("GET", controller, "/v1/trustdomains", token=token)["trustdomains"]
    proxies: dict[str, dict[str, int]] = {}
    for c in desc.spec.clusters:
        endpoint = home / "controlplanes" / c.name / "endpoint.json"
        try:
            api = json.loads(endpoint.read_text())["api"]
            ps = call("GET", api, "/v1/proxy-status")["proxies"]  # token found from endpoint.json
        except (OSError, ValueError, KeyError, FederationError):
            proxies[c.name] = {"proxies": 0, "synced": 0}
            continue
        synced = sum(
            1
            for p in ps
            if p["connected"]
            and all(t["state"] in ("SYNCED", "NOT SENT") for t in p["types"].values())
        )
        proxies[c.name] = {"proxies": sum(1 for p in ps if p["connected"]), "synced": synced}
    traffic = controller_traffic(home, controller)
    f = desc.spec.frontend
    service = service_name(f.target)
    rows = traffic_rows(traffic, f.cluster, service)
    edges = edge_rows(traffic.get("edges", []))
    window = traffic.get("windowS", 0)
    return {
        "federation": desc.metadata.name,
        "clusters": [
            {
                "name": c["name"],
                "state": c["state"],
                "locality": c["locality"],
                "network": c["network"],
                "exports": c["exports"],
                **proxies.get(c["name"], {}),
            }
            for c in clusters
        ],
        "imports": [
            {
                "cluster": i["cluster"],
                "service": f"{i['metadata']['name']}.{i['metadata']['namespace']}",
                "from": [r["cluster"] for r in i["spec"]["clusters"]],
            }
            for i in imports
            if i["spec"]["clusters"]  # an exporter's import of its own service: ClusterSetIP only
        ],
        "traffic": {
            "from": f.cluster,
            "service": service,
            "windowS": window,
            "errors": round(sum(r["errorShare"] * r["rps"] for r in rows) * window),
            "total": totals(traffic, f.cluster, service),
            "destinations": rows,
        },
        "edges": edges,
        "trustDomains": domains,
        "egressUsdPerHour": sum(e["usdPerHour"] for e in edges),
        "priceTables": traffic.get("priceTables", []),
    }
