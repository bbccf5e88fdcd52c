"""The controller's server certificates: one X.509-SVID for
``spiffe://<td>/ns/meshfed-system/sa/controller`` with the DNS name
``controller.meshfed.internal``, issued by the controller's own intermediate CA, serving both
the gRPC sync service (mTLS) and the REST API (HTTPS). Renewed at half life, and as soon as
that intermediate is re-issued (``meshfed trust rotate-root``), so that a later
``--retire-old`` never leaves the controller serving a chain to a retired root.

Clients verify it against the federation's trust bundle and by that DNS name (whatever
address they dial), so the API needs no certificate from a public CA. The REST API's
certificate also names the IP address it listens on (:func:`certificate_addresses`), so that
a browser that trusts the bundle opens ``https://<address>/dashboard`` (docs/metrics.md).
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import grpc

from federation.serving import load_certificate, reload_when_due, server_context
from federation.sync.identity import (
    CONTROL_PLANE_NAMESPACE,
    CONTROLLER_CA_NAME,
    CONTROLLER_SERVER_NAME,
    CONTROLLER_SERVICE_ACCOUNT,
)
from trust import pki
from trust.authority import issue_svid
from trust.store import TrustDirectory
from trust.svid import X509Svid

log = logging.getLogger(__name__)

#: Lifetime of the controller's server certificate; renewed at half life.
SERVER_CERT_TTL = timedelta(hours=24)


def _past_half_life(svid: X509Svid) -> bool:
    half = svid.not_before + (svid.not_after - svid.not_before) / 2
    return pki.utcnow() >= half


def certificate_addresses(host: str) -> list[str]:
    """The IP SANs for a server listening on ``host``: the address itself when it is an IP
    literal other than the unspecified ``0.0.0.0`` / ``::``; nothing for a name (the
    intermediate's nameConstraints permit only ``controller.meshfed.internal`` among DNS
    names; IP SANs are not constrained, RFC 5280 section 4.2.1.10)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return []
    return [] if address.is_unspecified else [str(address)]


class ServerCertificate:
    """The certificate of one server (see the module docstring); ``what`` names it in logs."""

    def __init__(self, trust: TrustDirectory, what: str, addresses: Sequence[str] = ()) -> None:
        self._trust = trust
        self._what = what
        self._addresses = list(addresses)
        self.svid: X509Svid | None = None
        self._issuer = ""

    def _intermediate_fingerprint(self) -> str:
        return pki.fingerprint(self._trust.intermediate_certificate(CONTROLLER_CA_NAME))

    def issue(self) -> X509Svid:
        """A fresh certificate, kept as :attr:`svid`."""
        td = self._trust.trust_domain()
        self._issuer = self._intermediate_fingerprint()
        self.svid = issue_svid(
            self._trust.cluster_authority(CONTROLLER_CA_NAME),
            td.workload_id(CONTROL_PLANE_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT),
            SERVER_CERT_TTL,
            dns_names=[CONTROLLER_SERVER_NAME, *self._addresses],
        )
        return self.svid

    def due(self) -> bool:
        """True before the first issuance, from half life on, and when the controller's
        intermediate was re-issued (a root rotation)."""
        if self.svid is None or _past_half_life(self.svid):
            return True
        return self._intermediate_fingerprint() != self._issuer

    # -- gRPC (sync) ---------------------------------------------------------------------

    def grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        """A configuration with a fresh certificate; client certificates verified against
        the trust bundle."""
        svid = self.issue()
        return grpc.ssl_server_certificate_configuration(
            [(svid.private_key_pem(), svid.chain_pem())],
            root_certificates=self._trust.bundle().to_pem(),
        )

    def grpc_fetch(self) -> grpc.ServerCertificateConfiguration:  # None: keep the current
        """Called by gRPC before every handshake: a new configuration past half life."""
        if not self.due():
            return None  # type: ignore[return-value]
        log.info("renewing the %s certificate", self._what)
        return self.grpc_configuration()


class HttpsCertificate(ServerCertificate):
    """The REST API's certificate as an :class:`ssl.SSLContext` (key and chain written 0600
    to ``directory``, which :meth:`ssl.SSLContext.load_cert_chain` needs); :meth:`renew`
    reloads it in place, so new connections get the new certificate."""

    def __init__(self, trust: TrustDirectory, directory: Path, addresses: Sequence[str]) -> None:
        super().__init__(trust, "REST API", addresses)
        self._dir = directory
        self.context = server_context()

    def load(self) -> ssl.SSLContext:
        """Issue, write and load a certificate; the context to serve with."""
        svid = self.issue()
        load_certificate(self.context, self._dir, svid.private_key_pem(), svid.chain_pem())
        return self.context

    async def renew_forever(self) -> None:
        """Reload when :meth:`due`; until cancelled (:func:`federation.serving.reload_when_due`)."""
        await reload_when_due(self.due, self.load, "the REST API certificate")
