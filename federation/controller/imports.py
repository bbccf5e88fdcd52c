"""Which services each cluster imports, with Kubernetes MCS semantics. Pure.

Rules (KEP-1645 Multi-Cluster Services API, "Constraints and conflict resolution"):

- A service ``<ns>/<name>`` is exported by every Ready cluster whose report lists it as
  exported; the same name and namespace in several clusters is one service.
- Its port definitions come from the **oldest** export (first seen by the controller; ties by
  cluster name). An exporter whose ports conflict (a port name with another number or
  protocol, or a missing port) gets a ``Conflict`` condition and is left out of the import:
  callers address the winner's ports and SNI, which the loser's gateway does not serve.
- Every other member imports the service; the import lists each non-conflicting exporter
  with its gateway address, network, locality and healthy endpoint count -- and, for an
  importer on the same network, the exporter's endpoints themselves, which it dials directly
  instead of through the gateway (as Istio's multi-primary, same-network model).
- Unreachable or Pending clusters neither export nor receive anything (their endpoints are
  withdrawn everywhere); unexported services are never imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.controller.membership import ClusterState
from federation.controller.store import ClusterRecord

ServiceKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """One cluster's export of one service and its MCS condition."""

    cluster: str
    namespace: str
    service: str
    first_seen: float
    condition: str  # "Exported" or "Conflict"
    message: str = ""


def _ports(service: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    return {
        p["name"]: (int(p["port"]), p.get("protocol", "http")) for p in service.get("ports", [])
    }


def _service(report: Mapping[str, Any], key: ServiceKey) -> Mapping[str, Any] | None:
    for s in report.get("services", []):
        if (s.get("namespace"), s.get("name")) == key:
            return s  # type: ignore[no-any-return]
    return None


def _remote(
    by_name: Mapping[str, ClusterRecord],
    reports: Mapping[str, Mapping[str, Any]],
    key: ServiceKey,
    exporter: str,
    importer: str,
) -> dict[str, Any]:
    service = _service(reports[exporter], key) or {}
    entry: dict[str, Any] = {
        "cluster": exporter,
        "gateway": by_name[exporter].gateway,
        "network": by_name[exporter].network,
        "locality": by_name[exporter].locality,
        "endpoints": sum(int(v) for v in service.get("healthy_endpoints_by_zone", {}).values()),
    }
    if by_name[exporter].network == by_name[importer].network:
        entry["directEndpoints"] = [
            {
                "address": e["address"],
                "zone": e.get("zone", ""),
                "healthy": bool(e.get("healthy", False)),
                "tlsMode": e.get("tls_mode", "mutual"),
                "ports": {k: int(v) for k, v in e.get("ports", {}).items()},
                "weight": int(e.get("weight", 1)),
            }
            for e in service.get("endpoints", [])
        ]
    return entry


def compute(
    clusters: list[ClusterRecord],
    states: Mapping[str, ClusterState],
    reports: Mapping[str, Mapping[str, Any]],
    export_times: Mapping[tuple[str, str, str], float],
) -> tuple[dict[str, list[dict[str, Any]]], list[ExportStatus]]:
    """Imports per cluster (ServiceImport documents as dicts) and every export's status.

    Args:
        clusters: the members.
        states: cluster name -> state (only Ready clusters take part).
        reports: cluster name -> its latest report (``services``, ``exports``).
        export_times: ``(cluster, ns, service) -> first seen`` (seconds since the epoch).
    """
    by_name = {c.name: c for c in clusters}
    ready = {c.name for c in clusters if states.get(c.name) == "Ready"}
    exporters: dict[ServiceKey, list[tuple[float, str]]] = {}
    for (cluster, ns, svc), seen in export_times.items():
        if (
            cluster in ready
            and cluster in reports
            and _service(reports[cluster], (ns, svc)) is not None
        ):
            exporters.setdefault((ns, svc), []).append((seen, cluster))
    statuses: list[ExportStatus] = []
    imports: dict[str, list[dict[str, Any]]] = {c: [] for c in ready}
    for key in sorted(exporters):
        ns, svc = key
        ordered = sorted(exporters[key])
        _, winner = ordered[0]
        winner_service = _service(reports[winner], key)
        assert winner_service is not None
        ports = _ports(winner_service)
        members: list[str] = []
        accounts: set[str] = set()
        for seen, cluster in ordered:
            service = _service(reports[cluster], key)
            assert service is not None
            theirs = _ports(service)
            clash = sorted(n for n in ports if theirs.get(n) != ports[n])
            if clash and cluster != winner:
                statuses.append(
                    ExportStatus(
                        cluster,
                        ns,
                        svc,
                        seen,
                        "Conflict",
                        f"ports {', '.join(clash)} differ from the oldest export"
                        f" (cluster {winner}); not imported",
                    )
                )
                continue
            statuses.append(ExportStatus(cluster, ns, svc, seen, "Exported"))
            members.append(cluster)
            accounts |= set(service.get("service_accounts", []))
        for importer in sorted(ready):
            remote = [m for m in members if m != importer]
            if not remote:
                continue
            imports[importer].append(
                {
                    "apiVersion": "meshfed.io/v1alpha1",
                    "kind": "ServiceImport",
                    "metadata": {"name": svc, "namespace": ns},
                    "spec": {
                        "ports": [
                            {"name": n, "port": p, "protocol": proto}
                            for n, (p, proto) in sorted(ports.items(), key=lambda kv: kv[1][0])
                        ],
                        "serviceAccounts": sorted(accounts) or ["default"],
                        "clusters": [_remote(by_name, reports, key, m, importer) for m in remote],
                    },
                }
            )
    return imports, statuses
