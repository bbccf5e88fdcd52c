"""Foreign trust domains' bundles: fetched from their SPIFFE bundle endpoints on the leader,
kept in the controller's store, and sent to every member cluster.

Every ``TrustDomainFederation`` (or SPIRE ``ClusterFederatedTrustDomain``) document applied
to the controller names a foreign trust domain and its bundle endpoint
(:mod:`federation.model.trust_federation`). For each, the store holds one
``FederatedBundle`` state document (namespace ``meshfed-system``, named after the domain):
the latest bundle (SPIFFE JSON; the document's ``trustDomainBundle`` until the first fetch),
where it came from, when it was fetched, the last attempt and its error. A replica's restart
or a leader change keeps it; every replica reads it.

The leader fetches each bundle at its ``spiffe_refresh_hint``
(:func:`trust.federation.next_refresh_s`) and, after a failure, at the next interval,
keeping the bundle it holds: a bundle that cannot be refreshed stays in force until its roots
expire (:func:`bundles_in_force` leaves expired roots out), and shows in ``meshfed get
trustdomains`` and the metrics. Deleting the document ends the relationship at the
next recompute (SPIFFE_Federation.md 6.3).

The bundles of different domains are never merged (section 4.2): updates carry one PEM
bundle per domain.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from federation.controller.bundle_fetch import fetch_bundle
from federation.controller.roles import Replica
from federation.controller.store import ControllerStore
from federation.errors import BundleFetchError
from federation.model.trust_federation import TrustDomainFederation, TrustDomainFederationSpec
from trust import pki
from trust.bundle import TrustBundle
from trust.errors import InvalidCertificateError, TrustError
from trust.federation import BundleEndpoint, is_newer, next_refresh_s
from trust.revocation import crl_next_update, crl_renew_at
from trust.spiffe import TrustDomain

log = logging.getLogger(__name__)

#: Kinds of the documents that federate with another trust domain.
FEDERATION_KINDS: tuple[str, ...] = ("TrustDomainFederation", "ClusterFederatedTrustDomain")
#: The store's kind and namespace of the per-domain state documents.
STATE_KIND = "FederatedBundle"
STATE_NAMESPACE = "meshfed-system"
#: Refresh interval (s) until a bundle gave its own hint.
DEFAULT_REFRESH_S = 300.0

Fetch = Callable[[BundleEndpoint, TrustBundle | None], Awaitable[TrustBundle]]


@dataclass(frozen=True, slots=True)
class BundleState:
    """What the controller holds for one foreign trust domain.

    Attributes:
        trust_domain: the foreign domain.
        bundle: the latest bundle (SPIFFE JSON), None before any.
        source: ``endpoint`` (fetched) or ``trustDomainBundle`` (the document's).
        fetched_at: Unix s of the last successful fetch (None: never).
        attempted_at: Unix s of the last attempt (None: never).
        error: the last attempt's error ("" after a success).
        next_at: Unix s of the next attempt.
        failures: attempts failed in a row.
        spec_key: :func:`spec_key` of the document this state was made for: a state of
            another version of the document (a new URL, profile, endpoint ID or bundle given
            by the operator) is not used (:func:`current_state`).
    """

    trust_domain: str
    bundle: str | None = None
    source: str = "trustDomainBundle"
    fetched_at: float | None = None
    attempted_at: float | None = None
    error: str = ""
    next_at: float = 0.0
    failures: int = 0
    spec_key: str = ""

    def parsed(self) -> TrustBundle | None:
        """:attr:`bundle` parsed (None when absent or unreadable, which is logged)."""
        if not self.bundle:
            return None
        try:
            return _parsed_bundle(self.trust_domain, self.bundle)
        except (InvalidCertificateError, ValueError) as err:
            log.error("stored bundle of %s is unreadable: %s", self.trust_domain, err)
            return None

    def to_document(self) -> dict[str, Any]:
        """The state as the store keeps it."""
        return {
            "kind": STATE_KIND,
            "metadata": {"name": self.trust_domain, "namespace": STATE_NAMESPACE},
            "state": {
                "trustDomain": self.trust_domain,
                "bundle": self.bundle,
                "source": self.source,
                "fetchedAt": self.fetched_at,
                "attemptedAt": self.attempted_at,
                "error": self.error,
                "nextAt": self.next_at,
                "failures": self.failures,
                "specKey": self.spec_key,
            },
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> BundleState:
        s = doc.get("state") or {}
        return cls(
            trust_domain=str(s.get("trustDomain") or doc["metadata"]["name"]),
            bundle=s.get("bundle"),
            source=str(s.get("source", "trustDomainBundle")),
            fetched_at=s.get("fetchedAt"),
            attempted_at=s.get("attemptedAt"),
            error=str(s.get("error") or ""),
            next_at=float(s.get("nextAt") or 0.0),
            failures=int(s.get("failures") or 0),
            spec_key=str(s.get("specKey") or ""),
        )


def stored_federations(store: ControllerStore) -> list[TrustDomainFederation]:
    """The stored federation documents, oldest first (one stored by an older release that no
    longer validates is logged and left out)."""
    out = []
    for kind in FEDERATION_KINDS:
        for doc in store.documents(kind):
            try:
                out.append(_federation(json.dumps(doc, sort_keys=True)))
            except ValidationError as err:
                log.error("stored %s %s left out: %s", kind, doc.get("metadata"), err)
    return out


def federations(store: ControllerStore) -> dict[str, TrustDomainFederationSpec]:
    """Foreign trust domain -> the spec of the (first) document that federates with it."""
    out: dict[str, TrustDomainFederationSpec] = {}
    for doc in stored_federations(store):
        out.setdefault(doc.spec.trust_domain, doc.spec)
    return out


# Every recompute reads the federations and their states: an unchanged document or bundle is
# not validated and parsed again (certificates, endpoint parameters) -- as StoredPolicies does.
@functools.lru_cache(maxsize=256)
def _federation(text: str) -> TrustDomainFederation:
    return TrustDomainFederation.model_validate_json(text)


@functools.lru_cache(maxsize=256)
def _parsed_bundle(domain: str, spiffe_json: str) -> TrustBundle:
    return TrustBundle.from_spiffe_json(TrustDomain(domain), spiffe_json)


@functools.lru_cache(maxsize=256)
def _bootstrap(spec: TrustDomainFederationSpec) -> TrustBundle | None:
    return spec.bootstrap_bundle()


def states(store: ControllerStore) -> dict[str, BundleState]:
    """Foreign trust domain -> its stored state."""
    return {
        s.trust_domain: s
        for s in (BundleState.from_document(d) for d in store.documents(STATE_KIND))
    }


def spec_key(spec: TrustDomainFederationSpec) -> str:
    """A digest of what a state depends on in ``spec``: endpoint URL, profile, endpoint
    SPIFFE ID and the bundle given (SHA-256, hex)."""
    profile = spec.bundle_endpoint_profile
    text = json.dumps(
        [
            spec.bundle_endpoint_url,
            profile.type,
            profile.endpoint_spiffe_id,
            (spec.trust_domain_bundle or "").strip(),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def current_state(spec: TrustDomainFederationSpec, state: BundleState | None) -> BundleState:
    """``state`` when it was made for this version of ``spec``; else a fresh one: the
    document's bundle in force and a fetch due now -- an operator who changes the endpoint
    or gives a bundle by hand is not kept waiting for the old schedule, and a bundle given
    by hand is the latest until a fetch replaces it (SPIFFE_Federation.md 4.2)."""
    key = spec_key(spec)
    if state is not None and state.spec_key == key:
        return state
    return BundleState(spec.trust_domain, spec_key=key)


def held_bundle(spec: TrustDomainFederationSpec, state: BundleState | None) -> TrustBundle | None:
    """The bundle in force for ``spec``'s domain: the last one fetched, else the document's
    ``trustDomainBundle``, else None (nothing trusted yet)."""
    fetched = current_state(spec, state).parsed()
    return fetched if fetched is not None else _bootstrap(spec)


def unexpired(bundle: TrustBundle, now: float) -> TrustBundle:
    """``bundle`` without the roots that expired by ``now`` (Unix s)."""
    at = datetime.fromtimestamp(now, UTC)
    return replace(bundle, roots=tuple(r for r in bundle.roots if r.not_valid_after_utc > at))


def bundles_in_force(
    specs: Mapping[str, TrustDomainFederationSpec],
    held: Mapping[str, BundleState],
    now: float,
) -> dict[str, bytes]:
    """Foreign trust domain -> PEM of its unexpired roots, for every federation whose bundle
    holds one (what every member cluster is sent). Pure."""
    out: dict[str, bytes] = {}
    for domain, spec in sorted(specs.items()):
        bundle = held_bundle(spec, held.get(domain))
        if bundle is not None:
            live = unexpired(bundle, now)
            if live.roots:
                out[domain] = live.to_pem()
    return out


def status_rows(
    specs: Mapping[str, TrustDomainFederationSpec],
    held: Mapping[str, BundleState],
    now: float,
    *,
    suspended: str = "",
) -> list[dict[str, Any]]:
    """One row per federation for ``GET /v1/trustdomains`` (``meshfed get trustdomains``):
    endpoint, profile, the bundle in force (roots, sequence, its
    earliest root expiry), last fetch, last error, next attempt; ``suspended``: why no
    foreign bundle is sent to the clusters at all (then none is in force). Pure."""
    rows = []
    for domain, spec in sorted(specs.items()):
        state = current_state(spec, held.get(domain))
        bundle = held_bundle(spec, state)
        live = unexpired(bundle, now) if bundle is not None else None
        expiry = min((r.not_valid_after_utc for r in live.roots), default=None) if live else None
        rows.append(
            {
                "trustDomain": domain,
                "bundleEndpointURL": spec.bundle_endpoint_url,
                "profile": spec.bundle_endpoint_profile.type,
                "endpointSPIFFEID": spec.bundle_endpoint_profile.endpoint_spiffe_id,
                "roots": len(live.roots) if live else 0,
                "sequence": bundle.sequence if bundle else None,
                "source": state.source,
                "rootsExpireAt": expiry.timestamp() if expiry else None,
                "fetchedAt": state.fetched_at,
                "attemptedAt": state.attempted_at,
                "error": state.error,
                "failures": state.failures,
                "nextAt": state.next_at or None,
                "inForce": bool(live and live.roots) and not suspended,
                "suspended": suspended,
            }
        )
    return rows


def _endpoint_bundle(
    endpoint: BundleEndpoint,
    held: TrustBundle | None,
    own: TrustBundle,
    others: Callable[[str], TrustBundle | None],
) -> TrustBundle | None:
    """The bundle that authenticates an ``https_spiffe`` endpoint (section 5.2.2.4): the held
    bundle of a self-serving endpoint's domain, this federation's own for an endpoint in our
    domain, else the bundle held for the endpoint ID's domain through another federation."""
    if endpoint.endpoint_id is None:
        return None
    domain = endpoint.endpoint_id.trust_domain
    if domain == endpoint.trust_domain:
        return held
    if domain == own.trust_domain:
        return own
    return others(domain.name)


class BundleRefresher:
    """Fetches due foreign bundles on the leader (see the module docstring).

    Args:
        store: where federations and their states are kept.
        replica: this replica's role, read at each round (only the leader fetches).
        own_bundle: this federation's own trust bundle.
        changed: called after a bundle in force changed (the hub recomputes).
        fetch: fetches one bundle (:func:`federation.controller.bundle_fetch.fetch_bundle`).
        clock: Unix s.
        on_result: told ``(trust domain, ok)`` after each attempt (metrics).
    """

    def __init__(
        self,
        store: ControllerStore,
        replica: Callable[[], Replica],
        own_bundle: Callable[[], TrustBundle],
        changed: Callable[[], None],
        *,
        fetch: Fetch = fetch_bundle,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[str, bool], None] = lambda _d, _ok: None,
    ) -> None:
        self.store, self._replica, self._own = store, replica, own_bundle
        self._changed, self._fetch, self.clock, self._on_result = changed, fetch, clock, on_result

    async def refresh_due(self) -> list[str]:
        """Fetch every bundle whose attempt is due, store what came of it, and call
        ``changed`` when a bundle in force changed; returns the domains attempted. A
        follower does nothing."""
        if not self._replica().is_leader:
            return []
        specs, held = federations(self.store), states(self.store)
        now = self.clock()
        due = [d for d in specs if current_state(specs[d], held.get(d)).next_at <= now]
        changed = False
        for domain in due:
            state = current_state(specs[domain], held.get(domain))
            new = await self._attempt(specs[domain], state, specs, held)
            held[domain] = new
            self.store.put_documents(
                [((STATE_KIND, STATE_NAMESPACE, domain, ""), new.to_document())], self.clock()
            )
            changed = changed or new.bundle != state.bundle
        if changed:
            self._changed()
        return due

    async def _attempt(
        self,
        spec: TrustDomainFederationSpec,
        state: BundleState,
        specs: Mapping[str, TrustDomainFederationSpec],
        held: Mapping[str, BundleState],
    ) -> BundleState:
        endpoint = spec.endpoint()
        current = held_bundle(spec, state)

        def other(domain: str) -> TrustBundle | None:
            return held_bundle(specs[domain], held.get(domain)) if domain in specs else None

        now = self.clock()
        try:
            authenticator = _endpoint_bundle(endpoint, current, self._own(), other)
            fetched = await self._fetch(endpoint, authenticator)
        except BundleFetchError as err:
            self._on_result(spec.trust_domain, False)
            log.warning("bundle of %s not refreshed: %s", spec.trust_domain, err)
            hint = current.refresh_hint_s if current is not None and state.bundle else None
            return replace(
                state,
                attempted_at=now,
                error=str(err),
                failures=state.failures + 1,
                next_at=now + next_refresh_s(hint, DEFAULT_REFRESH_S),
            )
        self._on_result(spec.trust_domain, True)
        keep = state.parsed()
        if keep is not None and not is_newer(fetched, keep):
            log.warning(
                "%s served sequence %d, older than the held %d: kept the held bundle",
                endpoint.url,
                fetched.sequence,
                keep.sequence,
            )
            fetched = keep
        elif keep is None or fetched.fingerprints() != keep.fingerprints():
            log.info(
                "bundle of %s: %d roots, sequence %d",
                spec.trust_domain,
                len(fetched.roots),
                fetched.sequence,
            )
        return BundleState(
            trust_domain=spec.trust_domain,
            spec_key=state.spec_key,
            bundle=fetched.to_spiffe_json(),
            source="endpoint",
            fetched_at=now,
            attempted_at=now,
            error="",
            next_at=now + next_refresh_s(fetched.refresh_hint_s, DEFAULT_REFRESH_S),
            failures=0,
        )

    def forget_removed(self) -> None:
        """Drop the states of domains no document federates with any more."""
        gone = set(states(self.store)) - set(federations(self.store))
        if gone and self._replica().is_leader:
            self.store.delete_documents([(STATE_KIND, STATE_NAMESPACE, d, "") for d in gone])

    async def watch(self, interval_s: float = 1.0) -> None:
        """:meth:`refresh_due` every ``interval_s`` until cancelled (errors logged)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh_due()
                self.forget_removed()
            except Exception:  # the database went away: the next round retries
                log.exception("refreshing foreign trust bundles failed")


#: Why there is no root CRL when ``make`` has none to give.
NO_ROOT_CRL = (
    "a root in the bundle has no CRL here (a Vault or AWS Private CA root that is no longer"
    " the active one, while a root move is under way: retire it with meshfed trust"
    " rotate-root --retire-old), and the proxies' SPIFFE validator needs one per root"
)
#: After a failed read of a remote root's CRL, wait this long (s) before the next.
ROOT_CRL_RETRY_S = 30.0


class RootCrls:
    """The root CRLs sent with foreign bundles (:meth:`trust.store.TrustDirectory.root_crls`:
    Envoy's SPIFFE validator wants a CRL for the intermediates too), made again when a
    quarter of their validity has passed or the roots changed. A read that fails (Vault
    unreachable) keeps the CRLs held while they are valid and for the same roots, and is
    tried again after :data:`ROOT_CRL_RETRY_S`; :attr:`problem` says why there are none.

    Args:
        make: the CRLs of the current roots, or None when a root has none (raises
            :class:`trust.errors.TrustError` when a remote root's cannot be read).
        roots: the current roots' fingerprints.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        make: Callable[[], bytes | None],
        roots: Callable[[], tuple[str, ...]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make, self._roots, self._clock = make, roots, clock
        self._pem: bytes | None = None
        self._for: tuple[str, ...] = ()
        # when the held CRLs are due for renewal and when the first of them expires, read
        # once when they are made (this is asked on every sweep of the hub)
        self._renew_at = self._valid_until = datetime.min.replace(tzinfo=UTC)
        self._retry_at = 0.0
        self.problem = ""

    def retry_now(self) -> None:
        """Let the next :meth:`pem` read again at once after a failed read (a user's apply
        of a federation: the CRL may have been published since)."""
        self._retry_at = 0.0

    def _usable(self, roots: tuple[str, ...]) -> bool:
        """The held CRLs are for ``roots`` and none has expired."""
        return self._pem is not None and roots == self._for and pki.utcnow() < self._valid_until

    def pem(self) -> bytes | None:
        """The current roots' CRLs (PEM), or None (:attr:`problem` says why)."""
        roots = self._roots()
        stale = self._pem is None or roots != self._for or pki.utcnow() >= self._renew_at
        if not stale or self._clock() < self._retry_at:
            return self._pem if self._usable(roots) else None
        try:
            made = self._make()
            times = (crl_renew_at(made), crl_next_update(made)) if made is not None else None
        except TrustError as err:
            self._retry_at = self._clock() + ROOT_CRL_RETRY_S
            self.problem = f"the root's CRL cannot be read: {err}"
            log.warning("%s; retrying in %g s", self.problem, ROOT_CRL_RETRY_S)
            if not self._usable(roots):
                self._pem = None
            return self._pem
        self._pem, self._for, self._retry_at = made, roots, 0.0
        if times is not None:
            self._renew_at, self._valid_until = times
        self.problem = "" if made is not None else NO_ROOT_CRL
        return self._pem
