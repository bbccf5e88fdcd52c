"""Writing meshfed's manifests into a cluster: ``meshfed install --apply`` and ``meshfed
uninstall --apply`` (issue #20), for users who want ``istioctl install``'s one step instead
of ``meshfed install | kubectl apply -f -`` -- and for the Terraform ``federation`` module,
which needs no kubectl.

Install is **server-side apply** (``PATCH`` with ``Content-Type:
application/apply-patch+yaml``, ``fieldManager=meshfed``, ``force=true``; Kubernetes docs,
"Server-Side Apply"): an object is created when missing, and only the fields meshfed sends
are meshfed's -- the CA bundle the control plane writes into its webhook configuration, or a
replica count an autoscaler owns, are kept. Objects are applied in the order of
:func:`~federation.install.manifests.install` (Namespace and CRDs first), one by one;
the first refusal stops the run with the object named, and what was applied stays (a second
run is idempotent). An object annotated ``meshfed.io/install: if-absent`` (the Istio and
Gateway API CRDs) is created only when missing. Uninstall deletes in reverse order and counts
what was already gone.

Paths come from :data:`RESOURCES`, the kinds ``meshfed install`` emits; no discovery call.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from federation.controlplane.kube.config import KubeSettings, api_client
from federation.errors import FederationError
from federation.install.ecosystem_crds import IF_ABSENT, IF_ABSENT_VALUE

#: ``(apiVersion, kind) -> (plural, namespaced)`` of every kind ``meshfed install`` emits.
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Service"): ("services", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): (
        "mutatingwebhookconfigurations",
        False,
    ),
}
FIELD_MANAGER = "meshfed"
APPLY_PATCH = "application/apply-patch+yaml"


class ApplyError(FederationError):
    """The API server refused an object or could not be reached; ``str`` names the object.
    ``retryable`` when it was unreachable or answered 5xx/429 (the CLI exits 1, else 2)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def _refused(obj: dict[str, Any], err: ApiException) -> ApplyError:
    status = int(err.status or 0)
    return ApplyError(
        f"{describe(obj)}: refused ({status}: {_reason(err)})",
        retryable=status >= 500 or status == 429,
    )


def _unreachable(obj: dict[str, Any], err: Exception) -> ApplyError:
    return ApplyError(f"{describe(obj)}: Kubernetes API unreachable ({err})", retryable=True)


def describe(obj: dict[str, Any]) -> str:
    """``Kind namespace/name`` (``Kind name`` for cluster-scoped objects), for messages."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


def resource_path(obj: dict[str, Any]) -> str:
    """The API path of one object, e.g. ``/apis/apps/v1/namespaces/meshfed-system/
    deployments/meshfed-gateway``.

    Raises:
        ApplyError: a kind meshfed does not install, or an object without a name (or, when
            namespaced, a namespace).
    """
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    known = RESOURCES.get((api_version, kind))
    if known is None:
        raise ApplyError(f"{kind or '?'} ({api_version or '?'}): not a kind meshfed installs")
    plural, namespaced = known
    meta = obj.get("metadata") or {}
    name, ns = meta.get("name"), meta.get("namespace")
    if not name or (namespaced and not ns):
        raise ApplyError(f"{describe(obj)}: metadata.name and metadata.namespace are required")
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{ns}/{plural}/{name}" if namespaced else f"{base}/{plural}/{name}"


def _reason(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason)
    except ValueError:
        return str(err.reason)


async def _call(api: k8s.ApiClient, path: str, method: str, **kwargs: Any) -> Any:
    return await api.call_api(
        path,
        method,
        header_params={"Accept": "application/json", **kwargs.pop("headers", {})},
        response_types_map={200: "object", 201: "object", 202: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
        **kwargs,
    )


async def apply_objects(
    api: k8s.ApiClient,
    objects: Sequence[dict[str, Any]],
    on_done: Callable[[dict[str, Any], str], None] = lambda obj, verb: None,
) -> None:
    """Server-side apply ``objects`` in order (see the module docstring).

    Args:
        api: a client for the cluster (:func:`federation.controlplane.kube.config.api_client`).
        objects: manifests as :func:`~federation.install.manifests.install` makes them.
        on_done: called after each object with ``"created"``, ``"configured"`` or, for an
            object marked create-only
            (:data:`~federation.install.ecosystem_crds.IF_ABSENT`) that exists,
            ``"left as it is (already installed)"`` (progress).

    Raises:
        ApplyError: before anything is sent when a kind is not known; else at the first object
            the API server refuses (status and message named) or the connection fails.
    """
    paths = [resource_path(o) for o in objects]  # every path known before the first write
    for obj, path in zip(objects, paths, strict=True):
        try:
            before = await _exists(api, path)
            if before and _if_absent(obj):
                on_done(obj, "left as it is (already installed)")
                continue
            await _call(
                api,
                path,
                "PATCH",
                query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                headers={"Content-Type": APPLY_PATCH},
                body=obj,
            )
        except ApiException as err:
            raise _refused(obj, err) from err
        except (OSError, aiohttp.ClientError) as err:
            raise _unreachable(obj, err) from err
        on_done(obj, "configured" if before else "created")


def _if_absent(obj: dict[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(IF_ABSENT) == IF_ABSENT_VALUE)


async def _exists(api: k8s.ApiClient, path: str) -> bool:
    try:
        await _call(api, path, "GET")
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


async def delete_objects(
    api: k8s.ApiClient,
    objects: Sequence[dict[str, Any]],
    on_done: Callable[[dict[str, Any], str], None] = lambda obj, verb: None,
) -> None:
    """Delete ``objects`` in the order given (``uninstall`` lists them in reverse install
    order); one already gone counts as done.

    Args:
        on_done: called after each object with ``"deleted"`` or ``"not found"``.

    Raises:
        ApplyError: as :func:`apply_objects`.
    """
    paths = [resource_path(o) for o in objects]
    for obj, path in zip(objects, paths, strict=True):
        try:
            await _call(api, path, "DELETE")
        except ApiException as err:
            if err.status == 404:
                on_done(obj, "not found")
                continue
            raise _refused(obj, err) from err
        except (OSError, aiohttp.ClientError) as err:
            raise _unreachable(obj, err) from err
        on_done(obj, "deleted")


def default_kubeconfig() -> Path:
    """The first file of ``$KUBECONFIG``, else ``~/.kube/config``."""
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(first) if first else Path.home() / ".kube" / "config"


def apply_to_cluster(
    objects: Sequence[dict[str, Any]],
    kubeconfig: Path | None,
    progress: Callable[[dict[str, Any], str], None],
    *,
    delete: bool = False,
) -> None:
    """Apply ``objects`` to the cluster of ``kubeconfig`` (its current context; default
    :func:`default_kubeconfig`, never in-cluster: this runs where the user or Terraform is),
    or with ``delete`` delete them; ``progress(object, verb)`` after each (blocks).

    Raises:
        federation.controlplane.kube.config.KubeConfigError: no usable kubeconfig.
        ApplyError: the API server refused an object (named).
    """

    async def run() -> None:
        api = await api_client(KubeSettings(kubeconfig=kubeconfig or default_kubeconfig()))
        async with api:
            await (delete_objects if delete else apply_objects)(api, objects, progress)

    asyncio.run(run())
