"""``TrustBundle``: the root CA certificates of a trust domain.

A bundle may hold several roots at once: that is how a root is rotated without downtime (add
the new root, re-issue intermediates, retire the old root; see :mod:`trust.rotation`).

Two encodings:

- PEM: the roots concatenated (Envoy's ``trusted_ca``, ``openssl verify -CAfile``).
- SPIFFE bundle: a JWK Set (SPIFFE_Trust_Domain_and_Bundle.md, section 4) where each root is a
  key with ``"use": "x509-svid"`` and ``x5c`` holding exactly that certificate (base64 DER),
  plus top-level ``spiffe_sequence`` and ``spiffe_refresh_hint`` (seconds).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification

from trust import pki
from trust.errors import InvalidCertificateError, VerificationError
from trust.spiffe import SpiffeId, TrustDomain

#: Default ``spiffe_refresh_hint``: how often (s) a consumer should re-fetch the bundle.
DEFAULT_REFRESH_HINT_S = 300


def _b64url_uint(value: int, length: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode()


def _jwk_for(cert: x509.Certificate) -> dict[str, Any]:
    """The JWK of a root certificate, with ``use: x509-svid`` and its ``x5c``."""
    key = cert.public_key()
    jwk: dict[str, Any]
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        numbers = key.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name)
        if crv is None:
            raise InvalidCertificateError(f"unsupported curve {key.curve.name} in a root")
        jwk = {
            "kty": "EC",
            "crv": crv,
            "x": _b64url_uint(numbers.x, size),
            "y": _b64url_uint(numbers.y, size),
        }
    elif isinstance(key, rsa.RSAPublicKey):
        numbers_rsa = key.public_numbers()
        jwk = {
            "kty": "RSA",
            "n": _b64url_uint(numbers_rsa.n, (numbers_rsa.n.bit_length() + 7) // 8),
            "e": _b64url_uint(numbers_rsa.e, (numbers_rsa.e.bit_length() + 7) // 8),
        }
    else:
        raise InvalidCertificateError("only EC and RSA roots can be put in a SPIFFE bundle")
    jwk["use"] = "x509-svid"
    jwk["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    return jwk


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """The roots trusted for one trust domain.

    Attributes:
        trust_domain: whose roots these are.
        roots: root CA certificates, oldest first; no duplicates.
        sequence: ``spiffe_sequence``; increases whenever the set of roots changes.
        refresh_hint_s: ``spiffe_refresh_hint`` in seconds.

    Raises:
        InvalidCertificateError: a root is not a CA certificate (X509-SVID.md 4.4) or appears
            twice.
    """

    trust_domain: TrustDomain
    roots: tuple[x509.Certificate, ...]
    sequence: int = 1
    refresh_hint_s: int = DEFAULT_REFRESH_HINT_S

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for root in self.roots:
            problems = pki.signing_cert_problems(root)
            if problems:
                raise InvalidCertificateError(
                    f"bundle root {root.subject.rfc4514_string()}: {problems[0]}"
                )
            fp = pki.fingerprint(root)
            if fp in seen:
                raise InvalidCertificateError(f"bundle root {fp[:16]} appears twice")
            seen.add(fp)

    # -- building --------------------------------------------------------------------------

    def with_root(self, root: x509.Certificate) -> TrustBundle:
        """A new bundle that also trusts ``root`` (sequence + 1); unchanged if already present."""
        if pki.fingerprint(root) in self.fingerprints():
            return self
        return replace(self, roots=(*self.roots, root), sequence=self.sequence + 1)

    def without_roots(self, fingerprints: Sequence[str]) -> TrustBundle:
        """A new bundle without the given roots (sequence + 1).

        Raises:
            InvalidCertificateError: removing them would leave the bundle empty.
        """
        kept = tuple(r for r in self.roots if pki.fingerprint(r) not in set(fingerprints))
        if not kept:
            raise InvalidCertificateError("refusing to remove every root from the trust bundle")
        if len(kept) == len(self.roots):
            return self
        return replace(self, roots=kept, sequence=self.sequence + 1)

    def fingerprints(self) -> list[str]:
        """SHA-256 fingerprints (hex) of the roots, in order."""
        return [pki.fingerprint(r) for r in self.roots]

    # -- encodings -------------------------------------------------------------------------

    def to_pem(self) -> bytes:
        """The roots as concatenated PEM."""
        return pki.certificates_to_pem(self.roots)

    def to_spiffe_dict(self) -> dict[str, Any]:
        """The SPIFFE bundle (JWK Set) as a JSON-ready dict."""
        return {
            "keys": [_jwk_for(r) for r in self.roots],
            "spiffe_sequence": self.sequence,
            "spiffe_refresh_hint": self.refresh_hint_s,
        }

    def to_spiffe_json(self) -> str:
        """The SPIFFE bundle as indented JSON text."""
        return json.dumps(self.to_spiffe_dict(), indent=2) + "\n"

    @classmethod
    def from_pem(
        cls, trust_domain: TrustDomain, pem: bytes, *, source: str = "bundle", sequence: int = 1
    ) -> TrustBundle:
        """Parse a PEM bundle.

        Raises:
            InvalidCertificateError: unparsable PEM or a non-CA certificate.
        """
        return cls(trust_domain, tuple(pki.load_certificates(pem, source=source)), sequence)

    @classmethod
    def from_spiffe_json(cls, trust_domain: TrustDomain, text: str | bytes) -> TrustBundle:
        """Parse a SPIFFE bundle; keys whose ``use`` is not ``x509-svid`` (JWT keys) are skipped.

        Raises:
            InvalidCertificateError: not JSON, no ``keys`` list, or an ``x509-svid`` key without
                exactly one ``x5c`` certificate (SPIFFE_Trust_Domain_and_Bundle.md 4.2.2).
        """
        try:
            doc = json.loads(text)
        except ValueError as err:
            raise InvalidCertificateError(f"SPIFFE bundle is not JSON: {err}") from err
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise InvalidCertificateError("SPIFFE bundle: 'keys' must be a list")
        roots: list[x509.Certificate] = []
        for i, key in enumerate(doc["keys"]):
            if not isinstance(key, dict) or key.get("use") != "x509-svid":
                continue
            x5c = key.get("x5c")
            if not isinstance(x5c, list) or len(x5c) != 1:
                raise InvalidCertificateError(
                    f"SPIFFE bundle keys[{i}].x5c must hold exactly one certificate"
                )
            try:
                roots.append(x509.load_der_x509_certificate(base64.b64decode(x5c[0])))
            except ValueError as err:
                raise InvalidCertificateError(
                    f"SPIFFE bundle keys[{i}].x5c[0] is not a certificate"
                ) from err
        sequence = doc.get("spiffe_sequence", 1)
        hint = doc.get("spiffe_refresh_hint", DEFAULT_REFRESH_HINT_S)
        if not isinstance(sequence, int) or not isinstance(hint, int):
            raise InvalidCertificateError(
                "SPIFFE bundle: spiffe_sequence and spiffe_refresh_hint must be integers"
            )
        return cls(trust_domain, tuple(roots), sequence, hint)

    # -- verification ----------------------------------------------------------------------

    def verify(self, chain: Sequence[x509.Certificate], *, at: datetime | None = None) -> SpiffeId:
        """Verify an SVID chain (leaf first) against these roots and return its SPIFFE ID.

        Path validation is RFC 5280 as implemented by ``cryptography.x509.verification``
        (client profile: the leaf must allow clientAuth). The leaf's SPIFFE ID must belong to
        this bundle's trust domain.

        Raises:
            VerificationError: no path to a root, expired, or a foreign trust domain.
        """
        if not chain:
            raise VerificationError("empty certificate chain")
        leaf, intermediates = chain[0], list(chain[1:])
        sans = pki.uri_sans(leaf)
        if len(sans) != 1:
            raise VerificationError(f"leaf must have exactly one URI SAN, found {len(sans)}")
        try:
            spiffe_id = SpiffeId.parse(sans[0])
        except ValueError as err:
            raise VerificationError(f"leaf URI SAN is not a SPIFFE ID: {err}") from err
        if not spiffe_id.member_of(self.trust_domain):
            raise VerificationError(f"{spiffe_id} is not in trust domain {self.trust_domain}")
        builder = verification.PolicyBuilder().store(verification.Store(list(self.roots)))
        if at is not None:
            builder = builder.time(at)
        try:
            builder.build_client_verifier().verify(leaf, intermediates)
        except verification.VerificationError as err:
            raise VerificationError(
                f"{spiffe_id} does not chain to the trust bundle: {err}"
            ) from err
        return spiffe_id


def spiffe_bundle_map(anchors: Mapping[str, bytes]) -> dict[str, Any]:
    """A SPIFFE bundle map -- trust domain -> its SPIFFE bundle -- as JSON-ready dict:
    ``{"trust_domains": {"<domain>": {"keys": [JWK, ...]}}}``, the file gRPC's
    ``file_watcher`` certificate provider reads as ``spiffe_bundle_map_file`` (gRFC A87, "mTLS
    SPIFFE support": a peer's SVID is verified only with the bundle of the trust domain its
    URI SAN names). Each key is one anchor with ``use: x509-svid`` and its ``x5c``
    (SPIFFE_Trust_Domain_and_Bundle.md 4.2).

    ``anchors``: trust domain name -> PEM certificates (a domain's roots, or, for the local
    domain of a proxyless gRPC workload, the member clusters' CAs). Domains are sorted, so
    the same input gives the same bytes.

    Raises:
        InvalidCertificateError: a PEM text holds no certificate or a key type a JWK cannot
            carry (EC P-256/384/521 and RSA only).
    """
    domains: dict[str, Any] = {}
    for name in sorted(anchors):
        certs = pki.load_certificates(anchors[name], source=f"anchors of {name}")
        domains[name] = {"keys": [_jwk_for(c) for c in certs]}
    return {"trust_domains": domains}
