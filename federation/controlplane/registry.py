"""The service registry of one cluster: workloads and their health, versioned and immutable.

``RegistryState`` is an immutable view handed to the pure generators; ``ServiceRegistry`` owns
the current state, replaces it atomically on every change and tells subscribers.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TypeVar

from pydantic import BaseModel

from federation.model.authz import AuthorizationPolicy, for_trust_domain
from federation.model.authz_federation import scoped_to_trust_domains
from federation.model.cluster_documents import DocumentKey, combine
from federation.model.documents import document_label
from federation.model.istio_sidecar import EXPORT_TO, IstioSidecar, export_visible, sidecar_for
from federation.model.peer_authentication import Enforced, PeerAuthentication, mtls_modes
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service import ServiceExport, ServiceImport
from federation.model.service_entry import ServiceEntry
from federation.model.workload import WorkloadEntry
from federation.sync.messages import RoutingPlan

log = logging.getLogger(__name__)

WorkloadKey = tuple[str, str]  # (namespace, name)
ServiceKey = tuple[str, str]  # (namespace, service)
Document = WorkloadEntry | ServiceExport | ServiceImport


@dataclass(frozen=True, slots=True)
class ServiceShape:
    """What a service's workloads define in common: the shape it is reported, imported and
    routed by, with or without endpoints.

    It is kept for an exported service whose last local workload is gone
    (:attr:`RegistryState.retained`): a ServiceExport stands for the service, not for its
    pods -- as in the MCS API (KEP-1645: a ServiceImport lives as long as a cluster exports
    the service, with or without endpoints) and in Istio (a Service scaled to zero keeps its
    cluster and routes; callers get 503 ``UH``), the service stays reported, imported and
    routed, with no endpoint, while it is exported here. A workload coming back is then an
    endpoint change alone (EDS) for every caller: no cluster to make and warm, no route.

    Attributes:
        ports: ``(name, port, protocol)`` as the first workload by name defined each, by
            port number.
        service_accounts: the service accounts its workloads run as, sorted.
        tls_modes: the ``tlsMode`` values of its workloads.
        export_to: its ``networking.istio.io/exportTo`` annotation (None: none).
    """

    ports: tuple[tuple[str, int, str], ...]
    service_accounts: tuple[str, ...]
    tls_modes: frozenset[str]
    export_to: str | None = None

    @classmethod
    def of(cls, workloads: Iterable[WorkloadEntry]) -> ServiceShape:
        """The shape of a service from its workloads (sorted by name: the first defines a
        port name's number and protocol)."""
        ports: dict[str, tuple[int, str]] = {}
        ws = list(workloads)
        for w in ws:
            for p in w.spec.ports:
                ports.setdefault(p.name, (p.port, p.protocol))
        return cls(
            ports=tuple((n, p, proto) for n, (p, proto) in sorted(ports.items(), key=_by_port)),
            service_accounts=tuple(sorted({w.spec.service_account for w in ws})),
            tls_modes=frozenset(w.spec.tls_mode for w in ws),
            export_to=ws[0].metadata.annotations.get(EXPORT_TO) if ws else None,
        )


def _by_port(item: tuple[str, tuple[int, str]]) -> int:
    return item[1][0]


class Health(enum.Enum):
    """Endpoint health as probed by the control plane (Envoy's ``HealthStatus`` names)."""

    UNKNOWN = "UNKNOWN"  # not probed yet: treated as healthy, as Envoy does
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"

    @property
    def serving(self) -> bool:
        """True when traffic may go to the endpoint."""
        return self is not Health.UNHEALTHY


@dataclass(frozen=True, slots=True)
class RegistryState:
    """A consistent view of the registry at one version.

    Attributes:
        version: increases by one on every change.
        workloads: by ``(namespace, name)``.
        health: by ``(namespace, name)``; missing means UNKNOWN.
        exports: services exported by a ServiceExport applied to this control plane.
        imports: ServiceImports, applied by hand or pushed by the federation controller.
        federated_exports: services the federation controller says this cluster exports
            (meshfed ServiceExports with ``spec.cluster`` applied centrally).
        policies: TrafficPolicies by target ``(namespace, service)``, from the controller.
        price_tables: PriceTable documents by cloud, from the controller.
        authorization_policies: AuthorizationPolicies by ``(namespace, name)``, from the
            controller.
        peer_authentications: PeerAuthentications by ``(namespace, name)``, from the
            controller (:meth:`mtls_modes`).
        sidecars: Istio Sidecar resources by ``(namespace, name)``, from the controller
            (:meth:`egress_scope`).
        service_entries: ServiceEntries by ``(namespace, name)``, from the controller.
        rtt_ms: measured round trip (ms) to other clusters' gateways, by cluster.
        plans: the controller's routing plans (cost mode ``optimize``) by ``(namespace,
            service, caller locality)``.
        cluster_exports: services exported by ServiceExport objects in the cluster's
            Kubernetes API (:mod:`federation.controlplane.kube`; not stored here).
        export_conditions: the controller's MCS condition of each of this cluster's exports,
            ``(Exported|Conflict, message)``.
        cluster_document_problems: why each refused Istio or Gateway API document of the
            cluster's Kubernetes API was refused, by ``(kind, namespace, name)``
            (:mod:`federation.model.cluster_documents`; the accepted ones are among
            ``policies`` ... ``service_entries``).
        federated_domains: the foreign trust domains the controller sent bundles of
            (SPIFFE federation): their SVIDs pass the inbound handshake, and
            :meth:`authorization_policies_for` scopes every workload's policies to them
            (:func:`federation.model.authz_federation.scoped_to_trust_domains`).
        trust_domain: the mesh's trust domain ("" until the control plane knows it):
            ``cluster.local`` principals of AuthorizationPolicies name it
            (:func:`federation.model.authz.for_trust_domain`).
        retained: exported services with no local workload left, by ``(namespace,
            service)``, with the :class:`ServiceShape` their workloads had (derived from
            the states before, kept while the service stays exported, not stored: a
            restarted control plane knows only the services it has workloads of).
    """

    version: int = 0
    workloads: Mapping[WorkloadKey, WorkloadEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    health: Mapping[WorkloadKey, Health] = field(default_factory=lambda: MappingProxyType({}))
    exports: frozenset[ServiceKey] = frozenset()
    imports: Mapping[ServiceKey, ServiceImport] = field(
        default_factory=lambda: MappingProxyType({})
    )
    federated_exports: frozenset[ServiceKey] = frozenset()
    policies: Mapping[ServiceKey, TrafficPolicy] = field(
        default_factory=lambda: MappingProxyType({})
    )
    price_tables: Mapping[str, PriceTable] = field(default_factory=lambda: MappingProxyType({}))
    authorization_policies: Mapping[tuple[str, str], AuthorizationPolicy] = field(
        default_factory=lambda: MappingProxyType({})
    )
    peer_authentications: Mapping[tuple[str, str], PeerAuthentication] = field(
        default_factory=lambda: MappingProxyType({})
    )
    sidecars: Mapping[tuple[str, str], IstioSidecar] = field(
        default_factory=lambda: MappingProxyType({})
    )
    service_entries: Mapping[tuple[str, str], ServiceEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    rtt_ms: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    plans: Mapping[tuple[str, str, str], RoutingPlan] = field(
        default_factory=lambda: MappingProxyType({})
    )
    cluster_exports: frozenset[ServiceKey] = frozenset()
    export_conditions: Mapping[ServiceKey, tuple[str, str]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    cluster_document_problems: Mapping[DocumentKey, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    trust_domain: str = ""
    federated_domains: tuple[str, ...] = ()
    retained: Mapping[ServiceKey, ServiceShape] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # the AuthorizationPolicies as enforced (cluster.local localized): made on first use, at
    # most once per state (a health change makes a state too; it rarely needs them)
    _enforced: Mapping[tuple[str, str], AuthorizationPolicy] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # (namespace, service) -> its workloads sorted by name: built once per state, so a
    # generator's lookup is O(1) instead of a scan of every workload (1,000 services x 10
    # endpoints: 17 s of a sidecar's 18 s build was that scan)
    _by_service: Mapping[ServiceKey, tuple[WorkloadEntry, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # the stored workloads (not the Kubernetes source's) as (key, workload), sorted: made on
    # first use, or patched from the state this one was made from (_state)
    _stored: list[tuple[WorkloadKey, WorkloadEntry]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def _index(self) -> Mapping[ServiceKey, tuple[WorkloadEntry, ...]]:
        """The workloads by service: made on first use (a race between threads makes the
        same immutable index twice), or patched from the state this one was made from."""
        index = self._by_service
        if index is None:
            index = MappingProxyType(_index_of(self.workloads.values()))
            object.__setattr__(self, "_by_service", index)
        return index

    def exported(self, key: ServiceKey) -> bool:
        """True when ``(namespace, service)`` is exported: by a ServiceExport applied here,
        by one in the cluster's Kubernetes API, or by the controller."""
        return key in self.exports or key in self.federated_exports or key in self.cluster_exports

    def visible_to(self, key: ServiceKey, proxy_namespace: str) -> bool:
        """Whether service ``key`` is seen by a proxy of ``proxy_namespace``, by the
        ``networking.istio.io/exportTo`` annotation its Kubernetes Service carries in this
        cluster (on its workloads; :func:`federation.model.istio_sidecar.export_visible`)."""
        local = self._index().get(key)
        if local:
            export_to = local[0].metadata.annotations.get(EXPORT_TO)
        elif key in self.retained:
            export_to = self.retained[key].export_to
        else:
            return True
        return export_visible(export_to, key[0], proxy_namespace)

    def egress_scope(self, namespace: str, workload: str) -> IstioSidecar | None:
        """The Sidecar resource that scopes a proxy of ``namespace`` (and ``workload``, its
        WorkloadEntry's name, "" for none) (:func:`federation.model.istio_sidecar.sidecar_for`)."""
        w = self.workloads.get((namespace, workload)) if workload else None
        labels = w.metadata.labels if w is not None else {}
        return sidecar_for(self.sidecars.values(), namespace, labels)

    def mtls_modes(self, workload: WorkloadEntry) -> dict[int, Enforced]:
        """What ``workload``'s sidecar accepts on each target port: STRICT, PERMISSIVE or
        DISABLE, by the PeerAuthentications in force and its ``mtlsMode``
        (:func:`federation.model.peer_authentication.mtls_modes`)."""
        return mtls_modes(self.peer_authentications.values(), workload)

    def authorization_policies_for(self, workload: WorkloadEntry) -> list[AuthorizationPolicy]:
        """The AuthorizationPolicies that select ``workload`` (its namespace and labels), as
        enforced: ``cluster.local`` principals name :attr:`trust_domain`."""
        if self._enforced is None:
            td = self.trust_domain
            enforced = {
                k: for_trust_domain(p, td) if td else p
                for k, p in self.authorization_policies.items()
            }
            object.__setattr__(self, "_enforced", MappingProxyType(enforced))
        assert self._enforced is not None
        meta = workload.metadata
        selected = [p for p in self._enforced.values() if p.selects(meta.namespace, meta.labels)]
        return scoped_to_trust_domains(selected, self.federated_domains)

    def health_of(self, key: WorkloadKey) -> Health:
        """The health of a workload (UNKNOWN when never probed)."""
        return self.health.get(key, Health.UNKNOWN)

    def by_service(self, namespace: str, service: str) -> list[WorkloadEntry]:
        """Workloads of one service, sorted by name (from an index built with the state)."""
        return list(self._index().get((namespace, service), ()))

    def services(self) -> list[tuple[str, str]]:
        """Every ``(namespace, service)`` with a local workload, an import, or retained
        (exported here, its last workload gone: :attr:`retained`), sorted."""
        return sorted(set(self._index()) | set(self.imports) | set(self.retained))

    def local_services(self) -> list[tuple[str, str]]:
        """Every ``(namespace, service)`` with a local workload or retained, sorted."""
        return sorted(set(self._index()) | set(self.retained))

    def documents(self) -> list[Document]:
        """Every stored document (workloads, exports as meshfed ServiceExports, imports);
        workloads the Kubernetes source made (label ``meshfed.io/source: kubernetes``) are
        the cluster's, not stored."""
        stored = self._stored
        if stored is None:
            stored = sorted((k, w) for k, w in self.workloads.items() if _is_stored(w))
            object.__setattr__(self, "_stored", stored)
        docs: list[Document] = [w for _, w in stored]
        docs += [
            ServiceExport.model_validate(
                {
                    "apiVersion": "meshfed.io/v1alpha1",
                    "kind": "ServiceExport",
                    "metadata": {"name": svc, "namespace": ns},
                }
            )
            for ns, svc in sorted(self.exports)
        ]
        docs += [self.imports[k] for k in sorted(self.imports)]
        return docs


Listener = Callable[[RegistryState], None]


def _is_stored(workload: WorkloadEntry) -> bool:
    """False for a workload the Kubernetes source made (the cluster's, not stored here)."""
    return workload.metadata.labels.get("meshfed.io/source") != "kubernetes"


def describe(doc: Document) -> str:
    """``kind/namespace/name`` (lowercase kind, as kubectl prints it)."""
    return document_label(doc)


_Stored = list[tuple[WorkloadKey, WorkloadEntry]]


def _by_name(workloads: Iterable[WorkloadEntry]) -> tuple[WorkloadEntry, ...]:
    return tuple(sorted(workloads, key=lambda w: w.metadata.name))


def _index_of(workloads: Iterable[WorkloadEntry]) -> dict[ServiceKey, tuple[WorkloadEntry, ...]]:
    """Workloads by ``(namespace, service)``, each service's sorted by name. Pure."""
    index: dict[ServiceKey, list[WorkloadEntry]] = {}
    for w in workloads:
        index.setdefault((w.metadata.namespace, w.spec.service), []).append(w)
    return {k: _by_name(ws) for k, ws in index.items()}


def _changed_workloads(
    base: RegistryState, workloads: Mapping[WorkloadKey, WorkloadEntry]
) -> set[WorkloadKey]:
    """Keys of workloads added, removed or replaced (not the same object) since ``base``."""
    old = base.workloads
    changed = {k for k, w in workloads.items() if old.get(k) is not w}
    changed.update(old.keys() - workloads.keys())
    return changed


def _patched_stored(
    base: RegistryState, workloads: Mapping[WorkloadKey, WorkloadEntry], changed: set[WorkloadKey]
) -> _Stored | None:
    """``base``'s sorted stored workloads with the ``changed`` ones replaced (None when
    ``base`` never listed them: made on first use). Nearly sorted, so sorting is ~linear."""
    if base._stored is None:
        return None
    stored = [(k, w) for k, w in base._stored if k not in changed]
    stored += [(k, w) for k in changed if (w := workloads.get(k)) is not None and _is_stored(w)]
    stored.sort()
    return stored


def _patched_index(
    base: RegistryState, workloads: Mapping[WorkloadKey, WorkloadEntry], changed: set[WorkloadKey]
) -> dict[ServiceKey, tuple[WorkloadEntry, ...]]:
    """:func:`_index_of` ``workloads``, from ``base``'s index: only the services of the
    ``changed`` workloads (:func:`_changed_workloads`) are sorted again. Pure.
    (10,000 workloads, one changed: ~1 ms instead of ~12.)"""
    index = dict(base._index())
    touched: dict[ServiceKey, list[WorkloadEntry]] = {}
    for key in changed:
        for w in (base.workloads.get(key), workloads.get(key)):
            if w is not None:
                touched.setdefault((w.metadata.namespace, w.spec.service), [])
        if (w := workloads.get(key)) is not None:
            touched[(w.metadata.namespace, w.spec.service)].append(w)
    for service, added in touched.items():
        members = [w for w in index.get(service, ()) if w.key not in changed] + added
        if members:
            index[service] = _by_name(members)
        else:
            index.pop(service, None)
    return index


def _state(
    base: RegistryState,
    workloads: dict[WorkloadKey, WorkloadEntry],
    health: dict[WorkloadKey, Health],
    exports: set[ServiceKey],
    imports: dict[ServiceKey, ServiceImport],
) -> RegistryState:
    changed = _changed_workloads(base, workloads)
    # parts the change left as they were keep their objects: what reads a part by identity
    # (the push context's service inputs, changes.service_inputs) sees no change there
    state = replace(
        base,
        version=base.version + 1,
        workloads=MappingProxyType(workloads),
        health=MappingProxyType(health),
        exports=base.exports if exports == base.exports else frozenset(exports),
        imports=base.imports if imports == base.imports else MappingProxyType(imports),
    )
    index = MappingProxyType(_patched_index(base, workloads, changed))
    object.__setattr__(state, "_by_service", index)
    object.__setattr__(state, "_stored", _patched_stored(base, workloads, changed))
    return _with_retained(base, state)


def retained_services(
    base: RegistryState, state: RegistryState
) -> Mapping[ServiceKey, ServiceShape]:
    """:attr:`RegistryState.retained` of ``state``, made from ``base`` (the state it was
    made from): ``base``'s retained services and the services that lost their last workload
    since ``base``, each while it has no local workload and is exported in ``state``.
    ``base.retained`` itself when that is the same. Pure."""
    index, before = state._index(), base._index()
    kept = {
        key: shape
        for key, shape in base.retained.items()
        if key not in index and state.exported(key)
    }
    for key in before.keys() - index.keys():
        if state.exported(key):
            kept[key] = ServiceShape.of(before[key])
    if kept == dict(base.retained):
        return base.retained
    return MappingProxyType(dict(sorted(kept.items())))


def _with_retained(base: RegistryState, state: RegistryState) -> RegistryState:
    """``state`` with its :attr:`~RegistryState.retained` services (see
    :func:`retained_services`); set in place: ``state`` is new and not yet shared."""
    object.__setattr__(state, "retained", retained_services(base, state))
    return state


def with_applied(
    state: RegistryState, documents: Iterable[Document]
) -> tuple[RegistryState, list[str]]:
    """``state`` with ``documents`` created or replaced, and what changed (``kind/ns/name``).

    The version increases by one when anything changed; a changed workload's health resets to
    UNKNOWN. Pure.
    """
    workloads = dict(state.workloads)
    exports = set(state.exports)
    imports = dict(state.imports)
    changed: list[str] = []
    for doc in documents:
        if isinstance(doc, WorkloadEntry) and workloads.get(doc.key) != doc:
            workloads[doc.key] = doc
        elif isinstance(doc, ServiceExport) and doc.key not in exports:
            exports.add(doc.key)
        elif isinstance(doc, ServiceImport) and imports.get(doc.key) != doc:
            imports[doc.key] = doc
        else:
            continue
        changed.append(describe(doc))
    if not changed:
        return state, []
    health = {k: v for k, v in state.health.items() if state.workloads.get(k) == workloads.get(k)}
    return (
        _state(state, workloads, health, exports, imports),
        changed,
    )


def without(state: RegistryState, documents: Iterable[Document]) -> tuple[RegistryState, list[str]]:
    """``state`` without the documents named (by kind, namespace, name), and which existed. Pure."""
    workloads = dict(state.workloads)
    exports = set(state.exports)
    imports = dict(state.imports)
    removed: list[str] = []
    for doc in documents:
        if isinstance(doc, WorkloadEntry):
            found = workloads.pop(doc.key, None) is not None
        elif isinstance(doc, ServiceExport):
            found = doc.key in exports
            exports.discard(doc.key)
        else:
            found = imports.pop(doc.key, None) is not None
        if found:
            removed.append(describe(doc))
    if not removed:
        return state, []
    health = {k: v for k, v in state.health.items() if k in workloads}
    return (
        _state(state, workloads, health, exports, imports),
        removed,
    )


K = TypeVar("K")
V = TypeVar("V")


def _kept(before: Mapping[K, V], after: dict[K, V]) -> dict[K, V]:
    """``after``, with each value equal to ``before``'s replaced by ``before``'s object (the
    same object is equal without a look inside: a pydantic model's ``==`` compares every
    field, even of itself, and a delta update keeps the unchanged documents' objects)."""
    return {k: old if (old := before.get(k)) is v or old == v else v for k, v in after.items()}


def with_federation(
    state: RegistryState,
    imports: Iterable[ServiceImport],
    exports: Iterable[ServiceKey],
    policies: Iterable[TrafficPolicy] = (),
    price_tables: Iterable[PriceTable] = (),
    authorization_policies: Iterable[AuthorizationPolicy] = (),
    plans: Iterable[RoutingPlan] = (),
    export_conditions: Mapping[ServiceKey, tuple[str, str]] | None = None,
    peer_authentications: Iterable[PeerAuthentication] = (),
    sidecars: Iterable[IstioSidecar] = (),
    service_entries: Iterable[ServiceEntry] = (),
    cluster_document_problems: Mapping[DocumentKey, tuple[str, ...]] | None = None,
) -> RegistryState:
    """``state`` with exactly these imports, federated exports, policies and export
    conditions (what the controller sent, with the cluster's own documents added by
    :meth:`ServiceRegistry.set_cluster_documents`).

    Everything not in the arguments is removed: the controller's view replaces the previous
    one whole, so an endpoint it withdrew is never left behind. Same ``state`` when nothing
    changed. Pure.
    """
    # an unchanged document keeps its object from ``state``: what is derived from it
    # downstream (:mod:`federation.controlplane.changes`) compares by identity first
    new_imports = _kept(state.imports, {i.key: i for i in imports})
    new_exports = frozenset(exports)
    new_policies = _kept(state.policies, {p.target: p for p in policies})
    new_tables = _kept(state.price_tables, {t.spec.cloud: t for t in price_tables})
    new_authz = _kept(state.authorization_policies, {p.key: p for p in authorization_policies})
    new_peer = _kept(state.peer_authentications, {p.key: p for p in peer_authentications})
    new_sidecars = _kept(state.sidecars, {s.key: s for s in sidecars})
    new_entries = _kept(state.service_entries, {e.key: e for e in service_entries})
    new_plans = _kept(state.plans, {(p.namespace, p.service, p.caller_locality): p for p in plans})
    new_conditions = dict(export_conditions or {})
    new_problems = dict(cluster_document_problems or {})
    imports_ = _same_or_new(state.imports, new_imports)
    policies_ = _same_or_new(state.policies, new_policies)
    tables_ = _same_or_new(state.price_tables, new_tables)
    authz_ = _same_or_new(state.authorization_policies, new_authz)
    peer_ = _same_or_new(state.peer_authentications, new_peer)
    sidecars_ = _same_or_new(state.sidecars, new_sidecars)
    entries_ = _same_or_new(state.service_entries, new_entries)
    plans_ = _same_or_new(state.plans, new_plans)
    conditions_ = _same_or_new(state.export_conditions, new_conditions)
    problems_ = _same_or_new(state.cluster_document_problems, new_problems)
    exports_ = state.federated_exports if new_exports == state.federated_exports else new_exports
    if (
        imports_ is state.imports
        and policies_ is state.policies
        and tables_ is state.price_tables
        and authz_ is state.authorization_policies
        and peer_ is state.peer_authentications
        and sidecars_ is state.sidecars
        and entries_ is state.service_entries
        and plans_ is state.plans
        and conditions_ is state.export_conditions
        and problems_ is state.cluster_document_problems
        and exports_ is state.federated_exports
    ):
        return state
    return _federated(
        state,
        version=state.version + 1,
        imports=imports_,
        federated_exports=exports_,
        policies=policies_,
        price_tables=tables_,
        authorization_policies=authz_,
        peer_authentications=peer_,
        sidecars=sidecars_,
        service_entries=entries_,
        plans=plans_,
        export_conditions=conditions_,
        cluster_document_problems=problems_,
    )


def _federated(base: RegistryState, **parts: object) -> RegistryState:
    """``base`` with the controller's ``parts`` replaced (and the workload index, which
    they leave as it was, carried over), and its retained services for them."""
    state = replace(base, **parts)  # type: ignore[arg-type]
    object.__setattr__(state, "_by_service", base._by_service)
    object.__setattr__(state, "_stored", base._stored)
    if (
        state.federated_exports is base.federated_exports
        and state.cluster_exports is base.cluster_exports
    ):
        return state  # with the workloads as they were, only exports change what is retained
    return _with_retained(base, state)


def _same_or_new(before: Mapping[K, V], after: dict[K, V]) -> Mapping[K, V]:
    """``before`` itself when ``after`` holds the same items, else ``after`` read-only: a
    part of the state a change left alone keeps its object, so whoever derives something
    from it (the DNS name table, :mod:`federation.controlplane.changes`) can tell by
    identity that nothing of it changed."""
    return before if after == dict(before) else MappingProxyType(after)


def with_cluster_exports(state: RegistryState, keys: Iterable[ServiceKey]) -> RegistryState:
    """``state`` with exactly these exports from the cluster's Kubernetes API (same
    ``state`` when unchanged). Pure."""
    new = frozenset(keys)
    if new == state.cluster_exports:
        return state
    return _federated(state, version=state.version + 1, cluster_exports=new)


def with_rtts(state: RegistryState, rtt_ms: Mapping[str, float]) -> RegistryState:
    """``state`` with new measured RTTs (ms by cluster); same ``state`` if equal. Pure."""
    if dict(rtt_ms) == dict(state.rtt_ms):
        return state
    return replace(state, version=state.version + 1, rtt_ms=MappingProxyType(dict(rtt_ms)))


@dataclass
class _ControllerView:
    """The last of what the controller sent (:meth:`ServiceRegistry.set_federation`)."""

    imports: list[ServiceImport] = field(default_factory=list)
    exports: list[ServiceKey] = field(default_factory=list)
    policies: list[TrafficPolicy] = field(default_factory=list)
    price_tables: list[PriceTable] = field(default_factory=list)
    authorization_policies: list[AuthorizationPolicy] = field(default_factory=list)
    plans: list[RoutingPlan] = field(default_factory=list)
    export_conditions: dict[ServiceKey, tuple[str, str]] = field(default_factory=dict)
    peer_authentications: list[PeerAuthentication] = field(default_factory=list)
    sidecars: list[IstioSidecar] = field(default_factory=list)
    service_entries: list[ServiceEntry] = field(default_factory=list)


class ServiceRegistry:
    """Holds the current :class:`RegistryState`; every mutation publishes a new one."""

    def __init__(self) -> None:
        self._state = RegistryState()
        self._listeners: list[Listener] = []
        self._controller = _ControllerView()
        self._cluster_documents: list[BaseModel] = []
        self._cluster_invalid: dict[DocumentKey, tuple[str, ...]] = {}
        self.changed_at = time.time()  # Unix s the current state was installed

    @property
    def state(self) -> RegistryState:
        """The current state."""
        return self._state

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with each new state (synchronously, after it is installed)."""
        self._listeners.append(listener)

    def _publish(self, state: RegistryState) -> None:
        self._state = state
        self.changed_at = time.time()
        for listener in list(self._listeners):
            listener(state)

    def apply(
        self,
        documents: Iterable[Document],
        prepared: tuple[RegistryState, RegistryState, list[str]] | None = None,
    ) -> list[str]:
        """Create or replace documents, all in one new version (see :func:`with_applied`).
        ``prepared``: ``(base, with_applied(base, documents))`` already computed (the API
        persists it first); used when ``base`` is still the current state."""
        if prepared is not None and prepared[0] is self._state:
            state, changed = prepared[1], prepared[2]
        else:
            state, changed = with_applied(self._state, documents)
        if changed:
            self._publish(state)
            log.info("registry v%d: applied %s", state.version, ", ".join(changed))
        return changed

    def delete(
        self,
        documents: Iterable[Document],
        prepared: tuple[RegistryState, RegistryState, list[str]] | None = None,
    ) -> list[str]:
        """Remove the documents named (see :func:`without`); ``prepared`` as for
        :meth:`apply`."""
        if prepared is not None and prepared[0] is self._state:
            state, removed = prepared[1], prepared[2]
        else:
            state, removed = without(self._state, documents)
        if removed:
            self._publish(state)
            log.info("registry v%d: deleted %s", state.version, ", ".join(removed))
        return removed

    def set_federation(
        self,
        imports: Iterable[ServiceImport],
        exports: Iterable[ServiceKey],
        policies: Iterable[TrafficPolicy] = (),
        price_tables: Iterable[PriceTable] = (),
        authorization_policies: Iterable[AuthorizationPolicy] = (),
        plans: Iterable[RoutingPlan] = (),
        export_conditions: Mapping[ServiceKey, tuple[str, str]] | None = None,
        peer_authentications: Iterable[PeerAuthentication] = (),
        sidecars: Iterable[IstioSidecar] = (),
        service_entries: Iterable[ServiceEntry] = (),
    ) -> bool:
        """Install the controller's view (see :func:`with_federation`), with the cluster's
        own documents (:meth:`set_cluster_documents`) beside it."""
        self._controller = _ControllerView(
            list(imports),
            list(exports),
            list(policies),
            list(price_tables),
            list(authorization_policies),
            list(plans),
            dict(export_conditions or {}),
            list(peer_authentications),
            list(sidecars),
            list(service_entries),
        )
        installed = self._install_view()
        if installed:
            log.info(
                "registry v%d: %d imports, %d federated exports from the controller",
                self._state.version,
                len(self._state.imports),
                len(self._state.federated_exports),
            )
        return installed

    def set_cluster_documents(
        self,
        documents: Iterable[BaseModel],
        invalid: Mapping[DocumentKey, tuple[str, ...]] | None = None,
    ) -> bool:
        """Install the Istio and Gateway API documents of the cluster's Kubernetes API
        (valid models; ``invalid``: the problems of those that are not), in force for this
        cluster's proxies beside the controller's (:mod:`federation.model.cluster_documents`).
        Returns whether the state changed."""
        self._cluster_documents = list(documents)
        self._cluster_invalid = dict(invalid or {})
        return self._install_view()

    def _install_view(self) -> bool:
        view = self._controller
        in_force = combine(
            policies=view.policies,
            authorization_policies=view.authorization_policies,
            peer_authentications=view.peer_authentications,
            sidecars=view.sidecars,
            service_entries=view.service_entries,
            cluster=self._cluster_documents,
        )
        state = with_federation(
            self._state,
            view.imports,
            view.exports,
            in_force.policies,
            view.price_tables,
            in_force.authorization_policies,
            view.plans,
            view.export_conditions,
            in_force.peer_authentications,
            in_force.sidecars,
            in_force.service_entries,
            {**self._cluster_invalid, **in_force.problems},
        )
        if state is self._state:
            return False
        self._publish(state)
        return True

    def set_cluster_exports(self, keys: Iterable[ServiceKey]) -> bool:
        """Install the exports of the cluster's ServiceExport objects."""
        state = with_cluster_exports(self._state, keys)
        if state is self._state:
            return False
        self._publish(state)
        log.info(
            "registry v%d: %d exports from the cluster", state.version, len(state.cluster_exports)
        )
        return True

    def set_rtts(self, rtt_ms: Mapping[str, float]) -> bool:
        """Install measured RTTs (see :func:`with_rtts`)."""
        state = with_rtts(self._state, rtt_ms)
        if state is self._state:
            return False
        self._publish(state)
        return True

    def set_federated_domains(self, domains: tuple[str, ...]) -> None:
        """The foreign trust domains whose bundles the controller sent (see
        :attr:`RegistryState.federated_domains`)."""
        if domains != self._state.federated_domains:
            log.info("federated trust domains: %s", ", ".join(domains) or "none")
            self._publish(
                replace(self._state, version=self._state.version + 1, federated_domains=domains)
            )

    def set_trust_domain(self, trust_domain: str) -> None:
        """The mesh's trust domain, once the control plane knows it (see
        :attr:`RegistryState.trust_domain`)."""
        if trust_domain != self._state.trust_domain:
            self._publish(
                replace(self._state, version=self._state.version + 1, trust_domain=trust_domain)
            )

    def set_health(self, key: WorkloadKey, health: Health) -> bool:
        """Record a probe result; publishes only when the health actually changed."""
        if key not in self._state.workloads or self._state.health_of(key) is health:
            return False
        updated = dict(self._state.health)
        updated[key] = health
        self._publish(
            replace(self._state, version=self._state.version + 1, health=MappingProxyType(updated))
        )
        log.info("workload %s is %s", "/".join(key), health.value)
        return True
