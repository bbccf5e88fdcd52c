"""The controller's REST API (aiohttp, JSON; OpenAPI 3.1 document at ``/openapi.json``).

Every route but two needs ``Authorization: Bearer <admin token>`` (401 otherwise):
``GET /healthz`` answers ``{"status": "ok", "trustDomain": ...}`` to anyone (liveness
probes, as Kubernetes' ``/healthz``; the trust domain is public, it is in every
certificate), and ``POST /v1/join`` is authenticated by the one-time join token in its body.
The routes are listed in :data:`ROUTES`; their request bodies are pydantic models, from which
the OpenAPI document is generated.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from federation.controller.hub import POLICY_KINDS, SyncHub
from federation.controller.membership import (
    DEFAULT_TOKEN_TTL_S,
    new_join_token,
    token_digest,
    validate_member_name,
)
from federation.controller.store import ClusterRecord, DocumentKey, StoreError
from federation.errors import InvalidDocumentError, NotFoundError
from federation.model.documents import load_documents
from federation.model.locality import Locality
from federation.model.policy import TrafficPolicy
from federation.model.service import ServiceExport
from federation.netaddr import parse_host_port
from federation.sync.messages import ClusterReport
from trust import pki
from trust.authority import RootAuthority
from trust.errors import InvalidCertificateError, SigningRefusedError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ControllerContext:
    """What the handlers need. ``root`` signs intermediates; ``bundle_pem`` is the current
    trust bundle; ``sync_address``/``sync_server_name`` are what joining control planes dial."""

    hub: SyncHub
    trust_domain: str
    root: Callable[[], RootAuthority]
    bundle_pem: Callable[[], bytes]
    admin_token: str
    sync_address: str
    sync_server_name: str


CONTEXT = web.AppKey("context", ControllerContext)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NewCluster(_Body):
    """``POST /v1/clusters``: register a member and get a one-time join token."""

    name: str = Field(description="DNS label, unique in the federation")
    locality: str = Field(description="<cloud>/<region>[/<zone>], e.g. aws/us-east-1/us-east-1a")
    network: str = Field(default="default", min_length=1)
    gateway: str = Field(description="HOST:PORT of the cluster's east-west gateway")
    provider: str = Field(default="local", pattern="^(aws|gcp|local)$")
    token_ttl_s: float = Field(
        default=DEFAULT_TOKEN_TTL_S, gt=0, le=7 * 86400, alias="tokenTtlSeconds"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_member_name(value)

    @field_validator("locality")
    @classmethod
    def _locality(cls, value: str) -> str:
        Locality.parse(value)
        return value

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        if parse_host_port(value, what="gateway")[1] == 0:
            raise ValueError(f"gateway {value!r}: port must be 1-65535")
        return value


class JoinRequest(_Body):
    """``POST /v1/join``: a control plane's first contact."""

    cluster: str
    token: str = Field(min_length=1)
    csr: str = Field(description="PEM CSR of the cluster's intermediate CA key")


class TokenRequest(_Body):
    """``POST /v1/clusters/{name}/tokens``: a new join token for a member."""

    token_ttl_s: float = Field(
        default=DEFAULT_TOKEN_TTL_S, gt=0, le=7 * 86400, alias="tokenTtlSeconds"
    )


def _error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _body(request: web.Request, model: type[_Body]) -> Any:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as err:
        problems = [
            f"request body: {'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}"
            for e in err.errors()
        ]
        raise web.HTTPBadRequest(
            text=json.dumps({"error": problems[0], "problems": problems}),
            content_type="application/json",
        ) from err


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin bearer token on everything but ``/healthz`` and ``/v1/join``."""
    if request.path in ("/healthz", "/v1/join"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    token = request.app[CONTEXT].admin_token
    if not header.startswith("Bearer ") or not hmac.compare_digest(
        header[7:].encode(), token.encode()
    ):
        return _error(401, "missing or invalid bearer token")
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    """Liveness, and the trust domain a joining control plane asks for in its CSR."""
    return web.json_response({"status": "ok", "trustDomain": request.app[CONTEXT].trust_domain})


def cluster_view(ctx: ControllerContext) -> list[dict[str, Any]]:
    """Every member with its state, as ``GET /v1/clusters`` returns it."""
    states = ctx.hub.states()
    connected = ctx.hub.connected()
    reports = ctx.hub.store.reports()
    out = []
    for c in ctx.hub.store.clusters():
        report = reports.get(c.name) or ClusterReport(cluster=c.name)
        out.append(
            {
                "name": c.name,
                "locality": c.locality,
                "network": c.network,
                "gateway": c.gateway,
                "provider": c.provider,
                "state": states.get(c.name, "Pending"),
                "connected": c.name in connected,
                "joinedAt": c.joined_at,
                "lastHeartbeat": c.last_heartbeat,
                "services": len(report.services),
                "exports": sorted(report.exports),
                "rttMs": report.rtt_ms,
            }
        )
    return out


async def list_clusters(request: web.Request) -> web.Response:
    """Members with locality, network, gateway, state and last heartbeat."""
    return web.json_response({"clusters": cluster_view(request.app[CONTEXT])})


async def add_cluster(request: web.Request) -> web.Response:
    """Register a member; answer its one-time join token (shown once, stored as SHA-256)."""
    ctx = request.app[CONTEXT]
    body: NewCluster = await _body(request, NewCluster)
    now = ctx.hub.clock()
    token = new_join_token()
    record = ClusterRecord(body.name, body.locality, body.network, body.gateway, body.provider, now)
    try:
        ctx.hub.store.add_cluster(record, token_digest(token), now + body.token_ttl_s)
    except StoreError as err:
        return _error(409, str(err))
    log.info("cluster %s registered (token valid %ds)", body.name, body.token_ttl_s)
    return web.json_response(
        {"cluster": body.name, "token": token, "expiresAt": now + body.token_ttl_s}, status=201
    )


async def new_token(request: web.Request) -> web.Response:
    """A fresh join token for a member (re-join after losing its state)."""
    ctx = request.app[CONTEXT]
    body: TokenRequest = await _body(request, TokenRequest)
    name = request.match_info["name"]
    token = new_join_token()
    expires = ctx.hub.clock() + body.token_ttl_s
    try:
        ctx.hub.store.new_token(name, token_digest(token), expires)
    except NotFoundError as err:
        return _error(404, str(err))
    return web.json_response({"cluster": name, "token": token, "expiresAt": expires}, status=201)


async def remove_cluster(request: web.Request) -> web.Response:
    """Withdraw a member: its imports and endpoints disappear from every other cluster."""
    ctx = request.app[CONTEXT]
    name = request.match_info["name"]
    try:
        ctx.hub.store.remove_cluster(name)
    except NotFoundError as err:
        return _error(404, str(err))
    ctx.hub.close_stream(name, f"cluster {name!r} was removed from the federation")
    ctx.hub.recompute()
    log.info("cluster %s removed", name)
    return web.json_response({"removed": name})


async def join(request: web.Request) -> web.Response:
    """Sign a joining cluster's intermediate CA; the join token is used up on success only."""
    ctx = request.app[CONTEXT]
    body: JoinRequest = await _body(request, JoinRequest)
    refused = _error(401, "invalid, used or expired join token for this cluster")
    try:
        ctx.hub.store.cluster(body.cluster)
    except NotFoundError:
        return refused
    try:
        csr = pki.load_csr(body.csr.encode(), source="request body: csr")
    except InvalidCertificateError as err:
        return _error(400, str(err))
    try:
        chain = ctx.root().sign_intermediate_csr(csr, body.cluster, pki.DEFAULT_INTERMEDIATE_TTL)
    except SigningRefusedError as err:
        log.warning("join of %s refused: %s", body.cluster, err)
        return _error(403, str(err))
    chain_pem = pki.certificates_to_pem(list(chain)).decode()
    try:
        ctx.hub.store.join(token_digest(body.token), body.cluster, chain_pem, ctx.hub.clock())
    except StoreError as err:
        log.warning("join of %s refused: %s", body.cluster, err)
        return refused
    log.info("cluster %s joined", body.cluster)
    ctx.hub.recompute()
    return web.json_response(
        {
            "cluster": body.cluster,
            "trustDomain": ctx.trust_domain,
            "certificateChain": chain_pem,
            "trustBundle": ctx.bundle_pem().decode(),
            "syncAddress": ctx.sync_address,
            "syncServerName": ctx.sync_server_name,
            "leaseSeconds": ctx.hub.lease_s,
        }
    )


def _controller_documents(text: str, ctx: ControllerContext) -> list[tuple[DocumentKey, Any]]:
    """Validate documents for the controller; every problem is collected, none is stored.

    Raises:
        InvalidDocumentError: schema problems, or a kind/field the controller cannot take.
    """
    models = load_documents(text, source="request body")
    members = {c.name for c in ctx.hub.store.clusters()}
    accepted = ("ServiceExport", *POLICY_KINDS)
    problems: list[str] = []
    out: list[tuple[DocumentKey, Any]] = []
    hosts = {  # one TrafficPolicy per service: host -> the policy's namespace/name
        d["spec"]["host"]: f"{d['metadata'].get('namespace', 'default')}/{d['metadata']['name']}"
        for d in ctx.hub.store.documents("TrafficPolicy")
    }
    for i, m in enumerate(models, start=1):
        kind = str(getattr(m, "kind", "?"))
        meta = getattr(m, "metadata", None)
        where = f"request body: document {i} ({kind} {meta.namespace}/{meta.name})" if meta else ""
        if kind not in accepted:
            problems.append(
                f"{where}: kind: the controller stores {', '.join(accepted)};"
                f" apply a {kind} to its cluster's control plane (meshfed apply --controlplane URL)"
            )
            continue
        cluster = ""
        if isinstance(m, ServiceExport):
            if m.spec.cluster is None:
                problems.append(
                    f"{where}: spec.cluster: required when applied to the controller"
                    " (apiVersion meshfed.io/v1alpha1); the multicluster.x-k8s.io form is"
                    " applied to the exporting cluster's control plane"
                )
                continue
            if m.spec.cluster not in members:
                problems.append(
                    f"{where}: spec.cluster: {m.spec.cluster!r} is not a member cluster"
                    f" (members: {', '.join(sorted(members)) or 'none'})"
                )
                continue
            cluster = m.spec.cluster
        if isinstance(m, TrafficPolicy):
            owner = hosts.setdefault(m.spec.host, f"{m.metadata.namespace}/{m.metadata.name}")
            if owner != f"{m.metadata.namespace}/{m.metadata.name}":
                problems.append(
                    f"{where}: spec.host: {m.spec.host} already has TrafficPolicy {owner}"
                    " (one policy per service: edit that one)"
                )
                continue
        if isinstance(m, TrafficPolicy) and m.spec.split:
            unknown = sorted(set(m.spec.split) - members)
            if unknown:
                problems.append(
                    f"{where}: spec.split: {', '.join(map(repr, unknown))} not a member cluster"
                    f" (members: {', '.join(sorted(members)) or 'none'})"
                )
                continue
        assert meta is not None
        body = m.model_dump(by_alias=True, mode="json", exclude_none=True)
        out.append(((kind, meta.namespace, meta.name, cluster), body))
    if problems:
        raise InvalidDocumentError(problems[0], problems=problems)
    return out


def _name(key: DocumentKey) -> str:
    kind, ns, name, cluster = key
    return f"{kind.lower()}/{ns}/{name}" + (f" (cluster {cluster})" if cluster else "")


async def apply(request: web.Request) -> web.Response:
    """Validate every document, then store all of them in one transaction (or none)."""
    ctx = request.app[CONTEXT]
    try:
        docs = _controller_documents(await request.text(), ctx)
    except InvalidDocumentError as err:
        return _error(400, str(err), problems=err.problems)
    current = {
        _doc_key(d): d for kind in {k[0] for k, _ in docs} for d in ctx.hub.store.documents(kind)
    }
    changed = [(k, b) for k, b in docs if current.get(k) != b]
    ctx.hub.store.put_documents(changed, ctx.hub.clock())
    ctx.hub.recompute()
    return web.json_response(
        {
            "applied": [_name(k) for k, _ in changed],
            "unchanged": [_name(k) for k, b in docs if (k, b) not in changed],
        }
    )


def _doc_key(doc: dict[str, Any]) -> DocumentKey:
    meta = doc.get("metadata", {})
    return (
        str(doc.get("kind")),
        str(meta.get("namespace", "default")),
        str(meta.get("name")),
        str((doc.get("spec") or {}).get("cluster") or "")
        if doc.get("kind") == "ServiceExport"
        else "",
    )


async def delete(request: web.Request) -> web.Response:
    """Delete the documents named (by kind, namespace, name and, for exports, cluster)."""
    ctx = request.app[CONTEXT]
    try:
        docs = _controller_documents(await request.text(), ctx)
    except InvalidDocumentError as err:
        return _error(400, str(err), problems=err.problems)
    removed = ctx.hub.store.delete_documents([k for k, _ in docs])
    ctx.hub.recompute()
    return web.json_response({"deleted": [_name(k) for k in removed]})


async def exports(request: web.Request) -> web.Response:
    """Every export with its MCS condition (``Exported`` or ``Conflict``), and the
    ServiceExport documents applied to the controller (``documents``)."""
    hub = request.app[CONTEXT].hub
    return web.json_response(
        {
            "exports": [
                {
                    "cluster": e.cluster,
                    "namespace": e.namespace,
                    "service": e.service,
                    "condition": e.condition,
                    "message": e.message,
                    "since": e.first_seen,
                }
                for e in hub.exports
            ],
            "documents": hub.store.documents("ServiceExport"),
        }
    )


async def imports(request: web.Request) -> web.Response:
    """Per importing cluster, each ServiceImport the controller sends it."""
    hub = request.app[CONTEXT].hub
    return web.json_response(
        {
            "imports": [
                {
                    "cluster": cluster,
                    **doc.model_dump(by_alias=True, mode="json", exclude_none=True),
                }
                for cluster in sorted(hub.imports)
                for doc in hub.imports[cluster]
            ]
        }
    )


async def policies(request: web.Request) -> web.Response:
    """Every stored policy document."""
    store = request.app[CONTEXT].hub.store
    return web.json_response({"policies": [d for k in POLICY_KINDS for d in store.documents(k)]})


async def openapi(request: web.Request) -> web.Response:
    """This API as an OpenAPI 3.1 document."""
    return web.json_response(openapi_document())


#: (method, path, handler, summary, request body model or None)
ROUTES: list[tuple[str, str, Handler, str, type[BaseModel] | None]] = [
    ("GET", "/healthz", healthz, "Liveness (no token needed)", None),
    ("GET", "/openapi.json", openapi, "This document", None),
    ("GET", "/v1/clusters", list_clusters, "Member clusters with state and heartbeat", None),
    ("POST", "/v1/clusters", add_cluster, "Register a cluster; returns a join token", NewCluster),
    ("DELETE", "/v1/clusters/{name}", remove_cluster, "Withdraw a cluster everywhere", None),
    ("POST", "/v1/clusters/{name}/tokens", new_token, "A new join token", TokenRequest),
    ("POST", "/v1/join", join, "Join with a token and a CSR (no admin token)", JoinRequest),
    ("POST", "/v1/apply", apply, "Store YAML documents, all or nothing", None),
    ("POST", "/v1/delete", delete, "Delete the YAML documents named", None),
    ("GET", "/v1/exports", exports, "Exports with MCS conditions", None),
    ("GET", "/v1/imports", imports, "ServiceImports per importing cluster", None),
    ("GET", "/v1/policies", policies, "Stored policies", None),
]


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document generated from :data:`ROUTES`."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for method, path, _, summary, model in ROUTES:
        op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK"}}}
        if path not in ("/healthz", "/v1/join"):
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {"description": "missing or invalid bearer token"}
        if model is not None:
            schemas[model.__name__] = model.model_json_schema(by_alias=True)
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
            op["responses"]["400"] = {"description": "invalid body: every problem named"}
        elif path in ("/v1/apply", "/v1/delete"):
            op["requestBody"] = {
                "required": True,
                "content": {"application/yaml": {"schema": {"type": "string"}}},
            }
            op["responses"]["400"] = {"description": "invalid documents; nothing stored"}
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "meshfed federation controller", "version": "v1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def make_app(ctx: ControllerContext) -> web.Application:
    """The aiohttp application (routes in :data:`ROUTES`)."""
    app = web.Application(middlewares=[auth_middleware], client_max_size=4 * 1024 * 1024)
    app[CONTEXT] = ctx
    for method, path, handler, _, _ in ROUTES:
        app.router.add_route(method, path, handler)
    return app
