"""``X509Svid``: a workload's X.509-SVID -- leaf certificate, chain and private key.

The private key is never part of ``repr()`` or ``str()``, so an SVID can be logged safely.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trust import pki
from trust.errors import InvalidCertificateError
from trust.spiffe import SpiffeId


@dataclass(frozen=True, slots=True, repr=False)
class X509Svid:
    """An X.509-SVID (X509-SVID.md): ``cert_chain[0]`` is the leaf, followed by intermediates.

    Build one with :meth:`parse` or :meth:`load`; both validate the leaf against the X.509-SVID
    rules and check that the private key matches the leaf's public key.

    Raises:
        InvalidCertificateError: the chain is empty, the leaf breaks X.509-SVID, or the key does
            not match.
    """

    spiffe_id: SpiffeId
    cert_chain: tuple[x509.Certificate, ...]
    private_key: pki.IssuerKey = field(compare=False)

    def __post_init__(self) -> None:
        if not self.cert_chain:
            raise InvalidCertificateError("an SVID needs at least its leaf certificate")
        leaf = self.cert_chain[0]
        problems = pki.leaf_svid_problems(leaf)
        if problems:
            raise InvalidCertificateError(f"leaf certificate for {self.spiffe_id}: {problems[0]}")
        sans = pki.uri_sans(leaf)
        if sans != [str(self.spiffe_id)]:
            raise InvalidCertificateError(
                f"leaf URI SAN {sans[0]!r} does not match the SVID's SPIFFE ID {self.spiffe_id}"
            )
        if _public_der(self.private_key.public_key()) != _public_der(leaf.public_key()):
            raise InvalidCertificateError(
                f"the private key does not match the leaf certificate of {self.spiffe_id}"
            )

    @classmethod
    def parse(cls, chain_pem: bytes, key_pem: bytes, *, source: str = "SVID") -> X509Svid:
        """Parse a PEM chain (leaf first) and a PEM private key.

        Raises:
            InvalidCertificateError: see the class docstring; also for unparsable PEM or a leaf
                URI SAN that is not a valid SPIFFE ID.
        """
        certs = pki.load_certificates(chain_pem, source=source)
        key = pki.load_private_key(key_pem, source=f"{source} key")
        sans = pki.uri_sans(certs[0])
        if len(sans) != 1:
            raise InvalidCertificateError(
                f"{source}: a leaf SVID must have exactly one URI SAN, found {len(sans)}"
            )
        try:
            spiffe_id = SpiffeId.parse(sans[0])
        except ValueError as err:
            raise InvalidCertificateError(f"{source}: leaf URI SAN is not a SPIFFE ID") from err
        return cls(spiffe_id, tuple(certs), key)

    @classmethod
    def load(cls, chain_path: Path, key_path: Path) -> X509Svid:
        """Read and :meth:`parse` ``svid.pem`` / ``svid-key.pem`` style files.

        Raises:
            InvalidCertificateError: as :meth:`parse`, or a file cannot be read.
        """
        try:
            chain_pem, key_pem = chain_path.read_bytes(), key_path.read_bytes()
        except OSError as err:
            raise InvalidCertificateError(f"cannot read SVID files: {err}") from err
        return cls.parse(chain_pem, key_pem, source=str(chain_path))

    @property
    def leaf(self) -> x509.Certificate:
        """The leaf certificate."""
        return self.cert_chain[0]

    @property
    def not_before(self) -> datetime:
        """Start of validity (UTC)."""
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        """End of validity (UTC)."""
        return self.leaf.not_valid_after_utc

    def renew_at(
        self, *, jitter: float = pki.DEFAULT_RENEWAL_JITTER, rng: random.Random | None = None
    ) -> datetime:
        """When to renew: half life minus jitter (see :func:`trust.pki.renewal_time`)."""
        return pki.renewal_time(self.not_before, self.not_after, jitter=jitter, rng=rng)

    def chain_pem(self) -> bytes:
        """The chain as PEM, leaf first (Envoy's ``certificate_chain``)."""
        return pki.certificates_to_pem(self.cert_chain)

    def private_key_pem(self) -> bytes:
        """The private key as PKCS#8 PEM. Handle as a secret: write 0600, never log."""
        return pki.private_key_to_pem(self.private_key)

    def __repr__(self) -> str:
        return (
            f"X509Svid(spiffe_id={self.spiffe_id}, not_after={self.not_after.isoformat()}, "
            f"chain_length={len(self.cert_chain)})"
        )

    __str__ = __repr__


def _public_der(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes")  # noqa: B009 - EC and RSA public keys share it
    result: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return result
