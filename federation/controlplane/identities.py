"""Workload identities for proxies: one X.509-SVID per SPIFFE ID, renewed at half life.

The control plane holds its cluster's intermediate CA (a :class:`trust.authority.
CertificateAuthority`), issues an SVID the first time a proxy with a given service account
connects, and keeps it fresh with a :class:`trust.rotation.SvidRotator`; each renewal calls
``on_renewed(spiffe_id)`` so the proxies using it get the new secret over SDS.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from federation.controlplane.generate.secrets import IdentityMaterial
from trust import pki
from trust.authority import CertificateAuthority, LocalCertificateAuthority, issue_svid
from trust.bundle import TrustBundle
from trust.rotation import SvidRotator
from trust.spiffe import SpiffeId
from trust.svid import X509Svid

log = logging.getLogger(__name__)


class IdentityManager:
    """Issues and renews SVIDs per SPIFFE ID.

    Args:
        ca: the cluster's intermediate CA.
        on_renewed: called with the SPIFFE ID (str) after every renewal after the first.
        ttl: SVID lifetime (default 24 h).
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        on_renewed: Callable[[str], None],
        *,
        ttl: timedelta = pki.DEFAULT_SVID_TTL,
    ) -> None:
        self._ca = ca
        self._on_renewed = on_renewed
        self._ttl = ttl
        self._rotators: dict[str, SvidRotator] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._material: dict[str, IdentityMaterial] = {}
        self._lock = asyncio.Lock()

    @property
    def trust_domain(self) -> str:
        """The CA's trust domain name."""
        return self._ca.trust_domain.name

    def spiffe_id(self, namespace: str, service_account: str) -> str:
        """``spiffe://<td>/ns/<ns>/sa/<sa>``, validated."""
        return str(self._ca.trust_domain.workload_id(namespace, service_account))

    def cached(self, spiffe_id: str) -> IdentityMaterial | None:
        """The current material of ``spiffe_id`` if it was issued before."""
        return self._material.get(spiffe_id)

    async def material(self, namespace: str, service_account: str) -> IdentityMaterial:
        """The identity material for a service account, issuing it on first use.

        Raises:
            trust.errors.TrustError: issuance failed (e.g. the CA expired).
        """
        sid = self.spiffe_id(namespace, service_account)
        async with self._lock:
            if sid not in self._rotators:
                spiffe = SpiffeId.parse(sid)

                async def issue() -> X509Svid:
                    return issue_svid(self._ca, spiffe, self._ttl)

                rotator = SvidRotator(issue)
                rotator.subscribe(functools.partial(self._store, sid))
                await rotator.rotate_once()
                self._rotators[sid] = rotator
                self._tasks[sid] = asyncio.create_task(rotator.run(), name=f"svid-rotator {sid}")
        return self._material[sid]

    def set_trust_bundle(self, bundle: TrustBundle) -> None:
        """Use a new trust bundle (the controller rotated roots): every proxy's validation
        context gets it through ``on_renewed``; new SVIDs chain the same way as before.

        Raises:
            TypeError: the CA cannot take a new bundle (it is not a local intermediate).
        """
        if not isinstance(self._ca, LocalCertificateAuthority):
            raise TypeError(f"{self._ca!r} does not take a new trust bundle")
        self._ca = replace(self._ca, bundle=bundle)
        for sid, material in list(self._material.items()):
            self._material[sid] = replace(material, bundle_pem=bundle.to_pem())
            self._on_renewed(sid)

    def _store(self, sid: str, svid: X509Svid) -> None:
        renewed = sid in self._material
        self._material[sid] = IdentityMaterial(
            spiffe_id=sid,
            chain_pem=svid.chain_pem(),
            key_pem=svid.private_key_pem(),
            bundle_pem=self._ca.trust_bundle().to_pem(),
        )
        if renewed:
            log.info("renewed SVID %s (valid until %s)", sid, svid.not_after.isoformat())
            self._on_renewed(sid)

    async def close(self) -> None:
        """Stop every rotator."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
