"""``meshfed describe`` (federation/describe.py): what it shows of a cluster, a service and a
policy from the controller's listings, in kubectl's layout."""

from __future__ import annotations

from typing import Any

import pytest

from federation.describe import describe, render
from federation.errors import ConfigError
from federation.traffic import format_usd as usd

NOW = 1_796_482_800.0 + 30  # 2026-12-05T15:00:30Z

CLUSTERS = [
    {
        "name": "a", "state": "Ready", "connected": True, "locality": "aws/us-east-1/us-east-1a",
        "network": "na", "gateway": "10.0.0.1:15443", "provider": "aws", "services": 2,
        "joinedAt": "2026-12-05T15:00:00Z", "lastHeartbeat": "2026-12-05T15:00:28Z",
        "rttMs": {"b": 12.25}, "exports": ["echo.demo"],
        "intermediate": {"notBefore": "2026-12-05T15:00:00Z", "notAfter": "2026-12-12T15:00:30Z"},
    },
    {
        "name": "b", "state": "Unreachable", "connected": False, "locality": "gcp/europe-west1/b",
        "network": "nb", "gateway": None, "provider": "gcp", "services": 1,
        "joinedAt": None, "lastHeartbeat": None, "rttMs": {}, "exports": [], "intermediate": None,
    },
]  # fmt: skip
EXPORTS = [
    {"cluster": "a", "namespace": "demo", "service": "echo", "condition": "Exported",
     "message": "", "since": "2026-12-05T15:00:10Z"},
    {"cluster": "b", "namespace": "demo", "service": "echo", "condition": "Conflict",
     "message": "port 8080 is TCP here, HTTP in a", "since": "2026-12-05T15:00:20Z"},
    {"cluster": "a", "namespace": "shop", "service": "echo", "condition": "Exported",
     "message": "", "since": "2026-12-05T15:00:10Z"},
]  # fmt: skip
IMPORTS = [
    {"cluster": "b", "metadata": {"name": "echo", "namespace": "demo"},
     "spec": {"ips": ["240.241.0.9"], "ports": [{"port": 8080, "protocol": "HTTP"}],
              "clusters": [{"cluster": "a", "gateway": "10.0.0.1:15443", "endpoints": 2}]}},
]  # fmt: skip
POLICIES = [
    {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
     "metadata": {"name": "echo-routes", "namespace": "demo"},
     "spec": {"hosts": ["echo"], "http": [{"route": [{"destination": {"host": "echo"}}]}]}},
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
     "metadata": {"name": "only-frontend", "namespace": "demo"},
     "spec": {"selector": {"matchLabels": {"app": "echo"}},
              "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/demo/sa/fe"]}}]}]}},
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
     "metadata": {"name": "elsewhere", "namespace": "shop"}, "spec": {}},
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
     "metadata": {"name": "mesh-wide", "namespace": "meshfed-system"}, "spec": {}},
]  # fmt: skip
EDGES = [
    {"source_cluster": "b", "destination_service": "echo.demo", "destination_cluster": "a",
     "share": 1.0, "rps": 20.04, "p99Ms": 41.5, "errorShare": 0.0, "usdPerHour": 0.000144},
    {"source_cluster": "a", "destination_service": "other.demo", "destination_cluster": "a",
     "share": 1.0, "rps": 3.0, "p99Ms": None, "errorShare": 0.5, "usdPerHour": 0.0},
]  # fmt: skip


def _fetch(path: str) -> Any:
    return {
        "/v1/clusters": {"clusters": CLUSTERS},
        "/v1/exports": {"exports": EXPORTS, "documents": []},
        "/v1/imports": {"imports": IMPORTS},
        "/v1/policies": {"policies": POLICIES},
        "/v1/traffic?window=10": {"edges": EDGES},
    }[path]


def test_a_cluster_shows_its_state_ages_certificate_exports_imports_and_traffic() -> None:
    [d] = describe("cluster", "a", None, _fetch, NOW)
    text = render(d)
    assert text.splitlines()[:11] == [
        "Name:            a",
        "State:           Ready (connected)",
        "Locality:        aws/us-east-1/us-east-1a",
        "Network:         na",
        "Provider:        aws",
        "Gateway:         10.0.0.1:15443",
        "Joined:          2026-12-05T15:00:00Z (30s ago)",
        "Last heartbeat:  2026-12-05T15:00:28Z (2s ago)",
        "RTT to gateways: b 12.2 ms",
        "Intermediate CA: 2026-12-12T15:00:30Z (7d left)",
        "Services:        2",
    ]
    assert "  echo     demo       Exported   2026-12-05T15:00:10Z (20s ago)  -" in text
    assert "  echo     shop       Exported" in text
    # cluster a imports nothing; it serves b's traffic and sends its own
    assert "Imports:\n  <none>" in text
    assert "  b     echo.demo   a          100%   20.0   41.5    0.0%    $0.00014" in text
    assert "  a     other.demo  a          100%   3.0    -       50.0%   $0" in text
    assert d.data["kind"] == "Cluster" and len(d.data["traffic"]) == 2


def test_a_cluster_not_joined_says_so() -> None:
    text = render(describe("clusters", "b", None, _fetch, NOW)[0])
    assert "State:           Unreachable (not connected)" in text
    assert "Gateway:         (not reported yet)" in text
    assert "Joined:          never" in text and "Intermediate CA: (not joined)" in text
    assert "RTT to gateways: -" in text


def test_a_service_shows_its_exports_importers_routing_authorization_and_traffic() -> None:
    [d] = describe("export", "echo", "demo", _fetch, NOW)
    text = render(d)
    assert "Host:          echo.demo.svc.clusterset.local" in text
    assert "Exported by:   a, b" in text
    assert "Routing:       VirtualService demo/echo-routes" in text
    # its namespace's and the root namespace's, not shop's
    assert (
        "Authorization: AuthorizationPolicy demo/only-frontend, "
        "AuthorizationPolicy meshfed-system/mesh-wide" in text
    )
    assert "  b        Conflict   2026-12-05T15:00:20Z (10s ago)  port 8080 is TCP here" in text
    assert "  b        240.241.0.9    8080/HTTP  a (2 endpoints)" in text
    assert "echo.demo" in text and "other.demo" not in text
    assert d.data["routing"] == ["VirtualService demo/echo-routes"]


def test_a_service_in_two_namespaces_is_described_in_each_and_svc_is_a_kind() -> None:
    found = describe("svc", "echo", None, _fetch, NOW)
    assert [(d.data["namespace"], d.data["name"]) for d in found] == [
        ("demo", "echo"),
        ("shop", "echo"),
    ]
    shop = render(found[1])
    assert "Routing:       (defaults: locality, then failover)" in shop
    assert "Imports:\n  <none>" in shop


def test_a_policy_shows_what_it_routes_or_selects_and_its_spec() -> None:
    [vs] = describe("vs", "echo-routes", None, _fetch, NOW)
    text = render(vs)
    assert "Kind:      VirtualService (networking.istio.io/v1)" in text
    assert "Routes:    echo.demo" in text
    assert "Spec:\n  hosts:\n  - echo\n" in text
    [ap] = describe("policy", "only-frontend", "demo", _fetch, NOW)
    assert "Applies to: workloads labelled app=echo in namespace demo" in render(ap)
    [root] = describe("authorizationpolicies", "mesh-wide", None, _fetch, NOW)
    assert "Applies to: every workload in every namespace" in render(root)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pods", "x", None), r"'pods' is not a kind \(one of .*cluster"),
        (("cluster", "nope", None), r"cluster 'nope' not found \(meshfed get clusters lists"),
        (("export", "echo", "nope"), "service 'echo' is not exported or imported by any "),
        (("vs", "echo", None), r"VirtualService 'echo' not found \(meshfed get virtualservice"),
    ],
)
def test_what_is_not_there_is_a_one_line_error(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        describe(*args, _fetch, NOW)


def test_dollars_keep_the_digits_that_matter() -> None:
    assert [usd(v) for v in (0, 0.000144, 0.0123, 1.256)] == ["$0", "$0.00014", "$0.01", "$1.26"]


def test_an_httproute_shows_its_conditions_per_parent() -> None:
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "split", "namespace": "demo"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo", "port": 8080}],
                 "rules": [{"backendRefs": [{"name": "echo", "port": 8080}]}]},
        "status": {"parents": [{"parentRef": {"kind": "Service", "name": "echo"},
                                "controllerName": "meshfed.io/controller",
                                "conditions": [
                                    {"type": "Accepted", "status": "True", "reason": "Accepted"},
                                    {"type": "ResolvedRefs", "status": "False",
                                     "reason": "BackendNotFound", "message": "no echo exported"},
                                ]}]},
    }  # fmt: skip

    def fetch(path: str) -> Any:
        assert path == "/v1/policies"
        return {"policies": [route]}

    [d] = describe("httproute", "split", "demo", fetch, NOW)
    text = render(d)
    assert "Routes:    echo.demo" in text
    assert "Conditions:" in text
    assert "  echo    ResolvedRefs  False   BackendNotFound  no echo exported" in text
