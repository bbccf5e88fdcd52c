"""Everything one proxy needs, by role: ``generate(mesh, state, proxy)``.

Returns a mapping type URL -> list of resources, ready for a :class:`Snapshot`. Pure.
No secret is ever among them: sidecars read their SVID and the trust bundle from files their
agent keeps (file-based SDS, :class:`~federation.controlplane.generate.common.ProxyTls`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from google.protobuf.message import Message

from federation.controlplane import resource
from federation.controlplane.generate import (
    capture,
    clusters,
    endpoints,
    external,
    http_routes,
    listeners,
    rbac,
    routes,
    tracing,
)
from federation.controlplane.generate.common import MeshContext, ProxyTls
from federation.controlplane.generate.context import PushContext
from federation.controlplane.generate.gateway import PassthroughRoute, gateway_listener
from federation.controlplane.generate.services import ServicePort
from federation.controlplane.registry import RegistryState
from federation.lb.decision import spill_for_grpc
from federation.model.istio_sidecar import IstioSidecar, host_in_scope, in_scope
from federation.model.locality import Locality
from federation.model.policy import TrafficPolicy
from federation.model.service_entry import ServiceEntry, entry_addresses
from federation.model.workload import WorkloadEntry
from federation.sync.node import ProxyDescription

Resources = dict[str, list[Message]]


def grpc_tls_mode(state: RegistryState, port: ServicePort) -> str:
    """What a proxyless gRPC client of ``port`` speaks to its endpoints: ``mutual`` (mTLS to
    sidecars, :func:`clusters.grpc_upstream_tls`) when any local workload of the service is
    behind a sidecar, else ``disabled``; from the imported endpoints' modes when it has no
    local workload. One cluster has one transport socket in gRPC (no
    ``transport_socket_matches``), so endpoints of the other mode are left out."""
    local = {w.spec.tls_mode for w in state.by_service(port.namespace, port.service)}
    return "mutual" if "mutual" in (local or port.tls_modes) else "disabled"


def caller_locality(mesh: MeshContext, state: RegistryState, proxy: ProxyDescription) -> Locality:
    """The proxy's locality: its node locality, else its workload's, else the cluster's."""
    if proxy.locality is not None:
        return proxy.locality
    workload = state.workloads.get((proxy.namespace, proxy.workload))
    return workload.locality if workload is not None else mesh.locality


def own_workload_view(state: RegistryState, proxy: ProxyDescription) -> str | None:
    """What of the proxy's own WorkloadEntry (``proxy.workload`` in its namespace) its
    resources depend on, as canonical JSON; None when it has none. Everything but the
    entry's name -- and, for a sidecar whose pod captures, its address: that inbound
    listener binds the wildcard (:func:`listeners.inbound_bind_address`) and nothing else
    of a sidecar names its own address. Replicas of one workload that differ only there
    share one snapshot (:func:`federation.controlplane.builder.proxy_class`). Pure."""
    workload = state.workloads.get((proxy.namespace, proxy.workload)) if proxy.workload else None
    if workload is None:
        return None
    unread = {"address"} if proxy.role == "sidecar" and proxy.capture else set()
    return workload.model_dump_json(exclude={"metadata": {"name"}, "spec": unread})


def split_subsets(
    port: ServicePort, policy: TrafficPolicy | None, serving: Iterable[str] = ()
) -> list[tuple[str, str, int]]:
    """``[(cluster, subset cluster name, percent)]`` by cluster name: one per cluster of the
    TrafficPolicy ``split`` (its percent) or named by its ``http`` routes' destinations and
    mirrors, and, when several clusters serve the port, one per ``serving`` cluster too
    (percent 0 unless split).

    The subset is named ``outbound|<port>|<cluster>|<host>`` (Istio's subset naming). Subsets
    of serving clusters exist before any policy names them -- make-before-break: a ``split``
    then changes only the route, which never points at a cluster Envoy is still warming (an
    ``NC``, no-cluster, 503).
    """
    split = dict(policy.spec.split) if policy is not None and policy.spec.split else {}
    routed = policy.spec.destination_clusters() if policy is not None else set()
    names = set(split) | routed | (set(serving) if len(set(serving)) > 1 else set())
    return [
        (cluster, f"outbound|{port.port}|{cluster}|{port.hostname}", split.get(cluster, 0))
        for cluster in sorted(names)
    ]


@dataclass(frozen=True, slots=True)
class OutboundTarget:
    """One outbound cluster of a service port: its name, its endpoints, and whether they go
    inline in a STRICT_DNS cluster (an endpoint named by hostname) instead of EDS."""

    name: str
    assignment: endpoint_pb2.ClusterLoadAssignment
    inline: bool
    subset_port: ServicePort | None = None  # a label subset's: its SNI names the subset


@dataclass(frozen=True, slots=True)
class OutboundPort:
    """Everything about one service port (HTTP, or TCP for sidecars' upstreams) that a
    sidecar's outbound side needs and that depends only on the caller's locality (not on the
    proxy): the decided endpoints of the port's cluster, of its per-cluster subsets and of
    its routes' label subsets, the TrafficPolicy, the candidates' RTTs, and
    ``destinations``: each route destination's ``(cluster, subset)`` -> its Envoy cluster.
    Sidecars of one locality share it (:func:`outbound_of`); the assignments are never
    modified after they are built."""

    port: ServicePort
    policy: TrafficPolicy | None
    subsets: list[tuple[str, str, int]]
    rtts_ms: list[float | None]
    targets: list[OutboundTarget]
    destinations: dict[tuple[str | None, str | None], str]


def outbound_ports(
    mesh: MeshContext, state: RegistryState, caller: Locality, ports: list[ServicePort]
) -> list[OutboundPort]:
    """The :class:`OutboundPort` of every port in ``ports`` (HTTP, and TCP ones for sidecars'
    upstreams) for a caller in ``caller``."""
    out = []
    for port in ports:
        policy = state.policies.get((port.namespace, port.service))
        placed = endpoints.placement(caller, mesh.cluster, state, port)
        serving = endpoints.serving_clusters(caller, mesh.cluster, state, port, placed)
        subsets = split_subsets(port, policy, serving)
        choices = [(port.cluster_name, placed.choices)] + [
            (name, endpoints.prefer_cluster(placed.choices, cluster))
            for cluster, name, _ in subsets
        ]
        targets = []
        for name, chosen in choices:
            cla = endpoints.assignment(name, chosen, placed.members)
            targets.append(OutboundTarget(name, cla, endpoints.has_hostnames(cla)))
        destinations: dict[tuple[str | None, str | None], str] = {
            (cluster, None): name for cluster, name, _ in subsets
        }
        for key, target in label_subsets(mesh, state, caller, port, policy):
            destinations[key] = target.name
            targets.append(target)
        rtts = [rtt for found in serving.values() for rtt in found]
        out.append(OutboundPort(port, policy, subsets, rtts, targets, destinations))
    return out


def label_subsets(
    mesh: MeshContext,
    state: RegistryState,
    caller: Locality,
    port: ServicePort,
    policy: TrafficPolicy | None,
) -> list[tuple[tuple[str | None, str | None], OutboundTarget]]:
    """One outbound target per ``(cluster, subset)`` destination of the policy's routes
    (``outbound|<port>|<subset>@<cluster or *>|<host>``): the subset's workloads, local ones
    picked by label, remote ones through their gateways with the subset's SNI
    (:func:`endpoints.placement` with ``labels``)."""
    if policy is None:
        return []
    labels = {s.name: s.labels for s in policy.spec.subsets}
    out = []
    for d in policy.spec.destinations():
        if d.subset is None:
            continue
        sub = replace(port, subset=d.subset)
        placed = endpoints.placement(
            caller, mesh.cluster, state, sub, labels=labels[d.subset], only_cluster=d.cluster
        )
        name = port.subset_cluster_name(d.subset, d.cluster)
        cla = endpoints.assignment(name, placed.choices, placed.members)
        out.append((d.key(), OutboundTarget(name, cla, endpoints.has_hostnames(cla), sub)))
    return out


def outbound_of(ctx: PushContext, key: tuple[str, str], caller: Locality) -> list[OutboundPort]:
    """:func:`outbound_ports` of service ``key``'s ports for a caller in ``caller``, decided
    once per service, caller locality and version (a rebuild of N sidecars in K localities
    decides K times, not N; a service the change did not touch is not decided again)."""
    return ctx.memo(
        "outbound",
        key,
        caller,
        lambda: outbound_ports(ctx.mesh, ctx.state, caller, ctx.ports_of(key)),
    )


SidecarPart = tuple[list[Message], list[Message], dict[str, list[Message]]]


def _sidecar_outbound(mesh: MeshContext, tls: ProxyTls, plans: list[OutboundPort]) -> SidecarPart:
    """What one service's ports add to a sidecar: clusters, EDS assignments, and the routes
    of its HTTP ports that have a TrafficPolicy (by ``port.cluster_name``)."""
    found: list[Message] = []
    assignments: list[Message] = []
    port_routes: dict[str, list[Message]] = {}
    for plan in plans:
        port, policy = plan.port, plan.policy
        for target in plan.targets:
            found.append(
                clusters.outbound_cluster(
                    target.subset_port or port,
                    tls,
                    inline_dns=target.assignment if target.inline else None,
                    name=target.name,
                    policy=_subset_policy(policy, target.subset_port),
                    rtts_ms=plan.rtts_ms,
                )
            )
            if not target.inline:
                assignments.append(target.assignment)
        if policy is not None and port.is_http:
            default = routes.split_action(
                port, [(name, weight) for _, name, weight in plan.subsets], policy
            )
            port_routes[port.cluster_name] = http_routes.policy_routes(
                port, policy, mesh.cluster, plan.destinations, default
            )
    return found, assignments, port_routes


def _sidecar(ctx: PushContext, proxy: ProxyDescription) -> Resources:
    mesh, state, ports = ctx.mesh, ctx.state, ctx.ports
    if not proxy.identity_dir.startswith("/"):
        raise ValueError(
            f"sidecar {proxy.node_id}: meshfed.io/identity_dir must be the absolute path of its"
            " identity directory (run it with 'meshfed proxy sidecar')"
        )
    tls = ProxyTls(mesh.trust_domain, proxy.envoy_path(proxy.identity_dir), state.federated_domains)
    out: Resources = {t: [] for t in resource.PUSH_ORDER}
    scope = state.egress_scope(proxy.namespace, proxy.workload)
    keys = _visible_services(ctx, scope, proxy.namespace)
    seen = set(keys)
    ports = [p for p in ports if (p.namespace, p.service) in seen]
    http_ports = [p for p in ports if p.is_http]
    port_routes: dict[str, list[Message]] = {}
    caller = caller_locality(mesh, state, proxy)
    plans = [plan for key in keys for plan in outbound_of(ctx, key, caller)]
    for key in keys:
        found, assignments, routed = ctx.memo(
            "sidecar",
            key,
            (caller, tls.identity_dir),
            lambda key=key: _sidecar_outbound(mesh, tls, outbound_of(ctx, key, caller)),  # type: ignore[misc]
        )
        out[resource.CLUSTER] += found
        out[resource.ENDPOINT] += assignments
        port_routes.update(routed)
    workload = state.workloads.get((proxy.namespace, proxy.workload))
    traced = tracing.hcm_tracing(
        mesh,
        f"{workload.spec.service if workload else proxy.service_account}.{proxy.namespace}",
    )
    collector = tracing.collector_cluster(mesh)
    if collector is not None:
        out[resource.CLUSTER].append(collector)
    source = f"{mesh.cluster}/{caller}"
    telemetry = (
        listeners.traffic_log(proxy.envoy_path(proxy.traffic_log))
        if mesh.telemetry and proxy.traffic_log.startswith("/")
        else None
    )
    entries = _visible_entries(state, scope, proxy.namespace, {p.hostname for p in ctx.ports})
    if proxy.capture:
        addresses = entry_addresses(state.service_entries.values())
        entry_ports = sorted(
            {(p.number, addresses[h.lower()]) for e in entries for h in e.spec.hosts
             for p in e.spec.ports}
        )  # fmt: skip
        out[resource.LISTENER].append(
            capture.capture_listener(
                proxy.outbound_port,
                ports,
                {p.port.cluster_name: _tcp_targets(mesh, p) for p in plans if not p.port.is_http},
                entry_ports=entry_ports,
                policy=proxy.outbound_traffic_policy,
                source=source,
                tracing=traced,
                telemetry=telemetry,
            )
        )
        out[resource.CLUSTER] += capture.catch_all_clusters()
    else:
        out[resource.LISTENER].append(
            listeners.outbound_listener(proxy.outbound_port, source, traced, telemetry)
        )
    for scoped in entries:
        out[resource.CLUSTER] += external.entry_clusters(scoped, tls)
    out[resource.ROUTE].append(
        ctx.carried(
            "outbound routes",
            (proxy.namespace, id(scope)),
            (tuple(http_ports), proxy.namespace, tuple(port_routes.items()), tuple(entries)),
            lambda: _outbound_routes(http_ports, proxy.namespace, port_routes, entries),
        )
    )
    out[resource.LISTENER].extend(_tcp_upstreams(mesh, proxy, plans, source))
    if workload is not None:
        inbound_clusters, inbound = _sidecar_inbound(ctx, proxy, workload, ports, tls, traced)
        out[resource.CLUSTER] += inbound_clusters
        out[resource.LISTENER].append(inbound)
    return out


def _sidecar_inbound(
    ctx: PushContext,
    proxy: ProxyDescription,
    workload: WorkloadEntry,
    ports: list[ServicePort],
    tls: ProxyTls,
    traced: Message | None,
) -> tuple[list[Message], Message]:
    """A sidecar's inbound side: a cluster per port of its app, and its inbound listener."""
    mesh, state = ctx.mesh, ctx.state
    own = [
        p
        for p in ports
        if p.namespace == workload.metadata.namespace and p.service == workload.spec.service
    ]
    app = [
        clusters.inbound_cluster(wp.name, wp.app_port, wp.protocol) for wp in workload.spec.ports
    ]
    served_by = f"{mesh.cluster}/{workload.locality.zone or workload.locality.region}"
    listener = listeners.inbound_listener(
        workload,
        own,
        tls,
        served_by,
        state.authorization_policies_for(workload),
        traced,
        member_of(state, workload),
        captured=proxy.capture,
        mtls_modes=state.mtls_modes(workload),
    )
    return app, listener


def _outbound_routes(
    http_ports: list[ServicePort],
    namespace: str,
    port_routes: dict[str, list[Message]],
    entries: list[ServiceEntry],
) -> Message:
    """The sidecar's ``outbound`` RouteConfiguration: its services' virtual hosts, then its
    ServiceEntries' (:func:`routes.outbound_route_config`)."""
    config = routes.outbound_route_config(http_ports, namespace, port_routes)
    for scoped in entries:
        config.virtual_hosts.extend(external.entry_virtual_hosts(scoped))
    return config  # type: ignore[no-any-return]


def _visible_services(
    ctx: PushContext, scope: IstioSidecar | None, namespace: str
) -> list[tuple[str, str]]:
    """The services a sidecar of ``namespace`` is sent: those its Istio Sidecar resource's
    egress hosts (``scope``) name, of those the ones whose Service's
    ``networking.istio.io/exportTo`` admits ``namespace``."""
    return [
        k
        for k in ctx.inputs
        if in_scope(scope, namespace, k) and ctx.state.visible_to(k, namespace)
    ]


def _visible_entries(
    state: RegistryState, scope: IstioSidecar | None, namespace: str, mesh_hosts: set[str]
) -> list[ServiceEntry]:
    """The ServiceEntries a sidecar of ``namespace`` sees, each with only the hosts its
    Sidecar's egress ``scope`` allows (none left: not seen). A host that is a service of this
    mesh (``mesh_hosts``; a MESH_INTERNAL entry may name one) is left to the mesh: two
    routes for one host would have Envoy refuse the whole route configuration."""
    out = []
    for entry in sorted(state.service_entries.values(), key=lambda e: e.key):
        visible = [
            h for h in entry.spec.hosts
            if host_in_scope(scope, namespace, entry.metadata.namespace, h)
            and h not in mesh_hosts
        ]  # fmt: skip
        if visible:
            spec = entry.spec.model_copy(update={"hosts": visible})
            out.append(entry.model_copy(update={"spec": spec}))
    return out


def _subset_policy(
    policy: TrafficPolicy | None, subset_port: ServicePort | None
) -> TrafficPolicy | None:
    """The policy a subset's cluster is built from: its ``trafficPolicy`` overrides."""
    if policy is None or subset_port is None:
        return policy
    return policy.model_copy(update={"spec": policy.spec.for_subset(subset_port.subset)})


def _tcp_upstreams(
    mesh: MeshContext, proxy: ProxyDescription, plans: list[OutboundPort], source: str
) -> list[listener_pb2.Listener]:
    """A loopback listener per ``--upstream`` of the sidecar whose service port is known and
    TCP (others wait until the service is imported: a listener must not name a cluster that
    does not exist)."""
    by_port = {(p.port.namespace, p.port.service, p.port.port): p for p in plans}
    out = []
    for up in proxy.upstreams:
        plan = by_port.get((up.namespace, up.service, up.port))
        if plan is None or plan.port.protocol != "tcp":
            continue
        out.append(
            listeners.outbound_tcp_listener(
                up.local_port,
                f"{up.service}_{up.namespace}_{up.port}",
                _tcp_targets(mesh, plan),
                source,
            )
        )
    return out


def _tcp_targets(mesh: MeshContext, plan: OutboundPort) -> list[tuple[str, int]]:
    """``[(Envoy cluster, weight)]`` of a TCP port: its policy's ``tcp`` routes, else its
    split, else the whole service (:func:`http_routes.tcp_clusters`)."""
    split = [(name, weight) for _, name, weight in plan.subsets]
    return http_routes.tcp_clusters(plan.port, plan.policy, mesh.cluster, plan.destinations, split)


def member_of(state: RegistryState, workload: WorkloadEntry) -> list[str]:
    """The subsets of its service's TrafficPolicy whose labels ``workload`` carries."""
    policy = state.policies.get((workload.metadata.namespace, workload.spec.service))
    labels = workload.metadata.labels
    return [
        s.name
        for s in (policy.spec.subsets if policy is not None else [])
        if all(labels.get(k) == v for k, v in s.labels.items())
    ]


def _grpc(ctx: PushContext, proxy: ProxyDescription) -> Resources:
    mesh, state = ctx.mesh, ctx.state
    out: Resources = {t: [] for t in resource.PUSH_ORDER}
    caller = caller_locality(mesh, state, proxy)
    for key in ctx.inputs:
        part = ctx.memo(
            "grpc",
            key,
            caller,
            lambda key=key: _grpc_service(mesh, state, caller, ctx.ports_of(key)),  # type: ignore[misc]
        )
        for type_url, items in part.items():
            out[type_url] += items
    out[resource.LISTENER].extend(_grpc_server_listeners(state, proxy))
    return out


def _grpc_service(
    mesh: MeshContext, state: RegistryState, caller: Locality, ports: list[ServicePort]
) -> Resources:
    """What one service's HTTP ports add to a proxyless gRPC client in ``caller``."""
    out: Resources = {t: [] for t in resource.PUSH_ORDER}
    defaults: set[tuple[str, str]] = set()
    for port in ports:
        if not port.is_http:
            continue
        policy = state.policies.get((port.namespace, port.service))
        mode = grpc_tls_mode(state, port)
        placed = endpoints.placement(
            caller,
            mesh.cluster,
            state,
            port,
            include_tls_mode=frozenset({mode}),
            gateways=False,
        )
        subsets = split_subsets(port, policy)
        targets = [(port.cluster_name, placed.choices)] + [
            (name, endpoints.prefer_cluster(placed.choices, cluster))
            for cluster, name, _ in subsets
        ]
        for name, choices in targets:
            out[resource.CLUSTER].append(
                clusters.grpc_cluster(
                    port,
                    name,
                    mtls_trust_domain=mesh.trust_domain if mode == "mutual" else None,
                )
            )
            # gRPC ignores the overprovisioning factor: spill weight ourselves
            out[resource.ENDPOINT].append(
                endpoints.assignment(name, spill_for_grpc(choices), placed.members)
            )
        variants = [True]
        if (port.namespace, port.service) not in defaults:
            defaults.add((port.namespace, port.service))
            variants.append(False)
        weights = [(name, weight) for _, name, weight in subsets]
        policy_routes = (
            http_routes.grpc_routes(
                port,
                policy,
                mesh.cluster,
                {(c, None): name for c, name, _ in subsets},
                routes.grpc_default_action(port, weights),
            )
            if policy is not None and policy.spec.http
            else []
        )
        for with_port in variants:
            out[resource.LISTENER].append(listeners.grpc_listener(port, with_port=with_port))
            out[resource.ROUTE].append(
                routes.grpc_route_config(
                    port, with_port=with_port, subsets=weights, routes=policy_routes
                )
            )
    return out


def _grpc_server_listeners(
    state: RegistryState, proxy: ProxyDescription
) -> list[listener_pb2.Listener]:
    """The Listeners of a proxyless gRPC server (its node names its WorkloadEntry, which
    must run as the node's service account): tlsMode ``mutual`` -- one listener on the
    inbound port, where callers dial it, mTLS and the AuthorizationPolicies that select it
    (gRPC's RBAC, :func:`rbac.grpc_rbac_filters`; plain text when every port's mTLS mode --
    PeerAuthentication or mtlsMode -- is DISABLE);
    ``disabled`` -- plain text, as its callers dial it, one per target port, with the same
    RBAC (which no principal can pass without mTLS)."""
    workload = state.workloads.get((proxy.namespace, proxy.workload)) if proxy.workload else None
    if workload is None or workload.spec.service_account != proxy.service_account:
        return []
    authz = state.authorization_policies_for(workload)
    wps = workload.spec.ports
    if workload.spec.tls_mode == "mutual":
        ports = [n for wp in wps for n in (wp.port, wp.app_port)]
        return [
            listeners.grpc_server_listener(
                workload,
                wps[0].name,
                workload.spec.inbound_port,
                rbac.grpc_rbac_filters(authz, ports),
                # gRPC cannot tell TLS from plain text on one port: DISABLE on every port
                # serves plain text, anything else mTLS
                mtls=set(state.mtls_modes(workload).values()) != {"DISABLE"},
            )
        ]
    return [
        listeners.grpc_server_listener(
            workload,
            wp.name,
            wp.app_port,
            rbac.grpc_rbac_filters(authz, (wp.port, wp.app_port)),
            mtls=False,
        )
        for wp in wps
    ]


def _gateway(ctx: PushContext, proxy: ProxyDescription) -> Resources:
    mesh, state = ctx.mesh, ctx.state
    out: Resources = {t: [] for t in resource.PUSH_ORDER}
    host, _, port_text = proxy.listen.rpartition(":")
    if not host or not port_text.isdigit():
        raise ValueError(f"gateway {proxy.node_id}: meshfed.io/listen must be HOST:PORT")
    caller = caller_locality(mesh, state, proxy)
    routes: list[PassthroughRoute] = []
    for key in ctx.inputs:
        found, assignments, passthrough = ctx.memo(
            "gateway",
            key,
            (caller, proxy.zone_local),
            lambda key=key: _gateway_service(  # type: ignore[misc]
                state, caller, ctx.ports_of(key), by_locality=proxy.zone_local
            ),
            exported=True,
        )
        out[resource.CLUSTER] += found
        out[resource.ENDPOINT] += assignments
        routes += passthrough
    if routes:  # Envoy refuses a listener without filter chains; no export, no listener
        logged = mesh.telemetry and proxy.traffic_log.startswith("/")
        counted = proxy.envoy_path(proxy.traffic_log) if logged else ""
        out[resource.LISTENER].append(
            gateway_listener(host.strip("[]"), int(port_text), routes, counted)
        )
    return out


def _gateway_service(
    state: RegistryState, caller: Locality, ports: list[ServicePort], *, by_locality: bool
) -> tuple[list[Message], list[Message], list[PassthroughRoute]]:
    """What one service adds to the east-west gateway: a cluster and assignment of its local
    sidecars per port (and per TrafficPolicy subset), and the SNI routes to them. A
    zone-local gateway (``by_locality``) gets its zone's alone while one is healthy, else
    all by locality (:func:`endpoints.own_zone_only`)."""
    found: list[Message] = []
    assignments: list[Message] = []
    routes: list[PassthroughRoute] = []
    for port in ports:
        if not (port.exported and (port.local or port.retained)):
            continue  # only exported services of this cluster are reachable
        cla = endpoints.load_assignment(
            caller,
            state,
            port,
            include_tls_mode=frozenset({"mutual"}),
            include_remote=False,
            cluster_name=port.gateway_cluster_name,
            by_locality=by_locality,
        )
        found.append(clusters.gateway_cluster(port))
        assignments.append(cla)
        routes.append(PassthroughRoute(port.sni, port.gateway_cluster_name))
        policy = state.policies.get((port.namespace, port.service))
        for subset in policy.spec.subsets if policy is not None else []:
            # callers elsewhere name a subset by SNI: its workloads here, picked by label
            name = port.gateway_subset_cluster_name(subset.name)
            found.append(clusters.gateway_cluster(port, name=name))
            assignments.append(
                endpoints.load_assignment(
                    caller,
                    state,
                    port,
                    include_tls_mode=frozenset({"mutual"}),
                    include_remote=False,
                    cluster_name=name,
                    labels=subset.labels,
                    by_locality=by_locality,
                )
            )
            routes.append(PassthroughRoute(replace(port, subset=subset.name).sni, name))
    return found, assignments, routes


def generate(
    mesh: MeshContext,
    state: RegistryState,
    proxy: ProxyDescription,
    context: PushContext | None = None,
) -> Resources:
    """All resources for ``proxy``, by type URL. ``context``: the :class:`PushContext` of
    ``state``, shared by every proxy built from it (made here when None or of another state).

    Raises:
        ValueError: a gateway without a valid ``meshfed.io/listen`` address, a sidecar
            without an absolute ``meshfed.io/identity_dir``.
    """
    if context is None or context.state is not state or context.mesh != mesh:
        context = PushContext(mesh, state)
    if proxy.role == "sidecar":
        return _sidecar(context, proxy)
    if proxy.role == "grpc":
        return _grpc(context, proxy)
    return _gateway(context, proxy)
