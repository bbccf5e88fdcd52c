"""EDS: ``ClusterLoadAssignment`` per service port, with locality priorities and weights.

Priorities and weights come from :func:`federation.lb.decision.decide` for the calling
proxy's locality and cluster, with the service's TrafficPolicy. Endpoint health is the control
plane's probe result (``LbEndpoint.health_status``); endpoints behind a sidecar (tlsMode
mutual) are addressed at the sidecar's inbound port and carry
``envoy.transport_socket_match: {tlsMode: mutual}`` so the cluster picks its mTLS transport
socket for them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from federation.controlplane.generate.services import ServicePort
from federation.controlplane.registry import Health, RegistryState
from federation.lb.decision import Candidate, Choice, PolicyInputs, decide, with_plan
from federation.lb.paths import path_facts, price_tables
from federation.model.locality import Locality
from federation.model.service import RemoteCluster

_HEALTH = {
    Health.UNKNOWN: health_check_pb2.HealthStatus.UNKNOWN,
    Health.HEALTHY: health_check_pb2.HealthStatus.HEALTHY,
    Health.UNHEALTHY: health_check_pb2.HealthStatus.UNHEALTHY,
}
TLS_MATCH_KEY = "envoy.transport_socket_match"


def lb_endpoint(
    address: str,
    port: int,
    *,
    health: Health,
    weight: int,
    tls_mode: str,
    hostname: str = "",
) -> endpoint_components_pb2.LbEndpoint:
    """One ``LbEndpoint``: ``address:port``, its health, weight (>= 1) and
    ``envoy.transport_socket_match: {tlsMode: ...}`` (which transport socket the cluster uses
    for it: mTLS for ``mutual``)."""
    metadata = base_pb2.Metadata()
    match = struct_pb2.Struct()
    match.update({"tlsMode": tls_mode})
    metadata.filter_metadata[TLS_MATCH_KEY].CopyFrom(match)
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=address, port_value=port)
            ),
            hostname=hostname,
        ),
        health_status=_HEALTH[health],
        load_balancing_weight=wrappers_pb2.UInt32Value(value=max(1, weight)),
        metadata=metadata,
    )


def _health(healthy: bool) -> Health:
    return Health.HEALTHY if healthy else Health.UNHEALTHY


Members = dict[tuple[str, Locality], list[tuple[str, endpoint_components_pb2.LbEndpoint]]]


@dataclass(frozen=True, slots=True)
class Placement:
    """The decided priorities of one service port for one caller, and the endpoints of each
    candidate ``(cluster, locality)``."""

    choices: list[Choice]
    members: Members


@dataclass
class _Found:
    """Endpoints found per candidate ``(cluster, locality)``, their serving weights, and
    which candidates are gateway endpoints (each standing for its healthy endpoints' count),
    with the hop named: ``gateway HOST:PORT`` or ``zone gateway HOST:PORT``."""

    members: Members = field(default_factory=lambda: defaultdict(list))
    weights: dict[tuple[str, Locality], list[int]] = field(
        default_factory=lambda: defaultdict(list)
    )
    via_gateway: dict[tuple[str, Locality], list[str]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(
        self,
        key: tuple[str, Locality],
        name: str,
        endpoint: endpoint_components_pb2.LbEndpoint,
        weight: int,
    ) -> None:
        self.members[key].append((name, endpoint))
        self.weights[key].append(weight)


def _add_local(
    found: _Found,
    caller_cluster: str,
    state: RegistryState,
    port: ServicePort,
    include_tls_mode: frozenset[str],
    labels: Mapping[str, str] | None,
) -> None:
    """This cluster's workloads of ``port`` (those carrying every label of ``labels``)."""
    for w in state.by_service(port.namespace, port.service):
        wp = next((p for p in w.spec.ports if p.name == port.port_name), None)
        if wp is None or w.spec.tls_mode not in include_tls_mode:
            continue
        if labels and not all(w.metadata.labels.get(k) == v for k, v in labels.items()):
            continue
        health = state.health_of(w.key)
        target = w.spec.inbound_port if w.spec.tls_mode == "mutual" else wp.app_port
        endpoint = lb_endpoint(
            w.spec.address,
            target,
            health=health,
            weight=w.spec.weight,
            tls_mode=w.spec.tls_mode,
            hostname=w.metadata.name,
        )
        found.add(
            (caller_cluster, w.locality),
            w.metadata.name,
            endpoint,
            w.spec.weight if health.serving else 0,
        )


def _add_remote(
    found: _Found,
    rc: RemoteCluster,
    port: ServicePort,
    include_tls_mode: frozenset[str],
    labels: Mapping[str, str] | None,
    *,
    gateways: bool,
) -> None:
    """A remote cluster of the port's ServiceImport: its endpoints dialled directly (same
    network, no subset), else (unless ``gateways`` is False) each of its zone-local gateways
    at its zone, weighted by the zone's healthy endpoints, and its east-west gateway at the
    cluster's locality for the endpoints of the zones without one.

    A gateway that stands for no healthy endpoint is left out rather than sent UNHEALTHY:
    Envoy health-checks every host it holds, and a check through a gateway to a service
    with no endpoint there fails every ``unhealthy_interval`` (250 ms) from every caller;
    when the endpoints come back, the gateway returns as a new host, checked at once
    (:func:`federation.controlplane.generate.clusters.default_health_check`), instead of at its
    next failed check's retry."""
    where = Locality.parse(rc.locality)
    if rc.direct_endpoints is not None and not labels:  # same network: dial directly
        for i, e in enumerate(rc.direct_endpoints):
            dial = e.ports.get(port.port_name)
            if dial is None or e.tls_mode not in include_tls_mode:
                continue
            endpoint = lb_endpoint(
                e.address, dial, health=_health(e.healthy), weight=e.weight, tls_mode=e.tls_mode
            )
            key = (rc.cluster, Locality(where.region, e.zone or where.zone))
            found.add(key, f"~{rc.cluster}~{i:05d}", endpoint, e.weight if e.healthy else 0)
    elif gateways:
        covered = 0
        for zg in rc.zone_gateways:  # a zone with a gateway of its own: a locality of its own
            if zg.endpoints == 0:
                continue
            key = (rc.cluster, Locality(where.region, zg.zone))
            found.via_gateway[key].append(f"zone gateway {zg.gateway}")
            endpoint = lb_endpoint(
                zg.gateway_host,
                zg.gateway_port,
                health=_health(zg.endpoints > 0),
                weight=zg.endpoints,
                tls_mode="mutual",
            )
            found.add(key, f"~{rc.cluster}~{zg.zone}", endpoint, zg.endpoints)
            covered += zg.endpoints
        rest = max(0, rc.endpoints - covered)  # the zones without one: the cluster's gateway
        if rest == 0:
            return
        key = (rc.cluster, where)
        found.via_gateway[key].append(f"gateway {rc.gateway}")
        endpoint = lb_endpoint(
            rc.gateway_host,
            rc.gateway_port,
            health=_health(rest > 0),
            weight=rest,
            tls_mode="mutual",
        )
        found.add(key, f"~{rc.cluster}", endpoint, rest)


def serving_clusters(
    caller: Locality,
    caller_cluster: str,
    state: RegistryState,
    port: ServicePort,
    placed: Placement,
) -> dict[str, list[float | None]]:
    """The clusters that serve ``port``, each with the round trips (ms; None: unknown) to
    where it serves it: the candidates endpoints were found in, and every exporter its
    ServiceImport lists (and this cluster, for a local or retained service) with none found,
    at its locality -- a cluster whose endpoints are all gone or unhealthy still serves the
    port: its per-cluster subset and the PING timeout made from these round trips
    (:func:`federation.controlplane.generate.clusters.keepalive_timeout_ms`) stay as they
    were, so its endpoints' return is an EDS change, not a cluster to warm again."""
    serving: dict[str, list[float | None]] = {}
    for choice in placed.choices:
        serving.setdefault(choice.candidate.cluster, []).append(choice.candidate.rtt_ms)
    imported = state.imports.get((port.namespace, port.service))
    absent = [
        (rc.cluster, Locality.parse(rc.locality), state.rtt_ms.get(rc.cluster))
        for rc in (imported.spec.clusters if imported is not None else [])
        if rc.cluster not in serving and rc.cluster != caller_cluster
    ]
    if (port.local or port.retained) and caller_cluster not in serving:
        absent.append((caller_cluster, caller, None))
    for cluster, where, measured in absent:
        serving[cluster] = [path_facts(caller, where, measured_rtt_ms=measured).rtt_ms]
    return serving


def _candidates(
    found: _Found, caller: Locality, caller_cluster: str, state: RegistryState
) -> list[Candidate]:
    """One :class:`Candidate` per ``(cluster, locality)`` found, priced and timed."""
    prices = price_tables(state.price_tables.values())
    candidates = []
    for (cluster, loc), ws in sorted(
        found.weights.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))
    ):
        facts = path_facts(
            caller,
            loc,
            measured_rtt_ms=state.rtt_ms.get(cluster) if cluster != caller_cluster else None,
            prices=prices,
        )
        via = found.via_gateway.get((cluster, loc), [])
        if via:  # gateway endpoints, each standing for its zone's or cluster's endpoints
            healthy, total = sum(ws), max(sum(ws), 1)
        else:
            healthy, total = sum(1 for x in ws if x > 0), len(ws)
        candidates.append(
            Candidate(
                cluster=cluster,
                locality=loc,
                healthy=healthy,
                total=total,
                capacity=sum(ws),
                rtt_ms=facts.rtt_ms,
                rtt_source=facts.rtt_source,
                usd_per_gb=facts.usd_per_gb,
                path=facts.path,
                via=", ".join(via),
            )
        )
    return candidates


def placement(
    caller: Locality,
    caller_cluster: str,
    state: RegistryState,
    port: ServicePort,
    *,
    include_tls_mode: frozenset[str] = frozenset({"mutual", "disabled"}),
    include_remote: bool = True,
    gateways: bool = True,
    labels: Mapping[str, str] | None = None,
    only_cluster: str | None = None,
    by_locality: bool = False,
) -> Placement:
    """Candidates of one service port, priced and timed (:func:`federation.lb.paths.path_facts`:
    US$/GB of the path, RTT measured by the control plane, else estimated) and decided
    (:func:`federation.lb.decision.decide` with the service's TrafficPolicy; in cost mode
    ``optimize`` the controller's plan for the caller's locality, if there is one, at
    priority 0: :func:`federation.lb.decision.with_plan`).

    Local workloads are addressed directly (their sidecar's inbound port for tlsMode mutual);
    so are the endpoints of remote clusters on the same network (``directEndpoints``); each
    other remote cluster of the port's ServiceImport is one endpoint, its east-west gateway,
    weighted by its healthy endpoint count (left out with ``gateways=False``: proxyless gRPC
    cannot carry mTLS through a gateway).

    A subset (``labels``): only local workloads carrying every label, and every remote cluster
    through its gateway -- even on the same network, whose endpoints' labels are not known
    here -- where the subset's SNI (``port.subset``) picks its workloads. ``only_cluster``:
    that member cluster's candidates only. ``by_locality``: a zone-local gateway's, whose
    callers elsewhere already picked its zone: ``caller``'s zone alone while it has a healthy
    endpoint (:func:`own_zone_only`), else plain locality failover, whatever the service's
    TrafficPolicy distributes or plans.
    """
    found = _Found()
    if only_cluster is None or only_cluster == caller_cluster:
        _add_local(found, caller_cluster, state, port, include_tls_mode, labels)
    imported = state.imports.get((port.namespace, port.service))
    for rc in imported.spec.clusters if include_remote and imported is not None else []:
        if only_cluster is None or rc.cluster == only_cluster:
            _add_remote(found, rc, port, include_tls_mode, labels, gateways=gateways)
    candidates = _candidates(found, caller, caller_cluster, state)
    policy = state.policies.get((port.namespace, port.service))
    inputs = PolicyInputs.from_policy(None if by_locality else policy)
    choices = decide(caller, caller_cluster, candidates, inputs)
    plan = None if by_locality else state.plans.get((port.namespace, port.service, str(caller)))
    if inputs.mode == "optimize" and plan is not None:
        choices = with_plan(choices, [(c, Locality.parse(loc), s) for c, loc, s in plan.shares])
    if by_locality:
        choices = own_zone_only(choices, caller)
    return Placement(choices, dict(found.members))


def own_zone_only(choices: list[Choice], zone: Locality) -> list[Choice]:
    """A zone-local gateway's choices: those in ``zone`` while one of them has a healthy
    endpoint, else all of them (the other zones by locality failover). Not the other zones
    at a lower priority: when endpoints of both pass their first health check in one round,
    Envoy 1.40's load balancer kept choosing priority 1 for about a second though priority 0
    was healthy, and a caller's pooled connection the gateway forwarded then crossed zones
    for as long as it lived (seen in tests/integration/test_zone_gateways.py)."""
    own = [c for c in choices if c.locality == zone and c.candidate.healthy > 0]
    if not own:
        return choices
    return [
        Choice(c.candidate, 0, c.weight, f"zone-local gateway: its zone only; {c.reason}")
        for c in choices
        if c.locality == zone
    ]


def prefer_cluster(choices: list[Choice], cluster: str) -> list[Choice]:
    """Choices for a ``split`` subset: ``cluster``'s healthy localities first (in their
    decided order), then everything else in its decided order -- the subset's share fails
    over by the locality rules when ``cluster`` has no healthy endpoint."""
    first = [c for c in choices if c.candidate.cluster == cluster and c.candidate.healthy > 0]
    rest = [c for c in choices if c not in first]
    first_levels = sorted({c.priority for c in first})
    rest_levels = sorted({c.priority for c in rest})
    out = [
        Choice(
            c.candidate, first_levels.index(c.priority), c.weight, f"split {cluster}; {c.reason}"
        )
        for c in first
    ]
    out += [
        Choice(c.candidate, len(first_levels) + rest_levels.index(c.priority), c.weight, c.reason)
        for c in rest
    ]
    return out


def assignment(
    name: str, choices: list[Choice], members: Members
) -> endpoint_pb2.ClusterLoadAssignment:
    """The ClusterLoadAssignment for ``choices``: localities by (priority, locality),
    endpoints by name."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for choice in sorted(choices, key=lambda c: (c.priority, str(c.locality), c.candidate.cluster)):
        loc = choice.locality
        cla.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region=loc.region, zone=loc.zone, sub_zone=loc.sub_zone),
                priority=choice.priority,
                load_balancing_weight=wrappers_pb2.UInt32Value(value=choice.weight),
                lb_endpoints=[
                    e
                    for _, e in sorted(members[(choice.candidate.cluster, loc)], key=lambda m: m[0])
                ],
            )
        )
    return cla


def load_assignment(
    caller: Locality,
    state: RegistryState,
    port: ServicePort,
    *,
    caller_cluster: str = "",
    include_tls_mode: frozenset[str] = frozenset({"mutual", "disabled"}),
    include_remote: bool = True,
    cluster_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    by_locality: bool = False,
) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints of one service port as seen from ``caller`` (see :func:`placement`,
    which ``by_locality`` is passed to).

    Args:
        include_tls_mode: which local workloads to include (a gRPC cluster has one transport
            socket: mTLS to sidecars or plain text, not both).
        include_remote: add remote clusters' gateways (False for the gateway's own cluster).
        cluster_name: name of the assignment (default ``port.cluster_name``).
        labels: a subset's labels (only workloads carrying all of them).
    """
    placed = placement(
        caller,
        caller_cluster,
        state,
        port,
        include_tls_mode=include_tls_mode,
        include_remote=include_remote,
        labels=labels,
        by_locality=by_locality,
    )
    return assignment(cluster_name or port.cluster_name, placed.choices, placed.members)


def has_hostnames(cla: endpoint_pb2.ClusterLoadAssignment) -> bool:
    """True when an endpoint is addressed by hostname (a cloud load balancer's DNS name).

    EDS endpoints must be IP addresses, so such a service is sent as a STRICT_DNS cluster with
    this assignment inline and Envoy resolves the names itself.
    """
    return any(
        not _is_ip(e.endpoint.address.socket_address.address)
        for locality in cla.endpoints
        for e in locality.lb_endpoints
    )


@functools.lru_cache(maxsize=65536)
def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
