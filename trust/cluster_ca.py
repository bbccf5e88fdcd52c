"""A cluster's own intermediate CA on disk, obtained by joining a federation.

Layout of the directory (a control plane's ``<state_dir>/ca``)::

    ca-key.pem   the intermediate's private key, 0600; generated here, never sent anywhere
    ca.pem       the intermediate certificate the federation root signed
    bundle.pem   the trust bundle the controller sent (rewritten when roots rotate)

The join itself (sending the CSR) is the caller's business; this module only makes the key
and CSR and keeps the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from trust import pki
from trust.authority import LocalCertificateAuthority, load_key_file
from trust.bundle import TrustBundle
from trust.errors import TrustStoreError
from trust.files import CERT_FILE_MODE, KEY_FILE_MODE, ensure_dir, write_atomic
from trust.spiffe import TrustDomain


@dataclass(frozen=True, slots=True)
class ClusterCaDirectory:
    """See the module docstring."""

    path: Path

    @property
    def key_path(self) -> Path:
        """``ca-key.pem``."""
        return self.path / "ca-key.pem"

    @property
    def cert_path(self) -> Path:
        """``ca.pem``."""
        return self.path / "ca.pem"

    @property
    def bundle_path(self) -> Path:
        """``bundle.pem``."""
        return self.path / "bundle.pem"

    def exists(self) -> bool:
        """True when key, certificate and bundle are all present."""
        return all(p.exists() for p in (self.key_path, self.cert_path, self.bundle_path))

    def new_csr(self, trust_domain: TrustDomain, cluster: str) -> bytes:
        """Generate the intermediate key (written 0600) and return a PEM CSR for it.

        The CSR asks for URI SAN ``spiffe://<trust_domain>`` so the root can refuse a request
        for another trust domain.
        """
        ensure_dir(self.path)
        key = pki.generate_private_key()
        write_atomic(self.key_path, pki.private_key_to_pem(key), KEY_FILE_MODE)
        subject = pki.intermediate_subject(trust_domain, cluster)
        return pki.csr_to_pem(pki.build_csr(key, spiffe_id=trust_domain.id, subject=subject))

    def renewal_csr(self, trust_domain: TrustDomain, cluster: str) -> bytes:
        """A PEM CSR for the *existing* intermediate key, for the root to re-sign (a renewal,
        or a root rotation): the same key and subject, so the SVIDs and CRLs it issued stay
        valid under the re-signed certificate. The subject is the current certificate's (a
        root that takes it from the CSR, as AWS Private CA's subordinate template, keeps it;
        SVIDs name it as issuer), :func:`trust.pki.intermediate_subject` when there is none.

        Raises:
            TrustStoreError: the key is missing or group/world readable.
            InvalidCertificateError: the current certificate does not parse.
        """
        key = load_key_file(self.key_path)
        subject = pki.intermediate_subject(trust_domain, cluster)
        if self.cert_path.exists():
            current = pki.load_certificates(self.cert_path.read_bytes(), source=str(self.cert_path))
            subject = current[0].subject
        return pki.csr_to_pem(pki.build_csr(key, spiffe_id=trust_domain.id, subject=subject))

    def store(self, chain_pem: bytes, bundle_pem: bytes) -> None:
        """Keep the signed intermediate and the bundle (the key must already be here).

        Raises:
            InvalidCertificateError: unparsable PEM.
            TrustStoreError: the key is missing or does not match the certificate.
        """
        certs = pki.load_certificates(chain_pem, source="intermediate chain")
        pki.load_certificates(bundle_pem, source="trust bundle")
        key = load_key_file(self.key_path)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        mine = key.public_key().public_bytes(serialization.Encoding.DER, spki)
        if certs[0].public_key().public_bytes(serialization.Encoding.DER, spki) != mine:
            raise TrustStoreError("the signed intermediate does not match the local key")
        write_atomic(self.cert_path, chain_pem, CERT_FILE_MODE)
        write_atomic(self.bundle_path, bundle_pem, CERT_FILE_MODE)

    def update_bundle(self, bundle_pem: bytes) -> bool:
        """Replace the trust bundle if it changed; True when it did."""
        pki.load_certificates(bundle_pem, source="trust bundle")
        if self.bundle_path.exists() and self.bundle_path.read_bytes() == bundle_pem:
            return False
        write_atomic(self.bundle_path, bundle_pem, CERT_FILE_MODE)
        return True

    def authority(self, trust_domain: TrustDomain) -> LocalCertificateAuthority:
        """The intermediate CA, ready to sign SVIDs.

        Raises:
            TrustStoreError: files missing or the key is group/world readable.
        """
        if not self.exists():
            raise TrustStoreError(f"no joined intermediate CA in {self.path}")
        bundle = TrustBundle.from_pem(
            trust_domain, self.bundle_path.read_bytes(), source=str(self.bundle_path)
        )
        return LocalCertificateAuthority.load(self.cert_path, self.key_path, bundle)
