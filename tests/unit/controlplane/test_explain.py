"""``meshfed explain``'s shares are the traffic in force (issue 41): a split, a completed
shift (a closing route for every request) and a route with a match; ports alike in one
table."""

from __future__ import annotations

import json
from typing import Any

from federation.controlplane.explain import explain
from federation.explain_tables import port_groups
from federation.model.documents import load_documents
from tests.unit.controlplane.test_generators import MESH, _doc, _registry

IMPORT = """
apiVersion: meshfed.io/v1alpha1
kind: ServiceImport
metadata: {name: echo, namespace: demo}
spec:
  ports: [{name: http, port: 8080, protocol: http}, {name: admin, port: 9090, protocol: http}]
  serviceAccounts: [echo]
  clusters: [{cluster: west, gateway: '10.0.0.1:15443', locality: aws/us-west-2/us-west-2a,
              endpoints: 2}]
"""
POLICY = """
apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata: {name: echo, namespace: demo}
spec:
  host: echo.demo.svc.clusterset.local
"""


def _explain(spec: str) -> dict[str, Any]:
    registry = _registry(_doc("echo-1", "us-east-1a"))
    [imp] = load_documents(IMPORT)
    policies = load_documents(POLICY + spec) if spec else []
    registry.set_federation([imp], [], policies)  # type: ignore[list-item]
    return explain(MESH, registry.state, "demo", "echo")


def _shares(port: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in port["rows"]:
        out[r["cluster"]] = out.get(r["cluster"], 0) + r["share"]
    return {c: round(s, 4) for c, s in out.items() if s}


def test_without_a_policy_every_request_stays_local() -> None:
    [port, *_] = _explain("")["ports"]
    assert port["appliesTo"] == "every request"
    assert _shares(port) == {"east": 1.0}
    assert [r["priority"] for r in port["rows"]] == [0, 1]  # west is the failover


def test_a_split_gives_each_cluster_its_percent_of_every_request() -> None:
    [port, *_] = _explain("  split: {east: 80, west: 20}\n")["ports"]
    assert _shares(port) == {"east": 0.8, "west": 0.2}
    assert [d["to"] for d in port["destinations"]] == ["cluster east", "cluster west"]


def test_a_completed_shift_sends_everything_to_its_target_and_says_so() -> None:
    """What a user saw: 'split 0% -> west' above rows giving it 100 %, and a first table
    still giving east 100 %."""
    shifted = (
        "  http:\n  - name: meshfed-shift\n"
        "    route: [{destination: {cluster: west}, weight: 100}]\n"
    )
    [port, *_] = _explain(shifted)["ports"]
    assert _shares(port) == {"west": 1.0}
    assert [(d["to"], d["percent"]) for d in port["destinations"]] == [("cluster west", 100)]
    half = shifted.replace("weight: 100}]", "weight: 25}, {destination: {}, weight: 75}]")
    [port, *_] = _explain(half)["ports"]
    assert _shares(port) == {"west": 1.0 * 0.25, "east": 0.75}


def test_a_shifts_route_for_idempotent_methods_does_not_narrow_what_every_request_does() -> None:
    """A shift writes its route twice, the first for idempotent methods only (with 5xx
    retries): both send to the same destinations, so every request goes by them."""
    from federation.shift.plan import step_policy

    base = load_documents(POLICY)[0].model_dump(by_alias=True, exclude_none=True)
    doc = step_policy(base, {"cluster": "west"}, {}, 25)
    [port, *_] = _explain(f"  http: {json.dumps(doc['spec']['http'])}\n")["ports"]
    assert port["appliesTo"] == "every request"
    assert _shares(port) == {"west": 0.25, "east": 0.75}


def test_requests_a_matching_route_takes_are_not_in_the_default_table() -> None:
    routed = (
        "  http:\n  - match: [{headers: {x-canary: {exact: '1'}}}]\n"
        "    route: [{destination: {cluster: west}}]\n"
        "  - route: [{destination: {cluster: east}}]\n"
    )
    [port, *_] = _explain(routed)["ports"]
    assert port["appliesTo"] == "requests no route above matches"
    assert _shares(port) == {"east": 1.0}
    only_matching = (
        "  http:\n  - match: [{uri: {prefix: /api}}]\n    route: [{destination: {cluster: west}}]\n"
    )
    [port, *_] = _explain(only_matching)["ports"]
    assert port["appliesTo"] == "requests no route above matches"
    assert _shares(port) == {"east": 1.0}  # the rest: the whole service, local first


def test_ports_alike_share_one_table_and_ports_that_differ_do_not() -> None:
    data = _explain("  split: {east: 50, west: 50}\n")
    # 9090 is served in west only: its half for east fails over to west
    [(first, rows), (second, only_west)] = port_groups(data["ports"])
    assert first == "port 8080 (http) -- every request: 50% cluster east, 50% cluster west"
    assert second.startswith("port 9090 (http) -- every request")
    assert sum(r["share"] for r in rows) == 1.0
    assert {r["cluster"]: r["share"] for r in only_west} == {"west": 1.0}
    alike = [{**data["ports"][0], "port": 8081}, data["ports"][0]]
    [(title, _)] = port_groups(alike)
    assert title.startswith("ports 8081 (http), 8080 (http) -- every request")
