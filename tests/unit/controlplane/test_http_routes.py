"""TrafficPolicy ``http`` routes and ``connectionPool``: the model's validation and the Envoy
configuration a sidecar gets (issue #21). Pure."""

from __future__ import annotations

from dataclasses import replace

import pytest
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from federation.controlplane import resource
from federation.controlplane.generate.http_routes import FAULT_FILTER
from federation.controlplane.generate.proxy_config import generate
from federation.errors import InvalidDocumentError
from federation.model.documents import load_documents
from federation.sync.node import ProxyDescription, Upstream
from tests.unit.controlplane.test_generators import MESH, _doc, _registry, _sidecar, _unpack_hcm

HEAD = """
apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata: {name: echo, namespace: demo}
spec:
  host: echo.demo.svc.clusterset.local
"""


def _routes(spec: str, cluster: str = "east") -> list[route_pb2.Route]:
    registry = _registry(_doc("echo-1", "us-east-1a"))
    [policy] = load_documents(HEAD + spec)
    registry.set_federation([], [], [policy])  # type: ignore[list-item]
    mesh = MESH if cluster == "east" else MESH.__class__(cluster, MESH.trust_domain, MESH.locality)
    out = generate(mesh, registry.state, _sidecar())
    [config] = out[resource.ROUTE]
    [vhost] = [v for v in config.virtual_hosts if v.name.startswith("echo.demo")]
    return list(vhost.routes)


def _refused(spec: str) -> str:
    with pytest.raises(InvalidDocumentError) as err:
        load_documents(HEAD + spec)
    return "\n".join(err.value.problems)


def test_matches_become_one_envoy_route_each_in_order_then_the_default() -> None:
    routes = _routes(
        """
  http:
  - name: canary
    match:
    - headers: {x-canary: {exact: "1"}}
      method: {exact: POST}
    - uri: {regex: "^/v2/.*"}
      queryParams: {debug: {prefix: "y"}}
    route: [{destination: {cluster: west}}]
  - match: [{uri: {exact: /healthz}}]
    timeoutMs: 250
"""
    )
    assert [r.name for r in routes] == ["canary.0", "canary.1", "http-1", "default"]
    first, second, third, default = routes
    assert [(h.name, h.string_match.exact) for h in first.match.headers] == [
        (":method", "POST"),
        ("x-canary", "1"),
    ]
    assert first.match.prefix == "/"
    assert second.match.safe_regex.regex == "^/v2/.*"
    assert second.match.query_parameters[0].string_match.prefix == "y"
    assert first.route.cluster == "outbound|8080|west|echo.demo.svc.clusterset.local"
    assert third.match.path == "/healthz" and third.route.timeout.ToMilliseconds() == 250
    assert default.match.prefix == "/" and default.route.cluster.startswith("outbound|8080||")
    # meshfed's retries stay on every route (they make failover lossless)
    assert all(r.route.retry_policy.num_retries.value == 2 for r in routes)


def test_weights_fault_and_mirror_become_envoy_fields() -> None:
    [route] = _routes(
        """
  http:
  - route:
    - {destination: {cluster: east}, weight: 90}
    - {destination: {cluster: west}, weight: 10}
    fault:
      delay: {fixedDelayMs: 700, percentage: {value: 12.5}}
      abort: {httpStatus: 418, percentage: {value: 50}}
    mirror: {cluster: west}
    mirrorPercentage: {value: 5}
"""
    )
    weights = [
        (c.name.split("|")[2], c.weight.value) for c in route.route.weighted_clusters.clusters
    ]
    assert weights == [("east", 90), ("west", 10)]
    fault = fault_pb2.HTTPFault()
    route.typed_per_filter_config[FAULT_FILTER].Unpack(fault)
    assert fault.delay.fixed_delay.ToMilliseconds() == 700
    assert fault.delay.percentage.numerator == 125_000  # per million
    assert (fault.abort.http_status, fault.abort.percentage.numerator) == (418, 500_000)
    [mirror] = route.route.request_mirror_policies
    assert mirror.cluster == "outbound|8080|west|echo.demo.svc.clusterset.local"
    assert mirror.runtime_fraction.default_value.numerator == 50_000


def test_source_clusters_keep_a_route_for_those_callers_only() -> None:
    spec = """
  http:
  - match: [{sourceClusters: [east]}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
"""
    here = _routes(spec, "east")
    assert [r.name for r in here] == ["http-0"]  # matches all of east's requests: no default
    assert FAULT_FILTER in here[0].typed_per_filter_config
    elsewhere = _routes(spec, "west")
    assert [r.name for r in elsewhere] == ["default"]
    assert not elsewhere[0].typed_per_filter_config


def test_the_outbound_listener_always_carries_an_empty_fault_filter_before_the_router() -> None:
    registry = _registry(_doc("echo-1", "us-east-1a"))
    listeners = generate(MESH, registry.state, _sidecar())[resource.LISTENER]
    [outbound] = [li for li in listeners if li.name.startswith("outbound")]
    names = [f.name for f in _unpack_hcm(outbound).http_filters]
    assert names == ["envoy.filters.http.fault", "envoy.filters.http.router"]


def test_connection_pool_sets_circuit_breakers_and_retries_stay_uncapped_by_default() -> None:
    registry = _registry(_doc("echo-1", "us-east-1a"))
    [policy] = load_documents(
        HEAD + "  connectionPool: {maxConnections: 3, http1MaxPendingRequests: 1,"
        " http2MaxRequests: 7}\n"
    )
    registry.set_federation([], [], [policy])  # type: ignore[list-item]
    clusters = generate(MESH, registry.state, _sidecar())[resource.CLUSTER]
    [echo] = [c for c in clusters if c.name.endswith("echo.demo.svc.clusterset.local")]
    [t] = echo.circuit_breakers.thresholds
    assert (t.max_connections.value, t.max_pending_requests.value, t.max_requests.value) == (
        3,
        1,
        7,
    )
    assert t.max_retries.value == 2**32 - 1


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("  http:\n  - timeoutMs: 5\n  - timeoutMs: 6\n", "http[0] matches every request"),
        (
            "  http:\n  - match: [{headers: {x-a: {exact: '1'}}}]\n"
            "  - match: [{headers: {x-a: {exact: '1'}}}]\n",
            "http[1].match[0] is the same as a match of http[0]",
        ),
        ("  http:\n  - match: [{uri: {exact: /a, prefix: /a}}]\n", "exactly one of exact"),
        ("  http:\n  - match: [{uri: {regex: '(('}}]\n", "regex '(('"),
        ("  http:\n  - match: [{headers: {X-Bad Name: {exact: x}}}]\n", "not a lower-case"),
        (
            "  http:\n  - route: [{destination: {cluster: a}, weight: 50},"
            " {destination: {cluster: a}, weight: 50}]\n",
            "a destination is listed twice",
        ),
        ("  http:\n  - fault: {}\n", "give delay, abort or both"),
        (
            "  http:\n  - fault: {abort: {httpStatus: 99}}\n",
            "greater than or equal to 200",
        ),
        ("  http:\n  - mirrorPercentage: {value: 5}\n", "mirrorPercentage needs mirror"),
        ("  http:\n  - route: []\n", "at least one destination"),
        ("  split: {a: 100}\n  http:\n  - timeoutMs: 5\n", "split and http cannot be used"),
        ("  connectionPool: {maxConnections: 0}\n", "greater than or equal to 1"),
    ],
)
def test_bad_routes_are_refused_naming_the_field(spec: str, reason: str) -> None:
    assert reason in _refused(spec)


def test_policy_names_every_cluster_it_routes_mirrors_or_scopes_to() -> None:
    [policy] = load_documents(
        HEAD
        + """
  http:
  - match: [{sourceClusters: [x]}]
    route: [{destination: {cluster: y}}]
    mirror: {cluster: z}
"""
    )
    assert policy.spec.destination_clusters() == {"y", "z"}  # type: ignore[union-attr]
    assert policy.spec.clusters_named() == {"x", "y", "z"}  # type: ignore[union-attr]


SUBSET_POLICY = (
    HEAD
    + """
  subsets: [{name: v2, labels: {version: v2}}]
  http:
  - match: [{headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {cluster: west, subset: v2}}]
  - route: [{destination: {subset: v2}, weight: 10}, {destination: {}, weight: 90}]
"""
)
LABELLED = """
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: demo, labels: {{version: {version}}}}}
spec: {{service: echo, address: 127.0.1.{n}, serviceAccount: echo, locality: aws/us-east-1/us-east-1a,
  ports: [{{name: http, port: 8080, targetPort: 18080}}]}}
"""
WEST_IMPORT = """
apiVersion: meshfed.io/v1alpha1
kind: ServiceImport
metadata: {name: echo, namespace: demo}
spec:
  ports: [{name: http, port: 8080}]
  serviceAccounts: [echo]
  clusters:
  - {cluster: west, gateway: '10.0.2.1:15443', network: west, locality: aws/eu-west-1/eu-west-1a, endpoints: 2}
"""


def _subset_registry():
    registry = _registry(
        LABELLED.format(name="echo-1", version="v1", n=11),
        LABELLED.format(name="echo-2", version="v2", n=12),
    )
    [policy] = load_documents(SUBSET_POLICY)
    [imported] = load_documents(WEST_IMPORT)
    registry.set_federation([imported], [("demo", "echo")], [policy])  # type: ignore[list-item]
    return registry


def _endpoints(cla) -> list[tuple[str, int]]:
    return [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for loc in cla.endpoints
        for e in loc.lb_endpoints
    ]


def test_a_subset_in_one_cluster_goes_to_its_gateway_with_the_subsets_sni() -> None:
    out = generate(MESH, _subset_registry().state, _sidecar())
    clusters = {c.name: c for c in out[resource.CLUSTER]}
    cla = {a.cluster_name: a for a in out[resource.ENDPOINT]}
    west_v2 = "outbound|8080|v2@west|echo.demo.svc.clusterset.local"
    any_v2 = "outbound|8080|v2@*|echo.demo.svc.clusterset.local"
    assert _endpoints(cla[west_v2]) == [("10.0.2.1", 15443)]  # west's gateway only
    # anywhere: the local v2 replica (not v1) and west's gateway
    assert _endpoints(cla[any_v2]) == [("127.0.1.12", 15006), ("10.0.2.1", 15443)]
    tls = tls_pb2.UpstreamTlsContext()
    clusters[west_v2].transport_socket_matches[0].transport_socket.typed_config.Unpack(tls)
    assert tls.sni == "outbound_.8080_.v2_.echo.demo.svc.clusterset.local"
    canary, weighted = _routes_of(out)[:2]
    assert canary.route.cluster == west_v2
    assert [c.name for c in weighted.route.weighted_clusters.clusters] == [
        any_v2,
        "outbound|8080||echo.demo.svc.clusterset.local",
    ]


def test_the_gateway_and_the_subsets_sidecars_answer_the_subsets_sni() -> None:
    registry = _subset_registry()
    gateway = ProxyDescription(
        "gateway~east", "gateway", locality=MESH.locality, listen="127.0.1.1:15443"
    )
    out = generate(MESH, registry.state, gateway)
    [listener] = out[resource.LISTENER]
    assert [list(c.filter_chain_match.server_names) for c in listener.filter_chains] == [
        ["outbound_.8080_._.echo.demo.svc.clusterset.local"],
        ["outbound_.8080_.v2_.echo.demo.svc.clusterset.local"],
    ]
    cla = {a.cluster_name: a for a in out[resource.ENDPOINT]}
    assert _endpoints(cla["gateway|8080|v2|echo.demo.svc.clusterset.local"]) == [
        ("127.0.1.12", 15006)
    ]
    for name, names in (("echo-2", 2), ("echo-1", 1)):
        side = generate(MESH, registry.state, _sidecar(workload=name, sa="echo"))
        [inbound] = [li for li in side[resource.LISTENER] if li.name.startswith("inbound")]
        assert len(inbound.filter_chains[0].filter_chain_match.server_names) == names


def test_a_destination_naming_an_undefined_subset_is_refused() -> None:
    reason = _refused("  http:\n  - route: [{destination: {subset: v3}}]\n")
    assert "subset 'v3' is not defined in spec.subsets" in reason
    reason = _refused("  subsets: [{name: v2, labels: {a: b}}, {name: v2, labels: {a: c}}]\n")
    assert "subset 'v2' is defined twice" in reason


def _routes_of(out) -> list[route_pb2.Route]:
    [config] = out[resource.ROUTE]
    [vhost] = [v for v in config.virtual_hosts if v.name.startswith("echo.demo")]
    return list(vhost.routes)


TCP_WORKLOAD = """
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: db-1, namespace: demo}
spec: {service: db, address: 127.0.1.21, serviceAccount: db, locality: aws/us-east-1/us-east-1a,
  ports: [{name: tcp, port: 9000, targetPort: 19000, protocol: tcp}]}
"""
DB_IMPORT = """
apiVersion: meshfed.io/v1alpha1
kind: ServiceImport
metadata: {name: db, namespace: demo}
spec:
  ports: [{name: tcp, port: 9000, protocol: tcp}]
  serviceAccounts: [db]
  clusters:
  - {cluster: west, gateway: '10.0.2.1:15443', network: west, locality: aws/eu-west-1/eu-west-1a, endpoints: 1}
"""


def _tcp_listeners(policy_spec: str | None, upstreams: str) -> dict[str, tcp_proxy_pb2.TcpProxy]:
    registry = _registry(TCP_WORKLOAD)
    [imported] = load_documents(DB_IMPORT)
    policies = []
    if policy_spec is not None:
        policies = load_documents(HEAD.replace("echo", "db") + policy_spec)
    registry.set_federation([imported], [], policies)  # type: ignore[arg-type]
    proxy = replace(
        _sidecar(), upstreams=tuple(Upstream.parse(u) for u in upstreams.split(",") if u)
    )
    out = {}
    for li in generate(MESH, registry.state, proxy)[resource.LISTENER]:
        if li.name.startswith("outbound_tcp|"):
            assert li.address.socket_address.address == "127.0.0.1"
            tcp = tcp_proxy_pb2.TcpProxy()
            li.filter_chains[0].filters[0].typed_config.Unpack(tcp)
            out[li.name] = tcp
    return out


def test_an_upstream_gets_a_loopback_tcp_listener_to_the_services_cluster() -> None:
    out = _tcp_listeners(None, "db.demo:9000=19432,nope.demo:9000=19433,db.demo:9001=19434")
    assert list(out) == ["outbound_tcp|19432"]  # unknown services and ports wait
    assert out["outbound_tcp|19432"].cluster == "outbound|9000||db.demo.svc.clusterset.local"


def test_tcp_routes_weight_connections_by_cluster_for_the_callers_they_apply_to() -> None:
    spec = """
  tcp:
  - match: [{sourceClusters: [elsewhere]}]
    route: [{destination: {cluster: west}}]
  - route: [{destination: {cluster: east}, weight: 30}, {destination: {cluster: west}, weight: 70}]
"""
    [tcp] = _tcp_listeners(spec, "db.demo:9000=19432").values()
    assert [(c.name.split("|")[2], c.weight) for c in tcp.weighted_clusters.clusters] == [
        ("east", 30),
        ("west", 70),
    ]


@pytest.mark.parametrize(
    "text", ["db:9000=1", "db.demo=1", "db.demo:x=1", "db.demo:9000=70000", "db.demo.x:1=2"]
)
def test_malformed_upstreams_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"SERVICE\.NAMESPACE:PORT=LOCAL_PORT|numbers|1-65535"):
        Upstream.parse(text)


def test_a_subsets_traffic_policy_overrides_circuit_breaking_and_outlier_detection() -> None:
    registry = _registry(
        LABELLED.format(name="echo-1", version="v1", n=11),
        LABELLED.format(name="echo-2", version="v2", n=12),
    )
    [policy] = load_documents(
        HEAD
        + """
  connectionPool: {http2MaxRequests: 100}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {http2MaxRequests: 5}
      outlierDetection: {consecutive5xx: 1}
  http:
  - route: [{destination: {subset: v2}, weight: 10}, {destination: {}, weight: 90}]
"""
    )
    registry.set_federation([], [], [policy])  # type: ignore[list-item]
    clusters = {c.name: c for c in generate(MESH, registry.state, _sidecar())[resource.CLUSTER]}
    v2 = clusters["outbound|8080|v2@*|echo.demo.svc.clusterset.local"]
    whole = clusters["outbound|8080||echo.demo.svc.clusterset.local"]
    assert v2.circuit_breakers.thresholds[0].max_requests.value == 5
    assert v2.outlier_detection.consecutive_5xx.value == 1
    assert whole.circuit_breakers.thresholds[0].max_requests.value == 100
    assert whole.outlier_detection.consecutive_5xx.value == 3  # meshfed's default


def test_explain_lists_the_routes_a_caller_in_a_cluster_gets() -> None:
    from federation.controlplane.explain import routes_for

    [policy] = load_documents(
        HEAD
        + """
  subsets: [{name: v2, labels: {version: v2}}]
  http:
  - name: chaos
    match: [{sourceClusters: [west]}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
  - name: canary
    match: [{headers: {x-canary: {exact: "1"}}, uri: {prefix: /api}}]
    route: [{destination: {cluster: west, subset: v2}}]
    timeoutMs: 500
    mirror: {cluster: east}
  tcp:
  - route: [{destination: {cluster: west}}]
"""
    )
    rows = routes_for(policy, "east")  # type: ignore[arg-type]
    assert [r["name"] for r in rows] == ["canary", "tcp-0"]  # chaos is for west's callers
    canary = rows[0]
    assert canary["match"] == ["uri prefix /api; header x-canary exact 1"]
    assert canary["to"] == ["100% cluster west, subset v2"]
    assert canary["timeoutMs"] == 500 and canary["mirror"] == "100% to cluster east"
    assert [r["name"] for r in routes_for(policy, "west")][:1] == ["chaos"]  # type: ignore[arg-type]


def test_proxyless_grpc_clients_get_the_routes_grpc_can_follow() -> None:
    registry = _registry(_doc("echo-1", "us-east-1a"))
    [policy] = load_documents(
        HEAD
        + """
  subsets: [{name: v2, labels: {version: v2}}]
  http:
  - name: canary
    match: [{headers: {x-canary: {prefix: "y"}}}, {method: {exact: GET}}]
    route: [{destination: {cluster: west}, weight: 30}, {destination: {}, weight: 70}]
    timeoutMs: 800
    fault: {abort: {httpStatus: 503, percentage: {value: 1}}}
  - name: v2-only
    match: [{uri: {prefix: /v2}}]
    route: [{destination: {subset: v2}}]
"""
    )
    registry.set_federation([], [], [policy])  # type: ignore[list-item]
    grpc = ProxyDescription("g", "grpc", "demo", locality=MESH.locality)
    out = generate(MESH, registry.state, grpc)
    config = next(r for r in out[resource.ROUTE] if r.name.endswith(":8080"))
    canary, default = config.virtual_hosts[0].routes
    assert canary.name == "canary"  # the method entry and the subset route are left out
    assert canary.match.headers[0].prefix_match == "y" and canary.match.prefix == ""
    assert [c.weight.value for c in canary.route.weighted_clusters.clusters] == [30, 70]
    assert canary.route.max_stream_duration.max_stream_duration.ToMilliseconds() == 800
    assert FAULT_FILTER in canary.typed_per_filter_config
    assert default.name == "default" and default.match.prefix == ""
    [listener] = [li for li in out[resource.LISTENER] if li.name.endswith(":8080")]
    manager = hcm.HttpConnectionManager()
    listener.api_listener.api_listener.Unpack(manager)
    assert [f.name for f in manager.http_filters] == [FAULT_FILTER, "envoy.filters.http.router"]


def test_a_route_to_another_service_weights_that_services_cluster() -> None:
    routes = _routes(
        """
  http:
  - route:
    - {weight: 90}
    - {destination: {host: echo-canary.demo.svc.clusterset.local, port: 9090}, weight: 10}
"""
    )
    [split] = routes  # the route matches everything: no default after it
    assert [(c.name, c.weight.value) for c in split.route.weighted_clusters.clusters] == [
        ("outbound|8080||echo.demo.svc.clusterset.local", 90),
        ("outbound|9090||echo-canary.demo.svc.clusterset.local", 10),
    ]
    assert "no cluster or subset" in _refused(
        "  http: [{route: [{destination: {host: a.demo.svc.clusterset.local, subset: v1}}]}]\n"
    )
    assert "port goes with host" in _refused("  http: [{route: [{destination: {port: 80}}]}]\n")


def test_header_operations_become_the_routes_header_fields() -> None:
    [route, _default] = _routes(
        """
  http:
  - match: [{uri: {prefix: /api}}]
    headers:
      request: {set: {x-tenant: blue}, add: {x-trace: "1"}, remove: [x-debug]}
      response: {set: {x-mesh: meshfed}, remove: [server]}
"""
    )
    from envoy.config.core.v3 import base_pb2

    option = base_pb2.HeaderValueOption
    added = [(h.header.key, h.header.value, h.append_action) for h in route.request_headers_to_add]
    assert added == [
        ("x-tenant", "blue", option.OVERWRITE_IF_EXISTS_OR_ADD),
        ("x-trace", "1", option.APPEND_IF_EXISTS_OR_ADD),
    ]
    assert list(route.request_headers_to_remove) == ["x-debug"]
    assert [h.header.key for h in route.response_headers_to_add] == ["x-mesh"]
    assert list(route.response_headers_to_remove) == ["server"]
    assert "set by the mesh" in _refused(
        "  http: [{headers: {request: {set: {x-forwarded-client-cert: x}}}}]\n"
    )
    assert "lower-case HTTP header name" in _refused(
        "  http: [{headers: {request: {remove: [':path']}}}]\n"
    )


def test_rewrites_and_redirects_become_envoy_route_fields() -> None:
    moved, rewritten, regex, default = _routes(
        """
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: echo.example, port: 8443, scheme: https, redirectCode: 307}
  - match: [{uri: {prefix: /v1}}]
    rewrite: {uri: /v2, authority: echo-v2}
  - match: [{uri: {regex: "/r/.*"}}]
    rewrite: {uriRegexRewrite: {match: "^/r/", rewrite: "/"}}
"""
    )
    r = moved.redirect
    assert (r.path_redirect, r.host_redirect, r.port_redirect, r.scheme_redirect) == (
        "/new", "echo.example", 8443, "https",
    )  # fmt: skip
    from envoy.config.route.v3 import route_components_pb2 as rc

    assert r.response_code == rc.RedirectAction.TEMPORARY_REDIRECT
    assert not moved.HasField("route")
    assert rewritten.route.prefix_rewrite == "/v2"
    assert rewritten.route.host_rewrite_literal == "echo-v2"
    assert regex.route.regex_rewrite.pattern.regex == "^/r/"
    assert regex.route.regex_rewrite.substitution == "/"
    assert default.name == "default"
    assert "use rewrite.uriRegexRewrite" in _refused(
        "  http: [{match: [{uri: {regex: /a.*}}], rewrite: {uri: /b}}]\n"
    )
    assert "no rewrite, mirror or fault with it" in _refused(
        "  http: [{redirect: {uri: /x}, rewrite: {uri: /y}}]\n"
    )
