"""The control plane HTTP API: bearer token, all-or-nothing apply, persistence."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient, TestServer

from federation.ca.tokens import TokenStore, token_digest
from federation.controlplane.api import make_app
from federation.controlplane.builder import SnapshotBuilder
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.registry import ServiceRegistry
from federation.controlplane.snapshot import SnapshotCache
from federation.controlplane.state_store import StateFile
from federation.controlplane.status import StatusRegistry
from federation.model.locality import Locality

DOC = """apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: demo}}
spec: {{service: echo, address: 127.0.1.10, locality: aws/us-east-1/us-east-1a, ports: [{{name: http, port: {port}}}]}}
"""


class _Closed:
    async def close(self) -> None:
        return None


async def _client(tmp_path, tokens: TokenStore | None = None):
    registry, cache = ServiceRegistry(), SnapshotCache()
    builder = SnapshotBuilder(
        MeshContext("east", "example.org", Locality("aws/us-east-1")), registry, cache
    )
    state = StateFile(tmp_path / "state")
    app = make_app(
        registry=registry,
        state_file=state,
        status=StatusRegistry(),
        cache=cache,
        builder=builder,
        token="s3cret",
        workload_tokens=tokens or TokenStore(tmp_path / "workload-tokens.json"),
        identity=lambda: {"caAddress": "127.0.0.1:1", "trustBundle": "PEM"},
    )
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, registry, state, _Closed()


async def test_token_required(tmp_path) -> None:
    client, _, _, identities = await _client(tmp_path)
    try:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/v1/workloads")).status == 401
        bad = await client.get("/v1/workloads", headers={"Authorization": "Bearer nope"})
        assert bad.status == 401
        ok = await client.get("/v1/workloads", headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200
        assert (await client.get("/v1/info")).status == 401
        public = await client.get("/v1/bootstrap")  # what an agent needs first: no token
        assert public.status == 200
        assert set(await public.json()) == {
            "cluster", "locality", "network", "trust_domain", "caAddress", "trustBundle"
        }  # fmt: skip
    finally:
        await client.close()
        await identities.close()


async def test_apply_is_all_or_nothing_and_persisted(tmp_path) -> None:
    client, registry, state, identities = await _client(tmp_path)
    auth = {"Authorization": "Bearer s3cret"}
    try:
        body = (
            DOC.format(name="echo-1", port=8080) + "---\n" + DOC.format(name="echo-2", port=99999)
        )
        resp = await client.post("/v1/apply", data=body, headers=auth)
        assert resp.status == 400
        data = await resp.json()
        assert "document 2 (WorkloadEntry demo/echo-2): spec.ports.0.port" in data["error"]
        assert registry.state.workloads == {}
        assert not state.path.exists()
        good = DOC.format(name="echo-1", port=8080) + "---\n" + DOC.format(name="echo-2", port=8080)
        dry = await (await client.post("/v1/apply?dryRun=All", data=good, headers=auth)).json()
        assert dry["dryRun"] and len(dry["applied"]) == 2  # said, not done
        assert registry.state.workloads == {} and not state.path.exists()
        resp = await client.post("/v1/apply", data=good, headers=auth)
        assert (await resp.json())["applied"] == [
            "workloadentry/demo/echo-1",
            "workloadentry/demo/echo-2",
        ]
        assert [w.metadata.name for w in state.load()] == ["echo-1", "echo-2"]
        resp = await client.post(
            "/v1/delete", data=DOC.format(name="echo-2", port=8080), headers=auth
        )
        assert (await resp.json())["deleted"] == ["workloadentry/demo/echo-2"]
        assert [w.metadata.name for w in state.load()] == ["echo-1"]
        listing = await (await client.get("/v1/workloads", headers=auth)).json()
        assert json.dumps(listing["workloads"][0]["health"]) == '"UNKNOWN"'
    finally:
        await client.close()
        await identities.close()


async def test_workload_tokens_are_minted_with_the_admin_token_and_stored_as_digests(
    tmp_path,
) -> None:
    tokens = TokenStore(tmp_path / "workload-tokens.json")
    client, *_ = await _client(tmp_path, tokens)
    body = json.dumps({"namespace": "demo", "serviceAccount": "frontend", "ttlSeconds": 60})
    try:
        assert (await client.post("/v1/workload-tokens", data=body)).status == 401
        resp = await client.post(
            "/v1/workload-tokens", data=body, headers={"Authorization": "Bearer s3cret"}
        )
        assert resp.status == 200
        minted = await resp.json()
        assert minted["token"].startswith("mfw_")
        assert minted["spiffeId"] == "spiffe://example.org/ns/demo/sa/frontend"
        assert minted["singleUse"] is True
        assert minted["caAddress"] == "127.0.0.1:1"
        stored = tokens.path.read_text()
        assert minted["token"] not in stored
        assert token_digest(minted["token"]) in stored
        assert tokens.path.stat().st_mode & 0o777 == 0o600
        for bad, field in [
            ({"namespace": "demo"}, "serviceAccount"),
            ({"namespace": "demo", "serviceAccount": "a", "ttlSeconds": 0}, "ttlSeconds"),
            ({"namespace": "demo", "serviceAccount": "a", "ttlSeconds": 10**7}, "ttlSeconds"),
            ({"namespace": "demo", "serviceAccount": "a", "singleUse": "yes"}, "singleUse"),
            ({"namespace": "meshfed-system", "serviceAccount": "controlplane-b"}, "meshfed-system"),
            ({"namespace": "a/b", "serviceAccount": "x"}, "workload identity"),
            # issue #35 (5): only Kubernetes names
            ({"namespace": "Demo", "serviceAccount": "x"}, "namespace 'Demo' is not a"),
            ({"namespace": "demo", "serviceAccount": "a" * 300}, "service account"),
            ({"namespace": "d" * 64, "serviceAccount": "x"}, "Kubernetes name"),
            ({"namespace": "demo", "serviceAccount": "x_y"}, "Kubernetes name"),
        ]:
            resp = await client.post(
                "/v1/workload-tokens",
                data=json.dumps(bad),
                headers={"Authorization": "Bearer s3cret"},
            )
            assert resp.status == 400, bad
            assert field in (await resp.json())["error"]
        assert tokens.count() == 1
    finally:
        await client.close()


async def test_the_openapi_document_is_served_and_lists_every_route(tmp_path) -> None:
    """The control plane's OpenAPI document (what the fuzzer reads) is generated from the
    routes the app serves, so none is missing from it."""
    from federation.controlplane.api import ROUTES, openapi_document

    client, _, _, identities = await _client(tmp_path)
    try:
        assert (await client.get("/openapi.json")).status == 401
        resp = await client.get("/openapi.json", headers={"Authorization": "Bearer s3cret"})
        doc = await resp.json()
        assert doc == json.loads(json.dumps(openapi_document()))
        served = {
            (r.method, r.resource.canonical)
            for r in client.server.app.router.routes()
            if r.method != "HEAD" and r.resource is not None
        }
        assert served == {(m, p) for m, p, *_ in ROUTES}
        assert {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} == served
        assert "security" not in doc["paths"]["/v1/bootstrap"]["get"]
        schema = doc["components"]["schemas"]["WorkloadTokenRequest"]
        assert set(schema["properties"]) == {
            "namespace",
            "serviceAccount",
            "ttlSeconds",
            "singleUse",
        }
        unknown = await client.post(
            "/v1/workload-tokens",
            headers={"Authorization": "Bearer s3cret"},
            json={"namespace": "demo", "serviceAccount": "a", "ttl": 5},
        )
        assert unknown.status == 400 and "ttl" in (await unknown.json())["error"]
    finally:
        await client.close()
        await identities.close()
