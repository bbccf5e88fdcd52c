"""Istio and Gateway API documents read from a member cluster (issue #40): in force for that
cluster's proxies beside the controller's; refused, with the reason, where they collide with
the controller's or cannot be honoured; the status written back (Gateway API's
RouteParentStatus, Istio's conditions)."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from federation.controlplane.kube.documents import CONTROLLER_NAME, desired_status, ours
from federation.controlplane.registry import ServiceRegistry
from federation.model.cluster_documents import combine, validated
from federation.model.documents import load_documents
from federation.model.policy import TrafficPolicy

SPLIT = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-split, namespace: demo, generation: 3, resourceVersion: "812",
           uid: 0b6e, managedFields: [{manager: kubectl}]}
spec:
  parentRefs: [{name: echo, kind: Service, group: ""}]
  rules:
  - backendRefs: [{name: echo, port: 8080, weight: 90}, {name: echo-canary, port: 8080, weight: 10}]
"""
GATEWAY_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  parentRefs: [{name: public-gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
"""
DENY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: demo}
spec: {action: DENY, rules: [{}]}
"""
CONTROLLER_POLICY = """
apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata: {name: echo, namespace: demo}
spec: {host: echo.demo.svc.clusterset.local}
"""
VS_UNSUPPORTED = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: demo, generation: 1}
spec:
  hosts: [ratings]
  gateways: [bookinfo-gateway]
  http: [{route: [{destination: {host: ratings}}]}]
"""


def raw(text: str) -> dict[str, Any]:
    return dict(yaml.safe_load(text))


def controller(**docs: Any) -> dict[str, Any]:
    empty: dict[str, Any] = {
        "policies": [],
        "authorization_policies": [],
        "peer_authentications": [],
        "sidecars": [],
        "service_entries": [],
    }
    return {**empty, **docs}


def test_a_clusters_route_is_in_force_and_what_the_server_adds_is_not_the_users() -> None:
    models, problems = validated([raw(SPLIT)], source="kubernetes")
    assert problems == {} and len(models) == 1  # uid, managedFields ... are not refused
    in_force = combine(**controller(), cluster=models)
    [policy] = in_force.policies
    assert policy.target == ("demo", "echo") and in_force.problems == {}
    assert [d.weight for d in policy.spec.http[0].route] == [90, 10]


def test_the_controllers_policy_for_the_same_service_wins_and_the_route_says_why() -> None:
    [mine] = load_documents(CONTROLLER_POLICY)
    assert isinstance(mine, TrafficPolicy)
    models, _ = validated([raw(SPLIT)], source="kubernetes")
    in_force = combine(**controller(policies=[mine]), cluster=models)
    assert in_force.policies == [mine]
    [reason] = in_force.problems[("HTTPRoute", "demo", "echo-split")]
    assert "the federation controller's TrafficPolicy demo/echo routes this service" in reason


def test_a_name_the_controller_holds_is_refused_and_others_are_added() -> None:
    [theirs] = load_documents(DENY)
    models, _ = validated([raw(DENY)], source="kubernetes")
    other = copy.deepcopy(raw(DENY))
    other["metadata"]["name"] = "deny-cluster"
    more, _ = validated([other], source="kubernetes")
    in_force = combine(**controller(authorization_policies=[theirs]), cluster=[*models, *more])
    assert [p.metadata.name for p in in_force.authorization_policies] == [
        "deny-all",
        "deny-cluster",
    ]
    assert (
        "holds AuthorizationPolicy demo/deny-all"
        in in_force.problems[("AuthorizationPolicy", "demo", "deny-all")][0]
    )


def test_an_invalid_document_is_left_out_with_its_field_and_reason_and_the_rest_stand() -> None:
    models, problems = validated([raw(VS_UNSUPPORTED), raw(DENY)], source="kubernetes")
    assert [getattr(m, "kind", "") for m in models] == ["AuthorizationPolicy"]
    [reason] = problems[("VirtualService", "demo", "ratings")]
    assert "spec.gateways" in reason and "not supported by meshfed" in reason


def test_the_registry_keeps_the_clusters_documents_across_controller_updates() -> None:
    registry = ServiceRegistry()
    models, invalid = validated([raw(SPLIT), raw(VS_UNSUPPORTED)], source="kubernetes")
    assert registry.set_cluster_documents(models, invalid)
    assert list(registry.state.policies) == [("demo", "echo")]
    assert ("VirtualService", "demo", "ratings") in registry.state.cluster_document_problems
    registry.set_federation([], [])  # a controller update without policies
    assert list(registry.state.policies) == [("demo", "echo")]
    [mine] = load_documents(CONTROLLER_POLICY)
    assert isinstance(mine, TrafficPolicy)
    registry.set_federation([], [], [mine])
    assert registry.state.policies[("demo", "echo")] is mine
    assert ("HTTPRoute", "demo", "echo-split") in registry.state.cluster_document_problems
    registry.set_cluster_documents([])
    assert registry.state.cluster_document_problems == {}
    assert not registry.set_cluster_documents([])  # nothing changed: no new version


def test_routes_of_gateways_are_not_meshfeds() -> None:
    assert ours(raw(SPLIT)) and ours(raw(DENY))
    assert not ours(raw(GATEWAY_ROUTE))  # kind defaults to Gateway


def test_route_status_per_mesh_parent_keeps_other_controllers_and_transition_times() -> None:
    obj = raw(SPLIT)
    other = {"parentRef": {"name": "gw"}, "controllerName": "example.com/gw", "conditions": []}
    obj["status"] = {"parents": [other]}
    [model], _ = validated([obj], source="kubernetes")
    known = {("demo", "echo")}
    first = desired_status(obj, model, (), known, "east", "2026-12-05T10:00:00Z")
    assert first is not None
    theirs, mine = first["parents"]
    assert theirs == other and mine["controllerName"] == CONTROLLER_NAME
    accepted, resolved = mine["conditions"]
    assert accepted["status"] == "True" and accepted["observedGeneration"] == 3
    assert accepted["message"] == "the route is in force for cluster east's callers"
    assert resolved["status"] == "False" and resolved["reason"] == "BackendNotFound"
    assert "demo/echo-canary" in resolved["message"]
    obj["status"] = first
    again = desired_status(obj, model, (), known, "east", "2026-12-05T11:00:00Z")
    assert again == first  # nothing changed: the times stay
    refused = desired_status(obj, model, ("why",), known, "east", "2026-12-05T12:00:00Z")
    assert refused is not None
    accepted = refused["parents"][1]["conditions"][0]
    assert (accepted["status"], accepted["reason"], accepted["message"]) == (
        "False",
        "UnsupportedValue",
        "why",
    )
    assert accepted["lastTransitionTime"] == "2026-12-05T12:00:00Z"


def test_istio_documents_get_an_accepted_condition_with_the_reason() -> None:
    obj = raw(VS_UNSUPPORTED)
    status = desired_status(obj, None, ("spec.gateways: not supported",), set(), "east", "t0")
    assert status == {
        "conditions": [
            {
                "type": "Accepted",
                "status": "False",
                "reason": "Refused",
                "message": "spec.gateways: not supported",
                "lastTransitionTime": "t0",
                "observedGeneration": 1,
            }
        ]
    }
    grant = {"kind": "ReferenceGrant", "metadata": {"name": "g", "namespace": "demo"}}
    assert desired_status(grant, None, (), set(), "east", "t0") is None
