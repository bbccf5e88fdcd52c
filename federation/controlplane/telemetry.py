"""Traffic telemetry: the sidecars' outbound access-log streams, counted per edge.

Every sidecar's outbound listener streams its access log to its control plane with Envoy's
gRPC access log service (ALS v3, ``envoy.access_loggers.http_grpc``,
:func:`federation.controlplane.generate.listeners.telemetry_log`) over its xDS cluster: the
same mutually authenticated connection as ADS. :class:`AccessLogServicer` serves
``envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`` on the xDS port and counts
each entry into a :class:`federation.traffic.TrafficTable` (:func:`classify`):

- **source**: this cluster and the streaming proxy's locality. The stream's first message
  names its node; the node must match the client certificate's SPIFFE ID as on ADS
  (:func:`federation.controlplane.proxy.identity_problem`), else the stream is refused.
  Nothing in an entry can change whom its traffic is counted for.
- **destination**: the ``x-meshfed-served-by`` response header (``<cluster>/<zone>``, set by
  the serving sidecar), the cluster's ``<cloud>/<region>`` from its own locality or from the
  ServiceImports; ``unknown`` when no sidecar answered.
- **service**: the Envoy cluster the request was routed to (``outbound|<port>|...|<host>``).
- **bytes**: Envoy's ``upstream_wire_bytes_sent|received``; **duration**: Envoy's request
  duration; **US$**: :func:`federation.lb.paths.path_facts` with the price tables in force.

Not modelled: proxyless gRPC clients and the east-west gateways send no access log (the
caller's sidecar counts every request that crosses a gateway); a request Envoy never routed
(no route, the caller's own error) is not counted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from federation.ca.service import peer_spiffe_id
from federation.controlplane.generate.common import SERVED_BY_HEADER, MeshContext
from federation.controlplane.proxy import ProxyDescription, identity_problem
from federation.controlplane.registry import RegistryState, ServiceRegistry
from federation.lb.paths import BYTES_PER_GB, path_facts, tables_in_force
from federation.model.locality import Locality
from federation.traffic import Edge, TrafficTable, code_class
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


def classify(
    entry: accesslog_pb2.HTTPAccessLogEntry,
    source_cluster: str,
    source: Locality,
    localities: Mapping[str, Locality],
    prices: Mapping[str, PriceTable] | None = None,
) -> tuple[Edge, int, int, float, float] | None:
    """One access-log entry as ``(edge, request bytes, response bytes, duration ms, US$)``,
    or None when it is not a request to a mesh service.

    Args:
        entry: Envoy's entry (with the ``x-meshfed-served-by`` response header logged).
        source_cluster / source: the caller's cluster and locality (from the stream's
            authenticated node, never from the entry).
        localities: member cluster -> locality (:func:`cluster_localities`).
        prices: price tables in force by cloud (:func:`federation.lb.paths.price_tables`).
    """
    common = entry.common_properties
    service = service_of(common.upstream_cluster)
    if service is None:
        return None
    response = entry.response
    served_by = response.response_headers.get(SERVED_BY_HEADER, "")
    cluster, _, zone = served_by.partition("/")
    base = localities.get(cluster) if cluster else None
    sent = common.upstream_wire_bytes_sent or (
        entry.request.request_headers_bytes + entry.request.request_body_bytes
    )
    received = common.upstream_wire_bytes_received or (
        response.response_headers_bytes + response.response_body_bytes
    )
    duration_ms = common.duration.ToNanoseconds() / 1e6 if common.HasField("duration") else 0.0
    code = response.response_code.value if response.HasField("response_code") else 0
    if base is None:
        destination, path, usd = UNKNOWN, UNKNOWN, 0.0
        cluster = cluster or UNKNOWN
    else:
        served = Locality(base.region, zone or base.zone)
        answer = path_facts(source, served, prices=prices)  # response bytes: served -> caller
        ask = path_facts(served, source, prices=prices)  # request bytes: caller -> served
        destination, path = str(served), answer.path
        usd = (received * answer.usd_per_gb + sent * ask.usd_per_gb) / BYTES_PER_GB
    edge = Edge(source_cluster, str(source), service, cluster, destination, path, code_class(code))
    return edge, sent, received, duration_ms, usd


class TrafficCounter:
    """This cluster's :class:`~federation.traffic.TrafficTable`, with the cluster localities
    and price tables of the registry's current state (recomputed when the state changes)."""

    def __init__(self, mesh: MeshContext, registry: ServiceRegistry, started_at: float) -> None:
        self.mesh = mesh
        self.table = TrafficTable(started_at)
        self._registry = registry
        self._version: object = None
        self._localities: dict[str, Locality] = {}
        self._prices: dict[str, PriceTable] = {}
        self.entries = 0

    def _refresh(self) -> None:
        state = self._registry.state
        if state.version != self._version:
            self._version = state.version
            self._localities = cluster_localities(self.mesh, state)
            self._prices = tables_in_force(state.price_tables.values())

    def count(self, source: Locality, entries: Any) -> None:
        """Count access-log ``entries`` of a proxy at ``source``."""
        self._refresh()
        for entry in entries:
            self.entries += 1
            counted = classify(entry, self.mesh.cluster, source, self._localities, self._prices)
            if counted is not None:
                self.table.record(*counted)

    def prices(self) -> dict[str, PriceTable]:
        """The price tables in force, by cloud (built-in, overridden by PriceTables)."""
        self._refresh()
        return self._prices


class AccessLogServicer(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    """``StreamAccessLogs`` (see the module docstring)."""

    def __init__(
        self, counter: TrafficCounter, fallback: Callable[[], Locality] | None = None
    ) -> None:
        self._counter = counter
        self._fallback = fallback or (lambda: counter.mesh.locality)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Serve on ``server`` (the xDS server: mTLS with client certificates required)."""
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(self, server)

    async def StreamAccessLogs(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> als_pb2.StreamAccessLogsResponse:
        """Count every HTTP entry of the stream; refuse a stream whose node is not the
        client certificate's identity (PERMISSION_DENIED)."""
        peer = peer_spiffe_id(context)
        source: Locality | None = None
        async for message in request_iterator:
            if source is None:
                try:
                    proxy = ProxyDescription.from_node(message.identifier.node)
                except ValueError as err:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                problem = identity_problem(proxy, peer, self._counter.mesh.trust_domain)
                if problem is not None:
                    log.warning("access log stream refused: %s", problem)
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)
                source = proxy.locality or self._fallback()
            if message.HasField("http_logs"):
                self._counter.count(source, message.http_logs.log_entry)
        return als_pb2.StreamAccessLogsResponse()
