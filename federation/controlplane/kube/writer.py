"""What the control plane writes into its cluster's Kubernetes API (issue #20): the
conditions of every ServiceExport in scope and the ServiceImports of what the federation
controller imports (:mod:`federation.controlplane.kube.mcs` decides both).

:class:`McsWriter` runs after each change of the registry or of the cluster's
ServiceExports/Services (coalesced 50 ms): a ServiceExport's status is replaced
(``PUT .../status``, with the resourceVersion it was read at: a 409 means it changed
meanwhile, and the change that comes with it runs this again) only when its conditions
differ; ServiceImports labelled ``app.kubernetes.io/managed-by: meshfed`` are created,
replaced or deleted to match the registry's imports, and no other object is touched.
API errors are logged and retried at the next change or after :data:`RETRY_S`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from federation.controlplane.kube.mcs import (
    GROUP,
    VERSION,
    export_conditions,
    managed,
    same_conditions,
    service_import,
)
from federation.controlplane.kube.translate import Key, Scope
from federation.controlplane.registry import ServiceRegistry

log = logging.getLogger(__name__)

#: After a failed write, the writer runs again this soon even without a change (s).
RETRY_S = 2.0


class Objects(Protocol):
    """A reflector's view: objects by ``(namespace, name)``."""

    objects: dict[Key, dict[str, Any]]
    synced: bool


async def write_after_changes(
    changed: asyncio.Event,
    ready: Callable[[], bool],
    sync: Callable[[], Awaitable[None]],
    what: str,
) -> None:
    """Run ``sync`` after each ``changed`` (coalesced 50 ms), and at least every
    :data:`RETRY_S`, while ``ready()`` (this replica leads, what it reads is listed); an API
    error is logged (``what`` names the objects) and retried at the next turn. Until
    cancelled."""
    while True:
        try:
            await asyncio.wait_for(changed.wait(), RETRY_S)
        except TimeoutError:
            pass
        await asyncio.sleep(0.05)
        changed.clear()
        if not ready():
            continue
        try:
            await sync()
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as err:
            log.warning("writing %s: %s", what, getattr(err, "reason", err))


class McsWriter:
    """See the module docstring.

    Args:
        custom: ``CustomObjectsApi`` of the cluster.
        registry: the control plane's registry (imports, the controller's export conditions).
        scope: the namespaces in the mesh.
        reflectors: the source's reflectors (``services``, ``serviceexports``,
            ``serviceimports``).
    """

    def __init__(
        self,
        custom: k8s.CustomObjectsApi,
        registry: ServiceRegistry,
        scope: Scope,
        reflectors: Mapping[str, Objects],
    ) -> None:
        self.custom = custom
        self.registry = registry
        self.scope = scope
        self.reflectors = reflectors
        self.changed = asyncio.Event()
        self.writes = 0
        #: Whether this replica writes (only the leader of several does:
        #: :mod:`federation.controlplane.kube.replicas`); checked before every pass.
        self.enabled: Callable[[], bool] = lambda: True

    async def run(self) -> None:
        """Write after every change until cancelled."""
        await write_after_changes(
            self.changed,
            lambda: (
                self.enabled()
                and all(self.reflectors[k].synced for k in ("serviceexports", "serviceimports"))
            ),
            self.sync,
            "MCS objects",
        )

    async def sync(self) -> None:
        """One pass: export conditions, then ServiceImports."""
        await self._exports()
        await self._imports()

    async def _exports(self) -> None:
        state = self.registry.state
        services = self.reflectors["services"].objects
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for (ns, name), export in list(self.reflectors["serviceexports"].objects.items()):
            if not self.scope.in_namespace(ns):
                continue
            want = export_conditions(
                export, services.get((ns, name)), state.export_conditions.get((ns, name)), now
            )
            have = (export.get("status") or {}).get("conditions") or []
            if same_conditions(have, want):
                continue
            body = copy.deepcopy(export)
            body["status"] = {**(export.get("status") or {}), "conditions": want}
            try:
                await self.custom.replace_namespaced_custom_object_status(
                    GROUP, VERSION, ns, "serviceexports", name, body
                )
                self.writes += 1
                log.info("serviceexport %s/%s: %s", ns, name,
                         ", ".join(f"{c['type']}={c['status']}" for c in want))  # fmt: skip
            except ApiException as err:
                if err.status not in (404, 409):  # gone or changed: the next event retries
                    raise

    async def _imports(self) -> None:
        want = {
            key: service_import(imp)
            for key, imp in self.registry.state.imports.items()
            if self.scope.in_namespace(key[0])
        }
        have = {k: o for k, o in self.reflectors["serviceimports"].objects.items() if managed(o)}
        for (ns, name), obj in want.items():
            current = have.get((ns, name))
            if current is None:
                if (ns, name) in self.reflectors["serviceimports"].objects:
                    log.warning("serviceimport %s/%s exists and is not meshfed's: left alone",
                                ns, name)  # fmt: skip
                    continue
                await self._create(ns, obj)
            elif current.get("spec") != obj["spec"] or current.get("status") != obj["status"]:
                body = {**obj, "metadata": {**obj["metadata"],
                        "resourceVersion": current["metadata"].get("resourceVersion")}}  # fmt: skip
                replaced = await self.custom.replace_namespaced_custom_object(
                    GROUP, VERSION, ns, "serviceimports", name, body
                )
                await self._status(ns, name, replaced, obj["status"])
        for ns, name in set(have) - set(want):
            await self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, ns, "serviceimports", name
            )
            self.writes += 1
            log.info("serviceimport %s/%s deleted", ns, name)

    async def _create(self, ns: str, obj: dict[str, Any]) -> None:
        try:
            created = await self.custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "serviceimports", obj
            )
        except ApiException as err:
            if err.status == 404:  # no such namespace in this cluster
                log.info("serviceimport %s/%s: namespace %s missing", ns,
                         obj["metadata"]["name"], ns)  # fmt: skip
                return
            raise
        self.writes += 1
        log.info("serviceimport %s/%s created", ns, obj["metadata"]["name"])
        await self._status(ns, obj["metadata"]["name"], created, obj["status"])

    async def _status(
        self, ns: str, name: str, stored: dict[str, Any], status: dict[str, Any]
    ) -> None:
        """The status subresource is written on its own (the API ignores it on create)."""
        if stored.get("status") == status:
            return
        await self.custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, ns, "serviceimports", name, {**stored, "status": status}
        )
        self.writes += 1
