"""Generators: YAML state in, Envoy protos out (as istio's pilot tests do)."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.controlplane import resource
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import Health, ServiceRegistry
from federation.controlplane.snapshot import Snapshot
from federation.model.documents import load_documents
from federation.model.locality import Locality
from federation.sync.node import ProxyDescription

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
    assert cluster.common_lb_config.healthy_panic_threshold.value == 1  # see clusters.py
    # a removed host leaves at once, even while Envoy's own check still calls it healthy
    assert cluster.ignore_health_on_host_removal
    # a new host (or one that failed) is re-checked within 250 ms, with or without traffic;
    # a healthy host of a cluster without traffic only every minute
    check = cluster.health_checks[0]
    assert check.interval.ToMilliseconds() == 1000
    assert check.unhealthy_interval.ToMilliseconds() == 250
    assert check.no_traffic_interval.ToMilliseconds() == 250
    assert check.no_traffic_healthy_interval.ToMilliseconds() == 60_000
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
    [
        ("STRICT", ["tls", "tls"]),
        ("PERMISSIVE", ["tls", "tls", "raw_buffer"]),
        ("DISABLE", ["raw_buffer"]),
    ],
)
def test_inbound_listener_mtls_modes(mode, chains) -> None:
    state = _registry(_doc("echo-1", "us-east-1a", mtls=mode)).state
    out = generate(MESH, state, _sidecar("echo-1", sa="echo"))
    inbound = next(listener for listener in out[resource.LISTENER] if listener.name == "inbound")
    assert [c.filter_chain_match.transport_protocol for c in inbound.filter_chains] == chains
    for chain in inbound.filter_chains:
        if chain.filter_chain_match.transport_protocol == "tls":
            # one chain per port by meshfed's SNI; one without SNI (proxyless gRPC callers)
            assert list(chain.filter_chain_match.server_names) == (
                []
                if chain.name == "mtls|authority"
                else ["outbound_.8080_._.echo.demo.svc.clusterset.local"]
            )
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


def test_grpc_gets_api_listeners_and_mtls_to_sidecars() -> None:
    state = _registry(
        _doc("echo-1", "us-east-1a"), _doc("plain-1", "us-east-1a", tls="disabled")
    ).state
    out = generate(MESH, state, ProxyDescription("g", "grpc", "demo"))
    names = sorted(listener.name for listener in out[resource.LISTENER])
    assert names == ["echo.demo.svc.clusterset.local", "echo.demo.svc.clusterset.local:8080"]
    assert all(listener.HasField("api_listener") for listener in out[resource.LISTENER])
    # one transport socket per gRPC cluster: the sidecar's endpoints win, over mTLS
    (cla,) = out[resource.ENDPOINT]
    hosts = [e.endpoint.hostname for loc in cla.endpoints for e in loc.lb_endpoints]
    assert hosts == ["echo-1"]
    (cluster,) = out[resource.CLUSTER]
    ctx = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(ctx)
    common = ctx.common_tls_context
    assert common.tls_certificate_provider_instance.instance_name == "default"
    validation = common.validation_context
    assert validation.ca_certificate_provider_instance.instance_name == "default"
    assert [m.exact for m in validation.match_subject_alt_names] == [
        "spiffe://example.org/ns/demo/sa/echo"
    ]
    assert out[resource.SECRET] == []


def test_grpc_speaks_plain_text_to_workloads_without_sidecars() -> None:
    state = _registry(_doc("plain-1", "us-east-1a", tls="disabled")).state
    out = generate(MESH, state, ProxyDescription("g", "grpc", "demo"))
    (cla,) = out[resource.ENDPOINT]
    assert [e.endpoint.hostname for loc in cla.endpoints for e in loc.lb_endpoints] == ["plain-1"]
    (cluster,) = out[resource.CLUSTER]
    assert not cluster.HasField("transport_socket")


def test_inbound_authority_chain_routes_by_authority_with_rbac_per_route() -> None:
    from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter

    deny = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-intruder-on-8080, namespace: demo}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["*/sa/intruder"]}}], to: [{operation: {ports: ["8080"]}}]}]
"""
    two_ports = _doc("echo-1", "us-east-1a").replace(
        "ports: [{name: http, port: 8080, targetPort: 18080}]",
        "ports: [{name: http, port: 8080, targetPort: 18080},"
        " {name: admin, port: 9090, targetPort: 19090}]",
    )
    registry = _registry(two_ports)
    [policy] = load_documents(deny)
    registry.set_federation([], [], authorization_policies=[policy])  # type: ignore[list-item]
    out = generate(MESH, registry.state, _sidecar("echo-1", sa="echo"))
    inbound = next(listener for listener in out[resource.LISTENER] if listener.name == "inbound")
    chain = next(c for c in inbound.filter_chains if c.name == "mtls|authority")
    assert not chain.filter_chain_match.server_names
    manager = hcm.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(manager)
    assert [f.name for f in manager.http_filters] == [
        "envoy.filters.http.rbac.deny",
        "envoy.filters.http.router",
    ]
    hosts = {tuple(v.domains): v.routes[0] for v in manager.route_config.virtual_hosts}
    first = hosts[("echo.demo.svc.clusterset.local:8080", "echo.demo.svc.clusterset.local")]
    second = hosts[("echo.demo.svc.clusterset.local:9090",)]
    assert first.route.cluster == "inbound|18080|http"
    assert second.route.cluster == "inbound|19090|admin"
    on, off = rbac_filter.RBACPerRoute(), rbac_filter.RBACPerRoute()
    first.typed_per_filter_config["envoy.filters.http.rbac.deny"].Unpack(on)
    second.typed_per_filter_config["envoy.filters.http.rbac.deny"].Unpack(off)
    assert list(on.rbac.rules.policies) == ["demo.no-intruder-on-8080[0]"]
    assert not off.HasField("rbac")  # the DENY names port 8080 only: disabled on 9090


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


def test_consistency_is_taken_from_a_published_snapshot_only_for_an_eds_content_change() -> None:
    """Issue #37: a snapshot that differs from a consistent one in EDS contents alone is
    consistent without a full check; one whose references changed is checked whole, and a
    dangling one is still found."""
    registry = _registry(_doc("echo-1", "us-east-1a"))
    published = Snapshot.build(generate(MESH, registry.state, _sidecar()))
    assert published.problems() == []
    registry.set_health(("demo", "echo-1"), Health.UNHEALTHY)
    eds_only = Snapshot.build(generate(MESH, registry.state, _sidecar()), published)
    assert eds_only._refs_as_in(published) and eds_only.problems(since=published) == []
    out = generate(MESH, registry.state, _sidecar())
    no_rds = Snapshot.build(dict(out, **{resource.ROUTE: []}), published)
    assert any("uses route outbound" in p for p in no_rds.problems(since=published))
    no_eds = Snapshot.build(dict(out, **{resource.ENDPOINT: []}), published)
    assert any("uses EDS" in p for p in no_eds.problems(since=published))


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


def test_proxyless_grpc_servers_get_their_listener_only_as_their_own_service_account() -> None:
    state = _registry(
        _doc("grpc-x", "us-east-1a"), _doc("plain-1", "us-east-1a", tls="disabled")
    ).state

    def server_listeners(workload: str, sa: str) -> list:  # type: ignore[type-arg]
        proxy = ProxyDescription("g", "grpc", "demo", workload, sa)
        out = generate(MESH, state, proxy)[resource.LISTENER]
        return [lst for lst in out if lst.name.startswith("grpc/server?")]

    [mutual] = server_listeners("grpc-x", "echo")
    assert mutual.name == "grpc/server?xds.resource.listening_address=127.0.1.6:15006"
    ctx = tls_pb2.DownstreamTlsContext()
    mutual.filter_chains[0].transport_socket.typed_config.Unpack(ctx)
    assert ctx.require_client_certificate.value
    assert ctx.common_tls_context.tls_certificate_provider_instance.instance_name == "default"
    [plain] = server_listeners("plain-1", "echo")
    assert plain.name.endswith("=127.0.1.7:18080")
    assert not plain.filter_chains[0].HasField("transport_socket")  # callers dial it in plain text
    assert server_listeners("grpc-x", "intruder") == []  # not its identity: nothing


def _http_port(tls_modes: frozenset[str], protocol: str = "http"):
    from federation.controlplane.generate.services import ServicePort

    return ServicePort("demo", "echo", "http", 8080, protocol, ("echo",), tls_modes)


def _h2_keepalive(cluster) -> tuple[str, float, float]:
    from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

    options = hpo.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].Unpack(options)
    which = options.WhichOneof("upstream_protocol_options")
    if which == "explicit_http_config" and options.explicit_http_config.HasField(
        "http2_protocol_options"
    ):
        ka = options.explicit_http_config.http2_protocol_options.connection_keepalive
        return "h2", ka.interval.ToMilliseconds(), ka.timeout.ToMilliseconds()
    if which == "explicit_http_config":
        return "http1", 0, 0
    return which or "", 0, 0


def test_sidecars_speak_http2_with_ping_between_them():
    """Issue #16: an http port whose endpoints all run sidecars gets HTTP/2 (ALPN h2) with a
    PING every 200 ms and a timeout of two round trips to the farthest endpoint plus 100 ms,
    so a silently dead path is closed and retried; with a plain-text endpoint it keeps the
    caller's protocol; a sidecar talks HTTP/1.1 to its own http app."""
    from federation.controlplane.generate.clusters import (
        inbound_cluster,
        keepalive_timeout_ms,
        outbound_cluster,
    )
    from federation.controlplane.generate.common import ProxyTls

    assert keepalive_timeout_ms([0.2, 40.0, 120.0]) == 400  # 2 x 120 + 100, up to 100 ms
    assert keepalive_timeout_ms([0.2, 80.0]) == 300  # floor
    assert keepalive_timeout_ms([350.0]) == 800
    assert keepalive_timeout_ms([1500.0]) == 2000  # ceiling
    assert keepalive_timeout_ms([40.0, None]) == 1000  # a distance unknown
    tls = ProxyTls("example.org", "/id")
    mutual = outbound_cluster(_http_port(frozenset({"mutual"})), tls, rtts_ms=[0.2, 120.0])
    assert _h2_keepalive(mutual) == ("h2", 200, 400)
    context = tls_pb2.UpstreamTlsContext()
    mutual.transport_socket_matches[0].transport_socket.typed_config.Unpack(context)
    assert list(context.common_tls_context.alpn_protocols) == ["h2"]
    mixed = outbound_cluster(_http_port(frozenset({"mutual", "disabled"})), tls)
    assert _h2_keepalive(mixed)[0] == "use_downstream_protocol_config"
    mixed.transport_socket_matches[0].transport_socket.typed_config.Unpack(context)
    assert list(context.common_tls_context.alpn_protocols) == []
    grpc = outbound_cluster(_http_port(frozenset({"disabled"}), "grpc"), tls)
    assert _h2_keepalive(grpc) == ("h2", 200, 1000)
    assert _h2_keepalive(inbound_cluster("http", 18080, "http")) == ("http1", 0, 0)
    assert _h2_keepalive(inbound_cluster("grpc", 19090, "grpc"))[0] == "h2"


def test_sidecars_of_one_locality_share_outbound_decisions_with_the_same_result() -> None:
    """A rebuild decides each caller locality once (one PushContext per version); a sidecar's
    resources are the same as when it is generated on its own, and two sidecars of one
    locality get the very same ClusterLoadAssignment objects."""
    from federation.controlplane.generate.context import PushContext

    state = _registry(_doc("echo-1", "us-east-1a"), _doc("echo-22", "us-east-1b")).state
    plans = PushContext(MESH, state)
    one, two = _sidecar(), _sidecar("echo-1", sa="echo")
    shared = [generate(MESH, state, p, plans) for p in (one, two)]
    alone = [generate(MESH, state, p) for p in (one, two)]
    for a, b in zip(shared, alone, strict=True):
        assert Snapshot.build(a).versions == Snapshot.build(b).versions
    assert shared[0][resource.ENDPOINT][0] is shared[1][resource.ENDPOINT][0]
    other = generate(MESH, _registry(_doc("echo-1", "us-east-1a")).state, one, plans)
    assert len(other[resource.ENDPOINT][0].endpoints) == 1  # context of another state: not used


def _log_format(manager: hcm.HttpConnectionManager) -> str:
    log = stream_pb2.StdoutAccessLog()
    manager.access_log[0].typed_config.Unpack(log)
    return log.log_format.text_format_source.inline_string


def test_access_logs_name_source_and_destination_cluster_and_locality() -> None:
    """Issue #17: outbound lines carry this sidecar's cluster and locality and the serving
    endpoint's ``<cluster>/<zone>``; inbound lines the caller's cluster claim (its SVID's DNS
    SAN) and this workload's ``<cluster>/<zone>``."""
    state = _registry(_doc("echo-1", "us-east-1a")).state
    out = generate(MESH, state, _sidecar("echo-1", sa="echo"))
    by_name = {listener.name: listener for listener in out[resource.LISTENER]}
    outbound = _log_format(_unpack_hcm(by_name["outbound_http"]))
    assert outbound.startswith(
        "outbound src=east/aws/us-east-1/us-east-1a dst=%RESP(X-MESHFED-SERVED-BY)% ["
    )
    inbound = _log_format(_unpack_hcm(by_name["inbound"]))
    assert inbound.startswith("inbound src=%DOWNSTREAM_PEER_DNS_SAN% dst=east/us-east-1a [")


def test_tracing_only_with_a_collector() -> None:
    """Issue #17: ``--otlp-collector`` gives every sidecar HTTP manager Envoy's OpenTelemetry
    tracer and a cluster for the collector; without it, neither."""
    from dataclasses import replace

    from federation.controlplane.generate.tracing import COLLECTOR_CLUSTER

    state = _registry(_doc("echo-1", "us-east-1a")).state
    plain = generate(MESH, state, _sidecar("echo-1", sa="echo"))
    assert COLLECTOR_CLUSTER not in {c.name for c in plain[resource.CLUSTER]}
    assert not any(_unpack_hcm(x).HasField("tracing") for x in plain[resource.LISTENER])
    traced = generate(
        replace(MESH, otlp_collector="otel.example:4317"), state, _sidecar("echo-1", sa="echo")
    )
    (collector,) = [c for c in traced[resource.CLUSTER] if c.name == COLLECTOR_CLUSTER]
    address = collector.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "otel.example",
        4317,
    )
    for listener in traced[resource.LISTENER]:
        provider = _unpack_hcm(listener).tracing.provider
        assert provider.name == "envoy.tracers.opentelemetry"


def test_the_traffic_log_goes_to_the_agents_fifo_only_when_asked_and_counted() -> None:
    """Issue #17: a sidecar whose agent names a FIFO (``meshfed.io/traffic_log``) gets a file
    access log of TRAFFIC_LOG_FORMAT to it on its outbound listener; without a FIFO, or from a
    control plane started ``--no-telemetry``, none; the FIFO is part of the proxy's class."""
    from dataclasses import replace

    from envoy.extensions.access_loggers.file.v3 import file_pb2

    from federation.controlplane.builder import proxy_class
    from federation.controlplane.generate.listeners import TRAFFIC_LOG_FORMAT

    state = _registry(_doc("echo-1", "us-east-1a")).state
    tapped = replace(_sidecar("echo-1", sa="echo"), traffic_log="/run/meshfed/traffic.fifo")

    def loggers(mesh: MeshContext, proxy: ProxyDescription) -> list[str]:
        out = generate(mesh, state, proxy)
        listener = next(x for x in out[resource.LISTENER] if x.name == "outbound_http")
        return [log.name for log in _unpack_hcm(listener).access_log]

    assert loggers(MESH, tapped) == ["envoy.access_loggers.stdout", "envoy.access_loggers.file"]
    assert loggers(MESH, _sidecar("echo-1", sa="echo")) == ["envoy.access_loggers.stdout"]
    assert loggers(replace(MESH, telemetry=False), tapped) == ["envoy.access_loggers.stdout"]
    out = generate(MESH, state, tapped)
    listener = next(x for x in out[resource.LISTENER] if x.name == "outbound_http")
    log = file_pb2.FileAccessLog()
    _unpack_hcm(listener).access_log[1].typed_config.Unpack(log)
    assert log.path == "/run/meshfed/traffic.fifo"
    assert log.log_format.text_format_source.inline_string == TRAFFIC_LOG_FORMAT
    other = replace(tapped, traffic_log="/other.fifo")
    assert proxy_class(tapped, state) != proxy_class(other, state)
    assert ProxyDescription.from_node(_node_of(tapped)).traffic_log == tapped.traffic_log


def _node_of(proxy: ProxyDescription):  # type: ignore[no-untyped-def]
    from envoy.config.core.v3 import base_pb2

    node = base_pb2.Node(id=proxy.node_id)
    node.metadata.update(proxy.metadata())
    return node


def test_a_plan_becomes_priority_zero_weights_for_sidecars_and_proxyless_grpc() -> None:
    """Issue #18: with cost mode optimize and the controller's plan for the caller's locality
    (60 % zone a, 40 % zone b), both a sidecar's and a proxyless gRPC client's EDS carry the
    split at priority 0; with the policy in another mode the plan is ignored."""
    from federation.sync.messages import RoutingPlan

    registry = _registry(_doc("echo-1", "us-east-1a"), _doc("echo-22", "us-east-1b"))
    policy = """
apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata: {name: echo, namespace: demo}
spec: {host: echo.demo.svc.clusterset.local, cost: {mode: MODE}}
"""
    plan = RoutingPlan(
        "demo",
        "echo",
        "aws/us-east-1/us-east-1a",
        (("east", "aws/us-east-1/us-east-1a", 0.6), ("east", "aws/us-east-1/us-east-1b", 0.4)),
    )

    def split(mode: str, proxy: ProxyDescription) -> list[tuple[str, int, int]]:
        [doc] = load_documents(policy.replace("MODE", mode))
        registry.set_federation([], [], [doc], plans=[plan])  # type: ignore[list-item]
        (cla,) = generate(MESH, registry.state, proxy)[resource.ENDPOINT]
        return [(e.locality.zone, e.priority, e.load_balancing_weight.value) for e in cla.endpoints]

    grpc = ProxyDescription("g", "grpc", "demo", locality=Locality("aws/us-east-1", "us-east-1a"))
    for proxy in (_sidecar(), grpc):
        assert split("optimize", proxy) == [("us-east-1a", 0, 6000), ("us-east-1b", 0, 4000)]
        assert [p for _, p, _ in split("prefer-cheaper", proxy)] == [0, 1]


@settings(max_examples=200, deadline=None)
@given(
    first=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2)), max_size=6),
    edits=st.lists(
        st.tuples(st.sampled_from(["same", "content", "rename", "drop", "add"]), st.integers(0, 6)),
        max_size=8,
    ),
)
def test_a_snapshot_built_from_the_previous_one_is_the_one_built_from_scratch(first, edits) -> None:
    """Issue #37: :meth:`Snapshot.build` with ``previous`` takes over what it can (objects
    that are the previous build's, a type patched where objects of the same name were
    replaced); whatever the edit, the snapshot is the one built without ``previous``."""
    from envoy.config.cluster.v3 import cluster_pb2

    def cluster(name: int, timeout: int) -> cluster_pb2.Cluster:
        return cluster_pb2.Cluster(name=f"c{name}", connect_timeout={"seconds": timeout})

    objects = list({n: cluster(n, t) for n, t in first}.values())
    before = Snapshot.build({resource.CLUSTER: objects})
    now = list(objects)
    for edit, n in edits:
        i = n % len(now) if now else 0
        if edit == "content" and now:
            now[i] = cluster(int(now[i].name[1:]), now[i].connect_timeout.seconds + 1)
        elif edit == "rename" and now:
            now[i] = cluster(n + 10, 1)
        elif edit == "drop" and now:
            del now[i]
        elif edit == "add":
            now.insert(i, cluster(n + 20, 1))
        elif edit == "same" and now:
            now[i] = cluster(int(now[i].name[1:]), now[i].connect_timeout.seconds)
    after = Snapshot.build({resource.CLUSTER: now}, before)
    scratch = Snapshot.build({resource.CLUSTER: now})
    assert after.versions == scratch.versions
    assert after.resource_versions == scratch.resource_versions
    assert list(after.resources[resource.CLUSTER]) == list(scratch.resources[resource.CLUSTER])
    assert all(
        after.resources[resource.CLUSTER][n] == m
        for n, m in scratch.resources[resource.CLUSTER].items()
    )
