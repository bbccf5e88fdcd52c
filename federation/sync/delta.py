"""Incremental controller updates (sync protocol 2) and the protocol versions of both ends.

A controller sends each control plane its whole view of the federation. Before protocol 2
every update carried all of it -- every ServiceImport, every TrafficPolicy, PriceTable and
AuthorizationPolicy, every routing plan -- and the control plane validated every document of
every update (with 300 policies, a change fanned out to 50 control planes took p99 1.08 s on
2 cores). From protocol 2 the first update of a stream is whole and each later one is a
delta on the previous one of the same stream (as xDS's incremental variant): only the
imports, policy documents and plans added or changed, and the keys of those removed; the
small fields (exports, CRLs, CAs, conditions, addresses) are still sent whole. A control
plane validates a document once, when it first arrives (:func:`merge`). A gap -- a delta on
a version it does not hold -- ends the stream; the next stream starts with a whole update
(a full resync), as after any reconnect.

Reports go the same way once the controller's first update said it speaks protocol 2: each
report of a stream is numbered, the first is whole, later ones carry only the services added
or changed (and the names of those removed) -- a heartbeat without change carries none --
and the controller validates only the services a report brings (:func:`report_delta`,
:func:`merge_report`).

Versions: each end sends the protocol it speaks (``ClusterReport.protocol``,
``ControllerUpdate.protocol``; 0 means a release from before versions, which speaks 1). A
controller sends deltas only to a control plane that speaks 2 or later, and to one older
than protocol 3 an update of its protocol without the kinds it cannot read
(:data:`KIND_SINCE`, :func:`for_peer`; the controller logs what was left out), so releases
on either side of these changes understand each other; a control plane speaking a newer
protocol than its controller, or an update from a newer protocol than the control plane
reads, is refused with a message that says which side to upgrade (:func:`controller_refuses`,
:func:`control_plane_refuses`). Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from federation.errors import FederationError, InvalidDocumentError
from federation.model.authz import AuthorizationPolicy
from federation.model.documents import validate_documents
from federation.model.istio_sidecar import IstioSidecar
from federation.model.peer_authentication import PeerAuthentication
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service_entry import ServiceEntry
from federation.sync import convert
from federation.sync.messages import ClusterReport, ControllerUpdate
from federation.sync.proto import sync_pb2

#: The sync protocol this release speaks: 3, incremental updates that may carry Istio's
#: PeerAuthentication, Sidecar and ServiceEntry documents.
PROTOCOL = 3
#: Incremental updates (deltas on the stream's previous update).
INCREMENTAL = 2
#: Whole updates only (releases before protocol versions send 0, meaning this).
WHOLE_UPDATES = 1
#: Policy kinds a control plane reads from the protocol given on (older ones refuse an
#: update that carries one: it is left out of theirs, :func:`for_peer`).
KIND_SINCE = {"PeerAuthentication": 3, "Sidecar": 3, "ServiceEntry": 3}

Policy = (
    TrafficPolicy
    | PriceTable
    | AuthorizationPolicy
    | PeerAuthentication
    | IstioSidecar
    | ServiceEntry
)


class UpdateGapError(FederationError):
    """A delta update on a version the control plane does not hold: resync."""


class ProtocolError(FederationError):
    """The other end speaks a sync protocol this release cannot (the message says which
    side to upgrade); not retried."""


def spoken(protocol: int) -> int:
    """The protocol a peer speaks from the field it sent (0: a release before versions)."""
    return protocol or WHOLE_UPDATES


def for_peer(
    whole: sync_pb2.ControllerUpdate, peer: int
) -> tuple[sync_pb2.ControllerUpdate, list[str]]:
    """``whole`` as a control plane speaking ``peer`` reads it: its ``protocol`` the lower
    of the two, and the policy documents of kinds newer than ``peer`` left out (their
    ``kind/namespace/name``, returned so the controller can say so). ``whole`` itself is
    not changed."""
    out = sync_pb2.ControllerUpdate()
    out.CopyFrom(whole)
    out.protocol = min(PROTOCOL, peer)
    if peer >= max(KIND_SINCE.values()):
        return out, []
    kept, dropped = [], []
    for text in whole.policies_json:
        doc = json.loads(text)
        kind = str(doc.get("kind", ""))
        if KIND_SINCE.get(kind, 0) > peer:
            meta = doc.get("metadata") or {}
            dropped.append(f"{kind}/{meta.get('namespace', 'default')}/{meta.get('name')}")
        else:
            kept.append(text)
    del out.policies_json[:]
    out.policies_json.extend(kept)
    return out, dropped


def controller_refuses(cluster: str, report_protocol: int) -> str | None:
    """Why a controller of this release refuses ``cluster``'s control plane, or None."""
    peer = spoken(report_protocol)
    if peer > PROTOCOL:
        return (
            f"control plane {cluster!r} speaks sync protocol {peer}, this controller at most"
            f" {PROTOCOL}: upgrade the controller first (it reads older control planes, not"
            " newer ones)"
        )
    return None


def control_plane_refuses(update_protocol: int) -> str | None:
    """Why a control plane of this release refuses an update, or None."""
    peer = spoken(update_protocol)
    if peer > PROTOCOL:
        return (
            f"the controller sent an update of sync protocol {peer}; this control plane reads"
            f" at most {PROTOCOL}: upgrade the control plane"
        )
    return None


def policy_id(text: str) -> str:
    """The id of a policy document as sent: SHA-256 (hex) of its JSON text."""
    return hashlib.sha256(text.encode()).hexdigest()


def _bytes(message: object) -> bytes:
    return message.SerializeToString(deterministic=True)  # type: ignore[attr-defined,no-any-return]


def _import_key(m: sync_pb2.ServiceImport) -> tuple[str, str]:
    return (m.namespace, m.name)


def _plan_key(m: sync_pb2.RoutingPlan) -> tuple[str, str, str]:
    return (m.namespace, m.name, m.caller_locality)


M = TypeVar("M")
K = TypeVar("K", bound=tuple[str, ...])


def _keyed_delta(
    before: Iterable[M], after: Iterable[M], key: Callable[[M], K]
) -> tuple[list[M], list[K]]:
    """The messages of ``after`` that ``before`` lacks or holds with other content (by
    ``key``), and the keys of ``before``'s messages that ``after`` lacks, sorted."""
    old = {key(m): _bytes(m) for m in before}
    new = {key(m): m for m in after}
    changed = [m for k, m in new.items() if old.get(k) != _bytes(m)]
    return changed, sorted(old.keys() - new.keys())


def delta(
    before: sync_pb2.ControllerUpdate, after: sync_pb2.ControllerUpdate
) -> sync_pb2.ControllerUpdate:
    """``after`` as a delta on ``before`` (both whole updates of one stream)."""
    out = sync_pb2.ControllerUpdate()
    out.CopyFrom(after)
    out.base_version = before.version
    imports, gone_imports = _keyed_delta(before.imports, after.imports, _import_key)
    del out.imports[:]
    out.imports.extend(imports)
    out.removed_imports.extend(
        sync_pb2.ServiceRef(namespace=ns, name=name) for ns, name in gone_imports
    )
    old_texts, new_texts = set(before.policies_json), list(after.policies_json)
    del out.policies_json[:]
    out.policies_json.extend(t for t in new_texts if t not in old_texts)
    out.removed_policies.extend(sorted(policy_id(t) for t in old_texts - set(new_texts)))
    plans, gone_plans = _keyed_delta(before.plans, after.plans, _plan_key)
    del out.plans[:]
    out.plans.extend(plans)
    out.removed_plans.extend(
        sync_pb2.PlanRef(namespace=ns, name=name, caller_locality=loc)
        for ns, name, loc in gone_plans
    )
    return out


@dataclass(frozen=True)
class HeldUpdate:
    """What a control plane holds of its stream: the whole update it applied last, and its
    policy documents by :func:`policy_id` (validated once, when they arrived)."""

    update: ControllerUpdate
    policies: dict[str, Policy] = field(default_factory=dict)


def _policies(texts: Iterable[str], known: dict[str, Policy]) -> dict[str, Policy]:
    """Policy documents by id; only texts not in ``known`` are parsed and validated.

    Raises:
        InvalidDocumentError: a new text is not JSON or not a valid policy.
    """
    texts = list(texts)
    fresh = [t for t in texts if policy_id(t) not in known]
    try:
        raws = [json.loads(t) for t in fresh]
    except ValueError as err:
        raise InvalidDocumentError(f"controller update: a policy is not JSON ({err})") from err
    docs = validate_documents(raws, source="controller update")
    parsed = {policy_id(t): d for t, d in zip(fresh, docs, strict=True)}
    return {policy_id(t): known.get(policy_id(t)) or parsed[policy_id(t)] for t in texts}  # type: ignore[misc]


def _parsed(message: sync_pb2.ControllerUpdate) -> ControllerUpdate:
    """``message`` read without its policy documents (they are validated by id)."""
    without = sync_pb2.ControllerUpdate()
    without.CopyFrom(message)
    del without.policies_json[:]
    return convert.update_from_proto(without)


#: The update's field of each policy kind.
_FIELD_OF: dict[type, str] = {
    TrafficPolicy: "policies",
    PriceTable: "price_tables",
    AuthorizationPolicy: "authorization_policies",
    PeerAuthentication: "peer_authentications",
    IstioSidecar: "sidecars",
    ServiceEntry: "service_entries",
}


def _with_policies(update: ControllerUpdate, policies: dict[str, Policy]) -> ControllerUpdate:
    """``update`` with ``policies`` sorted into its fields by kind (one pass, by type: six
    isinstance passes over 300 documents were half of a delta's merge); a document of no
    policy kind is left out, as the update's own conversion leaves it out."""
    fields: dict[str, list[Policy]] = {name: [] for name in _FIELD_OF.values()}
    for doc in policies.values():
        name = _FIELD_OF.get(type(doc))
        if name is not None:
            fields[name].append(doc)
    return replace(update, **fields)  # type: ignore[arg-type]


def _with_held_policies(update: ControllerUpdate, held: ControllerUpdate) -> ControllerUpdate:
    """``update`` with ``held``'s policy lists themselves (a delta that changed no policy:
    the registry then finds every document the same object and looks inside none)."""
    return replace(update, **{name: getattr(held, name) for name in _FIELD_OF.values()})


def merge(held: HeldUpdate | None, message: sync_pb2.ControllerUpdate) -> HeldUpdate:
    """The whole update after ``message``: itself when whole, else ``held`` with the delta
    applied. Only what the message carries is read: the imports, plans and policy documents
    of a delta are the changed ones, and a policy text already held is not validated again.

    Raises:
        UpdateGapError: a delta whose ``base_version`` is not the held update's version.
        InvalidDocumentError: a new import, policy or plan is invalid (nothing is applied).
    """
    if not message.base_version:
        policies = _policies(message.policies_json, held.policies if held else {})
        return HeldUpdate(_with_policies(_parsed(message), policies), policies)
    if held is None or held.update.version != message.base_version:
        have = f"v{held.update.version}" if held is not None else "nothing"
        raise UpdateGapError(
            f"controller update v{message.version} is a delta on v{message.base_version},"
            f" this control plane holds {have}: resyncing"
        )
    removed = set(message.removed_policies)
    if removed or message.policies_json:
        policies = {k: v for k, v in held.policies.items() if k not in removed}
        policies.update(_policies(message.policies_json, held.policies))
    else:
        policies = held.policies
    changes = _parsed(message)
    gone_imports = {(r.namespace, r.name) for r in message.removed_imports}
    gone_imports |= {i.key for i in changes.imports}
    gone_plans = {(r.namespace, r.name, r.caller_locality) for r in message.removed_plans}
    gone_plans |= {(p.namespace, p.service, p.caller_locality) for p in changes.plans}
    update = replace(
        changes,
        imports=[i for i in held.update.imports if i.key not in gone_imports] + changes.imports,
        plans=[
            p
            for p in held.update.plans
            if (p.namespace, p.service, p.caller_locality) not in gone_plans
        ]
        + changes.plans,
    )
    if policies is held.policies:
        return HeldUpdate(_with_held_policies(update, held.update), policies)
    return HeldUpdate(_with_policies(update, policies), policies)


def _service_key(m: sync_pb2.ServiceReport) -> tuple[str, str]:
    return (m.namespace, m.name)


def report_delta(
    before: sync_pb2.ClusterReport, after: sync_pb2.ClusterReport
) -> sync_pb2.ClusterReport:
    """``after`` (whole, numbered) as a delta on ``before`` (the stream's previous report)."""
    out = sync_pb2.ClusterReport()
    out.CopyFrom(after)
    out.base_report = before.report_version
    services, gone = _keyed_delta(before.services, after.services, _service_key)
    del out.services[:]
    out.services.extend(services)
    out.removed_services.extend(sync_pb2.ServiceRef(namespace=ns, name=name) for ns, name in gone)
    return out


@dataclass(frozen=True)
class HeldReport:
    """What the controller holds of a stream: the report number it applied last and the
    validated whole report."""

    version: int
    report: ClusterReport


def merge_report(held: HeldReport | None, message: sync_pb2.ClusterReport) -> HeldReport:
    """The whole validated report after ``message``: itself when whole, else ``held`` with
    the delta applied; only the services the message carries are validated.

    Raises:
        UpdateGapError: a delta on a report the controller does not hold.
        InvalidDocumentError: a field of the message is invalid (names it).
    """
    partial = convert.report_from_proto(message)
    if not message.base_report:
        return HeldReport(message.report_version, partial)
    if held is None or held.version != message.base_report:
        have = f"report {held.version}" if held is not None else "no report"
        raise UpdateGapError(
            f"report {message.report_version} is a delta on report {message.base_report},"
            f" the controller holds {have}"
        )
    gone = {(r.namespace, r.name) for r in message.removed_services}
    gone |= {s.key for s in partial.services}
    services = [s for s in held.report.services if s.key not in gone] + partial.services
    return HeldReport(message.report_version, partial.model_copy(update={"services": services}))
