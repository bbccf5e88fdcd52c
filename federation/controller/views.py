"""What each control plane is sent: one :class:`~federation.sync.messages.ControllerUpdate`
per member, computed from the controller's state in one pass (:func:`federation_view`).

Inputs are read from the store by the caller (:class:`federation.controller.hub.SyncHub`);
the work here is pure but for :class:`StoredPolicies`, which caches validated policy models
by their stored JSON so an unchanged document is not validated again on every recompute.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from federation.controller.imports import ExportStatus
from federation.controller.membership import member_cas, member_crls
from federation.controller.store import ClusterRecord, ControllerStore
from federation.errors import InvalidDocumentError
from federation.lb.paths import tables_in_force
from federation.model.authz import AuthorizationPolicy, default_deny_policy
from federation.model.documents import validate_documents
from federation.model.gateway_api import GRPCRoute, HTTPRoute, ReferenceGrant
from federation.model.istio_networking import DestinationRule, VirtualService
from federation.model.istio_sidecar import IstioSidecar
from federation.model.peer_authentication import PeerAuthentication
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service import ServiceImport
from federation.model.service_entry import ServiceEntry
from federation.model.translated import effective_traffic_policies
from federation.sync.messages import ClusterReport, ControllerUpdate, RoutingPlan
from providers.pricing import PriceTable as PriceTableRates

log = logging.getLogger(__name__)

#: Document kinds the controller sends to every control plane as policies.
POLICY_KINDS: tuple[str, ...] = (
    "TrafficPolicy",
    "PriceTable",
    "AuthorizationPolicy",
    "VirtualService",
    "DestinationRule",
    "PeerAuthentication",
    "HTTPRoute",
    "GRPCRoute",
    "ReferenceGrant",
    "Sidecar",
    "ServiceEntry",
)


def central_exports(store: ControllerStore) -> dict[str, list[tuple[str, str]]]:
    """cluster -> ``[(ns, svc), ...]`` from meshfed ServiceExports applied to the controller."""
    result: dict[str, list[tuple[str, str]]] = {}
    for doc in store.documents("ServiceExport"):
        cluster = (doc.get("spec") or {}).get("cluster")
        meta = doc.get("metadata") or {}
        if cluster:
            key = (str(meta.get("namespace", "default")), str(meta.get("name")))
            result.setdefault(cluster, []).append(key)
    return {c: sorted(v) for c, v in result.items()}


class StoredPolicies:
    """The stored policy documents (:data:`POLICY_KINDS`) as models."""

    def __init__(self, store: ControllerStore) -> None:
        self.store = store
        self._models: dict[str, BaseModel] = {}

    def read(self) -> list[BaseModel]:
        """Every stored policy as a model; one that no longer validates (stored by an older
        version) is logged and left out rather than stopping every update."""
        out: list[BaseModel] = []
        models: dict[str, BaseModel] = {}  # the models of this read, by stored JSON
        for kind, text in self.store.document_texts(POLICY_KINDS):  # one query
            model = self._models.get(text)
            if model is None:
                try:
                    [model] = validate_documents([json.loads(text)], source="stored")
                except InvalidDocumentError as err:
                    log.error("stored %s left out of updates: %s", kind, err)
                    continue
            models[text] = model
            out.append(model)
        self._models = models  # unchanged documents keep their model objects
        return out

    def traffic_policies(self) -> list[TrafficPolicy]:
        """The TrafficPolicies in force: those stored and those Istio's stored VirtualServices
        and DestinationRules make (:func:`traffic_policies_in_force`)."""
        return traffic_policies_in_force(self.read())

    def price_tables(self) -> dict[str, PriceTableRates]:
        """cloud -> the price table in force (built-in, overridden by stored PriceTables)."""
        return tables_in_force(p for p in self.read() if isinstance(p, PriceTable))


#: The last :func:`traffic_policies_in_force`: its input models (held, so their ids stay
#: theirs) and its result. :class:`StoredPolicies` hands out the same model objects while
#: the stored documents are unchanged, so a recompute that changed no policy translates
#: nothing, and the translated models stay the same objects (serialised once for every
#: control plane: :func:`federation.sync.convert.policy_json`).
_IN_FORCE: tuple[list[BaseModel], list[TrafficPolicy]] = ([], [])


def traffic_policies_in_force(policies: Sequence[BaseModel]) -> list[TrafficPolicy]:
    """The stored TrafficPolicies and those translated from the stored VirtualServices and
    DestinationRules (:func:`federation.model.istio_translate.effective_traffic_policies`);
    a problem (only documents stored by an older version can have one: apply refuses them)
    is logged and that service's Istio documents left out."""
    global _IN_FORCE
    kinds = (TrafficPolicy, VirtualService, DestinationRule, HTTPRoute, GRPCRoute, ReferenceGrant)
    models: list[BaseModel] = [p for p in policies if isinstance(p, kinds)]
    last_models, last_result = _IN_FORCE
    if len(models) == len(last_models) and all(
        a is b for a, b in zip(models, last_models, strict=True)
    ):
        return last_result
    policies_in_force, problems = effective_traffic_policies(models)
    for problem in problems:
        log.error("stored Istio document left out of updates: %s", problem)
    _IN_FORCE = (models, policies_in_force)
    return policies_in_force


@dataclass(frozen=True)
class FederationView:
    """The parts of every member's update that one recompute shares; :meth:`update_for`
    picks a member's."""

    imports: Mapping[str, list[ServiceImport]]
    exports: Mapping[str, list[tuple[str, str]]]
    conditions: Mapping[str, dict[tuple[str, str], tuple[str, str]]]
    policies: list[TrafficPolicy]
    price_tables: list[PriceTable]
    authz: list[AuthorizationPolicy]
    peer_authns: list[PeerAuthentication]
    sidecars: list[IstioSidecar]
    service_entries: list[ServiceEntry]
    bundle: bytes
    lease_seconds: int
    crls: dict[str, str]
    cas: dict[str, str]
    intermediates: Mapping[str, str]
    plans: Mapping[str, list[RoutingPlan]]
    addresses: list[str]
    federated_bundles: Mapping[str, bytes]
    root_crl: bytes

    def update_for(self, cluster: str) -> ControllerUpdate:
        """``cluster``'s ``ControllerUpdate`` (version 0: :class:`SyncStreams` numbers it)."""
        return ControllerUpdate(
            imports=self.imports.get(cluster, []),
            exports=self.exports.get(cluster, []),
            policies=self.policies,
            price_tables=self.price_tables,
            authorization_policies=self.authz,
            peer_authentications=self.peer_authns,
            sidecars=self.sidecars,
            service_entries=self.service_entries,
            trust_bundle_pem=self.bundle,
            lease_seconds=self.lease_seconds,
            cluster_crls=self.crls,
            cluster_cas=self.cas,
            intermediate_chain_pem=self.intermediates.get(cluster, ""),
            plans=self.plans.get(cluster, []),
            sync_addresses=self.addresses,
            export_conditions=self.conditions.get(cluster, {}),
            federated_bundles={d: pem.decode() for d, pem in self.federated_bundles.items()},
            root_crl_pem=self.root_crl.decode() if self.federated_bundles else "",
        )


def federation_view(
    *,
    imports: Mapping[str, list[ServiceImport]],
    export_statuses: Sequence[ExportStatus],
    central: Mapping[str, list[tuple[str, str]]],
    policies: Sequence[BaseModel],
    authz_default: str,
    bundle: bytes,
    lease_s: float,
    records: Mapping[str, ClusterRecord],
    reports: Mapping[str, ClusterReport],
    plans: Mapping[str, list[RoutingPlan]],
    addresses: list[str],
    federated_bundles: Mapping[str, bytes] | None = None,
    root_crl: bytes | None = None,
) -> FederationView:
    """Assemble one recompute's :class:`FederationView` (pure).

    ``authz_default`` ``deny`` adds :func:`federation.model.authz.default_deny_policy` to
    every member's AuthorizationPolicies (the mesh-wide default); ``allow`` is Istio's.
    """
    authz = [p for p in policies if isinstance(p, AuthorizationPolicy)]
    if authz_default == "deny":
        authz.append(default_deny_policy())
    crls = member_crls(list(records.values()), reports)
    conditions: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}
    for e in export_statuses:
        conditions.setdefault(e.cluster, {})[(e.namespace, e.service)] = (e.condition, e.message)
    return FederationView(
        imports=imports,
        exports=central,
        conditions=conditions,
        policies=traffic_policies_in_force(policies),
        price_tables=[p for p in policies if isinstance(p, PriceTable)],
        authz=authz,
        peer_authns=[p for p in policies if isinstance(p, PeerAuthentication)],
        sidecars=[p for p in policies if isinstance(p, IstioSidecar)],
        service_entries=[p for p in policies if isinstance(p, ServiceEntry)],
        bundle=bundle,
        lease_seconds=max(1, int(lease_s)),
        crls=crls,
        cas=member_cas(list(records.values()), crls),
        intermediates={name: r.intermediate_pem or "" for name, r in records.items()},
        plans=plans,
        addresses=addresses,
        federated_bundles=dict(federated_bundles or {}),
        root_crl=root_crl or b"",
    )
