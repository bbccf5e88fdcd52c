"""What a cluster control plane tells the federation controller about itself. Pure.

A report (``meshfed.sync.v1.ClusterReport`` as a dict) lists the cluster's local services --
ports and protocols as the first workload by name defines them, the service accounts serving
them, and the number of healthy endpoints per zone -- its exports (local ServiceExports and
those the controller pushed), its gateway address and the RTT (ms) it measured to other
clusters' gateways. Only services with at least one local workload are reported: an export of
a service with no workload here serves nothing and is not imported anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.controlplane.registry import RegistryState


def cluster_report(
    state: RegistryState, cluster: str, gateway: str, rtt_ms: Mapping[str, float]
) -> dict[str, Any]:
    """The report for ``state`` (shape of ``ClusterReport``; JSON-ready, deterministic)."""
    services: list[dict[str, Any]] = []
    exports: list[str] = []
    local = sorted({(w.metadata.namespace, w.spec.service) for w in state.workloads.values()})
    for namespace, service in local:
        workloads = state.by_service(namespace, service)
        ports: dict[str, tuple[int, str]] = {}
        healthy: dict[str, int] = {}
        for w in workloads:
            for p in w.spec.ports:
                ports.setdefault(p.name, (p.port, p.protocol))
            zone = w.locality.zone or w.locality.region
            healthy.setdefault(zone, 0)
            if state.health_of(w.key).serving:
                healthy[zone] += 1
        services.append(
            {
                "namespace": namespace,
                "name": service,
                "ports": [
                    {"name": n, "port": p, "protocol": proto}
                    for n, (p, proto) in sorted(ports.items(), key=lambda kv: kv[1][0])
                ],
                "service_accounts": sorted({w.spec.service_account for w in workloads}),
                "healthy_endpoints_by_zone": dict(sorted(healthy.items())),
            }
        )
        if state.exported((namespace, service)):
            exports.append(f"{namespace}/{service}")
    return {
        "cluster": cluster,
        "services": services,
        "exports": exports,
        "gateway": gateway,
        "rtt_ms": {k: round(v, 3) for k, v in sorted(rtt_ms.items())},
    }
