"""EDS: ``ClusterLoadAssignment`` per service port, with locality priorities and weights.

Priorities and weights come from :func:`federation.lb.locality.assign_priorities` for the
calling proxy's locality. Endpoint health is the control plane's probe result
(``LbEndpoint.health_status``); endpoints behind a sidecar (tlsMode mutual) are addressed at
the sidecar's inbound port and carry ``envoy.transport_socket_match: {tlsMode: mutual}`` so the
cluster picks its mTLS transport socket for them.
"""

from __future__ import annotations

import ipaddress
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


def _remote_endpoint(
    host: str, port: int, weight: int, healthy: bool
) -> endpoint_components_pb2.LbEndpoint:
    metadata = base_pb2.Metadata()
    match = struct_pb2.Struct()
    match.update({"tlsMode": "mutual"})
    metadata.filter_metadata[TLS_MATCH_KEY].CopyFrom(match)
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=host, port_value=port)
            ),
        ),
        health_status=_HEALTH[Health.HEALTHY if healthy else Health.UNHEALTHY],
        load_balancing_weight=wrappers_pb2.UInt32Value(value=max(1, weight)),
        metadata=metadata,
    )


def load_assignment(
    caller: Locality,
    state: RegistryState,
    port: ServicePort,
    *,
    include_tls_mode: frozenset[str] = frozenset({"mutual", "disabled"}),
    include_remote: bool = True,
    cluster_name: str | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints of one service port as seen from ``caller``.

    Local workloads are addressed directly (their sidecar's inbound port for tlsMode mutual);
    each remote cluster of the port's ServiceImport is one endpoint, its east-west gateway,
    weighted by its healthy endpoint count (an IP or a hostname; see
    :func:`has_hostnames`).

    Args:
        include_tls_mode: which local workloads to include (proxyless gRPC cannot reach sidecars).
        include_remote: add remote clusters' gateways (False for the gateway's own cluster).
        cluster_name: name of the assignment (default ``port.cluster_name``).

    Returns:
        A ClusterLoadAssignment; localities sorted by (priority, locality), endpoints by name.
    """
    members_by: dict[Locality, list[tuple[str, endpoint_components_pb2.LbEndpoint, int]]] = (
        defaultdict(list)
    )
    for w in state.by_service(port.namespace, port.service):
        wp = next((p for p in w.spec.ports if p.name == port.port_name), None)
        if wp is None or w.spec.tls_mode not in include_tls_mode:
            continue
        health = state.health_of(w.key)
        weight = w.spec.weight if health.serving else 0
        members_by[w.locality].append(
            (w.metadata.name, _lb_endpoint(w, wp.app_port, health), weight)
        )
    imported = state.imports.get((port.namespace, port.service))
    if include_remote and imported is not None:
        for rc in imported.spec.clusters:
            members_by[Locality.parse(rc.locality)].append(
                (
                    f"~{rc.cluster}",
                    _remote_endpoint(
                        rc.gateway_host, rc.gateway_port, rc.endpoints, rc.endpoints > 0
                    ),
                    rc.endpoints,
                )
            )
    groups = [
        LocalityGroup(
            loc,
            healthy=sum(1 for _, _, w in members if w > 0),
            capacity=sum(w for _, _, w in members),
        )
        for loc, members in members_by.items()
    ]
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name or port.cluster_name)
    for decision in assign_priorities(caller, groups):
        loc = decision.locality
        cla.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region=loc.region, zone=loc.zone, sub_zone=loc.sub_zone),
                priority=decision.priority,
                load_balancing_weight=wrappers_pb2.UInt32Value(value=decision.weight),
                lb_endpoints=[e for _, e, _ in sorted(members_by[loc], key=lambda m: m[0])],
            )
        )
    return cla


def has_hostnames(cla: endpoint_pb2.ClusterLoadAssignment) -> bool:
    """True when an endpoint is addressed by hostname (a cloud load balancer's DNS name).

    EDS endpoints must be IP addresses, so such a service is sent as a STRICT_DNS cluster with
    this assignment inline and Envoy resolves the names itself.
    """
    for locality in cla.endpoints:
        for e in locality.lb_endpoints:
            try:
                ipaddress.ip_address(e.endpoint.address.socket_address.address)
            except ValueError:
                return True
    return False
