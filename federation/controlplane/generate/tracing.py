"""Distributed tracing: W3C trace context and spans sent to an OpenTelemetry collector.

With :attr:`MeshContext.otlp_collector` set (``meshfed controlplane serve --otlp-collector
HOST:PORT``), every sidecar's HTTP connection managers, outbound and inbound, run Envoy's
OpenTelemetry tracer (``envoy.tracers.opentelemetry``, ``config.trace.v3.OpenTelemetryConfig``):

- a request's W3C ``traceparent`` is continued (a request without one starts a trace), and
  the sidecar forwards a ``traceparent`` naming its own span, so the app behind the next
  sidecar sees the same trace id (the app must copy the header from its incoming request to
  the requests it makes, as with any mesh);
- each sidecar exports its spans (one per request and direction: the caller's egress span,
  the callee's ingress span) over OTLP/gRPC to the collector, through the cluster
  :data:`COLLECTOR_CLUSTER` (STRICT_DNS, so ``HOST`` may be a name; plain-text HTTP/2, as a
  collector's OTLP port on the same host or network usually is);
- sampling: Envoy's defaults (every request; ``HttpConnectionManager.Tracing``).

Without it nothing is added: ``traceparent`` headers pass through untouched.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import grpc_service_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from federation.controlplane.generate.clusters import (
    CONNECT_TIMEOUT_MS,
    protocol_options,
    single_endpoint,
)
from federation.controlplane.generate.common import MeshContext, duration_ms, pack
from federation.netaddr import parse_host_port

#: The collector's cluster in every sidecar when tracing is on.
COLLECTOR_CLUSTER = "meshfed-otlp-collector"


def hcm_tracing(mesh: MeshContext, service_name: str) -> hcm.HttpConnectionManager.Tracing | None:
    """The connection manager's ``tracing`` (spans named for ``service_name``, e.g.
    ``echo.demo``), or None when the mesh has no collector."""
    if mesh.otlp_collector is None:
        return None
    config = opentelemetry_pb2.OpenTelemetryConfig(
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=COLLECTOR_CLUSTER),
            timeout=duration_ms(1000),
        ),
        service_name=service_name,
    )
    return hcm.HttpConnectionManager.Tracing(
        provider=http_tracer_pb2.Tracing.Http(
            name="envoy.tracers.opentelemetry", typed_config=pack(config)
        )
    )


def collector_cluster(mesh: MeshContext) -> cluster_pb2.Cluster | None:
    """:data:`COLLECTOR_CLUSTER` (HTTP/2 with PING keepalive, STRICT_DNS), or None when the
    mesh has no collector.

    Raises:
        ValueError: ``otlp_collector`` is not ``HOST:PORT``.
    """
    if mesh.otlp_collector is None:
        return None
    host, port = parse_host_port(mesh.otlp_collector, what="the OTLP collector")
    return cluster_pb2.Cluster(
        name=COLLECTOR_CLUSTER,
        type=cluster_pb2.Cluster.DiscoveryType.STRICT_DNS,
        dns_lookup_family=cluster_pb2.Cluster.DnsLookupFamily.V4_PREFERRED,
        connect_timeout=duration_ms(CONNECT_TIMEOUT_MS),
        load_assignment=single_endpoint(COLLECTOR_CLUSTER, host, port),
        typed_extension_protocol_options=protocol_options("grpc"),
    )
