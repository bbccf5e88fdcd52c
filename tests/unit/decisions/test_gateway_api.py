"""Gateway API HTTPRoute on a Service (GAMMA) translated to TrafficPolicy (issue #40):
weights, Gateway API's match precedence, PathPrefix by segments, refusals by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.errors import InvalidDocumentError
from federation.model.documents import load_documents
from federation.model.gateway_api import HTTPRoute, route_status, route_warnings, translate_routes
from federation.model.translated import effective_traffic_policies

SPLIT = (Path(__file__).parents[2] / "data" / "gateway-api" / "httproute-split.yaml").read_text()
HEAD = (
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
    "metadata: {name: r, namespace: demo}\n"
)
PARENT = "parentRefs: [{name: echo, kind: Service, group: ''}]"


def test_the_gamma_split_makes_90_10_to_the_service_and_another() -> None:
    [route] = load_documents(SPLIT)
    result = translate_routes([route])
    assert result.problems == []
    policy = result.policies[("demo", "echo")]
    [http] = policy.spec.http
    assert [(d.destination.host, d.destination.port, d.weight) for d in http.route] == [
        (None, None, 90),
        ("echo-canary.demo.svc.clusterset.local", 8080, 10),
    ]
    assert http.match[0].uri is not None and http.match[0].uri.prefix == "/"
    assert isinstance(route, HTTPRoute)
    assert route_warnings(route) == [
        "spec.parentRefs.0.port 8080: meshfed applies the routes to every HTTP port of the Service"
    ]


def test_relative_weights_become_percentages_that_sum_to_100() -> None:
    [doc] = load_documents(
        HEAD + f"spec: {{{PARENT}, rules: [{{backendRefs: [{{name: echo, port: 80}},"
        " {name: b, port: 80, weight: 2}]}]}\n"
    )
    [policy] = translate_routes([doc]).policies.values()
    assert [d.weight for d in policy.spec.http[0].route] == [33, 67]


def test_matches_are_ordered_as_gateway_api_orders_them_not_as_written() -> None:
    [doc] = load_documents(
        HEAD + f"spec: {{{PARENT}, rules: ["
        "{matches: [{path: {type: PathPrefix, value: /}}], backendRefs: [{name: echo, port: 80}]},"
        "{matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: X-Canary, value: '1'}]},"
        " {path: {type: Exact, value: /api/v2}}], backendRefs: [{name: canary, port: 80}]},"
        "{matches: [{path: {type: PathPrefix, value: /api}}], backendRefs: [{name: echo, port: 80}]}"
        "]}\n"
    )
    [policy] = translate_routes([doc]).policies.values()
    described = [
        (
            r.match[0].uri.exact or r.match[0].uri.regex or r.match[0].uri.prefix,
            sorted(r.match[0].headers),
            r.route[0].destination.host is not None,
        )
        for r in policy.spec.http
        if r.match[0].uri is not None
    ]
    assert described == [
        ("/api/v2", [], True),  # Exact first
        ("/api(/.*)?", ["x-canary"], True),  # longest prefix; with a header before without
        ("/api(/.*)?", [], False),
        ("/", [], False),
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{parentRefs: [{name: gw}], rules: []}", "spec.parentRefs.0: not supported by meshfed: Gateway parent"),
        (f"{{{PARENT}, rules: [{{backendRefs: [{{name: b, namespace: other, port: 80}}]}}]}}",
         "spec.rules.0.backendRefs.0.namespace: no ReferenceGrant in namespace 'other'"),
        (f"{{{PARENT}, rules: [{{backendRefs: [{{name: b}}]}}]}}", "spec.rules.0.backendRefs.0.port: required"),
        (f"{{{PARENT}, rules: [{{backendRefs: [{{name: echo, port: 80, weight: 0}}]}}]}}", "every weight is 0"),
        (f"{{{PARENT}, rules: [{{filters: [{{type: CORS, cors: {{}}}}], backendRefs: [{{name: echo, port: 80}}]}}]}}",
         "spec.rules.0.filters.0.cors: not supported by meshfed yet"),
        (f"{{{PARENT}, rules: [{{matches: [{{path: {{type: Exact, value: /a}}}}], filters: [{{type: URLRewrite,"
         " urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}], backendRefs: [{name: echo, port: 80}]}]}",
         "ReplacePrefixMatch needs the rule's match to be a PathPrefix"),
    ],
)  # fmt: skip
def test_what_meshfed_cannot_honour_is_refused_by_field(spec, expected) -> None:
    try:
        docs = load_documents(HEAD + f"spec: {spec}\n")
    except InvalidDocumentError as err:
        assert expected in "\n".join(err.problems)
        return
    problems = [str(p) for p in translate_routes(docs).problems]
    assert any(expected in p for p in problems), problems


def test_an_httproute_beside_a_virtualservice_for_one_service_is_a_conflict() -> None:
    vs = (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: echo, namespace: demo}\nspec: {hosts: [echo]}\n"
    )
    policies, problems = effective_traffic_policies(load_documents(vs + "---\n" + SPLIT))
    assert [p.metadata.annotations["meshfed.io/translated-from"] for p in policies] == [
        "VirtualService demo/echo"
    ]
    assert "has both" in str(problems[0]) and "HTTPRoute demo/echo-split" in str(problems[0])


def test_a_grpcroute_matches_the_rpc_path_longest_service_first() -> None:
    [doc] = load_documents(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n"
        "metadata: {name: g, namespace: demo}\n"
        f"spec: {{{PARENT}, rules: ["
        "{backendRefs: [{name: echo, port: 9090}]},"
        "{matches: [{method: {service: echo.v1.Echo, method: Say}},"
        " {method: {service: echo.v1.Echo}, headers: [{name: X-Canary, value: '1'}]}],"
        " backendRefs: [{name: echo-canary, port: 9090}]}"
        "]}\n"
    )
    [policy] = translate_routes([doc]).policies.values()
    described = [
        (
            r.match[0].uri.exact or r.match[0].uri.prefix if r.match else None,
            bool(r.match and r.match[0].headers),
        )
        for r in policy.spec.http
    ]
    assert described == [
        ("/echo.v1.Echo/Say", False),  # the longest service and method first
        ("/echo.v1.Echo/", True),
        (None, False),  # every RPC, last
    ]
    assert policy.spec.http[0].route[0].destination.host == "echo-canary.demo.svc.clusterset.local"


def test_route_status_says_accepted_and_which_backends_no_cluster_exports() -> None:
    [route] = load_documents(SPLIT)
    assert isinstance(route, HTTPRoute)
    [parent] = route_status(route, {("demo", "echo")})["parents"]
    assert parent["parentRef"] == {"group": "", "kind": "Service", "name": "echo", "port": 8080}
    conditions = {c["type"]: c for c in parent["conditions"]}
    assert conditions["Accepted"]["status"] == "True"
    resolved = conditions["ResolvedRefs"]
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
    assert resolved["message"] == "no member cluster exports demo/echo-canary"
    [parent] = route_status(route, {("demo", "echo"), ("demo", "echo-canary")}, ["bad"])["parents"]
    accepted = parent["conditions"][0]
    assert (accepted["status"], accepted["reason"], accepted["message"]) == (
        "False",
        "UnsupportedValue",
        "bad",
    )


def test_header_modifier_filters_become_header_operations() -> None:
    [doc] = load_documents(
        HEAD + f"spec: {{{PARENT}, rules: [{{filters: ["
        "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Tenant, value: blue}], remove: [X-Debug]}},"
        "{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-mesh, value: meshfed}]}}],"
        " backendRefs: [{name: echo, port: 80}]}]}\n"
    )
    [policy] = translate_routes([doc]).policies.values()
    headers = policy.spec.http[0].headers
    assert headers is not None and headers.request is not None and headers.response is not None
    assert (headers.request.set, headers.request.remove) == ({"x-tenant": "blue"}, ["x-debug"])
    assert headers.response.add == {"x-mesh": "meshfed"}


def test_url_rewrite_and_redirect_filters() -> None:
    [doc] = load_documents(
        HEAD + f"spec: {{{PARENT}, rules: ["
        "{matches: [{path: {type: PathPrefix, value: /old}}], filters: [{type: RequestRedirect,"
        " requestRedirect: {scheme: https, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}}]},"
        "{matches: [{path: {type: PathPrefix, value: /api/}}], filters: [{type: URLRewrite,"
        " urlRewrite: {hostname: api.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}],"
        " backendRefs: [{name: echo, port: 80}]}]}\n"
    )
    [policy] = translate_routes([doc]).policies.values()
    by_uri = {
        r.match[0].uri.regex: r
        for r in policy.spec.http
        if r.match and r.match[0].uri and r.match[0].uri.regex
    }
    moved = by_uri["/old(/.*)?"]
    assert moved.redirect is not None and moved.redirect.redirect_code == 301
    assert moved.redirect.scheme == "https"
    assert moved.redirect.uri_regex_rewrite is not None
    assert (moved.redirect.uri_regex_rewrite.match, moved.redirect.uri_regex_rewrite.rewrite) == (
        "^/old",
        "/new",
    )
    api = by_uri["/api(/.*)?"]
    assert api.rewrite is not None and api.rewrite.authority == "api.internal"
    assert api.rewrite.uri_regex_rewrite is not None
    pattern = api.rewrite.uri_regex_rewrite
    assert (pattern.match, pattern.rewrite) == ("^/api/?", "/")
    import re as _re

    assert _re.sub(pattern.match, pattern.rewrite, "/api/users", count=1) == "/users"
    assert _re.sub(pattern.match, pattern.rewrite, "/api", count=1) == "/"


GRANT = (
    "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n"
    "metadata: {name: from-demo, namespace: shared}\n"
    "spec: {from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: demo}],"
    " to: [{group: '', kind: Service, name: db}]}\n"
)


def test_a_backend_in_another_namespace_needs_a_reference_grant_there() -> None:
    route = (
        HEAD
        + f"spec: {{{PARENT}, rules: [{{backendRefs: [{{name: db, namespace: shared, port: 80}}]}}]}}\n"
    )
    [problem] = translate_routes(load_documents(route)).problems
    assert (
        "no ReferenceGrant in namespace 'shared' lets HTTPRoutes of 'demo' name Service 'db'"
        in str(problem)
    )
    [policy] = translate_routes(load_documents(route + "---\n" + GRANT)).policies.values()
    assert policy.spec.http[0].route[0].destination.host == "db.shared.svc.clusterset.local"
    other_name = GRANT.replace("name: db", "name: cache")
    assert translate_routes(load_documents(route + "---\n" + other_name)).problems  # names db only
    grpc_only = GRANT.replace("kind: HTTPRoute", "kind: GRPCRoute")
    assert translate_routes(load_documents(route + "---\n" + grpc_only)).problems  # for GRPCRoutes
