"""The cluster's Kubernetes API as the control plane's service registry (issue #20).

:class:`Reflector` keeps one kind of object current, as client-go's reflector does, through
``kubernetes_asyncio``: a list (its ``resourceVersion``), then watches from it with
bookmarks (``allowWatchBookmarks``: the version moves on without changes, so a reconnect
does not replay history); a watch the server ends (``timeoutSeconds``) resumes from the last
version seen; **410 Gone** (the version was compacted away) re-lists at once and replaces
every object, so nothing is lost or duplicated; any other error backs off 0.5 s doubling to
10 s and re-lists.

:class:`KubeSource` runs reflectors for Services, EndpointSlices, Nodes, Pods, Namespaces,
the MCS ServiceExports and ServiceImports, and Istio's and Gateway API's documents
(:mod:`federation.controlplane.kube.documents`; a kind whose CRD is not installed is looked
for again every :data:`ABSENT_RETRY_S`) and, after each change (coalesced for
:data:`COALESCE_S`), makes the workloads
(:func:`federation.controlplane.kube.translate.workload_entries`) and applies the
difference to the registry: new and changed workloads applied, vanished ones deleted, in
one version each; it touches only workloads labelled as its own. The ServiceExports in
scope are the registry's cluster exports; :class:`federation.controlplane.kube.writer.McsWriter`
writes their conditions and the ServiceImports back. The documents go to the registry
(:meth:`~federation.controlplane.registry.ServiceRegistry.set_cluster_documents`: in force for
this cluster's proxies); :class:`~federation.controlplane.kube.document_writer.DocumentWriter`
writes their status.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch
from pydantic import BaseModel

from federation.controlplane.kube.document_writer import DocumentWriter
from federation.controlplane.kube.documents import RESOURCES as DOCUMENT_RESOURCES
from federation.controlplane.kube.documents import in_scope, ours
from federation.controlplane.kube.mcs import API_VERSION, GROUP, VERSION
from federation.controlplane.kube.translate import (
    SOURCE_LABEL,
    SOURCE_VALUE,
    Key,
    Scope,
    load_balancer_address,
    workload_entries,
)
from federation.controlplane.kube.writer import McsWriter
from federation.controlplane.registry import ServiceRegistry
from federation.errors import InvalidDocumentError
from federation.model.cluster_documents import DocumentKey, raw_key, validated
from federation.model.documents import validate_documents
from federation.model.workload import WorkloadEntry

log = logging.getLogger(__name__)

#: Changes within this many seconds are applied together (s).
COALESCE_S = 0.05
#: A kind whose CRD is not installed is listed again this often (s).
ABSENT_RETRY_S = 10.0
#: A watch asks the server to end it after this long (s); it then resumes from its version.
WATCH_TIMEOUT_S = 300
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0

ListFn = Callable[..., Awaitable[Any]]


def _honour_cancel() -> None:
    """Raise CancelledError when the running task is being cancelled: a cancel that raced a
    request deadline comes out as TimeoutError (asyncio timeouts, Python 3.11), and one that
    arrived while a watch stream was read may end the watch as if the server had closed it;
    a loop that goes on after either never ends, and shutdown waits for ever (a test's
    teardown hung 300 s in CI)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Reflector:
    """One kind of object, listed and watched (see the module docstring).

    Args:
        name: for logs (``services``).
        list_fn: a ``kubernetes_asyncio`` list method
            (``CoreV1Api.list_service_for_all_namespaces``).
        on_change: called after the objects changed (a list, or a watch event).
        watch_timeout_s: asked of the server per watch.
        absent_retry_s: when not None, the kind may be missing (a CRD not installed): a
            404 on listing counts as an empty, synced list, and the list is tried again
            after this many seconds (s) until the kind appears.
    """

    def __init__(
        self,
        name: str,
        list_fn: ListFn,
        on_change: Callable[[], None],
        *,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        absent_retry_s: float | None = None,
    ) -> None:
        self.name = name
        self.absent_retry_s = absent_retry_s
        self.absent = False
        self._list_fn = list_fn
        self._on_change = on_change
        self.watch_timeout_s = watch_timeout_s
        self.objects: dict[Key, dict[str, Any]] = {}
        self.synced = False
        self.relists = 0
        self.resource_version = ""

    @staticmethod
    def key(obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace", "")), str(meta.get("name", "")))

    async def list(self) -> None:
        """List every object; replace what was known.

        Raises:
            ApiException: the server answered with an error status (nothing replaced).
        """
        resp = await self._list_fn(_preload_content=False, _request_timeout=30)
        try:
            if not 200 <= resp.status <= 299:
                # without preloading, the client does not raise for an error status: a 403 or
                # 404 must not read as an empty list (every workload would be withdrawn)
                raise ApiException(status=resp.status, reason=resp.reason)
            data = json.loads(await resp.read())
        finally:
            resp.release()
        self.objects = {self.key(o): o for o in data.get("items") or []}
        self.resource_version = str((data.get("metadata") or {}).get("resourceVersion", ""))
        self.synced = True
        self.relists += 1
        self._on_change()

    async def watch(self) -> None:
        """Watch from :attr:`resource_version` until the server ends the stream.

        Raises:
            ApiException: 410 Gone (re-list) or another API error.
        """
        watch = Watch(return_type="object")
        stream = watch.stream(
            self._list_fn,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout_s,
            _request_timeout=self.watch_timeout_s + 30,
        )
        async with watch:
            async for event in stream:
                kind, obj = event["type"], event["raw_object"]
                version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                if version:
                    self.resource_version = version
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self.objects.pop(self.key(obj), None)
                else:
                    self.objects[self.key(obj)] = obj
                self._on_change()

    async def _absent(self, retry_s: float) -> None:
        """The kind is not served (its CRD is not installed): no objects, synced; wait."""
        if not self.absent:
            log.info("%s: not served by this cluster (CRD not installed); none read", self.name)
        self.absent = True
        had = bool(self.objects)
        self.objects, self.synced, self.resource_version = {}, False, ""
        self.relists += 1
        if had or self.relists == 1:
            self._on_change()
        await asyncio.sleep(retry_s)

    async def run(self) -> None:
        """List, then watch, until cancelled (see the module docstring)."""
        delay = BACKOFF_INITIAL_S
        while True:
            _honour_cancel()
            try:
                if not self.synced:
                    await self.list()
                    if self.absent:
                        log.info("%s: now served; reading", self.name)
                        self.absent = False
                await self.watch()
                delay = BACKOFF_INITIAL_S
                continue  # the server ended the watch: resume from the last version
            except ApiException as err:
                if err.status == 404 and self.absent_retry_s is not None:
                    await self._absent(self.absent_retry_s)
                    continue
                if err.status == 410:
                    log.info("%s: resource version %s expired; listing again", self.name,
                             self.resource_version)  # fmt: skip
                    self.synced = False
                    continue
                log.warning("%s: Kubernetes API error %s %s", self.name, err.status, err.reason)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
                log.warning("%s: %s", self.name, err.__class__.__name__)
            _honour_cancel()
            self.synced = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)


@dataclass
class KubeSource:
    """The cluster's endpoints as workloads in ``registry`` (see the module docstring).

    Args:
        api: a configured ``kubernetes_asyncio`` ApiClient.
        registry: the control plane's registry.
        scope: what is in the mesh (:class:`federation.controlplane.kube.translate.Scope`).
        gateway_service: ``(namespace, name)`` of the east-west gateway's LoadBalancer
            Service; once it has an address, ``on_gateway`` is called with ``host:port``
            (reported to the controller).
        zone_gateway_services: zone -> ``(namespace, name)`` of that zone's own gateway's
            Service; ``on_zone_gateway(zone, host:port)`` likewise.
        cluster: the member's name (in the status of the documents it reads).
        absent_retry_s: how often a kind whose CRD is not installed is looked for again (s).
    """

    api: k8s.ApiClient
    registry: ServiceRegistry
    scope: Scope
    watch_timeout_s: int = WATCH_TIMEOUT_S
    gateway_service: tuple[str, str] | None = None
    on_gateway: Callable[[str], None] = lambda _address: None
    zone_gateway_services: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    on_zone_gateway: Callable[[str, str], None] = lambda _zone, _address: None
    cluster: str = ""
    absent_retry_s: float = ABSENT_RETRY_S

    def __post_init__(self) -> None:
        core, discovery = k8s.CoreV1Api(self.api), k8s.DiscoveryV1Api(self.api)
        custom = k8s.CustomObjectsApi(self.api)
        self._changed = asyncio.Event()
        self.reflectors = {
            name: Reflector(name, fn, self._changed.set, watch_timeout_s=self.watch_timeout_s)
            for name, fn in (
                ("services", core.list_service_for_all_namespaces),
                ("endpointslices", discovery.list_endpoint_slice_for_all_namespaces),
                ("nodes", core.list_node),
                ("pods", core.list_pod_for_all_namespaces),
                ("namespaces", core.list_namespace),
                (
                    "serviceexports",
                    partial(custom.list_cluster_custom_object, GROUP, VERSION, "serviceexports"),
                ),
                (
                    "serviceimports",
                    partial(custom.list_cluster_custom_object, GROUP, VERSION, "serviceimports"),
                ),
            )
        }
        for resource in DOCUMENT_RESOURCES:
            self.reflectors[resource.plural] = Reflector(
                resource.plural,
                partial(
                    custom.list_cluster_custom_object,
                    resource.group,
                    resource.version,
                    resource.plural,
                ),
                self._changed.set,
                watch_timeout_s=self.watch_timeout_s,
                absent_retry_s=self.absent_retry_s,
            )
        # (kind, namespace, name) -> (resourceVersion, model or None, problems): a document
        # is validated once per version, not at every endpoint change
        self._validated: dict[DocumentKey, tuple[str, BaseModel | None, tuple[str, ...]]] = {}
        self.writer = McsWriter(custom, self.registry, self.scope, self.reflectors)
        self.status_writer = DocumentWriter(
            custom,
            self.registry,
            self.scope,
            self.reflectors,
            lambda: {k: (v, m) for k, (v, m, _) in self._validated.items()},
            self.cluster,
        )

        def wake(_state: object) -> None:
            self.writer.changed.set()
            self.status_writer.changed.set()

        self.registry.subscribe(wake)

    @property
    def synced(self) -> bool:
        """Every kind has been listed at least once."""
        return all(r.relists for r in self.reflectors.values())

    def own(self) -> dict[Key, WorkloadEntry]:
        """The registry's workloads that are the cluster's (labelled as this source's)."""
        return {
            k: w
            for k, w in self.registry.state.workloads.items()
            if w.metadata.labels.get(SOURCE_LABEL) == SOURCE_VALUE
        }

    def desired(self) -> list[WorkloadEntry]:
        """The workloads the cluster's objects give now."""
        r = self.reflectors
        docs = workload_entries(
            r["services"].objects.values(),
            r["endpointslices"].objects.values(),
            {name: node for (_, name), node in r["nodes"].objects.items()},
            r["pods"].objects,
            self.scope,
        )
        out: list[WorkloadEntry] = []
        for doc in docs:
            try:
                [model] = validate_documents([doc], source="kubernetes")
            except InvalidDocumentError as err:  # e.g. a name meshfed cannot take
                log.warning("endpoint left out: %s", err)
                continue
            assert isinstance(model, WorkloadEntry)
            out.append(model)
        return out

    def documents(self) -> tuple[list[BaseModel], dict[DocumentKey, tuple[str, ...]]]:
        """The Istio and Gateway API documents of the mesh's namespaces that meshfed acts on
        (:func:`federation.controlplane.kube.documents.ours`): the valid models, and the
        problems of the invalid ones. Each object is validated once per resourceVersion."""
        seen: set[DocumentKey] = set()
        models: list[BaseModel] = []
        invalid: dict[DocumentKey, tuple[str, ...]] = {}
        for resource in DOCUMENT_RESOURCES:
            for (ns, _name), obj in self.reflectors[resource.plural].objects.items():
                if not in_scope(self.scope, ns) or not ours(obj):
                    continue
                key = raw_key(obj)
                version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                cached = self._validated.get(key)
                if cached is None or cached[0] != version or not version:
                    found, problems = validated([obj], source="kubernetes")
                    cached = (version, found[0] if found else None, problems.get(key, ()))
                    self._validated[key] = cached
                seen.add(key)
                if cached[1] is not None:
                    models.append(cached[1])
                else:
                    invalid[key] = cached[2]
        for gone in set(self._validated) - seen:
            del self._validated[gone]
        return models, invalid

    def reconcile(self) -> tuple[list[str], list[str]]:
        """Apply the difference between :meth:`desired` and the registry's own workloads;
        returns the names applied and deleted."""
        want = {w.key: w for w in self.desired()}
        have = self.own()
        changed = [w for k, w in want.items() if have.get(k) != w]
        gone = [w for k, w in have.items() if k not in want]
        applied = self.registry.apply(changed) if changed else []
        deleted = self.registry.delete(gone) if gone else []
        self.registry.set_cluster_exports(
            (ns, name)
            for (ns, name), e in self.reflectors["serviceexports"].objects.items()
            if self.scope.in_namespace(ns) and e.get("apiVersion", API_VERSION) == API_VERSION
        )
        self.registry.set_cluster_documents(*self.documents())
        self.writer.changed.set()
        self.status_writer.changed.set()
        if self.gateway_service is not None:
            address = load_balancer_address(
                self.reflectors["services"].objects.get(self.gateway_service)
            )
            if address:
                self.on_gateway(address)
        services = self.reflectors["services"].objects
        for zone, ref in sorted(self.zone_gateway_services.items()):
            address = load_balancer_address(services.get(ref))
            if address:
                self.on_zone_gateway(zone, address)
        return applied, deleted

    async def run(self) -> None:
        """Reflect every kind and reconcile after changes, until cancelled."""
        tasks = [asyncio.create_task(r.run(), name=f"kube-{n}") for n, r in self.reflectors.items()]
        tasks.append(asyncio.create_task(self.writer.run(), name="kube-mcs-writer"))
        tasks.append(asyncio.create_task(self.status_writer.run(), name="kube-status-writer"))
        try:
            while True:
                await self._changed.wait()
                await asyncio.sleep(COALESCE_S)
                self._changed.clear()
                if self.synced:
                    self.reconcile()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
