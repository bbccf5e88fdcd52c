"""The control plane's HTTP API (aiohttp, JSON), authenticated with a bearer token.

==========================  ===============================================================
``GET  /healthz``           liveness (no token needed)
``POST /v1/apply``          body: YAML/JSON WorkloadEntry documents; all validated, then all
                            applied (400 with every problem otherwise; nothing applied)
``POST /v1/delete``         body: documents naming the workloads to remove
``GET  /v1/workloads``      registered workloads with their health
``GET  /v1/proxy-status``   per proxy and xDS type: sent / ACKed / NACKed versions and state
``GET  /v1/config_dump``    ``?node=<id>``: the proxy's current snapshot (secrets redacted)
==========================  ===============================================================
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from google.protobuf import json_format

from federation.controlplane import resource
from federation.controlplane.builder import SnapshotBuilder
from federation.controlplane.registry import ServiceRegistry
from federation.controlplane.snapshot import SnapshotCache
from federation.controlplane.state_store import WorkloadStateFile
from federation.controlplane.status import StatusRegistry
from federation.errors import InvalidDocumentError
from federation.model.documents import load_documents
from federation.model.workload import WorkloadEntry

log = logging.getLogger(__name__)

REGISTRY = web.AppKey("registry", ServiceRegistry)
STATE_FILE = web.AppKey("state_file", WorkloadStateFile)
STATUS = web.AppKey("status", StatusRegistry)
CACHE = web.AppKey("cache", SnapshotCache)
BUILDER = web.AppKey("builder", SnapshotBuilder)
TOKEN = web.AppKey("token", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <token>`` on everything but ``/healthz``."""
    if request.path == "/healthz":
        return await handler(request)
    header = request.headers.get("Authorization", "")
    token = request.app[TOKEN]
    if not header.startswith("Bearer ") or not hmac.compare_digest(
        header[7:].encode(), token.encode()
    ):
        return _error(401, "missing or invalid bearer token")
    return await handler(request)


async def _documents(request: web.Request) -> list[WorkloadEntry] | web.Response:
    text = await request.text()
    try:
        models = load_documents(text, source="request body")
    except InvalidDocumentError as err:
        return _error(400, str(err), problems=err.problems)
    wrong = [i for i, m in enumerate(models, start=1) if not isinstance(m, WorkloadEntry)]
    if wrong:
        return _error(
            400, f"request body: document {wrong[0]}: a control plane accepts only WorkloadEntry"
        )
    return [m for m in models if isinstance(m, WorkloadEntry)]


async def healthz(_request: web.Request) -> web.Response:
    """Liveness."""
    return web.json_response({"status": "ok"})


async def apply(request: web.Request) -> web.Response:
    """Validate every document, then apply all and persist."""
    docs = await _documents(request)
    if isinstance(docs, web.Response):
        return docs
    registry = request.app[REGISTRY]
    after = dict(registry.state.workloads) | {d.key: d for d in docs}
    request.app[STATE_FILE].save(
        list(after.values())
    )  # persist first: a failed write changes nothing
    changed = registry.apply(docs)
    return web.json_response(
        {
            "applied": ["/".join(k) for k in changed],
            "unchanged": ["/".join(d.key) for d in docs if d.key not in changed],
        }
    )


async def delete(request: web.Request) -> web.Response:
    """Remove the workloads the documents name."""
    docs = await _documents(request)
    if isinstance(docs, web.Response):
        return docs
    registry = request.app[REGISTRY]
    gone = {d.key for d in docs}
    request.app[STATE_FILE].save([w for k, w in registry.state.workloads.items() if k not in gone])
    removed = registry.delete(gone)
    return web.json_response({"deleted": ["/".join(k) for k in removed]})


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


async def config_dump(request: web.Request) -> web.Response:
    """A proxy's current snapshot as JSON; private keys replaced by ``[redacted]``."""
    node = request.query.get("node", "")
    snap = request.app[CACHE].get_snapshot(node)
    if snap is None:
        return _error(404, f"no snapshot for node {node!r}")
    dump: dict[str, object] = {
        "versions": {resource.short_name(t): v for t, v in snap.versions.items()}
    }
    for type_url, items in snap.resources.items():
        rendered = []
        for message in items.values():
            data = json_format.MessageToDict(message)
            if type_url == resource.SECRET and "tlsCertificate" in data:
                data["tlsCertificate"]["privateKey"] = "[redacted]"
            rendered.append(data)
        dump[resource.short_name(type_url)] = rendered
    return web.json_response(dump)


def make_app(
    *,
    registry: ServiceRegistry,
    state_file: WorkloadStateFile,
    status: StatusRegistry,
    cache: SnapshotCache,
    builder: SnapshotBuilder,
    token: str,
) -> web.Application:
    """The aiohttp application (routes in the module docstring)."""
    app = web.Application(middlewares=[auth_middleware])
    app[REGISTRY] = registry
    app[STATE_FILE] = state_file
    app[STATUS] = status
    app[CACHE] = cache
    app[BUILDER] = builder
    app[TOKEN] = token
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/apply", apply)
    app.router.add_post("/v1/delete", delete)
    app.router.add_get("/v1/workloads", workloads)
    app.router.add_get("/v1/proxy-status", proxy_status)
    app.router.add_get("/v1/config_dump", config_dump)
    return app
