"""EDS: ``ClusterLoadAssignment`` per service port, with locality priorities and weights.

Priorities and weights come from :func:`federation.lb.locality.assign_priorities` for the
calling proxy's locality. Endpoint health is the control plane's probe result
(``LbEndpoint.health_status``); endpoints behind a sidecar (tlsMode mutual) are addressed at
the sidecar's inbound port and carry ``envoy.transport_socket_match: {tlsMode: mutual}`` so the
cluster picks its mTLS transport socket for them.
"""

from __future__ import annotations

from collections import defaultdict

from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from federation.controlplane.generate.services import ServicePort
from federation.controlplane.registry import Health, RegistryState
from federation.lb.locality import LocalityGroup, assign_priorities
from federation.model.locality import Locality
from federation.model.workload import WorkloadEntry

_HEALTH = {
    Health.UNKNOWN: health_check_pb2.HealthStatus.UNKNOWN,
    Health.HEALTHY: health_check_pb2.HealthStatus.HEALTHY,
    Health.UNHEALTHY: health_check_pb2.HealthStatus.UNHEALTHY,
}
TLS_MATCH_KEY = "envoy.transport_socket_match"


def _lb_endpoint(w: WorkloadEntry, port: int, health: Health) -> endpoint_components_pb2.LbEndpoint:
    target = w.spec.inbound_port if w.spec.tls_mode == "mutual" else port
    metadata = base_pb2.Metadata()
    match = struct_pb2.Struct()
    match.update({"tlsMode": w.spec.tls_mode})
    metadata.filter_metadata[TLS_MATCH_KEY].CopyFrom(match)
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=w.spec.address, port_value=target)
            ),
            hostname=w.metadata.name,
        ),
        health_status=_HEALTH[health],
        load_balancing_weight=wrappers_pb2.UInt32Value(value=w.spec.weight),
        metadata=metadata,
    )


def load_assignment(
    caller: Locality,
    state: RegistryState,
    port: ServicePort,
    *,
    include_tls_mode: frozenset[str] = frozenset({"mutual", "disabled"}),
) -> endpoint_pb2.ClusterLoadAssignment:
    """The EDS resource of one service port as seen from ``caller``.

    Args:
        include_tls_mode: which workloads to include (proxyless gRPC cannot reach sidecars).

    Returns:
        A ClusterLoadAssignment named ``port.cluster_name``; localities sorted by
        (priority, locality), endpoints by workload name.
    """
    by_locality: dict[Locality, list[tuple[WorkloadEntry, int, Health]]] = defaultdict(list)
    for w in state.by_service(port.namespace, port.service):
        wp = next((p for p in w.spec.ports if p.name == port.port_name), None)
        if wp is None or w.spec.tls_mode not in include_tls_mode:
            continue
        by_locality[w.locality].append((w, wp.app_port, state.health_of(w.key)))
    groups = [
        LocalityGroup(
            loc,
            healthy=sum(1 for _, _, h in members if h.serving),
            capacity=sum(w.spec.weight for w, _, h in members if h.serving),
        )
        for loc, members in by_locality.items()
    ]
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=port.cluster_name)
    for decision in assign_priorities(caller, groups):
        loc = decision.locality
        members = sorted(by_locality[loc], key=lambda m: m[0].metadata.name)
        cla.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region=loc.region, zone=loc.zone, sub_zone=loc.sub_zone),
                priority=decision.priority,
                load_balancing_weight=wrappers_pb2.UInt32Value(value=decision.weight),
                lb_endpoints=[_lb_endpoint(w, p, h) for w, p, h in members],
            )
        )
    return cla
