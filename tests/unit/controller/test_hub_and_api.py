"""The sync hub (fake clock, no network) and the controller REST API (aiohttp test client)."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization

from federation.controller.api import ControllerContext, make_app, openapi_document
from federation.controller.hub import SyncHub
from federation.controller.membership import STARTUP_GRACE_S
from federation.controller.planner import PlannerSettings
from federation.controller.roles import SoleReplica
from federation.controller.service import FederationService
from federation.controller.store import ClusterRecord, SqliteStore
from federation.controller.streams import Closed
from federation.controller.sync import peer_cluster
from federation.controlplane.link.join import JoinError, check_pinned_root
from federation.model.documents import load_documents
from federation.sync.join_token import split_join_token, token_digest
from federation.sync.messages import ClusterReport, RoutingPlan
from tests.prometheus import samples
from trust import pki
from trust.spiffe import SpiffeId, TrustDomain


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _report(exports: list[str], port: int = 8080) -> ClusterReport:
    return ClusterReport.model_validate(
        {
            "cluster": "any",
            "services": [
                {
                    "namespace": "demo",
                    "name": "echo",
                    "ports": [{"name": "http", "port": port, "protocol": "http"}],
                    "healthy_endpoints_by_zone": {"z": 1},
                }
            ],
            "exports": exports,
        }
    )


def _hub(tmp_path, clock, lease=30.0):
    store = SqliteStore(tmp_path / "c.db")
    for name in ("a", "b"):
        store.add_cluster(
            ClusterRecord(name, "aws/us-east-1", "n", f"127.0.0.{ord(name)}:15443", "local", 0),
            token_digest(name),
            1e12,
        )
        store.join(token_digest(name), name, "PEM", clock())
    return SyncHub(store, lambda: b"BUNDLE", lease_s=lease, clock=clock)


async def test_updates_go_out_after_the_first_report_and_only_when_the_view_changes(
    tmp_path,
) -> None:
    clock = Clock()
    hub = _hub(tmp_path, clock)
    qa, qb = hub.attach("a"), hub.attach("b")
    hub.recompute()
    assert qa.empty() and qb.empty()  # nothing before each stream's first report
    hub.report("a", _report(["demo/echo"]))
    update_a = qa.get_nowait()
    ip = hub.store.clusterset_ips()[("demo", "echo")]
    # the exporter has the import of its own service too (MCS): no other cluster, its IP
    [own] = update_a.imports
    assert own.spec.clusters == [] and own.spec.ips == [ip]
    assert update_a.trust_bundle_pem == b"BUNDLE"
    hub.report("b", _report([]))
    [imp] = qb.get_nowait().imports
    assert imp.spec.clusters[0].cluster == "a" and imp.spec.ips == [ip]
    hub.report("b", _report([]))  # a heartbeat with the same content
    hub.recompute()
    assert qa.empty() and qb.empty()
    hub.close_stream("b", "removed")
    assert isinstance(qb.get_nowait(), Closed)
    hub.store.close()


async def test_a_silent_cluster_is_withdrawn_after_its_lease_but_not_right_after_a_restart(
    tmp_path,
) -> None:
    clock = Clock()
    hub = _hub(tmp_path, clock, lease=3.0)
    hub.attach("a"), hub.attach("b")
    hub.report("a", _report(["demo/echo"]))
    hub.report("b", _report([]))
    assert hub.imports["b"]
    clock.now += 4  # a silent for more than a lease
    hub.report("b", _report([]))
    hub.recompute()  # what watch_leases does when a state changes
    assert hub.states()["a"] == "Unreachable" and hub.imports["b"] == []
    # a restarted controller gives clusters it has not heard from since its start a grace
    clock.now += 10
    restarted = SyncHub(hub.store, lambda: b"B", lease_s=3.0, clock=clock)
    clock.now += 4
    assert restarted.states() == {"a": "Ready", "b": "Ready"}
    restarted.attach("b")
    restarted.report("b", _report([]))
    assert [c.cluster for c in restarted.imports["b"][0].spec.clusters] == ["a"]
    clock.now = restarted.started_at + STARTUP_GRACE_S + 0.1
    assert restarted.states()["a"] == "Unreachable"
    # b reported after the start: no grace for it once it goes silent
    assert restarted.states()["b"] == "Unreachable"
    hub.store.close()


def test_peer_identity_is_pinned_to_the_clusters_own_intermediate(trust_dir) -> None:
    trust_dir.create_intermediate("west")
    east_pem = pki.certificates_to_pem([trust_dir.intermediate_certificate("east")]).decode()
    records = {"east": ClusterRecord("east", "aws/x", "n", "h:1", "local", 0, 1.0, 1.0, east_pem)}

    def lookup(name):
        from federation.errors import NotFoundError

        if name not in records:
            raise NotFoundError(name)
        return records[name]

    def leaf(cluster: str, sa: str) -> bytes:
        svid = trust_dir.issue_svid(
            cluster, SpiffeId.parse(f"spiffe://example.org/ns/meshfed-system/sa/{sa}")
        )
        return svid.leaf.public_bytes(serialization.Encoding.PEM)

    assert peer_cluster(leaf("east", "controlplane-east"), "example.org", lookup) == ("east", "")
    forged = peer_cluster(leaf("west", "controlplane-east"), "example.org", lookup)
    assert forged[0] is None and "not issued by its joined intermediate" in forged[1]
    assert peer_cluster(leaf("east", "frontend"), "example.org", lookup)[0] is None
    assert peer_cluster(leaf("east", "controlplane-nope"), "example.org", lookup)[0] is None
    assert peer_cluster(leaf("east", "controlplane-east"), "other.org", lookup)[0] is None
    assert peer_cluster(None, "example.org", lookup) == (None, "no client certificate")


def _context(service: FederationService) -> ControllerContext:
    return ControllerContext(
        service=service,
        trust_domain="example.org",
        admin_token="adm1n",
        sync_address="127.0.0.1:1",
        sync_server_name="controller.meshfed.internal",
    )


@pytest.fixture
async def api(trust_dir, tmp_path):
    store = SqliteStore(tmp_path / "c.db")
    hub = SyncHub(store, lambda: trust_dir.bundle().to_pem(), lease_s=30)
    service = FederationService(
        hub,
        trust_dir.root_authority,
        lambda: trust_dir.bundle().to_pem(),
        root_pin=lambda: trust_dir.bundle().fingerprints()[-1],
    )
    client = TestClient(TestServer(make_app(_context(service))))
    await client.start_server()
    yield client
    await client.close()
    store.close()


AUTH = {"Authorization": "Bearer adm1n"}


def _csr(td: str) -> str:
    key = pki.generate_private_key()
    csr = pki.build_csr(key, spiffe_id=TrustDomain(td).id)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def test_register_and_join(api) -> None:
    assert (await api.get("/v1/clusters")).status == 401
    bad = await api.post(
        "/v1/clusters", headers=AUTH, json={"name": "Bad!", "locality": "x", "gateway": "h"}
    )
    assert bad.status == 400
    problems = (await bad.json())["problems"]
    assert any(p.startswith("request body: name:") for p in problems)
    assert any(p.startswith("request body: locality:") for p in problems)
    assert any(p.startswith("request body: gateway:") for p in problems)
    body = {"name": "east", "locality": "aws/us-east-1/us-east-1a", "gateway": "127.0.1.1:15443"}
    created = await api.post("/v1/clusters", headers=AUTH, json=body)
    assert created.status == 201
    token = (await created.json())["token"]
    assert (await api.post("/v1/clusters", headers=AUTH, json=body)).status == 409
    join = {"cluster": "east", "token": token, "csr": "garbage"}
    assert (await api.post("/v1/join", json=join)).status == 400
    join["csr"] = _csr("evil.org")
    refused = await api.post("/v1/join", json=join)
    assert refused.status == 403 and "evil.org" in (await refused.json())["error"]
    join["csr"] = _csr("example.org")
    ok = await api.post("/v1/join", json=join)
    assert ok.status == 200
    answer = await ok.json()
    chain = pki.load_certificates(answer["certificateChain"].encode(), source="x")
    assert pki.signing_cert_problems(chain[0]) == []
    assert answer["syncServerName"] == "controller.meshfed.internal"
    assert (await api.post("/v1/join", json=join)).status == 401
    [listed] = (await (await api.get("/v1/clusters", headers=AUTH)).json())["clusters"]
    assert listed["state"] == "Ready" and listed["joinedAt"] is not None
    # times as the Kubernetes API writes them: RFC 3339, UTC, to the second
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed["joinedAt"])
    # the token pins the root the public bundle endpoint shows, and the join answer passes it
    public = await (await api.get("/v1/bundle")).json()  # no token needed
    _, pin = split_join_token(token)
    check_pinned_root(public, pin, "test")
    check_pinned_root(answer, pin, "test")
    with pytest.raises(JoinError, match="not the federation the join token names"):
        check_pinned_root(answer, "0" * 64, "test")


async def test_apply_is_all_or_nothing(api) -> None:
    body = {"name": "east", "locality": "aws/us-east-1", "gateway": "127.0.1.1:15443"}
    await api.post("/v1/clusters", headers=AUTH, json=body)
    good = "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: echo, namespace: demo}\nspec: {cluster: east}\n"
    mcs = "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: x, namespace: demo}\n"
    bad = await api.post("/v1/apply", headers=AUTH, data=good + "---\n" + mcs)
    assert bad.status == 400
    assert (
        "document 2 (ServiceExport demo/x): spec.cluster: required" in (await bad.json())["error"]
    )
    assert (await (await api.get("/v1/exports", headers=AUTH)).json())["documents"] == []
    ok = await (await api.post("/v1/apply", headers=AUTH, data=good)).json()
    assert ok == {
        "applied": ["serviceexport/demo/echo (cluster east)"],
        "unchanged": [],
        "warnings": [],
    }
    again = await (await api.post("/v1/apply", headers=AUTH, data=good)).json()
    assert again["unchanged"] == ["serviceexport/demo/echo (cluster east)"]
    gone = await (await api.post("/v1/delete", headers=AUTH, data=good)).json()
    assert gone == {"deleted": ["serviceexport/demo/echo (cluster east)"]}
    # a dry run (Kubernetes' dryRun=All) validates and says what would change, stores nothing
    dry = await (await api.post("/v1/apply?dryRun=All", headers=AUTH, data=good)).json()
    assert dry["applied"] == ["serviceexport/demo/echo (cluster east)"] and dry["dryRun"]
    assert (await (await api.get("/v1/exports", headers=AUTH)).json())["documents"] == []
    refused = await api.post("/v1/apply?dryRun=All", headers=AUTH, data=good + "---\n" + mcs)
    assert refused.status == 400
    other = await api.post("/v1/apply?dryRun=true", headers=AUTH, data=good)
    assert other.status == 400 and "dryRun=true: only All" in (await other.json())["error"]
    assert (await (await api.get("/v1/exports", headers=AUTH)).json())["documents"] == []


async def test_an_authorization_policy_naming_another_trust_domain_is_applied_with_a_warning(
    api,
) -> None:
    """Applied (issue 43 will federate trust domains), but the user is told that no caller
    carries that trust domain; Istio's ``cluster.local`` is this federation's own."""
    policy = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: echo-callers, namespace: demo}\n"
        "spec: {rules: [{from: [{source: {principals: [%s]}}]}]}\n"
    )
    foreign = await (
        await api.post("/v1/apply", headers=AUTH, data=policy % '"td1/ns/a/sa/b"')
    ).json()
    assert foreign["applied"] == ["authorizationpolicy/demo/echo-callers"]
    [warning] = foreign["warnings"]
    assert warning.startswith(
        "authorizationpolicy/demo/echo-callers: spec.rules[0].from[0].source.principals[0]:"
        " 'td1/ns/a/sa/b' names trust domain 'td1', not this federation's 'example.org'"
    ), warning
    local = await (
        await api.post("/v1/apply", headers=AUTH, data=policy % '"cluster.local/ns/a/sa/b"')
    ).json()
    assert local["warnings"] == []


def test_openapi_document_lists_every_route_with_its_schema() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) >= {"/v1/clusters", "/v1/join", "/v1/apply", "/openapi.json"}
    assert "security" not in doc["paths"]["/v1/join"]["post"]
    assert doc["paths"]["/v1/clusters"]["get"]["security"] == [{"bearer": []}]
    assert "NewCluster" in doc["components"]["schemas"]
    assert "tokenTtlSeconds" in doc["components"]["schemas"]["NewCluster"]["properties"]


async def test_policies_are_validated_against_the_federation(api) -> None:
    body = {"name": "east", "locality": "aws/us-east-1", "gateway": "127.0.1.1:15443"}
    await api.post("/v1/clusters", headers=AUTH, json=body)
    policy = (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: {name}, namespace: demo}}\n"
        "spec: {{host: echo.demo.svc.clusterset.local, split: {split}}}\n"
    )
    unknown = await api.post(
        "/v1/apply", headers=AUTH, data=policy.format(name="p", split="{east: 50, west: 50}")
    )
    assert unknown.status == 400
    assert "spec.split: 'west' not a member cluster" in (await unknown.json())["error"]
    ok = await api.post(
        "/v1/apply", headers=AUTH, data=policy.format(name="p", split="{east: 100}")
    )
    assert ok.status == 200
    second = await api.post(
        "/v1/apply", headers=AUTH, data=policy.format(name="q", split="{east: 100}")
    )
    assert second.status == 400
    assert "already has TrafficPolicy demo/p" in (await second.json())["error"]
    listed = await (await api.get("/v1/policies", headers=AUTH)).json()
    assert [p["metadata"]["name"] for p in listed["policies"]] == ["p"]


async def test_a_stored_policy_that_no_longer_validates_is_left_out_not_fatal(tmp_path) -> None:
    clock = Clock()
    hub = _hub(tmp_path, clock)
    bad = {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "old", "namespace": "demo"},
        "spec": {"host": "echo.demo.svc.clusterset.local", "split": {"a": 60}},  # sums to 60
    }
    hub.store.put_documents([(("TrafficPolicy", "demo", "old", ""), bad)], clock())
    queue = hub.attach("a")
    hub.report("a", _report(["demo/echo"]))
    update = queue.get_nowait()
    assert update.policies == [] and update.trust_bundle_pem == b"BUNDLE"
    hub.store.close()


async def test_a_mesh_wide_default_deny_reaches_every_cluster(tmp_path) -> None:
    from federation.controlplane.generate.rbac import rbac_filters
    from federation.model.authz import Request, evaluate

    clock = Clock()
    store = SqliteStore(tmp_path / "c.db")
    store.add_cluster(
        ClusterRecord("a", "aws/us-east-1", "n", "127.0.0.97:15443", "local", 0), "d", 1e12
    )
    store.join("d", "a", "PEM", clock())
    hub = SyncHub(store, lambda: b"B", lease_s=30, clock=clock, authz_default="deny")
    queue = hub.attach("a")
    hub.report("a", _report([]))
    [policy] = queue.get_nowait().authorization_policies
    assert policy.key == ("meshfed-system", "mesh-default-deny")
    assert policy.selects("any-namespace", {})
    decision = evaluate([policy], Request("spiffe://example.org/ns/demo/sa/frontend"))
    assert not decision.allowed and "meshfed-system/mesh-default-deny" in decision.reason
    [allow_filter] = rbac_filters([policy], (8080,))  # an ALLOW filter with no policy: deny all
    assert allow_filter.name.endswith(".allow")
    store.close()


async def test_metrics_count_reports_updates_and_lease_expiries(tmp_path) -> None:
    """Issue #17: the controller's ``/metrics`` (admin token), parsed by prometheus-client."""
    clock = Clock()
    hub = _hub(tmp_path, clock, lease=3.0)
    hub.attach("a"), hub.attach("b")
    hub.report("a", _report(["demo/echo"]))
    hub.report("b", _report([]))
    clock.now += 4  # a is silent past its lease; b keeps reporting
    hub.report("b", _report([]))
    hub.check()
    hub.check()  # counted once, not at every check
    service = FederationService(hub, None, lambda: b"", root_pin=lambda: "")  # type: ignore[arg-type]
    client = TestClient(TestServer(make_app(_context(service))))
    await client.start_server()
    try:
        assert (await client.get("/metrics")).status == 401
        text = await (await client.get("/metrics", headers=AUTH)).text()
    finally:
        await client.close()
        hub.store.close()
    got = samples(text)
    assert got[("meshfed_controller_lease_expiries_total", (("cluster", "a"),))] == 1
    assert ("meshfed_controller_lease_expiries_total", (("cluster", "b"),)) not in got
    assert got[("meshfed_controller_reports_received_total", (("cluster", "b"),))] == 2
    assert got[("meshfed_controller_updates_sent_total", (("cluster", "b"),))] >= 2
    assert got[("meshfed_controller_clusters", (("state", "Unreachable"),))] == 1
    assert got[("meshfed_controller_clusters", (("state", "Ready"),))] == 1
    assert got[("meshfed_controller_sync_streams", ())] == 2
    assert got[("meshfed_controller_recomputations_total", ())] >= 3


async def test_traffic_reports_become_rates_and_the_dashboard_holds_no_data(tmp_path) -> None:
    """Issue #17: GET /v1/traffic (admin token; bad parameters named, 400) turns the tables
    the control planes report into rates; the dashboard's files need no token and hold no
    data (the page reads the API with the token), under a strict Content-Security-Policy."""
    from federation.traffic import Edge, TrafficTable

    clock = Clock()
    hub = _hub(tmp_path, clock)
    edge = Edge("a", "aws/us-east-1/z", "echo.demo", "b", "aws/us-east-1/z", "same-zone", "2xx")
    first = TrafficTable(5.0)
    first.record(edge, 100, 900, 3, 0)
    hub.report_traffic("a", first)
    await asyncio.sleep(0.05)
    second = first.copy()
    for _ in range(9):
        second.record(edge, 100, 900, 3, 0)
    hub.report_traffic("a", second)
    service = FederationService(hub, None, lambda: b"", root_pin=lambda: "")  # type: ignore[arg-type]
    client = TestClient(TestServer(make_app(_context(service))))
    await client.start_server()
    try:
        assert (await client.get("/v1/traffic")).status == 401
        for query, field in (("window=x", "window"), ("window=0.5", "window"), ("by=nope", "by")):
            resp = await client.get(f"/v1/traffic?{query}", headers=AUTH)
            assert resp.status == 400 and (await resp.json())["error"].startswith(field)
        data = await (await client.get("/v1/traffic?window=1", headers=AUTH)).json()
        [row] = data["edges"]
        assert (row["source_cluster"], row["destination_cluster"], row["requests"]) == ("a", "b", 9)
        assert row["share"] == 1 and row["pathClasses"] == ["same-zone"]
        assert data["totals"] == [
            {
                "sourceCluster": "a",
                "destinationService": "echo.demo",
                "requests": 10,
                "errors": 0,
                "egressUsd": 0.0,
            }
        ]
        assert {t["cloud"] for t in data["priceTables"]} == {"aws", "gcp"}
        metrics = samples(await (await client.get("/metrics", headers=AUTH)).text())
        assert sum(v for (n, _), v in metrics.items() if n == "meshfed_requests_total") == 10
        for path in ("/dashboard", "/dashboard/app.js", "/dashboard/app.css"):
            resp = await client.get(path)  # no token
            assert resp.status == 200, path
            assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
            assert "echo.demo" not in await resp.text()
        hub.close_stream("a", "removed")  # a removed cluster's traffic goes with it
        data = await (await client.get("/v1/traffic", headers=AUTH)).json()
        assert data["edges"] == [] and data["totals"] == []
    finally:
        await client.close()
        hub.store.close()


async def test_the_cost_report_holds_every_request_once_across_a_controller_restart(
    tmp_path,
) -> None:
    """Issue 42: the tables a control plane reports go into the traffic ledger (at most every
    30 s, and whenever the report is read); a restarted controller given the same cumulative
    table again counts nothing twice; a bad ``since`` is a 400 naming it."""
    from federation.traffic import Edge, TrafficTable

    clock = Clock(1_764_979_200.0 + 60)  # 2025-12-06 00:01 UTC
    hub = _hub(tmp_path, clock)
    edge = Edge("a", "aws/us-east-1/us-east-1a", "echo.demo", "b", "aws/eu-west-1/eu-west-1a",
                "cross-region", "2xx")  # fmt: skip
    table = TrafficTable(5.0)
    table.record(edge, 10**6, 9 * 10**6, 3, 0.2)
    hub.report_traffic("a", table.copy())  # the first table is written at once
    for _ in range(9):
        table.record(edge, 10**6, 9 * 10**6, 3, 0.2)
    hub.report_traffic("a", table.copy())  # within 30 s: held until read
    assert hub.store.traffic_days("2025-12-06", "2025-12-06")[0][2].requests == 1

    async def cost(service: FederationService, query: str) -> tuple[int, dict]:
        client = TestClient(TestServer(make_app(_context(service))))
        await client.start_server()
        try:
            assert (await client.get("/v1/cost/report")).status == 401
            resp = await client.get(f"/v1/cost/report?{query}", headers=AUTH)
            return resp.status, await resp.json()
        finally:
            await client.close()

    service = FederationService(hub, None, lambda: b"", root_pin=lambda: "")  # type: ignore[arg-type]
    status, data = await cost(service, "since=1d")
    [echo] = data["services"]
    assert (status, echo["requests"], echo["bytes"]) == (200, 10, 10**8)
    assert echo["usd"] == pytest.approx(2.0)
    assert echo["roundRobinUsd"] == pytest.approx(echo["localityFailoverUsd"])  # one server
    status, data = await cost(service, "since=tomorrow")
    assert status == 400 and data["error"].startswith("since: 'tomorrow' is not a duration")
    hub.store.close()

    again = SyncHub(SqliteStore(tmp_path / "c.db"), lambda: b"", lease_s=30, clock=clock)
    again.report_traffic("a", table.copy())
    service = FederationService(again, None, lambda: b"", root_pin=lambda: "")  # type: ignore[arg-type]
    status, data = await cost(service, "since=2025-12-06")
    assert data["services"][0]["requests"] == 10
    again.store.close()


async def test_a_plan_reaches_the_callers_cluster_and_only_when_it_changes(tmp_path) -> None:
    """Issue #18: with a TrafficPolicy in cost mode optimize, measured demand from a's callers
    and capacity b declares, a planning round sends a's control plane its plan (b's update
    does not change); the same demand again sends nothing."""
    from federation.traffic import Edge, TrafficTable

    clock = Clock()
    hub = _hub(tmp_path, clock)
    qa, qb = hub.attach("a"), hub.attach("b")
    report = _report(["demo/echo"]).model_dump()
    report["services"][0]["endpoints"] = [
        {"address": "10.0.0.1", "zone": "z", "healthy": True, "ports": {"http": 15006},
         "capacity_rps": 10.0}
    ]  # fmt: skip
    hub.report("a", ClusterReport.model_validate(report))
    hub.report("b", ClusterReport.model_validate(report))
    policy = (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: echo,"
        " namespace: demo}\nspec: {host: echo.demo.svc.clusterset.local,"
        " cost: {mode: optimize}}\n"
    )
    service = FederationService(hub, None, lambda: b"", root_pin=lambda: "")  # type: ignore[arg-type]
    service.apply_documents(load_documents(policy))
    while not qa.empty():
        qa.get_nowait()
    while not qb.empty():
        qb.get_nowait()
    edge = Edge("a", "aws/us-east-1/z", "echo.demo", "a", "aws/us-east-1/z", "same-zone", "2xx")
    table = TrafficTable(5.0)
    hub.report_traffic("a", table.copy())
    await asyncio.sleep(0.05)
    for _ in range(100):
        table.record(edge, 100, 900, 3, 0)
    hub.report_traffic("a", table)
    hub.replan()
    [plan] = qa.get_nowait().plans
    assert (plan.namespace, plan.service, plan.caller_locality) == (
        "demo",
        "echo",
        "aws/us-east-1/z",
    )
    assert plan.demand_rps > 16  # more than 2 x 8 rps of capacity x headroom: both serve
    assert {c for c, _, _ in plan.shares} == {"a", "b"}
    assert qb.empty()
    hub.replan()
    assert qa.empty()
    metrics = samples(hub.metrics.exposition().decode())
    solves = [v for (n, _), v in metrics.items() if n == "meshfed_controller_plan_solves_total"]
    assert solves == [1.0]
    hub.store.close()


class FollowerReplica(SoleReplica):
    """A replica that is not the leader, with plans the leader published."""

    def __init__(self, plans: dict[str, list[RoutingPlan]]) -> None:
        super().__init__("r1", lambda: "127.0.0.1:2")
        self.plans = plans
        self.healthy = True

    is_leader = False  # type: ignore[assignment]

    def shared_plans(self) -> dict[str, list[RoutingPlan]] | None:
        return self.plans

    def sync_addresses(self) -> list[str]:
        return ["127.0.0.1:2", "127.0.0.1:1"]


async def test_a_follower_sends_the_leaders_plans_and_every_replicas_address(tmp_path) -> None:
    clock = Clock()
    plan = RoutingPlan("demo", "echo", "aws/us-east-1/z", (("a", "aws/us-east-1/z", 1.0),))
    hub = _hub(tmp_path, clock)
    hub.replica = FollowerReplica({"a": [plan]})
    queue = hub.attach("a")
    hub.report("a", _report([]))
    update = queue.get_nowait()
    assert update.plans == [plan]
    assert update.sync_addresses == ["127.0.0.1:2", "127.0.0.1:1"]
    assert hub.resign_due() is False  # only the leader re-signs
    hub.store.close()


async def test_streams_end_for_a_cluster_removed_elsewhere_and_retryably_when_cut_off(
    tmp_path,
) -> None:
    clock = Clock()
    hub = _hub(tmp_path, clock)
    qa, qb = hub.attach("a"), hub.attach("b")
    hub.report("a", _report([]))
    hub.report("b", _report([]))
    qa.get_nowait(), qb.get_nowait()
    hub.store.remove_cluster("b")  # as another replica would, through the database
    hub.recompute()
    closed = qb.get_nowait()
    assert isinstance(closed, Closed) and not closed.retryable
    hub.cut_off("lost the database")
    cut = qa.get_nowait()
    assert isinstance(cut, Closed) and cut.retryable
    hub.store.close()


class LeaderReplica(SoleReplica):
    """The leader of a replicated controller, with plans a former leader published."""

    def __init__(self, stale: dict[str, list[RoutingPlan]]) -> None:
        super().__init__("r0", lambda: "127.0.0.1:1")
        self.stored = stale
        self.published: list[dict[str, list[RoutingPlan]]] = []

    def shared_plans(self) -> dict[str, list[RoutingPlan]] | None:
        return self.stored

    def publish_plans(self, plans: dict[str, list[RoutingPlan]]) -> None:
        self.published.append(plans)
        self.stored = plans


async def test_a_new_leader_withdraws_plans_its_predecessor_left_when_nothing_is_planned(
    tmp_path,
) -> None:
    clock = Clock()
    plan = RoutingPlan("demo", "echo", "aws/us-east-1/z", (("a", "aws/us-east-1/z", 1.0),))
    hub = _hub(tmp_path, clock)
    hub.planner.settings = PlannerSettings(interval_s=0.01)
    leader = LeaderReplica({"a": [plan]})
    hub.replica = leader
    assert hub.plans() == {"a": [plan]}  # before its first round: the predecessor's stay
    task = asyncio.create_task(hub.watch_plans())
    for _ in range(100):  # bounded: 1 s
        if leader.published:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert leader.published[0] == {} and hub.plans() == {}
    hub.store.close()


async def test_foreign_bundles_reach_members_only_with_the_roots_crls(tmp_path) -> None:
    """A federated domain's bundle goes out with the roots' CRLs; without them (a root whose
    key is not local) it is not sent at all -- the proxies' SPIFFE validator would refuse
    every local chain -- and the status says why."""
    from federation.model.trust_federation import federation_document
    from trust import pki
    from trust.bundle import TrustBundle
    from trust.spiffe import TrustDomain

    clock = Clock()
    hub = _hub(tmp_path, clock)
    td = TrustDomain("b.example")
    root = pki.root_certificate(pki.generate_private_key(), td, now=pki.utcnow())
    doc = federation_document(
        "b.example", "https://b.example/bundle", "https_web", None,
        TrustBundle(td, (root,)).to_spiffe_json(),
    ).model_dump(by_alias=True, mode="json", exclude_none=True)  # fmt: skip
    hub.store.put_documents([(("TrustDomainFederation", "default", "b", ""), doc)], clock())
    crl = {"value": b"ROOT-CRL"}
    hub.root_crl = lambda: crl["value"]
    queue = hub.attach("a")
    hub.report("a", _report([]))
    update = queue.get_nowait()
    assert set(update.federated_bundles) == {"b.example"} and update.root_crl_pem == "ROOT-CRL"
    crl["value"] = None  # e.g. the root moved to Vault
    hub.recompute()
    update = queue.get_nowait()
    assert update.federated_bundles == {} and update.root_crl_pem == ""
    [row] = hub.trust_federations()
    assert not row["inForce"] and "no root CRL" in row["suspended"]
    hub.store.close()


def test_root_crls_keep_a_valid_crl_through_a_failed_read_and_retry_later() -> None:
    """A Vault root's CRL is read over the network: a failed read keeps the CRLs held while
    valid and for the same roots, says why, and is not tried again for 30 s."""
    from federation.controller.trust_federation import NO_ROOT_CRL, ROOT_CRL_RETRY_S, RootCrls
    from trust import pki
    from trust.errors import TrustBackendError
    from trust.revocation import empty_crl
    from trust.spiffe import TrustDomain

    key = pki.generate_private_key()
    root = pki.root_certificate(key, TrustDomain("a.org"), now=pki.utcnow())
    now = {"t": 0.0}
    calls: list[str] = []
    answer: dict[str, object] = {"value": empty_crl(root, key), "roots": ("r1",)}

    def make() -> bytes | None:
        calls.append("make")
        value = answer["value"]
        if isinstance(value, Exception):
            raise value
        return value  # type: ignore[return-value]

    crls = RootCrls(make, lambda: answer["roots"], clock=lambda: now["t"])  # type: ignore[arg-type]
    first = crls.pem()
    assert first and crls.problem == "" and crls.pem() == first and len(calls) == 1
    # due again (here: the roots changed) while Vault is down: none for other roots
    answer["value"], answer["roots"] = TrustBackendError("Vault unreachable"), ("r1", "r2")
    assert crls.pem() is None and "Vault unreachable" in crls.problem
    assert crls.pem() is None and len(calls) == 2  # no new read before the retry delay
    now["t"] += ROOT_CRL_RETRY_S
    answer["value"] = empty_crl(root, key) + empty_crl(root, key)
    assert crls.pem() and crls.problem == "" and len(calls) == 3
    # a root with no CRL at all (AWS Private CA): None, and why
    answer["value"], answer["roots"] = None, ("r3",)
    assert crls.pem() is None and crls.problem == NO_ROOT_CRL
