"""Traffic telemetry: what the sidecars' agents counted, classified, priced and aggregated.

Each sidecar's agent counts its Envoy's outbound requests per (Envoy cluster,
``x-meshfed-served-by``, response code) from a short traffic log (:mod:`federation.agent.tap`)
and reports the cumulative counts every 2 s to ``meshfed.traffic.v1.TrafficService/Report``
on this control plane's xDS port (mutual TLS). :class:`TrafficServicer` checks the report's
node against the client certificate's SPIFFE ID as ADS does
(:func:`federation.sync.node.identity_problem`) and refuses it otherwise; then
:class:`TrafficCounter` adds what changed since that proxy's previous report to this
cluster's :class:`federation.traffic.TrafficTable`, one edge per key (:func:`edge_for`):

- **source**: this cluster and the reporting proxy's locality (its node); nothing in a
  report can change whom its traffic is counted for.
- **destination**: the ``x-meshfed-served-by`` answer (``<cluster>/<zone>``, set by the
  serving sidecar), the cluster's ``<cloud>/<region>`` from its own locality or from the
  ServiceImports; ``unknown`` when no sidecar answered.
- **service**: the Envoy cluster the request was routed to (``outbound|<port>|...|<host>``).
- **bytes**: Envoy's upstream wire bytes; **US$**: :func:`federation.lb.paths.path_facts`
  with the price tables in force when the report arrives (at most 2 s after the requests).

An east-west gateway's agent reports its connections instead
(:class:`federation.agent.tap.GatewayTap`: per ``(gateway cluster, upstream host)``,
connections and upstream bytes); :meth:`TrafficCounter.add_gateway_report` counts them as
**gateway hops** (:class:`federation.traffic.GatewayHop`, :func:`hop_for`): from the
gateway's locality (its node) to the locality of the workload at that address in this
cluster's registry, priced on that path (cross-zone bytes are billed; same-zone are not).

Not modelled: proxyless gRPC clients report nothing; a request Envoy never routed to a mesh
service is not counted; a gateway-hop address that is no workload of the registry any more
is counted with destination ``unknown``, unpriced.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from google.protobuf.message import DecodeError

from federation.ca.names import DNS_LABEL
from federation.ca.service import peer_spiffe_id
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.registry import RegistryState, ServiceRegistry
from federation.lb.paths import BYTES_PER_GB, path_facts, tables_in_force
from federation.model.locality import Locality
from federation.sync.node import ProxyDescription, identity_problem
from federation.sync.proto import traffic_pb2, traffic_pb2_grpc
from federation.traffic import (
    DURATION_BUCKETS_MS,
    Counters,
    Edge,
    GatewayHop,
    TrafficTable,
    code_class,
)
from providers.pricing import PriceTable

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
_GLOBAL_SUFFIX = ".svc.clusterset.local"


def service_of(envoy_cluster: str) -> str | None:
    """``outbound|8080||echo.demo.svc.clusterset.local`` -> ``echo.demo``; None for a cluster
    that is not an outbound service cluster."""
    if not envoy_cluster.startswith("outbound|"):
        return None
    host = envoy_cluster.rsplit("|", 1)[-1]
    return host.removesuffix(_GLOBAL_SUFFIX) if host.endswith(_GLOBAL_SUFFIX) else None


def cluster_localities(mesh: MeshContext, state: RegistryState) -> dict[str, Locality]:
    """member cluster -> its ``<cloud>/<region>`` locality: this one's, and every cluster a
    ServiceImport names (the controller's record of where it runs)."""
    out: dict[str, Locality] = {}
    for imp in state.imports.values():
        for remote in imp.spec.clusters:
            if remote.locality:
                try:
                    out[remote.cluster] = Locality.parse(remote.locality)
                except ValueError:
                    continue
    out[mesh.cluster] = mesh.locality
    return out


def edge_for(
    source_cluster: str,
    source: Locality,
    upstream_cluster: str,
    served_by: str,
    code: int,
    localities: Mapping[str, Locality],
    prices: Mapping[str, PriceTable] | None = None,
) -> tuple[Edge, float, float] | None:
    """The edge of a request, and what its bytes cost: ``(edge, US$ per request byte, US$
    per response byte)``; None when ``upstream_cluster`` is not an outbound service cluster.

    Args:
        source_cluster / source: the caller's cluster and locality (from the stream's
            authenticated node, never from the entry).
        upstream_cluster: the Envoy cluster the request was routed to.
        served_by: the ``x-meshfed-served-by`` answer (``<cluster>/<zone>``), "" without.
        code: the response code (0: none).
        localities: member cluster -> locality (:func:`cluster_localities`).
        prices: price tables in force by cloud (:func:`federation.lb.paths.tables_in_force`).
    """
    service = service_of(upstream_cluster)
    if service is None:
        return None
    cluster, _, zone = served_by.partition("/")
    base = localities.get(cluster) if cluster else None
    if base is None:  # not imported here: counted, not priced; the header is the answer's
        named = cluster if DNS_LABEL.match(cluster) else UNKNOWN  # and may hold anything
        edge = Edge(
            source_cluster, str(source), service, named, UNKNOWN, UNKNOWN,
            code_class(code),
        )  # fmt: skip
        return edge, 0.0, 0.0
    served = Locality(base.region, zone or base.zone)
    answer = path_facts(source, served, prices=prices)  # response bytes: served -> caller
    ask = path_facts(served, source, prices=prices)  # request bytes: caller -> served
    edge = Edge(
        source_cluster, str(source), service, cluster, str(served), answer.path, code_class(code)
    )
    return edge, ask.usd_per_gb / BYTES_PER_GB, answer.usd_per_gb / BYTES_PER_GB


def hop_service(envoy_cluster: str) -> str | None:
    """``gateway|8080||echo.demo.svc.clusterset.local`` (or a subset's
    ``gateway|8080|v1|...``) -> ``echo.demo``; None for any other cluster."""
    if not envoy_cluster.startswith("gateway|"):
        return None
    host = envoy_cluster.rsplit("|", 1)[-1]
    return host.removesuffix(_GLOBAL_SUFFIX) if host.endswith(_GLOBAL_SUFFIX) else None


def workload_localities(state: RegistryState) -> dict[str, Locality]:
    """``address:inbound port`` of every workload in the registry -> its locality (where a
    gateway's upstream host is)."""
    return {f"{w.spec.address}:{w.spec.inbound_port}": w.locality for w in state.workloads.values()}


def hop_for(
    cluster: str,
    gateway: Locality,
    upstream_cluster: str,
    upstream_host: str,
    workloads: Mapping[str, Locality],
    prices: Mapping[str, PriceTable] | None = None,
) -> tuple[GatewayHop, float, float] | None:
    """The gateway hop of a connection, and what its bytes cost: ``(hop, US$ per byte sent
    to the sidecar, US$ per byte it answered)``; None when ``upstream_cluster`` is not a
    gateway cluster of a service.

    Args:
        cluster: this cluster.
        gateway: the gateway's locality (from its authenticated node).
        upstream_cluster / upstream_host: the gateway's Envoy cluster and upstream host
            (``address:port``).
        workloads: :func:`workload_localities`.
        prices: price tables in force by cloud.
    """
    service = hop_service(upstream_cluster)
    if service is None:
        return None
    served = workloads.get(upstream_host)
    if served is None:
        return GatewayHop(cluster, str(gateway), service, UNKNOWN, UNKNOWN), 0.0, 0.0
    back = path_facts(gateway, served, prices=prices)  # answer bytes: sidecar -> gateway
    forth = path_facts(served, gateway, prices=prices)  # forwarded bytes: gateway -> sidecar
    hop = GatewayHop(cluster, str(gateway), service, str(served), back.path)
    return hop, forth.usd_per_gb / BYTES_PER_GB, back.usd_per_gb / BYTES_PER_GB


#: Entries of different (caller locality, Envoy cluster, served-by, code) kept classified.
EDGE_CACHE_SIZE = 4096
#: A classified key: the edge's counters, US$ per request byte, US$ per response byte.
_Hit = tuple[Counters, float, float]


class TrafficCounter:
    """This cluster's :class:`~federation.traffic.TrafficTable`, with the cluster localities
    and price tables of the registry's current state (recomputed when the state changes).
    Classifications are cached per (caller locality, Envoy cluster, served-by, code)."""

    def __init__(self, mesh: MeshContext, registry: ServiceRegistry, started_at: float) -> None:
        self.mesh = mesh
        self.table = TrafficTable(started_at)
        self._registry = registry
        self._version: object = None
        self._localities: dict[str, Locality] = {}
        self._prices: dict[str, PriceTable] = {}
        self._edges: dict[tuple[str, str, str, int], _Hit | None] = {}
        self._last: dict[str, tuple[float, dict[tuple[str, str, int], Counters]]] = {}
        self._workloads: dict[str, Locality] = {}
        self.requests = 0

    def _refresh(self) -> None:
        state = self._registry.state
        if state.version != self._version:
            self._version = state.version
            self._localities = cluster_localities(self.mesh, state)
            self._prices = tables_in_force(state.price_tables.values())
            self._workloads = workload_localities(state)
            self._edges.clear()

    def add_report(self, node_id: str, source: Locality, report: traffic_pb2.ProxyTraffic) -> None:
        """Count what changed since ``node_id``'s previous report (all of it after the
        proxy's counters restarted, i.e. a new ``started_at``)."""
        self._refresh()
        where = str(source)
        seen_at, seen = self._last.get(node_id, (None, {}))
        if seen_at != report.started_at:
            seen = {}
        now: dict[tuple[str, str, int], Counters] = {}
        for k in report.keys:
            key = (k.upstream_cluster, k.served_by, k.response_code)
            current = Counters(
                k.requests,
                k.request_bytes,
                k.response_bytes,
                0.0,
                k.duration_ms_sum,
                list(k.duration_buckets),
                k.retries,
            )
            now[key] = current
            delta = current.copy()
            if key in seen:
                delta.merge(seen[key], -1)
            if delta.requests <= 0:
                continue
            full = (where, *key)
            hit = self._edges[full] if full in self._edges else self._classify(full, source)
            if hit is None:
                continue
            counters, per_sent, per_received = hit
            delta.egress_usd = delta.request_bytes * per_sent + delta.response_bytes * per_received
            counters.merge(delta)
            self.requests += delta.requests
        self._last[node_id] = (report.started_at, now)

    def add_gateway_report(
        self, node_id: str, gateway: Locality, report: traffic_pb2.ProxyTraffic
    ) -> None:
        """Count what a gateway's report adds since its previous one (as :meth:`add_report`;
        its keys are ``(gateway cluster, upstream host)`` and ``requests`` connections)."""
        self._refresh()
        seen_at, seen = self._last.get(node_id, (None, {}))
        if seen_at != report.started_at:
            seen = {}
        now: dict[tuple[str, str, int], Counters] = {}
        for k in report.keys:
            key = (k.upstream_cluster, k.served_by, 0)
            current = Counters(k.requests, k.request_bytes, k.response_bytes)
            now[key] = current
            delta = current.copy()
            if key in seen:
                delta.merge(seen[key], -1)
            if min(delta.requests, delta.request_bytes, delta.response_bytes) < 0:
                continue  # counters never go down within one started_at
            if delta.requests + delta.request_bytes + delta.response_bytes == 0:
                continue
            found = hop_for(
                self.mesh.cluster, gateway, key[0], key[1], self._workloads, self._prices
            )
            if found is None:
                continue
            hop, per_sent, per_received = found
            delta.egress_usd = delta.request_bytes * per_sent + delta.response_bytes * per_received
            self.table.hops.setdefault(hop, Counters()).merge(delta)
        self._last[node_id] = (report.started_at, now)

    def _classify(self, key: tuple[str, str, str, int], source: Locality) -> _Hit | None:
        if len(self._edges) >= EDGE_CACHE_SIZE:
            self._edges.clear()
        found = edge_for(
            self.mesh.cluster, source, key[1], key[2], key[3], self._localities, self._prices
        )
        hit: _Hit | None = None
        if found is not None:
            edge, per_sent, per_received = found
            counters = self.table.edges.get(edge)
            if counters is None:
                counters = self.table.edges[edge] = Counters()
            hit = (counters, per_sent, per_received)
        self._edges[key] = hit
        return hit

    def prices(self) -> dict[str, PriceTable]:
        """The price tables in force, by cloud (built-in, overridden by PriceTables)."""
        self._refresh()
        return self._prices


class TrafficServicer(traffic_pb2_grpc.TrafficServiceServicer):
    """``meshfed.traffic.v1.TrafficService/Report`` (see the module docstring)."""

    def __init__(self, counter: TrafficCounter) -> None:
        self._counter = counter

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Serve on ``server`` (the xDS server: mTLS with client certificates required)."""
        traffic_pb2_grpc.add_TrafficServiceServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    async def Report(  # noqa: N802 - gRPC method name
        self,
        request: traffic_pb2.ProxyTraffic,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> traffic_pb2.ProxyTrafficAck:
        """Count a proxy's report; INVALID_ARGUMENT for an unusable node or other histogram
        bounds, PERMISSION_DENIED when the node is not the client certificate's identity."""
        node = base_pb2.Node()
        try:
            node.ParseFromString(request.node)
            proxy = ProxyDescription.from_node(node)
        except (DecodeError, ValueError) as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"node: {err}")
        problem = identity_problem(proxy, peer_spiffe_id(context), self._counter.mesh.trust_domain)
        if problem is not None:
            log.warning("traffic report refused: %s", problem)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)
        if tuple(request.duration_bounds_ms) != DURATION_BUCKETS_MS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "duration_bounds_ms differ from this control plane's (another meshfed version)",
            )
        count = (
            self._counter.add_gateway_report
            if proxy.role == "gateway"
            else self._counter.add_report
        )
        count(proxy.node_id, proxy.locality or self._counter.mesh.locality, request)
        return traffic_pb2.ProxyTrafficAck()
