"""The control plane's HTTP API (aiohttp, JSON), authenticated with a bearer token.

==========================  ===============================================================
``GET  /healthz``           liveness (no token needed; 503 when the snapshot builder stopped)
``GET  /v1/bootstrap``      what a proxy agent needs first (no token: public facts)
``GET  /metrics``           Prometheus text exposition (:mod:`federation.controlplane.metrics`)
``GET  /v1/info``           cluster name, locality, network, trust domain, and the
                            federation link (``federation``: controller, connected,
                            lastUpdateVersion, stopped -- why syncing stopped, or null)
``POST /v1/apply``          body: YAML/JSON WorkloadEntry, ServiceExport, ServiceImport
                            documents; all validated, then all
                            applied (400 with every problem otherwise; nothing applied)
``POST /v1/delete``         body: documents naming the workloads to remove
``GET  /v1/workloads``      registered workloads with their health
``GET  /v1/proxy-status``   per proxy and xDS type: sent / ACKed / NACKed versions and state
``GET  /v1/config_dump``    ``?node=<id>``: the proxy's current snapshot (it holds no secret)
``GET  /v1/explain``        ``?service=<svc>&namespace=<ns>[&locality=<l>]``: the decision table
``GET  /v1/explain/authz``  ``?service=&namespace=&principal=[&cluster=&method=&path=&port=]``:
                            allowed or denied per local workload, and by which
                            AuthorizationPolicy
``GET  /openapi.json``      this API's OpenAPI 3.1 document (from :data:`ROUTES`)
``POST /v1/workload-tokens`` body ``{"namespace", "serviceAccount", "ttlSeconds"?,
                            "singleUse"?}``: mint a workload token (the response is the only
                            place the token appears; the control plane keeps its SHA-256),
                            with the trust bundle and where the certificate service listens
==========================  ===============================================================
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation.ca.names import (
    GATEWAY_SERVICE_ACCOUNT,
    SYSTEM_NAMESPACE,
    namespace_and_account,
    workload_name_problem,
    workload_spiffe_id,
)
from federation.ca.tokens import MAX_TTL, TokenStore
from federation.controlplane import resource
from federation.controlplane.builder import SnapshotBuilder
from federation.controlplane.explain import explain, explain_authz
from federation.controlplane.metrics import ControlPlaneMetrics
from federation.controlplane.registry import (
    Document,
    ServiceRegistry,
    describe,
    with_applied,
    without,
)
from federation.controlplane.snapshot import SnapshotCache
from federation.controlplane.state_store import StateFile
from federation.controlplane.status import StatusRegistry
from federation.errors import InvalidDocumentError, NotFoundError
from federation.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from federation.model.documents import MAX_BODY_BYTES, load_document_bytes, validation_problems
from federation.model.locality import Locality
from federation.model.service import ServiceExport, ServiceImport
from federation.model.workload import WorkloadEntry
from federation.openapi import DRY_RUN, Route, dry_run_requested, query_parameter
from federation.openapi import openapi_document as build_openapi

log = logging.getLogger(__name__)

REGISTRY = web.AppKey("registry", ServiceRegistry)
STATE_FILE = web.AppKey("state_file", StateFile)
STATUS = web.AppKey("status", StatusRegistry)
CACHE = web.AppKey("cache", SnapshotCache)
BUILDER = web.AppKey("builder", SnapshotBuilder)
TOKEN = web.AppKey("token", str)
WORKLOAD_TOKENS = web.AppKey("workload_tokens", TokenStore)
METRICS = web.AppKey("metrics", ControlPlaneMetrics)
Identity = Callable[[], dict[str, Any]]
IDENTITY: web.AppKey[Identity] = web.AppKey("identity")
FederationState = Callable[[], dict[str, Any] | None]
FEDERATION: web.AppKey[FederationState] = web.AppKey("federation")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <token>`` on everything but ``/healthz`` and
    ``/v1/bootstrap`` (public facts)."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    token = request.app[TOKEN]
    if not header.startswith("Bearer ") or not hmac.compare_digest(
        header[7:].encode(), token.encode()
    ):
        return _error(401, "missing or invalid bearer token")
    return await handler(request)


async def _documents(request: web.Request) -> list[Document] | web.Response:
    try:
        data = await request.read()
        models = await asyncio.to_thread(load_document_bytes, data, source="request body")
    except InvalidDocumentError as err:
        return _error(400, str(err), problems=err.problems)
    docs: list[Document] = []
    for i, m in enumerate(models, start=1):
        if not isinstance(m, WorkloadEntry | ServiceExport | ServiceImport):
            message = (
                f"request body: document {i}: a control plane accepts WorkloadEntry,"
                " ServiceExport and ServiceImport"
            )
            return _error(400, message, problems=[message])
        docs.append(m)
    return docs


async def bootstrap(request: web.Request) -> web.Response:
    """What a proxy agent needs before it has an identity, all public (no token): cluster,
    locality, network, trust domain, the certificate and xDS addresses, the name the control
    plane's certificate carries and the trust bundle. A workload authenticates with its own
    credential (workload or service account token), never with this API's token."""
    mesh = request.app[BUILDER].mesh
    return web.json_response(
        {
            "cluster": mesh.cluster,
            "locality": str(mesh.locality),
            "network": mesh.network,
            "trust_domain": mesh.trust_domain,
            **request.app[IDENTITY](),
        }
    )


async def info(request: web.Request) -> web.Response:
    """This cluster's name, locality, network and trust domain (for proxy agents), the
    state of its link to the federation controller (None when it never joined), and the
    snapshot builder's work: proxies known, rebuilds done, the last rebuild's ms."""
    builder = request.app[BUILDER]
    mesh = builder.mesh
    return web.json_response(
        {
            "cluster": mesh.cluster,
            "locality": str(mesh.locality),
            "network": mesh.network,
            "trust_domain": mesh.trust_domain,
            "federation": request.app[FEDERATION](),
            "snapshots": {
                "proxies": len(builder.proxies()),
                "builds": builder.builds,
                "lastBuildMs": round(builder.last_build_ms, 1),
            },
            **request.app[IDENTITY](),
        }
    )


class WorkloadTokenRequest(BaseModel):
    """``POST /v1/workload-tokens``: who the token is for and how it may be used."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    namespace: str = Field(description="the workload's namespace (a DNS label)")
    service_account: str = Field(
        alias="serviceAccount", description="its service account (a DNS subdomain)"
    )
    ttl_seconds: int = Field(
        default=3600,
        ge=1,
        le=int(MAX_TTL.total_seconds()),
        alias="ttlSeconds",
        strict=True,
        description="seconds the token may be redeemed in",
    )
    single_use: bool = Field(
        default=True, alias="singleUse", strict=True, description="false: reusable until expiry"
    )


def _token_request(body: object) -> tuple[str, str, timedelta, bool]:
    """``(namespace, service account, ttl, single use)`` of a mint request.

    Raises:
        ValueError: naming the field and the reason.
    """
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    try:
        request = WorkloadTokenRequest.model_validate(body)
    except ValidationError as err:
        raise ValueError("; ".join(validation_problems(err, "body"))) from None
    namespace, account = request.namespace, request.service_account
    if namespace_and_account(f"/ns/{namespace}/sa/{account}") is None:
        raise ValueError(f"ns/{namespace[:80]}/sa/{account[:80]} is not a workload identity")
    problem = workload_name_problem(namespace, account)
    if problem is not None:
        raise ValueError(problem)
    if namespace == SYSTEM_NAMESPACE and account != GATEWAY_SERVICE_ACCOUNT:
        raise ValueError(
            f"namespace {SYSTEM_NAMESPACE} holds meshfed's own identities; only"
            f" {GATEWAY_SERVICE_ACCOUNT} (east-west gateways) can be minted there"
        )
    return namespace, account, timedelta(seconds=request.ttl_seconds), request.single_use


async def mint_workload_token(request: web.Request) -> web.Response:
    """Mint a workload token bound to one namespace and service account of this cluster."""
    try:
        namespace, account, ttl, single_use = _token_request(await request.json())
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        return _error(400, f"workload token request: {err}")
    mesh = request.app[BUILDER].mesh
    token, record = await asyncio.to_thread(
        request.app[WORKLOAD_TOKENS].mint, namespace, account, ttl=ttl, single_use=single_use
    )
    spiffe_id = workload_spiffe_id(mesh.trust_domain, namespace, account)
    log.info(
        "minted a workload token for %s (expires %s, %s)",
        spiffe_id,
        record.expires_at.isoformat(),
        "single use" if single_use else "reusable",
    )
    return web.json_response(
        {
            "token": token,
            "spiffeId": spiffe_id,
            "cluster": mesh.cluster,
            "expiresAt": record.expires_at.isoformat(),
            "singleUse": single_use,
            **request.app[IDENTITY](),
        }
    )


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 ``{"status": "ok", "time": <Unix s, the server's clock>}``, or 503
    ``{"status": "failing", "problems": [...]}`` when configuration changes no longer reach
    proxies (the snapshot builder stopped)."""
    problem = request.app[BUILDER].health_problem()
    if problem is not None:
        return web.json_response({"status": "failing", "problems": [problem]}, status=503)
    return web.json_response({"status": "ok", "time": time.time()})


async def apply(request: web.Request) -> web.Response:
    """Validate every document, persist the result, then apply all of them (``dryRun=All``:
    only say what would change)."""
    try:
        dry_run = dry_run_requested(request.query)
    except InvalidDocumentError as err:
        return _error(400, str(err))
    docs = await _documents(request)
    if isinstance(docs, web.Response):
        return docs
    registry = request.app[REGISTRY]
    base = registry.state
    after, changed = with_applied(base, docs)
    unchanged = [describe(d) for d in docs if describe(d) not in changed]
    if dry_run:
        return web.json_response({"applied": changed, "unchanged": unchanged, "dryRun": True})
    request.app[STATE_FILE].save(after.documents())  # persist first: a failed write changes nothing
    registry.apply(docs, prepared=(base, after, changed))
    return web.json_response({"applied": changed, "unchanged": unchanged})


async def delete(request: web.Request) -> web.Response:
    """Remove the documents named (by kind, namespace and name)."""
    docs = await _documents(request)
    if isinstance(docs, web.Response):
        return docs
    registry = request.app[REGISTRY]
    base = registry.state
    after, removed = without(base, docs)
    request.app[STATE_FILE].save(after.documents())
    return web.json_response({"deleted": registry.delete(docs, prepared=(base, after, removed))})


async def workloads(request: web.Request) -> web.Response:
    """Registered workloads and their health."""
    state = request.app[REGISTRY].state
    items = [
        {
            "namespace": w.metadata.namespace,
            "name": w.metadata.name,
            "service": w.spec.service,
            "address": w.spec.address,
            "locality": w.spec.locality,
            "health": state.health_of(w.key).value,
        }
        for w in sorted(state.workloads.values(), key=lambda w: w.key)
    ]
    return web.json_response({"version": state.version, "workloads": items})


async def proxy_status(request: web.Request) -> web.Response:
    """Proxy sync status (see :mod:`federation.controlplane.status`)."""
    cache = request.app[CACHE]
    current = {}
    for node_id in cache.node_ids():
        snap = cache.get_snapshot(node_id)
        if snap is not None:
            current[node_id] = dict(snap.versions)
    return web.json_response({"proxies": request.app[STATUS].report(current)})


async def traces(request: web.Request) -> web.Response:
    """The propagation traces of recent changes, newest first
    (:mod:`federation.controlplane.trace`)."""
    tracker = request.app[BUILDER].tracker
    return web.json_response({"traces": tracker.traces() if tracker is not None else []})


async def config_dump(request: web.Request) -> web.Response:
    """A proxy's current snapshot as JSON: exactly what its xDS responses carry (never a
    secret: proxies read their SVID from files)."""
    node = request.query.get("node", "")
    snap = request.app[CACHE].get_snapshot(node)
    if snap is None:
        return _error(404, f"no snapshot for node {node!r}")
    dump: dict[str, object] = {
        "versions": {resource.short_name(t): v for t, v in snap.versions.items()}
    }
    for type_url, items in snap.resources.items():
        dump[resource.short_name(type_url)] = [
            json_format.MessageToDict(message) for message in items.values()
        ]
    return web.json_response(dump)


async def explain_handler(request: web.Request) -> web.Response:
    """The load-balancing decision table for one service (see :mod:`..explain`)."""
    q = request.query
    if not q.get("service"):
        return _error(400, "query parameter service is required")
    try:
        caller = Locality.parse(q["locality"]) if q.get("locality") else None
    except ValueError as err:
        return _error(400, f"locality: {err}")
    try:
        table = explain(
            request.app[BUILDER].mesh,
            request.app[REGISTRY].state,
            q.get("namespace", "default"),
            q["service"],
            caller,
        )
    except NotFoundError as err:
        return _error(404, str(err))
    return web.json_response(table)


async def explain_authz_handler(request: web.Request) -> web.Response:
    """Whether a principal may call a service's local workloads (``explain_authz``)."""
    q = request.query
    if not q.get("service"):
        return _error(400, "query parameter service is required")
    try:
        port = int(q["port"]) if q.get("port") else None
    except ValueError:
        return _error(400, f"port: {q['port']!r} is not a number")
    try:
        table = explain_authz(
            request.app[REGISTRY].state,
            q.get("namespace", "default"),
            q["service"],
            q.get("principal") or None,
            method=q.get("method", "GET"),
            path=q.get("path", "/"),
            port=port,
            cluster=q.get("cluster") or None,
            headers={
                n.strip(): v.strip()
                for n, _, v in (h.partition(":") for h in q.getall("header", []))
            },
        )
    except NotFoundError as err:
        return _error(404, str(err))
    return web.json_response(table)


async def metrics_handler(request: web.Request) -> web.Response:
    """Every metric of this control plane, Prometheus text format."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    """This API's OpenAPI 3.1 document (:func:`openapi_document`)."""
    return web.json_response(openapi_document())


#: (method, path, handler, summary, JSON body model or None)
ROUTES: list[Route] = [
    ("GET", "/healthz", healthz, "Liveness; 503 when the snapshot builder stopped", None),
    ("GET", "/v1/bootstrap", bootstrap, "What a proxy agent needs first (public)", None),
    ("GET", "/metrics", metrics_handler, "Prometheus metrics (text format)", None),
    ("GET", "/openapi.json", openapi, "This document", None),
    ("GET", "/v1/info", info, "Cluster, locality, federation link, snapshot work", None),
    ("POST", "/v1/apply", apply, "Store WorkloadEntry/ServiceExport/ServiceImport YAML", None),
    ("POST", "/v1/delete", delete, "Delete the documents named", None),
    ("GET", "/v1/workloads", workloads, "Registered workloads with their health", None),
    ("GET", "/v1/proxy-status", proxy_status, "Per proxy and xDS type: versions, ACK/NACK", None),
    ("GET", "/v1/config_dump", config_dump, "A proxy's current snapshot (no secret)", None),
    ("GET", "/v1/traces", traces, "Propagation traces of recent changes, per hop", None),
    ("GET", "/v1/explain", explain_handler, "The load-balancing decision table", None),
    ("GET", "/v1/explain/authz", explain_authz_handler, "Allowed or denied, and why", None),
    (
        "POST",
        "/v1/workload-tokens",
        mint_workload_token,
        "Mint a workload token",
        WorkloadTokenRequest,
    ),
]
#: Paths served without the bearer token.
PUBLIC_PATHS = ("/healthz", "/v1/bootstrap")
_TEXT = {"type": "string"}
#: Query parameters by path, as the handlers read them.
QUERY_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/v1/apply": [DRY_RUN],
    "/v1/config_dump": [query_parameter("node", "the proxy's node id", _TEXT)],
    "/v1/explain": [
        query_parameter("service", "the service's name (required)", _TEXT),
        query_parameter("namespace", "its namespace (default: default)", _TEXT),
        query_parameter("locality", "the caller's <cloud>/<region>[/<zone>]", _TEXT),
    ],
    "/v1/explain/authz": [
        query_parameter("service", "the service's name (required)", _TEXT),
        query_parameter("namespace", "its namespace (default: default)", _TEXT),
        query_parameter("principal", "the caller's SPIFFE ID (none: plain text)", _TEXT),
        query_parameter("cluster", "the caller's cluster", _TEXT),
        query_parameter("method", "HTTP method (default GET)", _TEXT),
        query_parameter("path", "HTTP path (default /)", _TEXT),
        query_parameter("port", "the service port", {"type": "integer"}),
    ],
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document generated from :data:`ROUTES`."""
    return build_openapi(
        "meshfed cluster control plane",
        ROUTES,
        public_paths=PUBLIC_PATHS,
        query_parameters=QUERY_PARAMETERS,
        yaml_bodies=("/v1/apply", "/v1/delete"),
    )


def make_app(
    *,
    registry: ServiceRegistry,
    state_file: StateFile,
    status: StatusRegistry,
    cache: SnapshotCache,
    builder: SnapshotBuilder,
    token: str,
    workload_tokens: TokenStore,
    identity: Identity,
    federation: Callable[[], dict[str, Any] | None] = lambda: None,
    metrics: ControlPlaneMetrics | None = None,
) -> web.Application:
    """The aiohttp application (routes in the module docstring); ``federation`` returns the
    link's state for ``/v1/info``; ``identity`` returns where the certificate service
    listens (``caAddress``, ``xdsAddress``, ``serverName``) and the trust bundle
    (``trustBundle``, PEM) for ``/v1/info`` and minted tokens."""
    app = web.Application(middlewares=[auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[REGISTRY] = registry
    app[STATE_FILE] = state_file
    app[STATUS] = status
    app[CACHE] = cache
    app[BUILDER] = builder
    app[TOKEN] = token
    app[FEDERATION] = federation
    app[WORKLOAD_TOKENS] = workload_tokens
    app[IDENTITY] = identity
    app[METRICS] = metrics or ControlPlaneMetrics()
    for method, path, handler, _, _ in ROUTES:
        app.router.add_route(method, path, handler)
    return app
