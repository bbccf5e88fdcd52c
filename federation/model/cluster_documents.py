"""Istio's and Gateway API's documents found in a member cluster's Kubernetes API, beside the
federation controller's (issue #40). Pure.

Meaning: a document in a cluster's API is in force for **that cluster's proxies** -- its
callers' routes (VirtualService, DestinationRule, HTTPRoute, GRPCRoute, Sidecar,
ServiceEntry) and its workloads' inbound rules (AuthorizationPolicy, PeerAuthentication) --
as each primary cluster's istiod reads only its own cluster's configuration in Istio's
multi-primary model (istio.io, "Install Multi-Primary": configuration is applied to each
cluster). A document applied at the federation controller is in force in every cluster.

Where both would decide the same thing the controller's wins and the cluster's document is
refused, with the reason in its status: the same ``(kind, namespace, name)`` of an
AuthorizationPolicy, PeerAuthentication, Sidecar or ServiceEntry; a service whose routing
the controller's documents already make. A cluster's routing documents are translated as the
controller's are (:func:`federation.model.translated.effective_traffic_policies`), so the
same problems refuse them (a route to a subset no DestinationRule defines ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from federation.errors import InvalidDocumentError
from federation.model.authz import AuthorizationPolicy
from federation.model.documents import validate_documents
from federation.model.gateway_api import GRPCRoute, HTTPRoute, ReferenceGrant
from federation.model.istio_networking import DestinationRule, VirtualService
from federation.model.istio_sidecar import IstioSidecar
from federation.model.istio_translate import TRANSLATED_FROM, label
from federation.model.peer_authentication import PeerAuthentication
from federation.model.policy import TrafficPolicy
from federation.model.service_entry import ServiceEntry
from federation.model.translated import effective_traffic_policies

#: ``(kind, namespace, name)`` of a document in a cluster.
DocumentKey = tuple[str, str, str]

_T = TypeVar("_T", bound=BaseModel)

#: The kinds whose documents make routes (translated together).
ROUTING_KINDS = (VirtualService, DestinationRule, HTTPRoute, GRPCRoute, ReferenceGrant)


@dataclass(frozen=True)
class InForce:
    """What a cluster's proxies are given: the controller's documents and the cluster's
    that were accepted, and why each refused cluster document was refused.

    Attributes:
        policies: TrafficPolicies by target ``(namespace, service)``.
        authorization_policies, peer_authentications, sidecars, service_entries: by
            ``(namespace, name)``.
        problems: the reasons of each refused cluster document, by ``(kind, namespace,
            name)``; a cluster document not here was accepted.
    """

    policies: list[TrafficPolicy] = field(default_factory=list)
    authorization_policies: list[AuthorizationPolicy] = field(default_factory=list)
    peer_authentications: list[PeerAuthentication] = field(default_factory=list)
    sidecars: list[IstioSidecar] = field(default_factory=list)
    service_entries: list[ServiceEntry] = field(default_factory=list)
    problems: dict[DocumentKey, tuple[str, ...]] = field(default_factory=dict)


def document_key(doc: BaseModel) -> DocumentKey:
    """``(kind, namespace, name)`` of a model with Kubernetes metadata."""
    meta = doc.metadata  # type: ignore[attr-defined]
    return (str(getattr(doc, "kind", "")), meta.namespace, meta.name)


def raw_key(raw: Mapping[str, Any]) -> DocumentKey:
    """``(kind, namespace, name)`` of a raw Kubernetes object."""
    meta = raw.get("metadata") or {}
    return (str(raw.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", "")))


def validated(
    objects: Iterable[Mapping[str, Any]], *, source: str
) -> tuple[list[BaseModel], dict[DocumentKey, tuple[str, ...]]]:
    """The cluster's raw objects as models, one by one: an invalid one is left out with its
    problems (``<source>: document 1 (Kind ns/name): <field>: <reason>``) and the rest
    stand. Ignores the server's fields (``status``, ``metadata.managedFields`` ...): a
    model keeps only what it declares of ``metadata``."""
    models: list[BaseModel] = []
    problems: dict[DocumentKey, tuple[str, ...]] = {}
    for raw in objects:
        body = {k: v for k, v in raw.items() if k != "status"}
        try:
            models += validate_documents([_spec_only(body)], source=source)
        except InvalidDocumentError as err:
            problems[raw_key(raw)] = tuple(err.problems)
    return models, problems


def _spec_only(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with only the metadata a document declares (name, namespace, labels,
    annotations): what the API server adds (uid, resourceVersion, managedFields ...) is not
    the user's."""
    meta = raw.get("metadata") or {}
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
    return {**raw, "metadata": kept}


def _sources(policy: TrafficPolicy) -> list[str]:
    return [s.strip() for s in policy.metadata.annotations.get(TRANSLATED_FROM, "").split(",")]


def combine(
    *,
    policies: Sequence[TrafficPolicy],
    authorization_policies: Sequence[AuthorizationPolicy],
    peer_authentications: Sequence[PeerAuthentication],
    sidecars: Sequence[IstioSidecar],
    service_entries: Sequence[ServiceEntry],
    cluster: Sequence[BaseModel],
) -> InForce:
    """The controller's documents (the keyword arguments but ``cluster``) with the
    cluster's models (``cluster``) that do not collide with them (see the module
    docstring). Returns every problem; never raises."""
    problems: dict[DocumentKey, list[str]] = {}
    by_label = {label(d): document_key(d) for d in cluster}

    def refuse(key: DocumentKey, message: str) -> None:
        problems.setdefault(key, []).append(message)

    # routing: translated together, then kept only for services the controller leaves alone
    routing = [d for d in cluster if isinstance(d, ROUTING_KINDS)]
    translated, found = effective_traffic_policies(routing)
    for problem in found:
        for name in problem.documents:
            if name in by_label:
                refuse(by_label[name], problem.message)
    controller_targets = {p.target: p for p in policies}
    merged = list(policies)
    for policy in translated:
        theirs = controller_targets.get(policy.target)
        if theirs is None:
            merged.append(policy)
            continue
        origin = theirs.metadata.annotations.get(TRANSLATED_FROM) or (
            f"TrafficPolicy {theirs.metadata.namespace}/{theirs.metadata.name}"
        )
        for name in _sources(policy):
            if name in by_label:
                refuse(
                    by_label[name],
                    f"the federation controller's {origin} routes this service; a cluster's"
                    " document does not override it (delete one of them)",
                )

    def keyed(mine: Sequence[_T], kind: type[_T]) -> list[_T]:
        have = {document_key(d)[1:] for d in mine}
        out = list(mine)
        for doc in cluster:
            if not isinstance(doc, kind):
                continue
            key = document_key(doc)
            if key[1:] in have:
                refuse(
                    key,
                    f"the federation controller holds {key[0]} {key[1]}/{key[2]}; a cluster's"
                    " document of the same name is not used (rename or delete one)",
                )
            else:
                out.append(doc)
        return out

    return InForce(
        policies=sorted(merged, key=lambda p: p.target),
        authorization_policies=keyed(authorization_policies, AuthorizationPolicy),
        peer_authentications=keyed(peer_authentications, PeerAuthentication),
        sidecars=keyed(sidecars, IstioSidecar),
        service_entries=keyed(service_entries, ServiceEntry),
        problems={k: tuple(v) for k, v in problems.items()},
    )
