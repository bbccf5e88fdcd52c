"""Which services each cluster imports, with Kubernetes MCS semantics. Pure.

Rules (KEP-1645 Multi-Cluster Services API, "Constraints and conflict resolution"):

- A service ``<ns>/<name>`` is exported by every Ready cluster whose report lists it as
  exported; the same name and namespace in several clusters is one service.
- Its port definitions come from the **oldest** export (first seen by the controller; ties by
  cluster name). An exporter whose ports conflict (a port name with another number or
  protocol, or a missing port) gets a ``Conflict`` condition and is left out of the import:
  callers address the winner's ports and SNI, which the loser's gateway does not serve.
- Every member has the service's import (as in MCS, exporters too): it carries the
  service's ClusterSetIP (:mod:`federation.controller.clusterset_ips`) and lists each
  *other* non-conflicting exporter
  with its gateway address (as its control plane reports it, else as registered), network,
  locality and healthy endpoint count -- and, for an importer on the same network, the
  exporter's endpoints themselves, which it dials directly instead of through the gateway
  (as Istio's multi-primary, same-network model). An exporter whose zones run gateways of
  their own (zone-local gateways) lists them with the service's healthy endpoints in each
  zone: callers elsewhere pick the zone, and its gateway keeps their requests in it.
- An exporter with no gateway address yet (registered without one, and its control plane has
  not reported its load balancer's) is left out of every import until it has one; its
  export is ``Pending`` with a message saying so.
- Unreachable or Pending clusters neither export nor receive anything (their endpoints are
  withdrawn everywhere); unexported services are never imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from federation.controller.membership import ClusterState
from federation.controller.store import ClusterRecord
from federation.model.service import (
    DirectEndpoint,
    ImportPort,
    RemoteCluster,
    ServiceImport,
    ServiceImportSpec,
    ZoneGateway,
)
from federation.model.workload import ObjectMeta
from federation.sync.messages import ClusterReport, ServiceKey, ServiceReport


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """One cluster's export of one service and its MCS condition."""

    cluster: str
    namespace: str
    service: str
    first_seen: float
    condition: str  # "Exported", "Conflict" or "Pending" (no gateway address yet)
    message: str = ""


def _ports(service: ServiceReport) -> dict[str, tuple[int, str]]:
    return {p.name: (p.port, p.protocol) for p in service.ports}


def gateway_of(record: ClusterRecord, report: ClusterReport | None) -> str:
    """``host:port`` where other networks reach ``record``'s cluster: the address its control
    plane reports (a load balancer's, once it has one), else the one registered with
    ``meshfed cluster join --gateway``; "" when neither is known."""
    return (report.gateway if report is not None else "") or record.gateway


def _remote(
    by_name: Mapping[str, ClusterRecord],
    reports: Mapping[str, ClusterReport],
    key: ServiceKey,
    exporter: str,
    importer: str,
) -> RemoteCluster:
    service = reports[exporter].service(key)
    record = by_name[exporter]
    direct = None
    if record.network == by_name[importer].network and service is not None:
        direct = [
            DirectEndpoint(
                address=e.address,
                zone=e.zone,
                healthy=e.healthy,
                tlsMode=e.tls_mode,
                ports=e.ports,
                weight=e.weight,
            )
            for e in service.endpoints
        ]
    by_zone = service.healthy_endpoints_by_zone if service is not None else {}
    return RemoteCluster(
        cluster=exporter,
        gateway=gateway_of(record, reports[exporter]),
        network=record.network,
        locality=record.locality,
        endpoints=service.healthy_endpoints if service is not None else 0,
        directEndpoints=direct,
        zoneGateways=[
            ZoneGateway(zone=zone, gateway=address, endpoints=by_zone.get(zone, 0))
            for zone, address in sorted(reports[exporter].zone_gateways.items())
        ],
    )


def compute(
    clusters: list[ClusterRecord],
    states: Mapping[str, ClusterState],
    reports: Mapping[str, ClusterReport],
    export_times: Mapping[tuple[str, str, str], float],
    ips: Mapping[ServiceKey, str] | None = None,
) -> tuple[dict[str, list[ServiceImport]], list[ExportStatus]]:
    """Imports per cluster and every export's status.

    Args:
        clusters: the members.
        states: cluster name -> state (only Ready clusters take part).
        reports: cluster name -> its latest report.
        export_times: ``(cluster, ns, service) -> first seen`` (seconds since the epoch).
        ips: ``(ns, service) -> ClusterSetIP``; a service without one has ``spec.ips`` empty.
    """
    ips = ips or {}
    by_name = {c.name: c for c in clusters}
    ready = {c.name for c in clusters if states.get(c.name) == "Ready"}
    exporters: dict[ServiceKey, list[tuple[float, str]]] = {}
    for (cluster, ns, svc), seen in export_times.items():
        if cluster in ready and cluster in reports and reports[cluster].service((ns, svc)):
            exporters.setdefault((ns, svc), []).append((seen, cluster))
    statuses: list[ExportStatus] = []
    imports: dict[str, list[ServiceImport]] = {c: [] for c in ready}
    for key in sorted(exporters):
        ns, svc = key
        ordered = sorted(exporters[key])
        _, winner = ordered[0]
        winner_service = reports[winner].service(key)
        assert winner_service is not None
        ports = _ports(winner_service)
        members: list[str] = []
        accounts: set[str] = set()
        for seen, cluster in ordered:
            service = reports[cluster].service(key)
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
            if not gateway_of(by_name[cluster], reports[cluster]):
                statuses.append(
                    ExportStatus(
                        cluster,
                        ns,
                        svc,
                        seen,
                        "Pending",
                        f"not imported yet: cluster {cluster} has no gateway address (its"
                        " control plane reports its LoadBalancer's once the cloud assigns one)",
                    )
                )
                continue
            statuses.append(ExportStatus(cluster, ns, svc, seen, "Exported"))
            members.append(cluster)
            accounts |= set(service.service_accounts)
        import_ports = [
            ImportPort(name=n, port=p, protocol=proto)  # type: ignore[arg-type]
            for n, (p, proto) in sorted(ports.items(), key=lambda kv: kv[1][0])
        ]
        if not members:
            continue
        # importers that see the same exporters the same way (directly on their network, or
        # through gateways) share one import: built once, not once per member
        built: dict[tuple[tuple[str, bool], ...], ServiceImport] = {}
        remotes: dict[tuple[str, bool], RemoteCluster] = {}
        for importer in sorted(ready):
            network = by_name[importer].network
            seen_as = tuple((m, by_name[m].network == network) for m in members if m != importer)
            if seen_as not in built:
                for m, same in seen_as:
                    if (m, same) not in remotes:
                        remotes[(m, same)] = _remote(by_name, reports, key, m, importer)
                built[seen_as] = ServiceImport(
                    apiVersion="meshfed.io/v1alpha1",
                    kind="ServiceImport",
                    metadata=ObjectMeta(name=svc, namespace=ns),
                    spec=ServiceImportSpec(
                        ports=import_ports,
                        serviceAccounts=sorted(accounts) or ["default"],
                        clusters=[remotes[m] for m in seen_as],
                        ips=[ips[key]] if key in ips else [],
                    ),
                )
            imports[importer].append(built[seen_as])
    return imports, statuses


def intern_imports(
    imports: Mapping[str, list[ServiceImport]], previous: Mapping[str, ServiceImport]
) -> tuple[dict[str, list[ServiceImport]], dict[str, ServiceImport]]:
    """``imports`` (cluster -> its imports, as :func:`compute` makes them) with every import
    equal to one of ``previous`` replaced by that very object, and this round's imports by
    their JSON (the next call's ``previous``).

    A recompute builds every import anew; a stream is sent an update only when it differs
    from the last one (:meth:`federation.controller.streams.SyncStreams.send`), and equal
    but distinct pydantic models are compared field by field, recursively: with 50 members
    that comparison was 37 ms of a 41 ms apply. Imports that did not change are now the
    same objects as last time, and comparing them is an identity check. Each distinct import
    is serialised once (pydantic's JSON, in Rust) to find its twin."""
    table: dict[str, ServiceImport] = {}
    by_id: dict[int, ServiceImport] = {}
    out: dict[str, list[ServiceImport]] = {}
    for cluster, items in imports.items():
        row = []
        for si in items:
            kept = by_id.get(id(si))  # ids of objects ``imports`` holds: stable here
            if kept is None:
                text = si.model_dump_json()
                kept = table.get(text) or previous.get(text) or si
                table[text] = by_id[id(si)] = kept
            row.append(kept)
        out[cluster] = row
    return out, table
