"""The root of trust in a Vault PKI secrets engine: cluster intermediates are signed by
Vault (``root/sign-intermediate``); the trust bundle is Vault's CA, read at
``meshfed trust init --backend vault`` and kept in the trust directory. All Vault I/O is in
:mod:`trust.vault_client`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trust import pki
from trust.authority import chain_above, check_issued_intermediate, refuse_foreign_intermediate_csr
from trust.bundle import TrustBundle
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
        """Have Vault sign a cluster's intermediate (CN ``meshfed intermediate CA <cluster>``,
        URI SAN ``spiffe://<td>``, path length 0).

        Raises:
            SigningRefusedError: bad CSR, foreign trust domain, or Vault refused/returned a
                non-CA certificate.
            TrustBackendError: Vault sealed, unreachable, rate limited or permission denied.
        """
        pki.check_csr_signature(csr)
        refuse_foreign_intermediate_csr(csr, self.trust_domain)
        data = self.client.sign_intermediate(
            csr.public_bytes(serialization.Encoding.PEM).decode(),
            f"meshfed intermediate CA {cluster}",
            int(ttl.total_seconds()),
            str(self.trust_domain.id),
        )
        cert = check_issued_intermediate(
            pki.load_certificates(data["certificate"].encode(), source="Vault certificate")[0],
            "Vault",
        )
        chain_pem = "\n".join(data.get("ca_chain") or [data.get("issuing_ca", "")]).strip()
        chain = (
            pki.load_certificates(chain_pem.encode(), source="Vault ca_chain") if chain_pem else []
        )
        return (cert, *chain_above(cert, chain, self.bundle))

    def trust_bundle(self) -> TrustBundle:
        """See :class:`RootAuthority`."""
        return self.bundle

    def __repr__(self) -> str:
        settings = self.client.settings
        return f"VaultRootAuthority({settings.address}, mount {settings.mount})"
