"""Istio's and Gateway API's documents in the cluster's Kubernetes API (issue #40): which
resources a control plane reads, which objects are meshfed's to act on, and the ``status``
it writes back. Pure; :class:`federation.controlplane.kube.document_writer.DocumentWriter`
does the writing.

Read (each only when its CRD is installed: ``meshfed install`` installs them from the
official manifests, :mod:`federation.install.ecosystem_crds`): ``networking.istio.io/v1``
VirtualService, DestinationRule, ServiceEntry, Sidecar; ``security.istio.io/v1``
AuthorizationPolicy, PeerAuthentication; ``gateway.networking.k8s.io`` HTTPRoute and
GRPCRoute (``v1``) and ReferenceGrant (``v1beta1``, served by every release since v0.6).

Read from the mesh's namespaces and the root namespace ``meshfed-system`` (mesh-wide
documents). A route is meshfed's only where a ``parentRef`` is a Service or an MCS ServiceImport
(GAMMA): routes of Gateways belong to the gateway's implementation and are neither read nor
written. Status:

- HTTPRoute and GRPCRoute: ``status.parents[]`` entries with ``controllerName``
  :data:`CONTROLLER_NAME`, one per mesh parent, with ``Accepted`` and ``ResolvedRefs``
  (Gateway API v1, ``RouteParentStatus``; each condition with ``observedGeneration`` and
  ``lastTransitionTime``, kept while its status does not change); other controllers'
  entries are kept as they are.
- Istio's kinds: ``status.conditions`` with one ``Accepted`` condition (Istio's
  ``IstioStatus.conditions``, ``IstioCondition`` fields): ``True``/``Accepted``, or
  ``False``/``Refused`` with every reason joined by ``; ``.
- ReferenceGrant: none (Gateway API defines no status for it).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from federation.controlplane.kube.translate import Scope
from federation.model.authz import ROOT_NAMESPACE
from federation.model.cluster_documents import DocumentKey, raw_key
from federation.model.gateway_api import CONTROLLER_NAME as _ROUTE_CONTROLLER
from federation.model.gateway_api import HTTPRoute, route_status

#: ``status.parents[].controllerName`` of routes a control plane accepts in its cluster.
CONTROLLER_NAME = _ROUTE_CONTROLLER
_MCS = "multicluster.x-k8s.io"


@dataclass(frozen=True)
class DocumentResource:
    """One kind a control plane reads: its API group, version and plural."""

    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


RESOURCES = (
    DocumentResource("VirtualService", "networking.istio.io", "v1", "virtualservices"),
    DocumentResource("DestinationRule", "networking.istio.io", "v1", "destinationrules"),
    DocumentResource("ServiceEntry", "networking.istio.io", "v1", "serviceentries"),
    DocumentResource("Sidecar", "networking.istio.io", "v1", "sidecars"),
    DocumentResource("AuthorizationPolicy", "security.istio.io", "v1", "authorizationpolicies"),
    DocumentResource("PeerAuthentication", "security.istio.io", "v1", "peerauthentications"),
    DocumentResource("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes"),
    DocumentResource("GRPCRoute", "gateway.networking.k8s.io", "v1", "grpcroutes"),
    DocumentResource("ReferenceGrant", "gateway.networking.k8s.io", "v1beta1", "referencegrants"),
)
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute")


def in_scope(scope: Scope, namespace: str) -> bool:
    """Whether the documents of ``namespace`` are read: the mesh's namespaces, and the root
    namespace (:data:`federation.model.authz.ROOT_NAMESPACE`, where mesh-wide
    AuthorizationPolicies and PeerAuthentications live) whatever ``--kube-namespaces`` says."""
    return namespace == ROOT_NAMESPACE or scope.in_namespace(namespace)


def mesh_parent(ref: Any) -> bool:
    """True when a raw ``parentRef`` names a Service (GAMMA) or an MCS ServiceImport; a
    ref without ``kind`` names a Gateway (Gateway API's default)."""
    if not isinstance(ref, Mapping):
        return False
    group, kind = str(ref.get("group") or ""), ref.get("kind")
    return (group in ("", "core") and kind == "Service") or (group, kind) == (
        _MCS,
        "ServiceImport",
    )


def ours(obj: Mapping[str, Any]) -> bool:
    """Whether meshfed acts on a raw object: every Istio document; a route with a mesh
    parent (:func:`mesh_parent`)."""
    if obj.get("kind") not in ROUTE_KINDS:
        return True
    refs = (obj.get("spec") or {}).get("parentRefs")
    return isinstance(refs, list) and any(mesh_parent(r) for r in refs)


def _now_kept(
    want: dict[str, Any], have: Iterable[Any], generation: Any, now: str
) -> dict[str, Any]:
    """``want`` with ``observedGeneration`` and a ``lastTransitionTime``: the one of the
    same type in ``have`` when its status is the same, else ``now``."""
    before = next(
        (c for c in have if isinstance(c, Mapping) and c.get("type") == want["type"]), None
    )
    since = (
        before.get("lastTransitionTime")
        if before is not None and before.get("status") == want["status"]
        else None
    )
    out = {**want, "lastTransitionTime": since or now}
    if isinstance(generation, int):
        out["observedGeneration"] = generation
    return out


def _route_parents(
    obj: Mapping[str, Any],
    model: HTTPRoute | Any | None,
    problems: Sequence[str],
    known: set[tuple[str, str]],
    cluster: str,
) -> list[dict[str, Any]]:
    """Our ``status.parents`` entries, without times."""
    if model is not None:
        parents = route_status(
            model,
            known,
            problems,
            scope=f"cluster {cluster}'s callers",
            unknown=f"cluster {cluster} has no endpoints and no import of",
        )["parents"]
        return [p for p in parents if mesh_parent(p["parentRef"])]
    condition = {
        "type": "Accepted",
        "status": "False",
        "reason": "UnsupportedValue",
        "message": "; ".join(problems),
    }
    refs = (obj.get("spec") or {}).get("parentRefs") or []
    return [
        {"parentRef": dict(r), "controllerName": CONTROLLER_NAME, "conditions": [condition]}
        for r in refs
        if mesh_parent(r)
    ]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def desired_status(
    obj: Mapping[str, Any],
    model: Any | None,
    problems: Sequence[str],
    known: set[tuple[str, str]],
    cluster: str,
    now: str,
) -> dict[str, Any] | None:
    """The ``status`` meshfed wants on ``obj`` (see the module docstring); None for a kind
    without one.

    Args:
        obj: the object as read (its ``status`` and ``metadata.generation`` are used).
        model: its validated model, None when it is invalid (then ``problems`` say why).
        problems: why it is refused; empty when it is accepted.
        known: ``(namespace, service)`` the cluster can send to (its services, imports).
        cluster: the member's name, for messages.
        now: RFC 3339, the ``lastTransitionTime`` of a condition that changed.
    """
    kind = obj.get("kind")
    status = dict(obj.get("status") or {})
    generation = (obj.get("metadata") or {}).get("generation")
    if kind == "ReferenceGrant":
        return None
    if kind in ROUTE_KINDS:
        have: list[Any] = _list(status.get("parents"))
        others = [
            p for p in have if isinstance(p, Mapping) and p.get("controllerName") != CONTROLLER_NAME
        ]
        mine = {
            repr(sorted(p.get("parentRef", {}).items())): p
            for p in have
            if isinstance(p, Mapping) and p.get("controllerName") == CONTROLLER_NAME
        }
        parents = []
        for entry in _route_parents(obj, model, problems, known, cluster):
            before = mine.get(repr(sorted(entry["parentRef"].items())), {})
            conditions = [
                _now_kept(c, before.get("conditions") or [], generation, now)
                for c in entry["conditions"]
            ]
            parents.append({**entry, "conditions": conditions})
        return {**status, "parents": [*others, *parents]}
    want = {
        "type": "Accepted",
        "status": "False" if problems else "True",
        "reason": "Refused" if problems else "Accepted",
        "message": "; ".join(problems)
        or f"in force for cluster {cluster}'s proxies (meshfed control plane)",
    }
    have_conditions = _list(status.get("conditions"))
    others = [c for c in have_conditions if isinstance(c, Mapping) and c.get("type") != "Accepted"]
    return {**status, "conditions": [*others, _now_kept(want, have_conditions, generation, now)]}


def with_status(obj: Mapping[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with ``status`` (a ``PUT .../status`` body)."""
    body = copy.deepcopy(dict(obj))
    body["status"] = status
    return body


def problems_of(
    obj: Mapping[str, Any], problems: Mapping[DocumentKey, tuple[str, ...]]
) -> tuple[str, ...]:
    """The problems the registry holds for a raw object (empty: accepted)."""
    return problems.get(raw_key(obj), ())
