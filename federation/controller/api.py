"""The controller's REST API (aiohttp, JSON; OpenAPI 3.1 document at ``/openapi.json``).

Every route but these needs ``Authorization: Bearer <admin token>`` (401 otherwise):
``GET /healthz`` answers ``{"status": "ok", "trustDomain": ..., "time": <Unix s>}`` (its
clock, for ``meshfed check``) to anyone (liveness
probes, as Kubernetes' ``/healthz``; the trust domain is public, it is in every
certificate), ``GET /v1/bundle`` answers the trust bundle to anyone (public; a joining
control plane checks its token's root pin against it), ``GET /v1/spiffe-bundle`` is the
SPIFFE bundle endpoint (public, as the SPIFFE Federation spec requires), and
``POST /v1/join`` is authenticated by the one-time join token in its body; and the
dashboard's static files (``/dashboard``, its script and style sheet) hold no data and need
no token -- the page reads the API with the admin token like any other client.
The routes are listed in :data:`ROUTES`; their request bodies are pydantic models, from which
the OpenAPI document is generated.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from federation.controller.bundle_endpoint import API_PATH, bundle_response
from federation.controller.membership import DEFAULT_TOKEN_TTL_S, validate_member_name
from federation.controller.service import FederationService
from federation.controller.store import ClusterRecord, StoreError
from federation.errors import (
    ConflictError,
    InvalidDocumentError,
    NotFoundError,
    UnauthenticatedError,
)
from federation.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from federation.model.authz import AuthorizationPolicy, trust_domain_warnings
from federation.model.documents import (
    MAX_BODY_BYTES,
    document_label,
    load_document_bytes,
    validation_problems,
)
from federation.model.gateway_api import GRPCRoute, HTTPRoute, route_warnings
from federation.model.istio_networking import VirtualService
from federation.model.istio_translate import virtual_service_warnings
from federation.model.locality import LocalityText
from federation.netaddr import parse_host_port
from federation.openapi import DRY_RUN, Route, dry_run_requested, query_parameter
from federation.openapi import openapi_document as build_openapi
from federation.traffic import DEFAULT_GROUP, EDGE_LABELS
from trust.errors import InvalidCertificateError, SigningRefusedError, TrustBackendError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ControllerContext:
    """What the handlers need: the federation's rules (``service``), the admin token, and
    what joining control planes are told (trust domain, where and by which name to dial the
    sync service)."""

    service: FederationService
    trust_domain: str
    admin_token: str
    sync_address: str
    sync_server_name: str
    #: the SPIFFE bundle endpoint's answer (:mod:`federation.controller.bundle_endpoint`)
    spiffe_bundle: Callable[[], bytes] = lambda: b'{"keys": []}'


CONTEXT = web.AppKey("context", ControllerContext)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NewCluster(_Body):
    """``POST /v1/clusters``: register a member and get a one-time join token."""

    name: str = Field(description="DNS label, unique in the federation")
    locality: LocalityText = Field(
        description="<cloud>/<region>[/<zone>], e.g. aws/us-east-1/us-east-1a"
    )
    network: str = Field(default="default", min_length=1)
    gateway: str = Field(
        default="",
        description="HOST:PORT of the cluster's east-west gateway; empty: its control plane"
        " reports it (the LoadBalancer Service of meshfed install)",
    )
    provider: str = Field(default="local", pattern="^(aws|gcp|local)$")
    token_ttl_s: float = Field(
        default=DEFAULT_TOKEN_TTL_S, gt=0, le=7 * 86400, alias="tokenTtlSeconds"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_member_name(value)

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        if value and parse_host_port(value, what="gateway")[1] == 0:
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
        problems = validation_problems(err, "request body")
        raise web.HTTPBadRequest(
            text=json.dumps({"error": problems[0], "problems": problems}),
            content_type="application/json",
        ) from err


#: error class -> HTTP status; the first match wins (subclasses before their bases).
ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (InvalidDocumentError, 400),
    (InvalidCertificateError, 400),
    (UnauthenticatedError, 401),
    (SigningRefusedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (TrustBackendError, 503),  # Vault or AWS Private CA sealed, unreachable or throttled
)
_MAPPED = tuple(cls for cls, _ in ERROR_STATUS)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The rules' errors as JSON ``{"error", "problems"?}`` with the status of
    :data:`ERROR_STATUS`; anything else is a 500 aiohttp logs."""
    try:
        return await handler(request)
    except StoreError as err:
        if not err.retryable:
            raise
        log.warning("%s %s: the database is unreachable: %s", request.method, request.path, err)
        return _error(503, "the controller's database is unreachable; try another replica")
    except _MAPPED as err:
        status = next(code for cls, code in ERROR_STATUS if isinstance(err, cls))
        if isinstance(err, InvalidDocumentError):
            return _error(status, str(err), problems=err.problems)
        if isinstance(err, SigningRefusedError):
            log.warning("join refused: %s", err)
        return _error(status, str(err))


#: Routes anyone may call: liveness, the public trust bundle, and the join (authenticated by
#: the join token in its body).
#: The dashboard's files (path -> (file next to this module, content type)): static, with no
#: data in them, so they need no token; the page reads the API with the admin token.
DASHBOARD_FILES = {
    "/dashboard": ("dashboard.html", "text/html"),
    "/dashboard/app.js": ("dashboard.js", "text/javascript"),
    "/dashboard/app.css": ("dashboard.css", "text/css"),
}
PUBLIC_PATHS = ("/healthz", "/v1/bundle", API_PATH, "/v1/join", *DASHBOARD_FILES)


@web.middleware
async def replica_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """503 on every route while this replica has lost its database
    (:attr:`federation.controller.replicas.Replica.healthy`): a client moves to another."""
    replica = request.app[CONTEXT].service.hub.replica
    if not replica.healthy and request.path not in DASHBOARD_FILES:
        return _error(
            503, f"controller replica {replica.name} lost its database; try another replica"
        )
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin bearer token on everything but ``/healthz`` and ``/v1/join``."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    token = request.app[CONTEXT].admin_token
    if not header.startswith("Bearer ") or not hmac.compare_digest(
        header[7:].encode(), token.encode()
    ):
        return _error(401, "missing or invalid bearer token")
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    """Liveness, the trust domain a joining control plane asks for in its CSR, and the
    server's clock (``time``, Unix seconds, for ``meshfed check``'s clock check); 503 from a
    replica that lost its database (:func:`replica_middleware`)."""
    return web.json_response(
        {"status": "ok", "trustDomain": request.app[CONTEXT].trust_domain, "time": time.time()}
    )


async def replicas(request: web.Request) -> web.Response:
    """This replica, the leader and its fencing number, and every live replica
    (:meth:`federation.controller.replicas.PostgresReplica.describe`)."""
    return web.json_response(request.app[CONTEXT].service.hub.replica.describe())


async def metrics(request: web.Request) -> web.Response:
    """The controller's metrics (:mod:`federation.controller.metrics`), Prometheus text."""
    body = request.app[CONTEXT].service.hub.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def bundle(request: web.Request) -> web.Response:
    """The trust domain and its trust bundle (PEM): public, as a SPIFFE bundle endpoint is. A
    joining control plane checks its token's root pin against it before sending the token."""
    ctx = request.app[CONTEXT]
    return web.json_response(
        {"trustDomain": ctx.trust_domain, "trustBundle": ctx.service.trust_bundle_pem()}
    )


async def spiffe_bundle(request: web.Request) -> web.Response:
    """The trust bundle as a SPIFFE bundle endpoint serves it (profile ``https_spiffe``: this
    API's certificate is the controller's X509-SVID; see
    :mod:`federation.controller.bundle_endpoint`)."""
    return bundle_response(request.app[CONTEXT].spiffe_bundle())


async def trust_domains(request: web.Request) -> web.Response:
    """Foreign trust domains federated with, and the state of their bundles."""
    return web.json_response({"trustdomains": request.app[CONTEXT].service.trust_domains()})


async def remove_trust_domain(request: web.Request) -> web.Response:
    """End the federation with a trust domain (its documents deleted; 404 when none)."""
    domain = request.match_info["domain"]
    removed = request.app[CONTEXT].service.remove_trust_domain(domain)
    return web.json_response({"deleted": removed})


async def list_clusters(request: web.Request) -> web.Response:
    """Members with locality, network, gateway, state and last heartbeat."""
    return web.json_response({"clusters": request.app[CONTEXT].service.clusters()})


async def add_cluster(request: web.Request) -> web.Response:
    """Register a member; answer its one-time join token (shown once, stored as SHA-256)."""
    body: NewCluster = await _body(request, NewCluster)
    record = ClusterRecord(body.name, body.locality, body.network, body.gateway, body.provider, 0)
    new = request.app[CONTEXT].service.add_cluster(record, body.token_ttl_s)
    return web.json_response(
        {"cluster": new.cluster, "token": new.token, "expiresAt": new.expires_at}, status=201
    )


async def new_token(request: web.Request) -> web.Response:
    """A fresh join token for a member (re-join after losing its state)."""
    body: TokenRequest = await _body(request, TokenRequest)
    new = request.app[CONTEXT].service.new_token(request.match_info["name"], body.token_ttl_s)
    return web.json_response(
        {"cluster": new.cluster, "token": new.token, "expiresAt": new.expires_at}, status=201
    )


async def remove_cluster(request: web.Request) -> web.Response:
    """Withdraw a member: its imports and endpoints disappear from every other cluster."""
    name = request.match_info["name"]
    request.app[CONTEXT].service.remove_cluster(name)
    return web.json_response({"removed": name})


async def join(request: web.Request) -> web.Response:
    """Sign a joining cluster's intermediate CA; the join token is used up on success only."""
    ctx = request.app[CONTEXT]
    body: JoinRequest = await _body(request, JoinRequest)
    grant = ctx.service.join(body.cluster, body.token, body.csr)
    return web.json_response(
        {
            "cluster": grant.cluster,
            "trustDomain": ctx.trust_domain,
            "certificateChain": grant.certificate_chain_pem,
            "trustBundle": grant.trust_bundle_pem,
            "syncAddress": ctx.sync_address,
            "syncAddresses": ctx.service.hub.replica.sync_addresses(),
            "syncServerName": ctx.sync_server_name,
            "leaseSeconds": ctx.service.hub.lease_s,
        }
    )


async def _documents(request: web.Request) -> list[BaseModel]:
    """The request body's documents, parsed and checked against their schemas in a worker
    thread (a large body never holds the event loop), within the limits of
    :mod:`federation.model.documents`.

    Raises:
        InvalidDocumentError: not UTF-8, not YAML, past a limit, or invalid (400).
    """
    return await asyncio.to_thread(load_document_bytes, await request.read(), source="request body")


async def apply(request: web.Request) -> web.Response:
    """Validate every document, then store all of them in one transaction (or none)."""
    ctx = request.app[CONTEXT]
    dry_run = dry_run_requested(request.query)
    models = await _documents(request)
    result = ctx.service.apply_documents(models, dry_run=dry_run)
    warnings = [
        f"{document_label(m)}: {w}"
        for m in models
        for w in (
            trust_domain_warnings(m, ctx.trust_domain, ctx.service.federated_domains())
            if isinstance(m, AuthorizationPolicy)
            else route_warnings(m)
            if isinstance(m, HTTPRoute | GRPCRoute)
            else virtual_service_warnings(m)
            if isinstance(m, VirtualService)
            else []
        )
    ]
    body = {"applied": result.applied, "unchanged": result.unchanged, "warnings": warnings}
    return web.json_response({**body, "dryRun": True} if dry_run else body)


async def delete(request: web.Request) -> web.Response:
    """Delete the documents named (by kind, namespace, name and, for exports, cluster)."""
    removed = request.app[CONTEXT].service.delete_documents(await _documents(request))
    return web.json_response({"deleted": removed})


async def exports(request: web.Request) -> web.Response:
    """Every export with its MCS condition (``Exported`` or ``Conflict``), and the
    ServiceExport documents applied to the controller (``documents``)."""
    return web.json_response(request.app[CONTEXT].service.exports())


async def imports(request: web.Request) -> web.Response:
    """Per importing cluster, each ServiceImport the controller sends it."""
    return web.json_response({"imports": request.app[CONTEXT].service.imports()})


async def policies(request: web.Request) -> web.Response:
    """Every stored policy document."""
    return web.json_response({"policies": request.app[CONTEXT].service.policies()})


#: Longest window ``GET /v1/traffic`` answers for (s).
MAX_TRAFFIC_WINDOW_S = 300.0


async def traffic(request: web.Request) -> web.Response:
    """Request rates, shares, latency and egress $/hour per edge over ``?window=`` seconds
    (default 10, 1 to 300), grouped by ``?by=`` (comma-separated labels of
    :data:`federation.traffic.EDGE_LABELS`; default source cluster, service, destination
    cluster); 400 naming the parameter for a bad one."""
    try:
        window = float(request.query.get("window", "10"))
    except ValueError:
        return _error(400, f"window: {request.query['window']!r} is not a number of seconds")
    if not 1 <= window <= MAX_TRAFFIC_WINDOW_S:
        return _error(400, f"window: must be 1 to {MAX_TRAFFIC_WINDOW_S:g} seconds")
    by = [b for b in request.query.get("by", ",".join(DEFAULT_GROUP)).split(",") if b]
    unknown = [b for b in by if b not in EDGE_LABELS]
    if unknown or not by:
        return _error(400, f"by: {','.join(unknown) or '(empty)'} not in {','.join(EDGE_LABELS)}")
    return web.json_response(request.app[CONTEXT].service.traffic(window, by))


async def cost_report(request: web.Request) -> web.Response:
    """Egress spent per service and path over ``?since=`` (a duration back from now, e.g.
    ``7d``, or a day ``YYYY-MM-DD``; default ``7d``), with round robin's and locality
    failover's dollars for the same traffic (:func:`federation.cost_report.report`); 400
    naming the parameter for a bad one."""
    try:
        return web.json_response(
            request.app[CONTEXT].service.cost(request.query.get("since", "7d"))
        )
    except ValueError as err:
        return _error(400, f"since: {err}")


async def cost_ledger(request: web.Request) -> web.Response:
    """The traffic ledger's rows per UTC day over ``?since=`` (as ``/v1/cost/report``)."""
    try:
        return web.json_response(
            request.app[CONTEXT].service.ledger(request.query.get("since", "7d"))
        )
    except ValueError as err:
        return _error(400, f"since: {err}")


#: The page may load only its own files and call only this API (no inline script, no other
#: origin), and may not be framed.
DASHBOARD_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none';"
    " form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def dashboard(request: web.Request) -> web.Response:
    """The dashboard's page, script or style sheet (see ``docs/metrics.md``)."""
    name, content_type = DASHBOARD_FILES[request.path]
    body = resources.files("federation.controller").joinpath(name).read_bytes()
    return web.Response(
        body=body, content_type=content_type, charset="utf-8", headers=DASHBOARD_HEADERS
    )


async def openapi(request: web.Request) -> web.Response:
    """This API as an OpenAPI 3.1 document."""
    return web.json_response(openapi_document())


#: (method, path, handler, summary, request body model or None)
ROUTES: list[Route] = [
    ("GET", "/healthz", healthz, "Liveness (no token needed)", None),
    ("GET", "/metrics", metrics, "Prometheus metrics (text format)", None),
    ("GET", "/v1/bundle", bundle, "The federation's trust bundle (public, no token)", None),
    ("GET", API_PATH, spiffe_bundle, "The trust bundle, SPIFFE bundle endpoint (public)", None),
    ("GET", "/v1/trustdomains", trust_domains, "Federated trust domains, their bundles", None),
    ("DELETE", "/v1/trustdomains/{domain}", remove_trust_domain, "End a federation", None),
    ("GET", "/openapi.json", openapi, "This document", None),
    ("GET", "/v1/replicas", replicas, "Controller replicas, the leader, its fencing number", None),
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
    ("GET", "/v1/traffic", traffic, "Traffic per edge: rates, latency, egress $/hour", None),
    ("GET", "/v1/cost/report", cost_report, "Egress spent and its alternatives, per day", None),
    ("GET", "/v1/cost/ledger", cost_ledger, "Bytes and US$ per path and UTC day", None),
    *(
        ("GET", path, dashboard, "The dashboard (static; it reads the API with the token)", None)
        for path in DASHBOARD_FILES
    ),
]


#: Query parameters by path, as the handlers read them.
_SINCE = query_parameter(
    "since", "a duration back from now (7d, 24h) or a UTC day YYYY-MM-DD", {"type": "string"}
)
QUERY_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/v1/apply": [DRY_RUN],
    "/v1/cost/report": [_SINCE],
    "/v1/cost/ledger": [_SINCE],
    "/v1/traffic": [
        query_parameter(
            "window",
            "seconds, 1 to 300 (default 10)",
            {"type": "number", "minimum": 1, "maximum": MAX_TRAFFIC_WINDOW_S},
        ),
        query_parameter(
            "by", "comma-separated edge labels: " + ",".join(EDGE_LABELS), {"type": "string"}
        ),
    ],
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document generated from :data:`ROUTES`."""
    return build_openapi(
        "meshfed federation controller",
        ROUTES,
        public_paths=PUBLIC_PATHS,
        query_parameters=QUERY_PARAMETERS,
        yaml_bodies=("/v1/apply", "/v1/delete"),
    )


def make_app(ctx: ControllerContext) -> web.Application:
    """The aiohttp application (routes in :data:`ROUTES`)."""
    app = web.Application(
        middlewares=[replica_middleware, auth_middleware, error_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONTEXT] = ctx
    for method, path, handler, _, _ in ROUTES:
        app.router.add_route(method, path, handler)
    return app
