"""The control plane's certificate authority and its own server certificate.

The cluster's intermediate CA signs workload CSRs (:mod:`federation.ca.service`); it never
generates a workload's key. The control plane serves xDS and the certificate service with an
X.509-SVID of its own (``spiffe://<td>/ns/meshfed-system/sa/controlplane-<cluster>``, DNS
name ``controlplane.<cluster>.cluster.meshfed.internal``) issued by the same CA, re-issued at half
life and whenever the trust bundle changes; the trust bundle is also what client certificates
on the xDS port are verified against. gRPC asks for the configuration before every handshake
(``grpc.dynamic_ssl_server_credentials``), so new connections get the new certificate and
bundle without a restart.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc

from federation.ca.names import (
    SYSTEM_NAMESPACE,
    control_plane_server_name,
    control_plane_service_account,
)
from federation.serving import load_certificate, reload_when_due, server_context
from trust import pki
from trust.authority import LocalCertificateAuthority, issue_svid
from trust.bundle import TrustBundle
from trust.revocation import cluster_crl, crl_renew_at
from trust.svid import X509Svid

log = logging.getLogger(__name__)

#: Lifetime of the control plane's server certificate; renewed at half life.
SERVER_CERT_TTL = timedelta(hours=24)
#: Seconds the cluster keeps issuing under its previous intermediate certificate (same key)
#: after the controller re-signed it: every agent fetches the new trust bundle (they poll
#: every 5 s) before any SVID or server certificate chains to a new root.
RECHAIN_GRACE_S = 15.0


class ClusterAuthority:
    """The cluster's CA as the certificate service and the gRPC servers use it.

    Args:
        ca: the cluster's intermediate CA.
        cluster: the cluster's name (in the server certificate's names).
        on_bundle: called after :meth:`set_trust_bundle` with the new bundle's PEM.
        addresses: IP addresses the servers listen on, added as IP SANs for clients that
            verify the address they dial (gRPC's xDS bootstrap ``tls`` channel credentials
            cannot override the name).
        revocation: hand proxies the member clusters' CRLs (a joined control plane); a
            standalone one hands none (no revocation checks).
    """

    def __init__(
        self,
        ca: LocalCertificateAuthority,
        cluster: str,
        on_bundle: Callable[[bytes], None] | None = None,
        addresses: Sequence[str] = (),
        revocation: bool = False,
    ) -> None:
        self.revocation = revocation
        self._previous: LocalCertificateAuthority | None = None
        self._changed_at = 0.0
        self._ca = ca
        self._addresses = tuple(addresses)
        self._own_crl = b""
        self._crl_ca: LocalCertificateAuthority | None = None
        self._crl_renew_at = pki.utcnow()
        self._peer_crls: dict[str, str] = {}
        self._peer_cas: dict[str, str] = {}
        self._federated: dict[str, bytes] = {}
        self._root_crl = b""
        self.cluster = cluster
        self._on_bundle = on_bundle

    @property
    def trust_domain(self) -> str:
        """The CA's trust domain name."""
        return self._ca.trust_domain.name

    @property
    def server_name(self) -> str:
        """The DNS name in the server certificate."""
        return control_plane_server_name(self.cluster)

    def authority(self) -> LocalCertificateAuthority:
        """The CA SVIDs are issued with now: the previous intermediate certificate for
        :data:`RECHAIN_GRACE_S` after a re-sign, then the new one."""
        if self._previous is not None and time.monotonic() - self._changed_at < RECHAIN_GRACE_S:
            return self._previous
        return self._ca

    def bundle_pem(self) -> bytes:
        """The trust bundle as PEM."""
        return self._ca.trust_bundle().to_pem()

    def own_crl(self) -> bytes:
        """This cluster CA's CRL (PEM), re-issued when a quarter of its validity has passed
        or the CA certificate changed (:mod:`trust.revocation`)."""
        # called for every agent's bundle poll: compare the CA object and a stored time
        # rather than serialising certificates or parsing the CRL each time
        if self._crl_ca is not self._ca or pki.utcnow() >= self._crl_renew_at:
            self._own_crl = cluster_crl(self._ca)
            self._crl_ca = self._ca
            self._crl_renew_at = crl_renew_at(self._own_crl)
        return self._own_crl

    def set_member_crls(self, crls: dict[str, str]) -> None:
        """Every member cluster's CRL from the controller (cluster -> PEM)."""
        if crls != self._peer_crls:
            log.info("member CRLs: %s", ", ".join(sorted(crls)) or "none")
        self._peer_crls = dict(crls)

    def set_member_cas(self, cas: dict[str, str]) -> None:
        """Every member cluster's CA certificate from the controller (cluster -> PEM)."""
        if cas != self._peer_cas:
            log.info("member CAs: %s", ", ".join(sorted(cas)) or "none")
        self._peer_cas = dict(cas)

    def set_federation(self, bundles: dict[str, str], root_crl: str) -> None:
        """The foreign trust domains' bundles (domain -> PEM) and the roots' CRLs from the
        controller: proxies validate each foreign SVID with its domain's bundle only, and
        with federation on, Envoy's SPIFFE validator checks a CRL for every CA of a local
        chain, so the roots' CRLs join the members' (:meth:`crl_bundle`)."""
        federated = {d: pem.encode() for d, pem in sorted(bundles.items())}
        if federated != self._federated:
            log.info("federated trust domains: %s", ", ".join(federated) or "none")
        self._federated = federated
        self._root_crl = root_crl.encode() if federated else b""

    def federated_bundles(self) -> dict[str, bytes]:
        """Foreign trust domain -> its bundle (PEM), for the proxies (empty: none)."""
        return dict(self._federated)

    def member_cas_pem(self) -> bytes:
        """The trust anchors of proxyless gRPC workloads (concatenated PEM): this cluster's
        CA certificate (and, while a re-sign's grace lasts, its previous one: the same key)
        and every other member's from the controller. gRPC checks no CRL, so leaving a
        removed cluster's CA out is how its SVIDs are refused there; gRPC accepts an
        intermediate as anchor (a partial chain). Empty when :attr:`revocation` is off (not
        in a federation): gRPC then trusts the bundle."""
        if not self.revocation:
            return b""
        return self._own_cas_pem() + self._peers_pem(self._peer_cas)

    def _own_cas_pem(self) -> bytes:
        """This cluster's CA certificate and, while a re-sign's grace lasts, its previous
        one (the same key), PEM."""
        own = [self._ca.certificate]
        if self._previous is not None and self._previous.certificate != self._ca.certificate:
            own.append(self._previous.certificate)
        return pki.certificates_to_pem(own)

    def client_anchors_pem(self, ca: LocalCertificateAuthority) -> bytes:
        """What this control plane's gRPC servers verify client SVIDs against: ``ca``'s trust
        bundle, plus this cluster's own CA certificate (and its previous one while a
        re-sign's grace lasts) as anchors of their own. A re-sign keeps the key, so an SVID
        this cluster signed still verifies through the current certificate even when the
        chain it carries ends in a root that was retired since -- without that, a workload
        that had not renewed before ``rotate-root --retire-old`` could never renew again
        (its token is spent). Other members' SVIDs gain nothing: their chains do not lead
        here, and :mod:`federation.controlplane.peers` refuses them on the xDS port."""
        return ca.trust_bundle().to_pem() + self._own_cas_pem()

    def crl_bundle(self) -> bytes:
        """The CRLs proxies verify peers' leaf certificates against (concatenated PEM): this
        cluster's own and every other member's. A cluster that is not a member has none, so
        its SVIDs are refused. Empty when :attr:`revocation` is off."""
        if not self.revocation:
            return b""
        return self.own_crl() + self._peers_pem(self._peer_crls) + self._root_crl

    def _peers_pem(self, by_cluster: dict[str, str]) -> bytes:
        """The PEM texts of every other member (cluster -> PEM), concatenated in name order,
        each ending in a newline."""
        return b"".join(
            pem.encode() if pem.endswith("\n") else pem.encode() + b"\n"
            for name, pem in sorted(by_cluster.items())
            if name != self.cluster
        )

    def set_authority(self, ca: LocalCertificateAuthority) -> None:
        """Use a re-signed intermediate (same key, new certificate) with the current bundle:
        new SVIDs, the CRL and the server certificates follow."""
        self._previous = self._ca
        self._ca = replace(ca, bundle=self._ca.bundle)
        self._changed_at = time.monotonic()

    def ca_chain_pem(self) -> bytes:
        """The CA's chain as it issues SVIDs now (intermediate first)."""
        ca = self.authority()
        return pki.certificates_to_pem([ca.certificate, *ca.chain_above])

    def set_trust_bundle(self, bundle: TrustBundle) -> None:
        """Use a new trust bundle (the controller rotated roots): issued chains verify against
        it, new handshakes verify client certificates against it."""
        self._ca = replace(self._ca, bundle=bundle)
        if self._previous is not None:
            self._previous = replace(self._previous, bundle=bundle)
        if self._on_bundle is not None:
            self._on_bundle(bundle.to_pem())

    def issue_server_svid(self, ca: LocalCertificateAuthority) -> X509Svid:
        """A fresh server certificate for this control plane, issued by ``ca`` (what
        :meth:`authority` returned)."""
        return issue_svid(
            ca,
            ca.trust_domain.workload_id(
                SYSTEM_NAMESPACE, control_plane_service_account(self.cluster)
            ),
            SERVER_CERT_TTL,
            dns_names=[self.server_name, *self._addresses],
        )

    def server_credentials(self, *, require_client_auth: bool) -> grpc.ServerCredentials:
        """TLS credentials for a gRPC server: mutual TLS (client SVID verified against
        :meth:`client_anchors_pem`) with ``require_client_auth``, else server
        authentication only."""
        server = _ServerTls(self)
        return grpc.dynamic_ssl_server_credentials(
            server.configuration(), server.fetch, require_client_authentication=require_client_auth
        )


class _ServerTls:
    """The certificate and bundle one gRPC server currently uses."""

    def __init__(self, authority: ClusterAuthority) -> None:
        self._authority = authority
        self._svid: X509Svid | None = None
        self._issued_with: LocalCertificateAuthority | None = None

    def _due(self) -> bool:
        """Runs before every handshake. The authority's CA object is replaced whenever the
        bundle or the intermediate changes (and at the end of a re-sign's grace), so an
        identity check stands for comparing both."""
        svid = self._svid
        if svid is None or self._authority.authority() is not self._issued_with:
            return True
        return pki.utcnow() >= svid.not_before + (svid.not_after - svid.not_before) / 2

    def _issue(self) -> tuple[X509Svid, LocalCertificateAuthority]:
        ca = self._authority.authority()
        self._svid = self._authority.issue_server_svid(ca)
        self._issued_with = ca
        return self._svid, ca

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        svid, ca = self._issue()
        return grpc.ssl_server_certificate_configuration(
            [(svid.private_key_pem(), svid.chain_pem())],
            root_certificates=self._authority.client_anchors_pem(ca),
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration:  # None keeps the current one
        """Called by gRPC before every handshake."""
        if not self._due():
            return None  # type: ignore[return-value]
        log.info("re-issuing the control plane's server certificate")
        return self.configuration()


class HttpsTls(_ServerTls):
    """The HTTP API's certificate: the same server SVID as the gRPC servers' (the DNS name
    ``controlplane.<cluster>.cluster.meshfed.internal`` and the IP addresses the control
    plane listens on), as an :class:`ssl.SSLContext` whose key and chain are written to
    ``directory`` (key 0600); renewed in place, as the gRPC servers' certificate is, at half
    life and whenever the cluster's CA or bundle changes. Clients verify it against the
    trust bundle by that DNS name (:func:`federation.client.tls_for`)."""

    def __init__(self, authority: ClusterAuthority, directory: Path) -> None:
        super().__init__(authority)
        self._dir = directory
        self.context = server_context()

    def load(self) -> ssl.SSLContext:
        """Issue, write and load a certificate; the context to serve with."""
        svid, _ = self._issue()
        load_certificate(self.context, self._dir, svid.private_key_pem(), svid.chain_pem())
        return self.context

    async def renew_forever(self) -> None:
        """Reload when due; until cancelled (:func:`federation.serving.reload_when_due`)."""
        await reload_when_due(self._due, self.load, "the control plane API's certificate")
