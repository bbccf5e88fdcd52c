"""What a cluster control plane tells the federation controller about itself. Pure.

A report (:class:`federation.sync.messages.ClusterReport`) lists the cluster's local services --
ports and protocols as the first workload by name defines them, the service accounts serving
them, the number of healthy endpoints per zone and the endpoints themselves (which the
controller passes on only to clusters on the same network) -- its exports (local ServiceExports and
those the controller pushed), its gateway address and the RTT (ms) it measured to other
clusters' gateways. Services with at least one local workload are reported, and an exported
service whose last workload is gone stays reported with no endpoint while it is exported
(:attr:`~federation.controlplane.registry.RegistryState.retained`: as an MCS ServiceImport,
its import outlives its pods); an export of a service that never had a workload here is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.controlplane.registry import RegistryState, ServiceShape
from federation.sync.messages import ClusterReport


def cluster_report(
    state: RegistryState,
    cluster: str,
    gateway: str,
    rtt_ms: Mapping[str, float],
    *,
    zone_gateways: Mapping[str, str] | None = None,
) -> ClusterReport:
    """The report for ``state`` (deterministic: equal states give equal reports), with the
    cluster's ``gateway`` and its zones' own gateways (``zone_gateways``, zone ->
    ``host:port``)."""
    services: list[dict[str, Any]] = []
    exports: list[str] = []
    for namespace, service in state.local_services():
        workloads = state.by_service(namespace, service)
        shape = ServiceShape.of(workloads) if workloads else state.retained[(namespace, service)]
        healthy: dict[str, int] = {}
        endpoints: list[dict[str, Any]] = []
        for w in workloads:
            zone = w.locality.zone or w.locality.region
            healthy.setdefault(zone, 0)
            serving = state.health_of(w.key).serving
            if serving:
                healthy[zone] += 1
            endpoints.append(
                {
                    "address": w.spec.address,
                    "zone": w.locality.zone,
                    "healthy": serving,
                    "tls_mode": w.spec.tls_mode,
                    "ports": {
                        p.name: w.spec.inbound_port if w.spec.tls_mode == "mutual" else p.app_port
                        for p in w.spec.ports
                    },
                    "weight": w.spec.weight,
                    "capacity_rps": w.spec.capacity.rps if w.spec.capacity else 0.0,
                }
            )
        services.append(
            {
                "namespace": namespace,
                "name": service,
                "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in shape.ports],
                "service_accounts": list(shape.service_accounts),
                "healthy_endpoints_by_zone": dict(sorted(healthy.items())),
                "endpoints": endpoints,
            }
        )
        if state.exported((namespace, service)):
            exports.append(f"{namespace}/{service}")
    return ClusterReport.model_validate(
        {
            "cluster": cluster,
            "services": services,
            "exports": exports,
            "gateway": gateway,
            "zone_gateways": dict(sorted((zone_gateways or {}).items())),
            "rtt_ms": {k: round(v, 3) for k, v in sorted(rtt_ms.items())},
        }
    )
