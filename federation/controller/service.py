"""The federation's rules, on the controller's state: what the REST API (and anything else)
calls to change or read the federation. No HTTP here.

Every change goes through one method that validates (nothing is stored when anything is
invalid), stores in one transaction and recomputes every cluster's view
(:meth:`federation.controller.hub.SyncHub.recompute`), so no caller can forget a step.
Errors are :mod:`federation.errors` classes; the API maps them to status codes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from federation.controller.hub import SyncHub
from federation.controller.imports import gateway_of
from federation.controller.intermediates import DEFAULT_INTERMEDIATE_TTL
from federation.controller.store import ClusterRecord, DocumentKey, StoreError
from federation.controller.trust_federation import FEDERATION_KINDS, stored_federations
from federation.controller.views import POLICY_KINDS
from federation.durations import rfc3339
from federation.errors import (
    ConflictError,
    InvalidDocumentError,
    NotFoundError,
    UnauthenticatedError,
)
from federation.model.authz import AuthorizationPolicy
from federation.model.documents import validate_documents
from federation.model.gateway_api import GRPCRoute, HTTPRoute, ReferenceGrant, route_status
from federation.model.istio_networking import DestinationRule, VirtualService
from federation.model.istio_sidecar import IstioSidecar
from federation.model.istio_translate import label
from federation.model.peer_authentication import PeerAuthentication
from federation.model.policy import TrafficPolicy
from federation.model.service import ServiceExport
from federation.model.service_entry import ServiceEntry
from federation.model.translated import effective_traffic_policies
from federation.model.trust_federation import TrustDomainFederation
from federation.sync.join_token import join_token_secret, new_join_token, token_digest
from federation.sync.messages import ClusterReport
from federation.traffic import ERROR_CLASSES
from trust import pki
from trust.authority import RootAuthority
from trust.errors import InvalidCertificateError

log = logging.getLogger(__name__)

#: Kinds the controller stores (others are applied to a cluster's control plane).
CONTROLLER_KINDS: tuple[str, ...] = ("ServiceExport", *POLICY_KINDS, *FEDERATION_KINDS)


@dataclass(frozen=True, slots=True)
class NewToken:
    """A join token as handed out once (the store keeps only its SHA-256)."""

    cluster: str
    token: str
    expires_at: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class JoinGrant:
    """What a joining control plane gets: its intermediate CA chain (PEM) and the bundle."""

    cluster: str
    certificate_chain_pem: str
    trust_bundle_pem: str


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """Names (``kind/ns/name``) of documents that changed and of those already as applied."""

    applied: list[str]
    unchanged: list[str]


def document_name(key: DocumentKey) -> str:
    """``servicexport/demo/echo (cluster a)`` style name of a stored document."""
    kind, ns, name, cluster = key
    return f"{kind.lower()}/{ns}/{name}" + (f" (cluster {cluster})" if cluster else "")


def document_key(doc: dict[str, Any]) -> DocumentKey:
    """The store key of a document (``cluster`` only for a meshfed ServiceExport)."""
    meta = doc.get("metadata", {})
    spec = doc.get("spec") or {}
    cluster = str(spec.get("cluster") or "") if doc.get("kind") == "ServiceExport" else ""
    return (
        str(doc.get("kind")),
        str(meta.get("namespace", "default")),
        str(meta.get("name")),
        cluster,
    )


class FederationService:
    """See the module docstring.

    Args:
        hub: the sync hub (holds the store and pushes views to control planes).
        root: returns the root authority that signs cluster intermediates.
        bundle_pem: returns the current trust bundle (PEM).
        root_pin: returns the SHA-256 (hex) of the newest root certificate, which join tokens
            carry (:mod:`federation.sync.join_token`).
    """

    def __init__(
        self,
        hub: SyncHub,
        root: Callable[[], RootAuthority],
        bundle_pem: Callable[[], bytes],
        root_pin: Callable[[], str],
        intermediate_ttl: timedelta = DEFAULT_INTERMEDIATE_TTL,
        trust_domain: str = "",
    ) -> None:
        self.trust_domain = trust_domain
        self.intermediate_ttl = intermediate_ttl
        self.hub = hub
        self.store = hub.store
        self._root = root
        self._bundle_pem = bundle_pem
        self._root_pin = root_pin

    def _new_token(self) -> tuple[str, str]:
        """``(token, digest of its secret)``."""
        token = new_join_token(self._root_pin())
        return token, token_digest(join_token_secret(token))

    # -- membership -----------------------------------------------------------------------

    def add_cluster(self, record: ClusterRecord, token_ttl_s: float) -> NewToken:
        """Register a member (``record.created_at`` is set to now) with a one-time token.

        Raises:
            ConflictError: the name is taken.
        """
        now = self.hub.clock()
        token, digest = self._new_token()
        record = ClusterRecord(
            record.name, record.locality, record.network, record.gateway, record.provider, now
        )
        try:
            self.store.add_cluster(record, digest, now + token_ttl_s)
        except StoreError as err:
            raise ConflictError(str(err)) from err
        log.info("cluster %s registered (token valid %ds)", record.name, token_ttl_s)
        return NewToken(record.name, token, now + token_ttl_s)

    def new_token(self, cluster: str, token_ttl_s: float) -> NewToken:
        """A fresh join token for a member (re-join after losing its state).

        Raises:
            NotFoundError: no such member.
        """
        token, digest = self._new_token()
        expires = self.hub.clock() + token_ttl_s
        self.store.new_token(cluster, digest, expires)
        return NewToken(cluster, token, expires)

    def remove_cluster(self, cluster: str) -> None:
        """Withdraw a member: its stream is closed and its imports and endpoints disappear
        from every other cluster.

        Raises:
            NotFoundError: no such member.
        """
        self.store.remove_cluster(cluster)
        self.hub.close_stream(cluster, f"cluster {cluster!r} was removed from the federation")
        self.hub.recompute()
        log.info("cluster %s removed", cluster)

    def join(self, cluster: str, token: str, csr_pem: str) -> JoinGrant:
        """Sign a joining cluster's intermediate CA; the join token is checked before anything
        is signed and used up on success only.

        Raises:
            UnauthenticatedError: unknown cluster, or an invalid, used or expired token.
            trust.errors.InvalidCertificateError: the CSR does not parse.
            trust.errors.SigningRefusedError: the CSR is for another trust domain (and so on).
        """
        refused = UnauthenticatedError("invalid, used or expired join token for this cluster")
        digest = token_digest(join_token_secret(token))
        try:
            self.store.cluster(cluster)
            self.store.check_token(digest, cluster, self.hub.clock())
        except (NotFoundError, StoreError) as err:
            log.warning("join of %s refused before signing: %s", cluster, err)
            raise refused from err
        csr = pki.load_csr(csr_pem.encode(), source="request body: csr")
        chain = self._root().sign_intermediate_csr(csr, cluster, self.intermediate_ttl)
        log.info(
            "root signed an intermediate CA for %s (serial %x)", cluster, chain[0].serial_number
        )
        chain_pem = pki.certificates_to_pem(list(chain)).decode()
        try:
            self.store.join(digest, cluster, chain_pem, self.hub.clock())
        except StoreError as err:
            log.warning("join of %s refused: %s", cluster, err)
            raise refused from err
        log.info("cluster %s joined", cluster)
        self.hub.recompute()
        return JoinGrant(cluster, chain_pem, self._bundle_pem().decode())

    def trust_bundle_pem(self) -> str:
        """The federation's trust bundle (PEM, every root)."""
        return self._bundle_pem().decode()

    def clusters(self) -> list[dict[str, Any]]:
        """Every member with its state, as ``GET /v1/clusters`` returns it."""
        states = self.hub.states()
        connected = self.hub.connected()
        reports = self.store.reports()
        out = []
        for c in self.store.clusters():
            report = reports.get(c.name) or ClusterReport(cluster=c.name)
            out.append(
                {
                    "name": c.name,
                    "locality": c.locality,
                    "network": c.network,
                    # as its control plane reports it (a load balancer's), else as registered
                    "gateway": gateway_of(c, report),
                    "registeredGateway": c.gateway,
                    # zone -> its own gateway (zone-local gateways), as reported
                    "zoneGateways": dict(sorted(report.zone_gateways.items())),
                    "provider": c.provider,
                    "state": states.get(c.name, "Pending"),
                    "connected": c.name in connected,
                    "joinedAt": rfc3339(c.joined_at),
                    "lastHeartbeat": rfc3339(c.last_heartbeat),
                    "services": len(report.services),
                    "exports": sorted(report.exports),
                    "rttMs": report.rtt_ms,
                    "intermediate": _validity(c.intermediate_pem),
                }
            )
        return out

    # -- documents ------------------------------------------------------------------------

    def validate(self, models: Sequence[BaseModel]) -> list[tuple[DocumentKey, dict[str, Any]]]:
        """Validate documents (parsed and schema-checked by
        :func:`~federation.model.documents.load_documents`) for the controller; every
        problem is collected.

        Raises:
            InvalidDocumentError: schema problems, a kind the controller does not store, a
                ServiceExport without a member ``spec.cluster``, a second TrafficPolicy for
                one host, a split or http route naming a non-member. ``problems`` lists
                them all.
        """
        members = {c.name for c in self.store.clusters()}
        problems: list[str] = []
        out: list[tuple[DocumentKey, dict[str, Any]]] = []
        hosts = {  # one TrafficPolicy per service: host -> the policy's namespace/name
            p.spec.host: f"{p.metadata.namespace}/{p.metadata.name}"
            for p in self.hub.policies.read()  # the stored ones that validate, kept parsed
            if isinstance(p, TrafficPolicy)
        }
        member_list = ", ".join(sorted(members)) or "none"
        crl_problem = ""
        if any(isinstance(m, TrustDomainFederation) for m in models):
            self.hub.root_crl_retry()  # a failed read is not held against the user's apply
            crl_problem = self.hub.root_crl_problem() if self.hub.root_crl() is None else ""
        federated = {  # foreign trust domain -> the document federating with it
            d.spec.trust_domain: f"{d.kind} {d.metadata.name}"
            for d in stored_federations(self.store)
        }
        for i, m in enumerate(models, start=1):
            kind = str(getattr(m, "kind", "?"))
            meta = getattr(m, "metadata", None)
            where = (
                f"request body: document {i} ({kind} {meta.namespace}/{meta.name})" if meta else ""
            )
            problem = _problem(m, kind, members, member_list, hosts) or _federation_problem(
                m, self.trust_domain, federated, crl_problem
            )
            if problem:
                problems.append(f"{where}: {problem}")
                continue
            # Istio's documents are kept as written (no defaults added), as ``get`` shows them
            as_written = isinstance(
                m,
                AuthorizationPolicy
                | VirtualService
                | DestinationRule
                | PeerAuthentication
                | HTTPRoute
                | GRPCRoute
                | ReferenceGrant
                | IstioSidecar
                | ServiceEntry
                | TrustDomainFederation,
            )
            body = m.model_dump(
                by_alias=True, mode="json", exclude_none=True, exclude_unset=as_written
            )
            out.append((document_key(body), body))
        if problems:
            raise InvalidDocumentError(problems[0], problems=problems)
        return out

    def _check_translation(
        self,
        put: Sequence[tuple[DocumentKey, BaseModel]] = (),
        removed: Sequence[DocumentKey] = (),
    ) -> None:
        """Refuse a change after which Istio's VirtualServices and DestinationRules would
        no longer make TrafficPolicies (a route to a subset no DestinationRule defines, two
        VirtualServices for one host, a host with a TrafficPolicy too ...): the problems the
        stored policies have after the change and did not have before.

        Raises:
            InvalidDocumentError: naming the documents, the field and the reason.
        """
        stored: dict[DocumentKey, BaseModel] = {
            (str(getattr(m, "kind", "")), m.metadata.namespace, m.metadata.name, ""): m  # type: ignore[attr-defined]
            for m in self.hub.policies.read()
        }
        before = {str(p) for p in effective_traffic_policies(list(stored.values()))[1]}
        after = {k: m for k, m in stored.items() if k not in set(removed)}
        after.update(put)
        problems = [
            f"request body: {p}"
            for p in effective_traffic_policies(list(after.values()))[1]
            if str(p) not in before
        ]
        if problems:
            raise InvalidDocumentError(problems[0], problems=problems)

    def apply_documents(self, models: Sequence[BaseModel], *, dry_run: bool = False) -> ApplyResult:
        """Validate every document, then store the changed ones in one transaction (or none)
        and recompute; with ``dry_run``, only say which would change.

        Raises:
            InvalidDocumentError: see :meth:`validate`; nothing is stored.
        """
        docs = self.validate(models)
        self._check_translation(put=list(zip((k for k, _ in docs), models, strict=True)))
        current = self.store.stored_bodies([k for k, _ in docs])
        changed = [(k, b) for k, b in docs if current.get(k) != b]
        if not dry_run:
            self.store.put_documents(changed, self.hub.clock())
            self.hub.recompute()
        return ApplyResult(
            applied=[document_name(k) for k, _ in changed],
            unchanged=[document_name(k) for k, b in docs if (k, b) not in changed],
        )

    def delete_documents(self, models: Sequence[BaseModel]) -> list[str]:
        """Delete the documents named (kind, namespace, name and, for exports, cluster) in
        one transaction and recompute; returns the names of those that existed.

        Raises:
            InvalidDocumentError: see :meth:`validate`; nothing is deleted.
        """
        docs = self.validate(models)
        self._check_translation(removed=[k for k, _ in docs])
        removed = self.store.delete_documents([k for k, _ in docs])
        self.hub.recompute()
        return [document_name(k) for k in removed]

    def exports(self) -> dict[str, Any]:
        """Every export with its MCS condition, and the ServiceExports applied here."""
        return {
            "exports": [
                {
                    "cluster": e.cluster,
                    "namespace": e.namespace,
                    "service": e.service,
                    "condition": e.condition,
                    "message": e.message,
                    "since": rfc3339(e.first_seen),
                }
                for e in self.hub.exports
            ],
            "documents": self.store.documents("ServiceExport"),
        }

    def trust_domains(self) -> list[dict[str, Any]]:
        """Every federation with another trust domain: its endpoint and the bundle in force
        (:func:`federation.controller.trust_federation.status_rows`), times in RFC 3339."""
        times = ("rootsExpireAt", "fetchedAt", "attemptedAt", "nextAt")
        return [{**r, **{k: rfc3339(r[k]) for k in times}} for r in self.hub.trust_federations()]

    def federated_domains(self) -> list[str]:
        """The foreign trust domains a document federates with."""
        return sorted({d.spec.trust_domain for d in stored_federations(self.store)})

    def remove_trust_domain(self, domain: str) -> list[str]:
        """Delete every document that federates with ``domain`` and recompute (its bundle
        leaves every cluster's next update); returns their names.

        Raises:
            NotFoundError: no document federates with ``domain``.
        """
        keys = [
            (d.kind, d.metadata.namespace, d.metadata.name, "")
            for d in stored_federations(self.store)
            if d.spec.trust_domain == domain
        ]
        if not keys:
            raise NotFoundError(f"no federation with trust domain {domain!r}")
        removed = self.store.delete_documents(keys)
        self.hub.recompute()
        return [document_name(k) for k in removed]

    def imports(self) -> list[dict[str, Any]]:
        """Per importing cluster, each ServiceImport the controller sends it (documents)."""
        return [
            {"cluster": cluster, **imp.model_dump(by_alias=True, mode="json", exclude_none=True)}
            for cluster in sorted(self.hub.imports)
            for imp in self.hub.imports[cluster]
        ]

    def policies(self) -> list[dict[str, Any]]:
        """Every stored policy document as applied; HTTPRoutes and GRPCRoutes with the
        ``status`` Gateway API defines (:func:`federation.model.gateway_api.route_status`:
        ``Accepted``, and ``ResolvedRefs`` against the services member clusters export)."""
        docs = [d for k in POLICY_KINDS for d in self.store.documents(k)]
        routes = [d for d in docs if d.get("kind") in ("HTTPRoute", "GRPCRoute")]
        if not routes:
            return docs
        known = {(e.namespace, e.service) for e in self.hub.exports if e.condition == "Exported"}
        models = self.hub.policies.read()
        problems = effective_traffic_policies(models)[1]
        out = []
        for d in docs:
            if d not in routes:
                out.append(d)
                continue
            [model] = validate_documents([d], source="stored")
            assert isinstance(model, HTTPRoute | GRPCRoute)
            mine = [p.message for p in problems if label(model) in p.documents]
            out.append({**d, "status": route_status(model, known, mine)})
        return out

    def traffic(self, window_s: float, by: Sequence[str]) -> dict[str, Any]:
        """The federation's traffic over about the last ``window_s`` seconds, as the control
        planes counted it (:meth:`federation.controller.traffic.TrafficHistory.rates`).

        Returns:
            ``windowS`` (the window used, s; 0 before two reports), ``by`` (the grouping
            labels), ``edges`` (rows of :func:`federation.traffic.edge_rates`), ``totals``
            (per source cluster and service since its control plane started: ``requests``,
            ``errors``, ``egressUsd``), ``gatewayHops`` (rows of
            :func:`federation.traffic.hop_rates`: what the east-west gateways carried to
            each sidecar's zone, and its $/hour) and ``priceTables`` (``cloud``,
            ``source``, ``readOn`` of the tables in force).
        """
        now = time.monotonic()
        used, rows = self.hub.traffic.rates(window_s, now, by)
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        for table in self.hub.traffic.latest():
            for edge, c in table.edges.items():
                key = (edge.source_cluster, edge.destination_service)
                t = totals.setdefault(
                    key,
                    {
                        "sourceCluster": key[0],
                        "destinationService": key[1],
                        "requests": 0,
                        "errors": 0,
                        "egressUsd": 0.0,
                    },
                )
                t["requests"] += c.requests
                t["egressUsd"] += c.egress_usd
                if edge.response_code_class in ERROR_CLASSES:
                    t["errors"] += c.requests
        return {
            "windowS": round(used, 3),
            "by": list(by),
            "edges": rows,
            "totals": [totals[k] for k in sorted(totals)],
            "gatewayHops": self.hub.traffic.hop_rates(window_s, now),
            "priceTables": [
                {"cloud": cloud, "source": t.source, "readOn": t.read_on}
                for cloud, t in sorted(self.hub.price_tables().items())
            ],
        }

    def cost(self, since: str) -> dict[str, Any]:
        """``meshfed cost report``'s answer for ``since`` (:func:`federation.cost_report.window`
        on the controller's clock): :func:`federation.cost_report.report` of the traffic
        ledger at the price tables in force.

        Raises:
            ValueError: a bad ``since`` (the message says why).
        """
        from federation.cost_report import report

        first, last, rows = self._ledger_rows(since)
        return report(rows, self.hub.price_tables(), first, last)

    def ledger(self, since: str) -> dict[str, Any]:
        """The traffic ledger's rows for ``since`` (as :meth:`cost`): ``{"since", "until",
        "rows": [{"day", <LEDGER_LABELS>..., "requests", "requestBytes", "responseBytes",
        "usd"}]}`` (``meshfed cost reconcile`` matches them with a bill).

        Raises:
            ValueError: a bad ``since``.
        """
        from federation.traffic_days import ledger_rows_to_json

        first, last, rows = self._ledger_rows(since)
        return {"since": first, "until": last, "rows": ledger_rows_to_json(rows)}

    def _ledger_rows(self, since: str) -> tuple[str, str, list[Any]]:
        """The first and last UTC day of ``since`` on the controller's clock and the
        ledger's rows between them, this replica's unwritten tables written first.

        Raises:
            ValueError: a bad ``since``.
        """
        from federation.cost_report import window

        first, last = window(since, self.hub.clock())
        self.hub.feed.flush()
        return first, last, self.hub.store.traffic_days(first, last)


def _problem(m: Any, kind: str, members: set[str], member_list: str, hosts: dict[str, str]) -> str:
    """Why the controller cannot take one valid document ("" when it can)."""
    if kind not in CONTROLLER_KINDS:
        return (
            f"kind: the controller stores {', '.join(CONTROLLER_KINDS)};"
            f" apply a {kind} to its cluster's control plane (meshfed apply --controlplane URL)"
        )
    if isinstance(m, ServiceExport):
        if m.spec.cluster is None:
            return (
                "spec.cluster: required when applied to the controller"
                " (apiVersion meshfed.io/v1alpha1); the multicluster.x-k8s.io form is"
                " applied to the exporting cluster's control plane"
            )
        if m.spec.cluster not in members:
            return (
                f"spec.cluster: {m.spec.cluster!r} is not a member cluster (members: {member_list})"
            )
    if isinstance(m, TrafficPolicy):
        name = f"{m.metadata.namespace}/{m.metadata.name}"
        owner = hosts.setdefault(m.spec.host, name)
        if owner != name:
            return (
                f"spec.host: {m.spec.host} already has TrafficPolicy {owner}"
                " (one policy per service: edit that one)"
            )
        unknown = sorted(set(m.spec.split or {}) - members)
        if unknown:
            return (
                f"spec.split: {', '.join(map(repr, unknown))} not a member cluster"
                f" (members: {member_list})"
            )
        unknown = sorted(m.spec.clusters_named() - members)
        if unknown:
            return (
                f"spec.http: {', '.join(map(repr, unknown))} not a member cluster"
                f" (members: {member_list})"
            )
    return ""


def _federation_problem(m: Any, own: str, federated: dict[str, str], crl_problem: str) -> str:
    """Why the controller cannot take a TrustDomainFederation ("" when it can): it names
    the federation's own trust domain, or one another document already federates with
    (``federated``: domain -> that document, updated with ``m``'s), or there is no root CRL
    (``crl_problem``: why; the proxies' SPIFFE validator needs one per root)."""
    if not isinstance(m, TrustDomainFederation):
        return ""
    if crl_problem:
        return f"kind: federating with another trust domain needs the root's CRL: {crl_problem}"
    domain = m.spec.trust_domain
    if domain == own:
        return f"spec.trustDomain: {domain} is this federation's own trust domain"
    this = f"{m.kind} {m.metadata.name}"
    other = federated.setdefault(domain, this)
    if other != this:
        return f"spec.trustDomain: {other} already federates with {domain} (edit that one)"
    return ""


def _validity(pem: str | None) -> dict[str, str | None] | None:
    """``notBefore`` / ``notAfter`` (RFC 3339) of a joined cluster's intermediate (the first
    certificate of its chain); None before it joined or when it cannot be read."""
    if not pem:
        return None
    try:
        [(_, not_before, not_after), *_] = pki.validity(pem.encode(), source="intermediate")
    except (InvalidCertificateError, ValueError):
        return None
    return {
        "notBefore": rfc3339(not_before.timestamp()),
        "notAfter": rfc3339(not_after.timestamp()),
    }
