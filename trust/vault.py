"""The root of trust in a Vault PKI secrets engine: cluster intermediates are signed by
Vault (``root/sign-intermediate``); the trust bundle is Vault's CA, read at
``meshfed trust init --backend vault`` and kept in the trust directory. All Vault I/O is in
:mod:`trust.vault_client`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from trust import pki
from trust.authority import sign_with_remote_root
from trust.bundle import TrustBundle
from trust.errors import TrustBackendError
from trust.revocation import root_crl_problem
from trust.spiffe import TrustDomain
from trust.vault_client import VaultPkiClient


@dataclass(frozen=True, slots=True, repr=False)
class VaultRootAuthority:
    """:class:`trust.authority.RootAuthority` backed by a Vault PKI mount."""

    client: VaultPkiClient
    bundle: TrustBundle

    @property
    def trust_domain(self) -> TrustDomain:
        """See :class:`RootAuthority`."""
        return self.bundle.trust_domain

    def sign_intermediate_csr(
        self,
        csr: x509.CertificateSigningRequest,
        cluster: str,
        ttl: timedelta = pki.DEFAULT_INTERMEDIATE_TTL,
    ) -> tuple[x509.Certificate, ...]:
        """Have Vault sign a cluster's intermediate (subject ``O=<td>, OU=<cluster>,
        CN=meshfed intermediate CA <cluster>``, the one a local root gives it -- a root moved
        between backends re-signs intermediates under the same name, so SVIDs signed before
        still name their CA's subject -- URI SAN ``spiffe://<td>``, path length 0,
        ``permitted_dns_domains`` :func:`trust.pki.permitted_dns_names`: the name constraints
        a local root adds).

        Raises:
            SigningRefusedError: bad CSR, foreign trust domain, or Vault refused/returned a
                non-CA certificate.
            TrustBackendError: Vault sealed, unreachable, rate limited or permission denied.
        """

        def issue(csr_pem: bytes, cluster: str, ttl: timedelta) -> tuple[str, str]:
            data = self.client.sign_intermediate(
                csr_pem.decode(),
                pki.intermediate_common_name(cluster),
                int(ttl.total_seconds()),
                str(self.trust_domain.id),
                permitted_dns_domains=",".join(pki.permitted_dns_names(cluster)),
                organization=self.trust_domain.name,
                ou=cluster,
            )
            chain = data.get("ca_chain") or [data.get("issuing_ca", "")]
            return str(data["certificate"]), "\n".join(chain).strip()

        return sign_with_remote_root(csr, cluster, ttl, self.bundle, "Vault", issue)

    def root_crl(self, root: x509.Certificate, *, now: datetime | None = None) -> bytes:
        """The Vault mount's CRL (PEM) for ``root`` (its CA): what Envoy's SPIFFE validator
        needs for the root of every chain once federated bundles are in force
        (:meth:`trust.store.TrustDirectory.root_crls`). Vault keeps it fresh itself
        (``config/crl`` ``expiry``, 72 h by default).

        Raises:
            TrustBackendError: Vault unreachable or sealed, or its CRL is not signed by
                ``root``, has expired, or does not parse.
        """
        pem = self.client.crl_pem().encode()
        mount = self.client.settings.mount
        problem = root_crl_problem(pem, root, source=f"Vault mount {mount}'s CRL", now=now)
        if problem is not None:
            hints = {"expired": " (rotate it: pki/crl/rotate)",
                     "not signed": " (another issuer is the mount's default)"}  # fmt: skip
            raise TrustBackendError(
                problem + next((h for k, h in hints.items() if k in problem), "")
            )
        return pem

    def trust_bundle(self) -> TrustBundle:
        """See :class:`RootAuthority`."""
        return self.bundle

    def __repr__(self) -> str:
        settings = self.client.settings
        return f"VaultRootAuthority({settings.address}, mount {settings.mount})"
