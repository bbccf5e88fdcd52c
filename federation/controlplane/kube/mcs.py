"""The Multi-Cluster Services API in the cluster (KEP-1645, ``multicluster.x-k8s.io/v1alpha1``):
what the control plane writes back. Pure.

**ServiceExport conditions** (``status.conditions``, ``metav1.Condition`` shape):

- ``Valid``: ``True`` (reason ``Valid``) when the Service of the same namespace and name
  exists and can be exported; ``False`` with reason ``NoService`` or
  ``InvalidServiceType`` (``ExternalName``), as the mcs-api types describe.
- ``Ready``: ``True`` once the federation controller lists the export as exported
  (reason ``Exported``); ``False`` while it has not (``Pending``) or when it is in conflict.
- ``Conflict``: ``True`` when the controller found this export's ports at odds with an
  older export of the same service in another cluster (reason ``PortConflict``; the message
  is the controller's, naming the field and the winner); ``False`` (``NoConflicts``)
  otherwise. Oldest export wins, as the KEP's conflict resolution says.

A condition keeps its ``lastTransitionTime`` while its status stays.

**ServiceImports**: one per service the controller imports into this cluster, labelled
:data:`MANAGED_BY` so only those are ever changed or deleted: ``spec.type: ClusterSetIP``,
``spec.ports`` from the import (protocol TCP, ``appProtocol`` from meshfed's protocol), and
``status.clusters`` naming each exporting cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from federation.model.service import ServiceImport

GROUP = "multicluster.x-k8s.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
#: Label of the ServiceImports the control plane writes.
MANAGED_BY = ("app.kubernetes.io/managed-by", "meshfed")
_APP_PROTOCOL = {"http": "http", "http2": "kubernetes.io/h2c", "grpc": "grpc", "tcp": "tcp"}

Obj = Mapping[str, Any]
Key = tuple[str, str]


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
    }


def export_conditions(
    export: Obj,
    service: Obj | None,
    controller: tuple[str, str] | None,
    now: str,
) -> list[dict[str, Any]]:
    """The ``status.conditions`` a ServiceExport should have.

    Args:
        export: the ServiceExport as read (its current conditions keep their times).
        service: the Service of the same namespace and name, None when there is none.
        controller: the controller's ``(condition, message)`` for this export
            (``Exported``, ``Conflict`` or ``Pending`` with its reason), None before it has
            said anything.
        now: RFC 3339 time for conditions that change status now.
    """
    if service is None:
        valid = _condition("Valid", False, "NoService", "no Service of this name here")
    elif (service.get("spec") or {}).get("type") == "ExternalName":
        valid = _condition(
            "Valid", False, "InvalidServiceType", "an ExternalName Service cannot be exported"
        )
    else:
        valid = _condition("Valid", True, "Valid", "the Service is exported to the clusterset")
    state, message = controller or ("", "")
    conflict = state == "Conflict"
    ready = valid["status"] == "True" and state == "Exported"
    if ready:
        ready_c = _condition("Ready", True, "Exported", "imported by the clusterset's members")
    elif conflict:
        ready_c = _condition("Ready", False, "Conflict", "not imported: in conflict")
    else:
        ready_c = _condition("Ready", False, "Pending", message or "the federation controller"
                             " has not listed this export yet")  # fmt: skip
    conflict_c = (
        _condition("Conflict", True, "PortConflict", message)
        if conflict
        else _condition("Conflict", False, "NoConflicts", "no conflicting export")
    )
    old = {c.get("type"): c for c in (export.get("status") or {}).get("conditions") or []}
    out = []
    for c in (valid, ready_c, conflict_c):
        before = old.get(c["type"])
        same = before is not None and before.get("status") == c["status"]
        out.append({**c, "lastTransitionTime": before.get("lastTransitionTime", now)
                    if same and before else now})  # fmt: skip
    return out


def same_conditions(a: Iterable[Obj], b: Iterable[Obj]) -> bool:
    """Equal but for ``lastTransitionTime`` and ``observedGeneration``."""

    def strip(cs: Iterable[Obj]) -> list[dict[str, Any]]:
        return sorted(
            ({k: v for k, v in c.items() if k not in ("lastTransitionTime",
                                                       "observedGeneration")} for c in cs),
            key=lambda c: str(c.get("type")),
        )  # fmt: skip

    return strip(a) == strip(b)


def service_import(imp: ServiceImport) -> dict[str, Any]:
    """The MCS ServiceImport object for one of meshfed's imports."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceImport",
        "metadata": {
            "name": imp.metadata.name,
            "namespace": imp.metadata.namespace,
            "labels": {MANAGED_BY[0]: MANAGED_BY[1]},
        },
        "spec": {
            "type": "ClusterSetIP",
            "ports": [
                {
                    "name": p.name,
                    "port": p.port,
                    "protocol": "TCP",
                    "appProtocol": _APP_PROTOCOL.get(p.protocol, p.protocol),
                }
                for p in imp.spec.ports
            ],
            **({"ips": list(imp.spec.ips)} if imp.spec.ips else {}),
        },
        "status": {"clusters": [{"cluster": c.cluster} for c in imp.spec.clusters]},
    }


def managed(obj: Obj) -> bool:
    """Whether an object carries :data:`MANAGED_BY` (ours to change or delete)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY[0]) == MANAGED_BY[1]
