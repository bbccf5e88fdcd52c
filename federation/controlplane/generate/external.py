"""CDS and RDS for Istio ServiceEntries: services outside the mesh a sidecar may call by
name (:mod:`federation.model.service_entry`). Pure.

Per host and port, as Istio makes them: a cluster ``outbound|<port>||<host>``, plain text
(MESH_EXTERNAL: no mTLS, no SVID), ``STRICT_DNS`` for ``resolution: DNS`` (every address
the name resolves to is an endpoint), ``LOGICAL_DNS`` for ``DNS_ROUND_ROBIN`` (one address
at a time), ``STATIC`` for ``STATIC``; its endpoints the entry's ``endpoints`` or, for DNS
without endpoints, the host itself on the port's ``targetPort`` (else its number); HTTP/2
upstream for ``HTTP2`` and ``GRPC``. A virtual host on the outbound route configuration
answers ``<host>:<port>`` and, for the entry's first port, ``<host>``; its route has no
timeout and meshfed's retries (connect failures, resets, 503) to another endpoint.

``location: MESH_INTERNAL`` (another mesh's service, typically behind its east-west gateway:
SPIFFE federation): the cluster originates mutual TLS with the sidecar's SVID, SNI
``outbound_.<port>_._.<host>`` (Istio's and meshfed's gateway routing name, so another
meshfed's or Istio's gateway passes it to the service), and accepts only a server whose URI
SAN is one of ``subjectAltNames`` -- verified with that SPIFFE ID's domain's bundle (the
ROOTCA secret: Envoy's SPIFFE validator once the domain is federated).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from federation.controlplane.generate.clusters import (
    CONNECT_TIMEOUT_MS,
    HTTP_OPTIONS_KEY,
    load_assignment,
    mesh_upstream_tls,
)
from federation.controlplane.generate.common import (
    ProxyTls,
    duration_ms,
    pack,
    tls_transport_socket,
)
from federation.controlplane.generate.routes import retry_policy
from federation.model.service_entry import EntryPort, ServiceEntry

_DISCOVERY = {
    "DNS": cluster_pb2.Cluster.DiscoveryType.STRICT_DNS,
    "DNS_ROUND_ROBIN": cluster_pb2.Cluster.DiscoveryType.LOGICAL_DNS,
    "STATIC": cluster_pb2.Cluster.DiscoveryType.STATIC,
}


def cluster_name(host: str, port: EntryPort) -> str:
    """``outbound|<port>||<host>`` (Istio's naming)."""
    return f"outbound|{port.number}||{host}"


def entry_tls(
    entry: ServiceEntry, host: str, port: EntryPort, tls: ProxyTls
) -> tls_pb2.UpstreamTlsContext:
    """mTLS to a MESH_INTERNAL entry (see the module docstring)."""
    sni = f"outbound_.{port.number}_._.{host}"
    return mesh_upstream_tls(sni, entry.spec.subject_alt_names or [], tls)


def entry_cluster(
    entry: ServiceEntry, host: str, port: EntryPort, tls: ProxyTls | None = None
) -> cluster_pb2.Cluster:
    """The cluster of ``host`` on ``port`` (see the module docstring; ``tls``: the sidecar's,
    for a MESH_INTERNAL entry)."""
    name = cluster_name(host, port)
    targets = entry.endpoints_for(port) or [(host, port.target_port or port.number)]
    cluster = cluster_pb2.Cluster(
        name=name,
        type=_DISCOVERY[entry.spec.resolution],
        connect_timeout=duration_ms(CONNECT_TIMEOUT_MS),
        lb_policy=cluster_pb2.Cluster.LbPolicy.ROUND_ROBIN,
        load_assignment=load_assignment(name, targets),
    )
    if entry.spec.resolution != "STATIC":
        cluster.dns_lookup_family = cluster_pb2.Cluster.DnsLookupFamily.V4_PREFERRED
    if entry.spec.location == "MESH_INTERNAL" and tls is not None:
        cluster.transport_socket.CopyFrom(tls_transport_socket(entry_tls(entry, host, port, tls)))
    if port.protocol in ("HTTP2", "GRPC"):
        options = hpo.HttpProtocolOptions(
            explicit_http_config=hpo.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].CopyFrom(pack(options))
    return cluster


def entry_virtual_hosts(entry: ServiceEntry) -> list[rc.VirtualHost]:
    """One virtual host per host and port of ``entry`` (see the module docstring)."""
    out = []
    for host in entry.spec.hosts:
        for i, port in enumerate(entry.spec.ports):
            domains = [f"{host}:{port.number}"] + ([host] if i == 0 else [])
            out.append(
                rc.VirtualHost(
                    name=f"{host}:{port.number}",
                    domains=domains,
                    routes=[
                        rc.Route(
                            match=rc.RouteMatch(prefix="/"),
                            route=rc.RouteAction(
                                cluster=cluster_name(host, port),
                                timeout=duration_ms(0),
                                retry_policy=retry_policy(),
                            ),
                        )
                    ],
                )
            )
    return out


def entry_clusters(entry: ServiceEntry, tls: ProxyTls | None = None) -> list[cluster_pb2.Cluster]:
    """Every cluster of ``entry``: one per host and port (``tls``: see :func:`entry_cluster`)."""
    return [
        entry_cluster(entry, host, port, tls)
        for host in entry.spec.hosts
        for port in entry.spec.ports
    ]
