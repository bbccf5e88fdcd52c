"""Generators for the east-west gateway and for imported (remote) services."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from federation.controlplane import resource
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import ServiceRegistry
from federation.controlplane.snapshot import Snapshot
from federation.model.documents import load_documents
from federation.model.locality import Locality
from federation.sync.node import ProxyDescription

MESH = MeshContext("east", "example.org", Locality("aws/us-east-1", "us-east-1a"))
WORKLOAD = """apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: demo}}
spec: {{service: {svc}, address: 127.0.1.11, serviceAccount: {svc}, locality: aws/us-east-1/us-east-1a,
  ports: [{{name: http, port: 8080, targetPort: 18080}}]}}
"""
EXPORT = "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: echo, namespace: demo}\n"
IMPORT = """apiVersion: meshfed.io/v1alpha1
kind: ServiceImport
metadata: {{name: echo, namespace: demo}}
spec:
  ports: [{{name: http, port: 8080}}]
  serviceAccounts: [echo-west]
  clusters:
  - {{cluster: west, gateway: '{gw}', network: west, locality: aws/eu-west-1/eu-west-1a, endpoints: 3}}
  - {{cluster: gcp, gateway: '10.0.0.9:15443', network: gcp, locality: gcp/europe-west1/europe-west1-b, endpoints: 0}}
"""


def _state(*docs: str):
    registry = ServiceRegistry()
    registry.apply(load_documents("---\n".join(docs)))
    return registry.state


def _gateway() -> ProxyDescription:
    return ProxyDescription(
        "gateway~east", "gateway", locality=MESH.locality, listen="127.0.1.1:15443"
    )


def test_gateway_has_a_chain_only_for_exported_services() -> None:
    state = _state(
        WORKLOAD.format(name="echo-1", svc="echo"),
        WORKLOAD.format(name="secret-1", svc="secret"),
        EXPORT,
    )
    out = generate(MESH, state, _gateway())
    (listener,) = out[resource.LISTENER]
    assert listener.address.socket_address.port_value == 15443
    assert [list(c.filter_chain_match.server_names) for c in listener.filter_chains] == [
        ["outbound_.8080_._.echo.demo.svc.clusterset.local"]
    ]
    proxy = tcp_proxy_pb2.TcpProxy()
    listener.filter_chains[0].filters[0].typed_config.Unpack(proxy)
    assert proxy.cluster == "gateway|8080||echo.demo.svc.clusterset.local"
    (cluster,) = out[resource.CLUSTER]
    assert not cluster.transport_socket_matches and not cluster.HasField(
        "transport_socket"
    )  # passthrough
    (cla,) = out[resource.ENDPOINT]
    assert [
        e.endpoint.address.socket_address.port_value
        for loc in cla.endpoints
        for e in loc.lb_endpoints
    ] == [15006]
    assert out[resource.SECRET] == []
    assert Snapshot.build(out).problems() == []


def test_gateway_without_exports_refuses_everything() -> None:
    out = generate(MESH, _state(WORKLOAD.format(name="echo-1", svc="echo")), _gateway())
    assert out[resource.LISTENER] == []  # nothing listens: every connection is refused


def test_import_adds_remote_gateways_weighted_by_endpoints_after_local() -> None:
    state = _state(WORKLOAD.format(name="echo-1", svc="echo"), IMPORT.format(gw="127.0.2.1:15443"))
    sidecar = ProxyDescription(
        "c", "sidecar", "demo", "", "frontend", MESH.locality, identity_dir="/run/id"
    )
    out = generate(MESH, state, sidecar)
    main = "outbound|8080||echo.demo.svc.clusterset.local"
    cla = {c.cluster_name: c for c in out[resource.ENDPOINT]}[main]
    rows = [
        (loc.locality.region, loc.priority, loc.load_balancing_weight.value)
        for loc in cla.endpoints
    ]
    # gcp exports the service with no healthy endpoint: its gateway is not a host to check
    assert rows == [("aws/us-east-1", 0, 1), ("aws/eu-west-1", 1, 3)]
    remote = cla.endpoints[1].lb_endpoints[0]
    assert remote.endpoint.address.socket_address.address == "127.0.2.1"
    assert remote.metadata.filter_metadata["envoy.transport_socket_match"]["tlsMode"] == "mutual"
    # one subset per serving cluster exists before any split names it (make-before-break)
    assert sorted(c.name for c in out[resource.CLUSTER]) == [
        "outbound|8080|east|echo.demo.svc.clusterset.local",
        "outbound|8080|gcp|echo.demo.svc.clusterset.local",
        "outbound|8080|west|echo.demo.svc.clusterset.local",
        main,
    ]
    cluster = {c.name: c for c in out[resource.CLUSTER]}[main]
    assert cluster.type == cluster_pb2.Cluster.DiscoveryType.EDS
    # without a split the route goes to the main cluster
    (route_config,) = out[resource.ROUTE]
    assert route_config.virtual_hosts[0].routes[0].route.cluster == main
    tls = cluster.transport_socket_matches[0].transport_socket
    from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

    ctx = tls_pb2.UpstreamTlsContext()
    tls.typed_config.Unpack(ctx)
    sans = {
        m.matcher.exact
        for m in ctx.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names
    }
    assert sans == {
        "spiffe://example.org/ns/demo/sa/echo",
        "spiffe://example.org/ns/demo/sa/echo-west",
    }


def test_hostname_gateway_makes_a_strict_dns_cluster() -> None:
    state = _state(IMPORT.format(gw="gw-west.elb.eu-west-1.amazonaws.com:15443"))
    sidecar = ProxyDescription(
        "c", "sidecar", "demo", "", "frontend", MESH.locality, identity_dir="/run/id"
    )
    out = generate(MESH, state, sidecar)
    cluster = {c.name: c for c in out[resource.CLUSTER]}[
        "outbound|8080||echo.demo.svc.clusterset.local"
    ]
    assert cluster.type == cluster_pb2.Cluster.DiscoveryType.STRICT_DNS
    hosts = [
        e.endpoint.address.socket_address.address
        for loc in cluster.load_assignment.endpoints
        for e in loc.lb_endpoints
    ]
    assert "gw-west.elb.eu-west-1.amazonaws.com" in hosts
    assert out[resource.ENDPOINT] == []
    assert Snapshot.build(out).problems() == []


POLICY = """apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata: {name: echo, namespace: demo}
spec:
  host: echo.demo.svc.clusterset.local
  split: {east: 80, west: 20}
  retries: {attempts: 3, perTryTimeoutMs: 500}
  timeoutMs: 4000
  outlierDetection: {consecutive5xx: 7}
"""


def test_split_makes_subset_clusters_and_a_weighted_route() -> None:
    from federation.controlplane.registry import with_federation
    from federation.model.policy import TrafficPolicy

    state = _state(WORKLOAD.format(name="echo-1", svc="echo"), IMPORT.format(gw="127.0.2.1:15443"))
    [policy] = load_documents(POLICY)
    assert isinstance(policy, TrafficPolicy)
    state = with_federation(state, state.imports.values(), [], [policy])
    sidecar = ProxyDescription(
        "c", "sidecar", "demo", "", "frontend", MESH.locality, identity_dir="/run/id"
    )
    out = generate(MESH, state, sidecar)
    names = [c.name for c in out[resource.CLUSTER]]
    host = "echo.demo.svc.clusterset.local"
    assert names == [
        f"outbound|8080||{host}",
        f"outbound|8080|east|{host}",
        f"outbound|8080|gcp|{host}",
        f"outbound|8080|west|{host}",
    ]
    assert all(c.outlier_detection.consecutive_5xx.value == 7 for c in out[resource.CLUSTER])
    west = {cla.cluster_name: cla for cla in out[resource.ENDPOINT]}[f"outbound|8080|west|{host}"]
    assert west.endpoints[0].priority == 0 and west.endpoints[0].locality.region == "aws/eu-west-1"
    assert west.endpoints[1].locality.region == "aws/us-east-1"  # west's share fails over to east
    (route_config,) = out[resource.ROUTE]
    action = route_config.virtual_hosts[0].routes[0].route
    assert [(w.name, w.weight.value) for w in action.weighted_clusters.clusters] == [
        (f"outbound|8080|east|{host}", 80),
        (f"outbound|8080|west|{host}", 20),
    ]
    assert action.retry_policy.num_retries.value == 3 and action.timeout.seconds == 4
    assert action.retry_policy.retry_priority.name == "envoy.retry_priorities.previous_priorities"
    assert Snapshot.build(out).problems() == []  # every weighted cluster exists in CDS and EDS
