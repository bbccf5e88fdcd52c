"""Istio's VirtualService and DestinationRule, taken verbatim and translated to TrafficPolicy
(issue #40): Istio's own sample documents, field-by-field refusals, and the cross-document
rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.errors import InvalidDocumentError
from federation.model.documents import in_namespace, load_documents, parse_yaml, validate_documents
from federation.model.istio_translate import TRANSLATED_FROM, service_of, translate
from federation.model.policy import TrafficPolicy
from federation.model.translated import effective_traffic_policies

DATA = Path(__file__).parents[2] / "data" / "istio"


def _docs(*names: str, namespace: str = "bookinfo"):
    raws = [r for n in names for r in parse_yaml((DATA / n).read_text(), source=n)]
    return validate_documents(in_namespace(raws, namespace))


def test_istios_traffic_shifting_documents_make_a_50_50_subset_split() -> None:
    docs = _docs("destination-rule-all.yaml", "virtual-service-reviews-50-v3.yaml")
    result = translate(docs)
    assert result.problems == []
    assert sorted(result.policies) == [
        ("bookinfo", s) for s in ("details", "productpage", "ratings", "reviews")
    ]
    reviews = result.policies[("bookinfo", "reviews")]
    assert reviews.spec.host == "reviews.bookinfo.svc.clusterset.local"
    assert [s.name for s in reviews.spec.subsets] == ["v1", "v2", "v3"]
    assert reviews.spec.subsets[2].labels == {"version": "v3"}
    [route] = reviews.spec.http
    assert [(r.destination.subset, r.weight) for r in route.route] == [("v1", 50), ("v3", 50)]
    assert reviews.metadata.annotations[TRANSLATED_FROM] == (
        "VirtualService bookinfo/reviews, DestinationRule bookinfo/reviews"
    )


def test_istios_request_routing_documents_make_a_header_match_then_a_default() -> None:
    docs = _docs("destination-rule-all.yaml", "virtual-service-reviews-test-v2.yaml")
    reviews = translate(docs).policies[("bookinfo", "reviews")]
    jason, rest = reviews.spec.http
    assert jason.match[0].headers["end-user"].exact == "jason"
    assert [(r.destination.subset, r.weight) for r in jason.route] == [("v2", 100)]
    assert not rest.match and rest.route[0].destination.subset == "v1"


def test_istios_circuit_breaker_keeps_istios_numbers() -> None:
    [policy] = translate(_docs("destination-rule-httpbin-circuit-breaker.yaml")).policies.values()
    pool = policy.spec.connection_pool
    assert pool is not None
    assert (pool.max_connections, pool.http1_max_pending_requests) == (1, 1)
    assert pool.max_requests_per_connection == 1
    od = policy.spec.outlier_detection
    assert od is not None
    assert (od.consecutive_5xx, od.interval_ms, od.base_ejection_time_ms) == (1, 1000, 180_000)
    assert od.max_ejection_percent == 100


def test_outlier_detection_fields_left_out_take_istios_defaults_not_meshfeds() -> None:
    [doc] = load_documents(
        "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\n"
        "metadata: {name: echo, namespace: demo}\n"
        "spec: {host: echo, trafficPolicy: {outlierDetection: {consecutive5xxErrors: 7}}}\n"
    )
    [policy] = translate([doc]).policies.values()
    od = policy.spec.outlier_detection
    assert od is not None
    assert (od.consecutive_5xx, od.interval_ms, od.base_ejection_time_ms) == (7, 10_000, 30_000)
    assert od.max_ejection_percent == 10


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("reviews", "bookinfo", ("bookinfo", "reviews")),
        ("reviews.prod", "bookinfo", ("prod", "reviews")),
        ("reviews.prod.svc", "bookinfo", ("prod", "reviews")),
        ("reviews.prod.svc.cluster.local", "bookinfo", ("prod", "reviews")),
        ("reviews.prod.svc.clusterset.local", "bookinfo", ("prod", "reviews")),
        ("*.prod.svc.cluster.local", "bookinfo", None),
        ("www.example.com", "bookinfo", None),
        ("reviews.prod.svc.example.org", "bookinfo", None),
    ],
)
def test_hosts_resolve_as_istio_resolves_short_names(host, namespace, expected) -> None:
    assert service_of(host, namespace) == expected


def _refusal(yaml_text: str) -> str:
    with pytest.raises(InvalidDocumentError) as err:
        load_documents(yaml_text)
    return "\n".join(err.value.problems)


VS = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo, namespace: demo}\n"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "spec: {hosts: [echo], http: [{corsPolicy: {}, route: [{destination: {host: echo}}]}]}",
            "spec.http.0.corsPolicy: not supported by meshfed yet",
        ),
        (
            "spec: {hosts: [echo], http: [{match: [{sourceLabels: {app: a}}], route: [{destination: {host: echo}}]}]}",
            "spec.http.0.match.0.sourceLabels: not supported by meshfed: callers are told apart"
            " by member cluster",
        ),
        (
            "spec: {hosts: [echo], gateways: [bookinfo-gateway], http: []}",
            "spec.gateways: not supported by meshfed: ['bookinfo-gateway']",
        ),
        (
            "spec: {hosts: [echo], exportTo: ['.']}",
            "spec.exportTo: not supported by meshfed: ['.']",
        ),
        ("spec: {hosts: [echo], tls: []}", "spec.tls: not supported by meshfed: TLS routes"),
        ("spec: {hosts: [echo], htttp: []}", 'unknown field "spec.htttp"'),
    ],
)
def test_fields_meshfed_cannot_honour_are_refused_by_path_with_the_reason(spec, expected) -> None:
    assert expected in _refusal(VS + spec + "\n")


def _problems(text: str) -> list[str]:
    return [str(p) for p in effective_traffic_policies(load_documents(text))[1]]


DR = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo, namespace: demo}\n"


def test_a_route_to_a_subset_no_destinationrule_defines_is_refused_saying_what_to_do() -> None:
    [problem] = _problems(
        VS + "spec: {hosts: [echo], http: [{route: [{destination: {host: echo, subset: v3}}]}]}\n"
        "---\n" + DR + "spec: {host: echo, subsets: [{name: v1, labels: {version: v1}}]}\n"
    )
    assert problem == (
        "VirtualService demo/echo: spec.http.0.route.0.destination.subset: subset 'v3' is not"
        " defined by DestinationRule demo/echo for echo.demo.svc.clusterset.local (defined: v1):"
        " apply the DestinationRule first, or in the same file"
    )


def test_a_route_to_another_service_takes_it_whole_and_an_outside_host_is_refused() -> None:
    [doc] = load_documents(
        VS + "spec: {hosts: [echo], http: [{route: [{destination: {host: echo}, weight: 90},"
        " {destination: {host: ratings.prod.svc.cluster.local}, weight: 10}]}]}\n"
    )
    [policy] = translate([doc]).policies.values()
    dests = [(r.destination.host, r.weight) for r in policy.spec.http[0].route]
    assert dests == [(None, 90), ("ratings.prod.svc.clusterset.local", 10)]
    subset = _problems(
        VS
        + "spec: {hosts: [echo], http: [{route: [{destination: {host: ratings, subset: v1}}]}]}\n"
    )
    assert (
        "spec.http.0.route.0.destination.subset: a route to another service takes it whole"
        in subset[0]
    )
    outside = _problems(VS + "spec: {hosts: [www.example.com]}\n")
    assert "spec.hosts.0: 'www.example.com' is not a service of the mesh" in outside[0]
    assert "ServiceEntry" in outside[0]


def test_two_virtualservices_for_one_service_and_a_trafficpolicy_beside_them_are_refused() -> None:
    second = (
        VS.replace("name: echo,", "name: echo-2,")
        + "spec: {hosts: [echo.demo.svc.cluster.local]}\n"
    )
    problems = _problems(VS + "spec: {hosts: [echo]}\n---\n" + second)
    assert problems == [
        "VirtualService demo/echo-2: echo.demo.svc.clusterset.local already has VirtualService"
        " demo/echo (one VirtualService per service in meshfed: edit that one)"
    ]
    tp = (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: tp, namespace: demo}\n"
        "spec: {host: echo.demo.svc.clusterset.local}\n"
    )
    policies, problems = effective_traffic_policies(
        load_documents(VS + "spec: {hosts: [echo]}\n---\n" + tp)
    )
    assert "has both" in str(problems[0]) and "TrafficPolicy demo/tp" in str(problems[0])
    assert [p.metadata.name for p in policies] == ["tp"]  # the TrafficPolicy stays in force


def test_weights_that_do_not_sum_to_100_are_refused_as_meshfed_refuses_them() -> None:
    [problem] = _problems(
        VS + "spec: {hosts: [echo], http: [{route: [{destination: {host: echo, subset: a},"
        " weight: 30}, {destination: {host: echo, subset: b}, weight: 30}]}]}\n---\n"
        + DR
        + "spec: {host: echo, subsets: [{name: a, labels: {v: a}}, {name: b, labels: {v: b}}]}\n"
    )
    assert "weights must sum to 100, not 60" in problem


def test_a_fault_without_percentage_hits_no_request_as_in_istio() -> None:
    [doc] = load_documents(
        VS + "spec: {hosts: [echo], http: [{fault: {abort: {httpStatus: 503}},"
        " route: [{destination: {host: echo}}]}]}\n"
    )
    [policy] = translate([doc]).policies.values()
    fault = policy.spec.http[0].fault
    assert fault is not None and fault.abort is not None
    assert fault.abort.percentage.value == 0


def test_durations_are_go_durations_and_zero_is_refused() -> None:
    [doc] = load_documents(
        VS
        + "spec: {hosts: [echo], http: [{timeout: 1.5s, retries: {attempts: 3, perTryTimeout: 500ms},"
        " route: [{destination: {host: echo}}]}]}\n"
    )
    [policy] = translate([doc]).policies.values()
    route = policy.spec.http[0]
    assert route.timeout_ms == 1500
    assert route.retries is not None and route.retries.per_try_timeout_ms == 500
    # no perTryTimeout: none (Istio's default: each attempt has the route's timeout), not
    # meshfed's 2 s
    [doc] = load_documents(
        VS + "spec: {hosts: [echo], http: [{retries: {attempts: 3},"
        " route: [{destination: {host: echo}}]}]}\n"
    )
    [policy] = translate([doc]).policies.values()
    retries = policy.spec.http[0].retries
    assert retries is not None and retries.per_try_timeout_ms == 0
    from federation.controlplane.generate.routes import retry_policy

    assert not retry_policy(retries).HasField("per_try_timeout")
    assert retry_policy(route.retries).per_try_timeout.ToMilliseconds() == 500
    [doc] = load_documents(
        VS + "spec: {hosts: [echo], http: [{timeout: 0s, route: [{destination: {host: echo}}]}]}\n"
    )
    assert "spec.http.0.timeout: '0s': a duration must be positive" in str(
        translate([doc]).problems[0]
    )


def test_apply_n_puts_documents_without_a_namespace_in_it_and_refuses_another() -> None:
    raws = parse_yaml((DATA / "virtual-service-reviews-50-v3.yaml").read_text())
    [placed] = in_namespace(raws, "demo")
    assert placed["metadata"] == {"name": "reviews", "namespace": "demo"}
    assert "namespace" not in raws[0]["metadata"]  # the input is not changed
    with pytest.raises(
        InvalidDocumentError, match=r"metadata\.namespace: 'demo' does not match -n 'prod'"
    ):
        in_namespace([placed], "prod")


def test_a_translated_policy_is_a_trafficpolicy_every_generator_takes() -> None:
    docs = _docs("destination-rule-all.yaml", "virtual-service-reviews-50-v3.yaml")
    policies, problems = effective_traffic_policies(docs)
    assert problems == []
    assert all(isinstance(p, TrafficPolicy) for p in policies)
    assert len(policies) == 4


def test_routes_after_one_that_matches_every_request_are_dropped_with_a_warning() -> None:
    from federation.model.istio_networking import VirtualService
    from federation.model.istio_translate import virtual_service_warnings

    [doc] = load_documents(
        VS + "spec: {hosts: [echo], http: [{route: [{destination: {host: echo}}]},"
        " {match: [{uri: {prefix: /a}}], route: [{destination: {host: echo}}]}]}\n"
    )
    assert isinstance(doc, VirtualService)
    [policy] = translate([doc]).policies.values()
    assert len(policy.spec.http) == 1  # as in Istio: the second never matches
    assert virtual_service_warnings(doc) == [
        "spec.http.1: never matches: spec.http.0 matches every request"
    ]


def test_a_destination_port_sends_to_that_port_of_the_service_whole() -> None:
    [doc] = load_documents(
        VS
        + "spec: {hosts: [echo], http: [{route: [{destination: {host: echo, port: {number: 9090}}}]}]}\n"
    )
    [policy] = translate([doc]).policies.values()
    d = policy.spec.http[0].route[0].destination
    assert (d.host, d.port, d.subset) == ("echo.demo.svc.clusterset.local", 9090, None)
    [problem] = _problems(
        VS + "spec: {hosts: [echo], http: [{route: [{destination: {host: echo, subset: v1,"
        " port: {number: 9090}}}]}]}\n---\n"
        + DR
        + "spec: {host: echo, subsets: [{name: v1, labels: {v: a}}]}\n"
    )
    assert (
        "spec.http.0.route.0.destination.port: not supported by meshfed: a port with a subset"
        in problem
    )


def test_rewrite_and_redirect_are_taken() -> None:
    [doc] = load_documents(
        VS + "spec: {hosts: [echo], http: ["
        "{match: [{uri: {prefix: /old}}], redirect: {uri: /new, redirectCode: 308}},"
        "{match: [{uri: {prefix: /v1}}], rewrite: {uri: /v2, authority: echo-v2},"
        " route: [{destination: {host: echo}}]}]}\n"
    )
    [policy] = translate([doc]).policies.values()
    moved, rewritten = policy.spec.http
    assert moved.redirect is not None and (moved.redirect.uri, moved.redirect.redirect_code) == (
        "/new",
        308,
    )
    assert rewritten.rewrite is not None
    assert (rewritten.rewrite.uri, rewritten.rewrite.authority) == ("/v2", "echo-v2")
