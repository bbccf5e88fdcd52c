"""Writes the ``status`` of the Istio and Gateway API documents in the cluster's API
(issue #40): whether the control plane accepted each, and why not
(:mod:`federation.controlplane.kube.documents` decides what).

:class:`DocumentWriter` runs after each change of the registry or of the documents
(coalesced 50 ms): a status is replaced (``PUT .../status`` with the resourceVersion it was
read at; a 409 means the object changed meanwhile, and the change that comes with it runs
this again; a 404 that it is gone) only when it differs from what is there, times aside.
Only the leader of several replicas writes. API errors are logged and retried after
:data:`federation.controlplane.kube.writer.RETRY_S`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from federation.controlplane.kube.documents import (
    RESOURCES,
    desired_status,
    in_scope,
    ours,
    problems_of,
    with_status,
)
from federation.controlplane.kube.translate import Scope
from federation.controlplane.kube.writer import Objects, write_after_changes
from federation.controlplane.registry import ServiceRegistry
from federation.model.cluster_documents import raw_key

log = logging.getLogger(__name__)


def _without_times(status: Any) -> Any:
    """``status`` without ``lastTransitionTime`` anywhere (what a rewrite would not change)."""
    if isinstance(status, Mapping):
        return {k: _without_times(v) for k, v in status.items() if k != "lastTransitionTime"}
    if isinstance(status, list):
        return [_without_times(v) for v in status]
    return status


class DocumentWriter:
    """See the module docstring.

    Args:
        custom: ``CustomObjectsApi`` of the cluster.
        registry: the control plane's registry (the documents' problems, the services).
        scope: the namespaces in the mesh.
        reflectors: the source's reflectors, by resource plural.
        models: ``(resourceVersion, model)`` of each object validated, by ``(kind,
            namespace, name)`` (model None: invalid); an object whose version is not there
            yet is not written.
        cluster: the member's name, for messages.
    """

    def __init__(
        self,
        custom: k8s.CustomObjectsApi,
        registry: ServiceRegistry,
        scope: Scope,
        reflectors: Mapping[str, Objects],
        models: Callable[[], Mapping[tuple[str, str, str], tuple[str, Any]]],
        cluster: str,
    ) -> None:
        self.custom = custom
        self.registry = registry
        self.scope = scope
        self.reflectors = reflectors
        self.models = models
        self.cluster = cluster
        self.changed = asyncio.Event()
        self.writes = 0
        self.enabled: Callable[[], bool] = lambda: True

    async def run(self) -> None:
        """Write after every change until cancelled."""
        await write_after_changes(self.changed, self.enabled, self.sync, "document status")

    async def sync(self) -> None:
        """One pass over every document of every kind read."""
        state = self.registry.state
        known = {*state.services(), *state.imports}
        models = self.models()
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for resource in RESOURCES:
            reflector = self.reflectors.get(resource.plural)
            if reflector is None or not reflector.synced:
                continue
            for (ns, name), obj in list(reflector.objects.items()):
                if not in_scope(self.scope, ns) or not ours(obj):
                    continue
                version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                checked = models.get(raw_key(obj))
                if checked is None or checked[0] != version:
                    continue  # this version is not validated yet: the reconcile wakes us
                problems = problems_of(obj, state.cluster_document_problems)
                want = desired_status(obj, checked[1], problems, known, self.cluster, now)
                if want is None or _without_times(want) == _without_times(obj.get("status")):
                    continue
                try:
                    await self.custom.replace_namespaced_custom_object_status(
                        resource.group,
                        resource.version,
                        ns,
                        resource.plural,
                        name,
                        with_status(obj, want),
                    )
                except ApiException as err:
                    if err.status not in (404, 409):  # gone or changed: the next event retries
                        raise
                    continue
                self.writes += 1
                log.info(
                    "%s %s/%s: %s",
                    resource.kind,
                    ns,
                    name,
                    "refused: " + "; ".join(problems) if problems else "accepted",
                )
