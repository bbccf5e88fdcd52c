"""A small Kubernetes API server for tests (issue #20): the real REST and watch protocol for
the few resources meshfed reads and writes, in memory, on 127.0.0.1. Clients are the real
``kubernetes_asyncio`` library.

What it speaks:

- ``GET`` of a collection (``/api/v1/services``, ``/api/v1/namespaces/{ns}/services``,
  ``/apis/{group}/{version}/...``) as a ``<Kind>List`` with ``metadata.resourceVersion``;
  ``labelSelector`` with ``key=value`` and ``key`` terms; ``GET``, ``POST`` (create, 409 when
  it exists; ``status`` is dropped, as for a status subresource), ``PUT`` (replace, the
  status kept; 409 on a stale ``metadata.resourceVersion``), ``DELETE`` and ``PUT .../status``
  (the status only) of one object. Every change takes the next resourceVersion of one
  counter shared by every resource, as etcd's revision.
- ``?watch=true`` (any spelling Go's ``strconv.ParseBool`` takes) from a ``resourceVersion``: newline-delimited JSON events
  ``ADDED``/``MODIFIED``/``DELETED`` of what changed after it, then live ones; ``BOOKMARK``
  events every :attr:`FakeKube.bookmark_s` with ``allowWatchBookmarks``; the stream ends
  after ``timeoutSeconds``. A resourceVersion older than the kept history
  (:meth:`FakeKube.compact`) gets an ``ERROR`` event with a 410 Gone ``Status``, as the
  real server sends.
- :attr:`FakeKube.refuse_lists` answers the lists of a resource with an error status.
- Istio's and Gateway API's kinds (one version each) are served only while their
  CustomResourceDefinition exists (404 otherwise, as a real server without the CRD).
- ``POST /apis/authentication.k8s.io/v1/tokenreviews`` answers from :attr:`FakeKube.tokens`
  (token -> (username, audiences)); ``POST /apis/authorization.k8s.io/v1/subjectaccessreviews``
  allows what :attr:`FakeKube.allowed` lists.

What it does not model: authentication and RBAC of its own callers (any bearer token is
accepted), admission, defaulting and schema validation (objects are stored as sent, plus
``metadata`` the server owns: ``uid``, ``resourceVersion``, ``creationTimestamp``,
``generation``), field selectors, pagination (``limit``/``continue``), protobuf,
finalizers and garbage collection (deleting a Namespace or a CRD leaves what was in it),
and HTTP/2. ``PATCH`` is server-side apply only (``application/apply-patch+yaml``, 415
otherwise; 422 without ``fieldManager``): it creates the object or lays the sent fields over
the stored ones (maps merged, lists of named items merged by name, other lists
replaced); managed fields, ownership conflicts and the
removal of fields a manager no longer sends are not modelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from federation.netaddr import free_port


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    #: served only while a CustomResourceDefinition ``<plural>.<group>`` exists
    needs_crd: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = [
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "pods", "Pod"),
    Resource("", "v1", "nodes", "Node", namespaced=False),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    Resource("multicluster.x-k8s.io", "v1alpha1", "serviceexports", "ServiceExport"),
    Resource("multicluster.x-k8s.io", "v1alpha1", "serviceimports", "ServiceImport"),
    Resource(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        namespaced=False,
    ),
    # Istio's and Gateway API's documents (issue #40): served once their CRD is created
    *[
        Resource(group, version, plural, kind, needs_crd=True)
        for group, version, plural, kind in (
            ("networking.istio.io", "v1", "virtualservices", "VirtualService"),
            ("networking.istio.io", "v1", "destinationrules", "DestinationRule"),
            ("networking.istio.io", "v1", "serviceentries", "ServiceEntry"),
            ("networking.istio.io", "v1", "sidecars", "Sidecar"),
            ("security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy"),
            ("security.istio.io", "v1", "peerauthentications", "PeerAuthentication"),
            ("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
            ("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute"),
            ("gateway.networking.k8s.io", "v1beta1", "referencegrants", "ReferenceGrant"),
        )
    ],
    # what `meshfed install --apply` writes besides the above
    Resource(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
    ),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "secrets", "Secret"),
    # what control plane replicas share (federation.controlplane.kube.replicas)
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
    ),
]

#: The only patch type the fake takes (server-side apply).
APPLY_PATCH = "application/apply-patch+yaml"


def _named(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(i, dict) and "name" in i for i in items)


def _merged(old: Any, new: Any) -> Any:
    """``new`` laid over ``old``: maps merge key by key; lists of maps that all have a
    ``name`` merge item by item by name (as lists marked ``x-kubernetes-list-type: map``
    with ``x-kubernetes-list-map-keys: [name]`` do: containers, ports, webhooks); anything
    else is replaced."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{k: _merged(old.get(k), v) for k, v in new.items()}}
    if _named(old) and _named(new):
        before = {i["name"]: i for i in old}
        return [_merged(before.get(i["name"]), i) for i in new]
    return copy.deepcopy(new)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _flag(value: str | None) -> bool:
    """A query flag as the API server reads it (Go's strconv.ParseBool)."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _selects(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeKube:
    """See the module docstring. Runs its own event loop on a thread; tests change objects
    with :meth:`create`, :meth:`replace`, :meth:`delete` (thread-safe), as a controller or
    ``kubectl`` would."""

    def __init__(self, bookmark_s: float = 1.0) -> None:
        self.bookmark_s = bookmark_s
        self.port = free_port()
        self.tokens: dict[str, tuple[str, list[str]]] = {}
        self.allowed: set[tuple[str, str, str, str]] = set()  # (user, verb, resource, ns)
        #: plural -> the error status every list (not watch) of it is answered with
        self.refuse_lists: dict[str, int] = {}
        self.refused = 0  # lists answered from refuse_lists
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # plural, ns, name
        self._history: list[tuple[int, str, Resource, dict[str, Any]]] = []
        self._oldest = 0  # a watch from a resourceVersion below this gets 410 Gone
        self._held = False
        self._generation = 0  # bumped to end every open watch
        self._rv = 100
        self._lock = threading.Lock()
        self._changed: asyncio.Condition | None = None
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeKube:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/api/{version}/{rest:.*}", self._handle_core)
        app.router.add_route("*", "/apis/{group}/{version}/{rest:.*}", self._handle_group)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:  # watch handlers still streaming
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- what tests call --------------------------------------------------------------------

    def write_kubeconfig(self, path: Path, token: str = "fake-token") -> Path:
        """A kubeconfig naming this server (plain HTTP on loopback) and a bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (by its apiVersion and kind); returns it as stored."""
        resource = self._resource_of(obj)
        return self._call(lambda: self._create(resource, obj))

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object (no resourceVersion check when ``obj`` carries none)."""
        resource = self._resource_of(obj)
        return self._call(lambda: self._replace(resource, obj, check=False))

    def set_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object's status only (as a controller's ``PUT .../status``)."""
        resource = self._resource_of(obj)
        return self._call(lambda: self._replace(resource, obj, check=False, status=True))

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object."""
        resource = next(r for r in RESOURCES if r.kind == kind)
        self._call(lambda: self._delete(resource, namespace, name))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object as stored (a copy), None when absent."""
        resource = next(r for r in RESOURCES if r.kind == kind)
        with self._lock:
            found = self._objects.get((resource.plural, namespace, name))
            return copy.deepcopy(found) if found else None

    def compact(self) -> None:
        """Forget every event so far: a watch from an older resourceVersion gets 410 Gone
        (etcd's compaction)."""
        with self._lock:
            self._history.clear()
            self._oldest = self._rv + 1  # the next event is the oldest kept

    @contextlib.contextmanager
    def disconnected(self) -> Iterator[None]:
        """Open watches get nothing (not even bookmarks) inside the block; on leaving it the
        history is compacted and every open watch ends: clients resuming from their last
        version get 410 Gone, as one cut off while etcd compacted does."""
        self._held = True
        try:
            yield
        finally:
            self.compact()
            self._generation += 1
            self._held = False
            self._call(lambda: None)  # wake the watch loops

    def _call(self, fn: Any) -> Any:
        async def run() -> Any:
            result = fn()
            assert self._changed is not None
            async with self._changed:
                self._changed.notify_all()
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # -- storage ----------------------------------------------------------------------------

    @staticmethod
    def _resource_of(obj: dict[str, Any]) -> Resource:
        return next(
            r for r in RESOURCES if r.kind == obj["kind"] and r.api_version == obj["apiVersion"]
        )

    def _record(self, kind: str, resource: Resource, obj: dict[str, Any]) -> None:
        self._history.append((int(obj["metadata"]["resourceVersion"]), kind, resource, obj))

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _create(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace", "default") if resource.namespaced else ""
        key = (resource.plural, ns, meta["name"])
        with self._lock:
            if key in self._objects:
                raise web.HTTPConflict(
                    text=json.dumps(_status(409, "AlreadyExists", f"{meta['name']} exists")),
                    content_type="application/json",
                )
            stored = copy.deepcopy(obj)
            stored.pop("status", None)  # the status subresource is written on its own
            stored["metadata"] = {
                **meta,
                **({"namespace": ns} if resource.namespaced else {}),
                "uid": str(uuid.uuid4()),
                "resourceVersion": self._next_rv(),
                "generation": 1,
                "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            self._objects[key] = stored
            self._record("ADDED", resource, stored)
            return copy.deepcopy(stored)

    def _replace(
        self, resource: Resource, obj: dict[str, Any], *, check: bool, status: bool = False
    ) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace", "default") if resource.namespaced else ""
        key = (resource.plural, ns, meta["name"])
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                raise web.HTTPNotFound(
                    text=json.dumps(_status(404, "NotFound", f"{meta['name']} not found")),
                    content_type="application/json",
                )
            sent_rv = meta.get("resourceVersion")
            if check and sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise web.HTTPConflict(
                    text=json.dumps(_status(409, "Conflict", "the object has been modified")),
                    content_type="application/json",
                )
            stored = copy.deepcopy(old)
            if status:
                stored["status"] = copy.deepcopy(obj.get("status"))
            else:
                stored = {**copy.deepcopy(obj), "status": old.get("status", obj.get("status"))}
                if stored["status"] is None:
                    stored.pop("status")
                stored["metadata"] = {
                    **meta,
                    **{k: old["metadata"][k] for k in ("uid", "creationTimestamp", "namespace")
                       if k in old["metadata"]},
                    "generation": old["metadata"]["generation"] + 1,
                }  # fmt: skip
            stored["metadata"]["resourceVersion"] = self._next_rv()
            self._objects[key] = stored
            self._record("MODIFIED", resource, stored)
            return copy.deepcopy(stored)

    def _apply(
        self, request: web.Request, resource: Resource, ns: str, name: str, body: Any
    ) -> tuple[dict[str, Any], int]:
        """Server-side apply, as far as the fake goes (see the module docstring)."""

        def refuse(code: int, reason: str, message: str) -> web.HTTPException:
            cls = web.HTTPUnsupportedMediaType if code == 415 else web.HTTPUnprocessableEntity
            return cls(
                text=json.dumps(_status(code, reason, message)), content_type="application/json"
            )

        if request.content_type != APPLY_PATCH:
            raise refuse(415, "UnsupportedMediaType", f"the fake takes {APPLY_PATCH} only")
        if not request.query.get("fieldManager"):
            raise refuse(
                422, "Invalid", "fieldManager: Required value: is required for apply patch"
            )
        meta = (body or {}).get("metadata") or {}
        if (body or {}).get("kind") != resource.kind or meta.get("name") != name:
            raise refuse(422, "Invalid", "kind and metadata.name must match the URL")
        obj = {**body, "metadata": {**meta, **({"namespace": ns} if resource.namespaced else {})}}
        with self._lock:
            old = self._objects.get((resource.plural, ns, name))
        if old is None:
            return self._create(resource, obj), 201
        merged = _merged({k: v for k, v in old.items() if k != "status"}, obj)
        merged["metadata"].pop("resourceVersion", None)
        return self._replace(resource, merged, check=False), 200

    def _delete(self, resource: Resource, ns: str, name: str) -> dict[str, Any]:
        with self._lock:
            old = self._objects.pop((resource.plural, ns, name), None)
            if old is None:
                raise web.HTTPNotFound(
                    text=json.dumps(_status(404, "NotFound", f"{name} not found")),
                    content_type="application/json",
                )
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = self._next_rv()
            self._record("DELETED", resource, gone)
            return gone

    def _crd_installed(self, resource: Resource) -> bool:
        with self._lock:
            return ("customresourcedefinitions", "", f"{resource.plural}.{resource.group}") in (
                self._objects
            )

    # -- HTTP -------------------------------------------------------------------------------

    async def _handle_core(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "", request.match_info["version"])

    async def _handle_group(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(
            request, request.match_info["group"], request.match_info["version"]
        )

    async def _handle(self, request: web.Request, group: str, version: str) -> web.StreamResponse:
        parts = [p for p in request.match_info["rest"].split("/") if p]
        body = await request.json() if request.can_read_body else None
        if (
            request.method == "POST"
            and group == "authentication.k8s.io"
            and parts == ["tokenreviews"]
        ):
            return web.json_response(self._token_review(body or {}), status=201)
        if (
            request.method == "POST"
            and group == "authorization.k8s.io"
            and parts == ["subjectaccessreviews"]
        ):
            return web.json_response(self._access_review(body or {}), status=201)  # fmt: skip
        ns = ""
        if parts[:1] == ["namespaces"] and len(parts) >= 3:  # namespaces/{ns}/{plural}/...
            ns, parts = parts[1], parts[2:]
        plural, name, sub = ([*parts, "", "", ""])[:3]
        resource = next(
            (r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)),
            None,
        )
        if resource is None or (resource.needs_crd and not self._crd_installed(resource)):
            return web.json_response(_status(404, "NotFound", f"no resource {plural}"), status=404)
        if request.method == "GET" and not name:
            if _flag(request.query.get("watch")):
                return await self._watch(request, resource, ns)
            if plural in self.refuse_lists:
                self.refused += 1
                code = self.refuse_lists[plural]
                return web.json_response(_status(code, "Refused", "refused"), status=code)
            return web.json_response(
                self._list(resource, ns, request.query.get("labelSelector", ""))
            )
        if request.method == "GET":
            found = self.get(resource.kind, ns, name)
            if found is None:
                return web.json_response(_status(404, "NotFound", f"{name} not found"), status=404)
            return web.json_response(found)
        try:
            if request.method == "POST" and not name:
                assert body is not None
                body.setdefault("metadata", {}).setdefault("namespace", ns or "default")
                stored = self._create(resource, body)
                code = 201
            elif request.method == "PUT" and name:
                assert body is not None
                stored = self._replace(resource, body, check=True, status=sub == "status")
                code = 200
            elif request.method == "PATCH" and name and not sub:
                stored, code = self._apply(request, resource, ns, name, body)
            elif request.method == "DELETE" and name:
                stored = self._delete(resource, ns, name)
                code = 200
            else:
                return web.json_response(
                    _status(405, "MethodNotAllowed", request.method), status=405
                )
        except web.HTTPException as err:
            return web.Response(status=err.status, text=err.text, content_type="application/json")
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()
        return web.json_response(stored, status=code)

    def _list(self, resource: Resource, ns: str, selector: str) -> dict[str, Any]:
        with self._lock:
            items = [
                copy.deepcopy(o)
                for (plural, o_ns, _), o in sorted(self._objects.items())
                if plural == resource.plural
                and (not ns or o_ns == ns)
                and _selects(selector, (o.get("metadata") or {}).get("labels") or {})
            ]
            rv = str(self._rv)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    async def _watch(self, request: web.Request, resource: Resource, ns: str) -> web.StreamResponse:
        try:
            return await self._stream(request, resource, ns)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            return web.Response()  # the client went away

    async def _stream(
        self, request: web.Request, resource: Resource, ns: str
    ) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or self._rv)
        selector = request.query.get("labelSelector", "")
        bookmarks = _flag(request.query.get("allowWatchBookmarks"))
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        async def send(event: dict[str, Any]) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        if since + 1 < self._oldest:  # events after `since` were compacted away
            await send({"type": "ERROR", "object": _status(410, "Expired",
                        f"too old resource version: {since} ({self._oldest})")})  # fmt: skip
            return response
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_s
        assert self._changed is not None
        generation = self._generation
        while loop.time() < deadline and self._generation == generation:
            if self._held:
                await asyncio.sleep(0.01)
                continue
            with self._lock:
                events = [
                    (rv, kind, obj)
                    for rv, kind, r, obj in self._history
                    if rv > since
                    and r == resource
                    and (not ns or obj["metadata"].get("namespace") == ns)
                ]
            for rv, kind, obj in events:
                since = rv
                if _selects(selector, (obj.get("metadata") or {}).get("labels") or {}):
                    await send({"type": kind, "object": obj})
            if bookmarks and loop.time() >= next_bookmark:
                next_bookmark = loop.time() + self.bookmark_s
                await send({
                    "type": "BOOKMARK",
                    "object": {"kind": resource.kind, "apiVersion": resource.api_version,
                               "metadata": {"resourceVersion": str(max(since, self._rv))}},
                })  # fmt: skip
                since = max(since, self._rv)
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    wait = min(deadline, next_bookmark) - loop.time()
                    await asyncio.wait_for(self._changed.wait(), max(0.01, wait))
        return response

    def _token_review(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = body.get("spec") or {}
        found = self.tokens.get(str(spec.get("token", "")))
        wanted = list(spec.get("audiences") or [])
        ok = found is not None and (not wanted or bool(set(wanted) & set(found[1])))
        status: dict[str, Any] = {"authenticated": ok}
        if ok and found is not None:
            status["user"] = {"username": found[0]}
            status["audiences"] = [a for a in found[1] if not wanted or a in wanted]
        else:
            status["error"] = "token not valid for these audiences" if found else "invalid token"
        return {**body, "status": status}

    def _access_review(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = body.get("spec") or {}
        attrs = spec.get("resourceAttributes") or {}
        key = (spec.get("user", ""), attrs.get("verb", ""), attrs.get("resource", ""),
               attrs.get("namespace", ""))  # fmt: skip
        return {**body, "status": {"allowed": key in self.allowed}}


@contextlib.contextmanager
def fake_kube(bookmark_s: float = 1.0) -> Iterator[FakeKube]:
    """A started :class:`FakeKube`, stopped on exit even when the caller failed."""
    kube = FakeKube(bookmark_s).start()
    try:
        yield kube
    finally:
        kube.stop()
