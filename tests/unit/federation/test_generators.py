"""Generators: YAML state in, Envoy protos out (as istio's pilot tests do)."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from federation.controlplane import resource
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.proxy import ProxyDescription
from federation.controlplane.registry import Health, ServiceRegistry
from federation.controlplane.snapshot import Snapshot
from federation.model.documents import load_documents
from federation.model.locality import Locality

MESH = MeshContext("east", "example.org", Locality("aws/us-east-1", "us-east-1a"))
CLUSTER = "outbound|8080||echo.demo.svc.clusterset.local"


def _doc(name, zone, *, mtls="STRICT", tls="mutual", ns="demo", service="echo", sa="echo") -> str:
    return f"""
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  service: {service}
  address: 127.0.1.{len(name)}
  serviceAccount: {sa}
  locality: aws/us-east-1/{zone}
  tlsMode: {tls}
  mtlsMode: {mtls}
  ports: [{{name: http, port: 8080, targetPort: 18080}}]
"""


def _registry(*docs: str) -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.apply(load_documents("---".join(docs)))
    return registry


def _sidecar(workload="", ns="demo", sa="frontend") -> ProxyDescription:
    return ProxyDescription(
        f"sidecar~{ns}~{workload or 'client'}",
        "sidecar",
        ns,
        workload,
        sa,
        Locality("aws/us-east-1", "us-east-1a"),
        identity_dir="/run/meshfed/identity",
    )


def _unpack_hcm(listener) -> hcm.HttpConnectionManager:
    manager = hcm.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager


def test_sidecar_outbound_cluster_defaults() -> None:
    out = generate(MESH, _registry(_doc("echo-1", "us-east-1a")).state, _sidecar())
    (cluster,) = out[resource.CLUSTER]
    assert cluster.name == CLUSTER
    assert cluster.type == cluster_pb2.Cluster.DiscoveryType.EDS
    assert cluster.health_checks[0].HasField("tcp_health_check")
    assert cluster.outlier_detection.max_ejection_percent.value == 100
    assert cluster.common_lb_config.healthy_panic_threshold.value == 0
    (match,) = cluster.transport_socket_matches
    tls = tls_pb2.UpstreamTlsContext()
    match.transport_socket.typed_config.Unpack(tls)
    assert tls.sni == "outbound_.8080_._.echo.demo.svc.clusterset.local"
    sans = tls.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names
    assert [s.matcher.exact for s in sans] == ["spiffe://example.org/ns/demo/sa/echo"]


def test_eds_priorities_follow_caller_zone_and_health() -> None:
    registry = _registry(_doc("echo-1", "us-east-1a"), _doc("echo-22", "us-east-1b"))
    out = generate(MESH, registry.state, _sidecar())
    (cla,) = out[resource.ENDPOINT]
    assert [(e.locality.zone, e.priority) for e in cla.endpoints] == [
        ("us-east-1a", 0),
        ("us-east-1b", 1),
    ]
    registry.set_health(("demo", "echo-1"), Health.UNHEALTHY)
    (cla,) = generate(MESH, registry.state, _sidecar())[resource.ENDPOINT]
    assert [(e.locality.zone, e.priority) for e in cla.endpoints] == [
        ("us-east-1b", 0),
        ("us-east-1a", 1),
    ]
    dead = cla.endpoints[1].lb_endpoints[0]
    assert dead.health_status == health_check_pb2.HealthStatus.UNHEALTHY


def test_outbound_routes_short_names_only_in_same_namespace() -> None:
    state = _registry(_doc("echo-1", "us-east-1a")).state
    (route,) = generate(MESH, state, _sidecar(ns="demo"))[resource.ROUTE]
    domains = set(route.virtual_hosts[0].domains)
    assert {"echo.demo.svc.clusterset.local", "echo.demo", "echo", "echo:8080"} <= domains
    assert route.virtual_hosts[0].routes[0].route.cluster == CLUSTER
    (route,) = generate(MESH, state, _sidecar(ns="other"))[resource.ROUTE]
    assert "echo" not in route.virtual_hosts[0].domains
    assert "echo.demo.svc.clusterset.local" in route.virtual_hosts[0].domains


@pytest.mark.parametrize(
    ("mode", "chains"),
    [("STRICT", ["tls"]), ("PERMISSIVE", ["tls", "raw_buffer"]), ("DISABLE", ["raw_buffer"])],
)
def test_inbound_listener_mtls_modes(mode, chains) -> None:
    state = _registry(_doc("echo-1", "us-east-1a", mtls=mode)).state
    out = generate(MESH, state, _sidecar("echo-1", sa="echo"))
    inbound = next(listener for listener in out[resource.LISTENER] if listener.name == "inbound")
    assert [c.filter_chain_match.transport_protocol for c in inbound.filter_chains] == chains
    for chain in inbound.filter_chains:
        if chain.filter_chain_match.transport_protocol == "tls":
            assert list(chain.filter_chain_match.server_names) == [
                "outbound_.8080_._.echo.demo.svc.clusterset.local"
            ]
            ctx = tls_pb2.DownstreamTlsContext()
            chain.transport_socket.typed_config.Unpack(ctx)
            assert ctx.require_client_certificate.value
            sans = ctx.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names
            assert sans[0].matcher.prefix == "spiffe://example.org/"


def test_inbound_forwards_client_identity_and_names_server() -> None:
    state = _registry(_doc("echo-1", "us-east-1a")).state
    out = generate(MESH, state, _sidecar("echo-1", sa="echo"))
    inbound = next(listener for listener in out[resource.LISTENER] if listener.name == "inbound")
    manager = _unpack_hcm(inbound)
    assert (
        manager.forward_client_cert_details
        == hcm.HttpConnectionManager.ForwardClientCertDetails.SANITIZE_SET
    )
    assert manager.set_current_client_cert_details.uri
    header = manager.route_config.virtual_hosts[0].response_headers_to_add[0].header
    assert (header.key, header.value) == ("x-meshfed-served-by", "east/us-east-1a")


def test_generated_snapshots_are_consistent() -> None:
    state = _registry(_doc("echo-1", "us-east-1a"), _doc("echo-22", "us-east-1b")).state
    for proxy in (_sidecar(), _sidecar("echo-1", sa="echo")):
        assert Snapshot.build(generate(MESH, state, proxy)).problems() == []
    grpc = ProxyDescription("grpc-client", "grpc", "demo")
    assert Snapshot.build(generate(MESH, state, grpc)).problems() == []


def test_grpc_gets_api_listeners_and_no_sidecar_endpoints() -> None:
    state = _registry(
        _doc("echo-1", "us-east-1a"), _doc("plain-1", "us-east-1a", tls="disabled")
    ).state
    out = generate(MESH, state, ProxyDescription("g", "grpc", "demo"))
    names = sorted(listener.name for listener in out[resource.LISTENER])
    assert names == ["echo.demo.svc.clusterset.local", "echo.demo.svc.clusterset.local:8080"]
    assert all(listener.HasField("api_listener") for listener in out[resource.LISTENER])
    (cla,) = out[resource.ENDPOINT]
    hosts = [e.endpoint.hostname for loc in cla.endpoints for e in loc.lb_endpoints]
    assert hosts == ["plain-1"]
    assert out[resource.SECRET] == []


def test_consistency_check_finds_dangling_references() -> None:
    state = _registry(_doc("echo-1", "us-east-1a")).state
    out = generate(MESH, state, _sidecar())
    no_eds = dict(out, **{resource.ENDPOINT: []})
    assert any("uses EDS" in p for p in Snapshot.build(no_eds).problems())
    no_rds = dict(out, **{resource.ROUTE: []})
    assert any("uses route outbound" in p for p in Snapshot.build(no_rds).problems())
    no_cds = dict(out, **{resource.CLUSTER: [], resource.ENDPOINT: []})
    assert any(f"points at cluster {CLUSTER}" in p for p in Snapshot.build(no_cds).problems())
    # secrets come from files, never over ADS: nothing to be missing
    assert out[resource.SECRET] == []


def test_versions_change_only_for_changed_types() -> None:
    registry = _registry(_doc("echo-1", "us-east-1a"))
    before = Snapshot.build(generate(MESH, registry.state, _sidecar()))
    registry.set_health(("demo", "echo-1"), Health.UNHEALTHY)
    after = Snapshot.build(generate(MESH, registry.state, _sidecar()))
    changed = {t for t in resource.PUSH_ORDER if before.versions[t] != after.versions[t]}
    assert changed == {resource.ENDPOINT}


def test_sidecars_read_their_svid_from_files_and_no_resource_carries_a_secret() -> None:
    state = _registry(_doc("echo-1", "us-east-1a")).state
    out = generate(MESH, state, _sidecar("echo-1", sa="echo"))
    assert out[resource.SECRET] == []
    (cluster,) = [c for c in out[resource.CLUSTER] if c.name.startswith("outbound|8080||")]
    upstream = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket_matches[0].transport_socket.typed_config.Unpack(upstream)
    common = upstream.common_tls_context
    (svid,) = common.tls_certificate_sds_secret_configs
    assert svid.name == "default"
    assert svid.sds_config.path_config_source.path == "/run/meshfed/identity/svid.json"
    rootca = common.combined_validation_context.validation_context_sds_secret_config
    assert rootca.sds_config.path_config_source.path == "/run/meshfed/identity/rootca.json"
    for resources in out.values():
        for r in resources:
            assert b"PRIVATE KEY" not in r.SerializeToString()


def test_a_sidecar_without_an_identity_directory_is_refused() -> None:
    state = _registry(_doc("echo-1", "us-east-1a")).state
    proxy = ProxyDescription("sidecar~demo~x", "sidecar", "demo", "", "frontend")
    with pytest.raises(ValueError, match="identity_dir"):
        generate(MESH, state, proxy)
