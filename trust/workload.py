"""Workload certificate requests: the key stays where it was generated, only the CSR travels.

Both ends of a control plane's certificate service use these: the workload side
(:func:`new_key_and_csr`) generates a P-256 key and a PKCS#10 request naming its SPIFFE ID;
the CA side (:func:`sign_workload_csr`) signs a request only for the SPIFFE ID the caller's
credential is bound to (SPIFFE X509-SVID.md section 4; the CSR's other fields are ignored).
"""

from __future__ import annotations

from datetime import timedelta

from cryptography.exceptions import InvalidSignature

from trust import pki
from trust.authority import CertificateAuthority, LocalCertificateAuthority
from trust.errors import InvalidCertificateError, SigningRefusedError
from trust.spiffe import SpiffeId
from trust.svid import X509Svid


def new_key_and_csr(spiffe_id: SpiffeId) -> tuple[bytes, bytes]:
    """``(key_pem, csr_pem)``: a fresh ECDSA P-256 key (PKCS#8 PEM -- write it 0600, never
    send it) and a CSR signed by it whose only URI SAN is ``spiffe_id``."""
    key = pki.generate_private_key()
    csr = pki.build_csr(key, spiffe_id=spiffe_id)
    return pki.private_key_to_pem(key), pki.csr_to_pem(csr)


def requested_spiffe_id(csr_pem: bytes) -> SpiffeId:
    """The SPIFFE ID a CSR asks for (its one URI SAN), after checking the CSR's signature
    (proof that the requester holds the key) and its key type
    (:func:`trust.pki.check_leaf_key`): everything about the CSR that could make signing
    fail is checked here, before a credential is spent on it.

    Raises:
        InvalidCertificateError: not a CSR, or not exactly one URI SAN that is a SPIFFE ID.
        SigningRefusedError: the CSR's signature does not verify, or its key is of a type
            meshfed does not certify.
    """
    csr = pki.load_csr(csr_pem)
    pki.check_csr_signature(csr)
    pki.check_leaf_key(csr)
    sans = pki.csr_uri_sans(csr)
    if len(sans) != 1:
        raise InvalidCertificateError(
            f"a workload CSR must name exactly one SPIFFE ID as URI SAN, found {len(sans)}"
        )
    try:
        return SpiffeId.parse(sans[0])
    except ValueError as err:
        raise InvalidCertificateError(f"CSR URI SAN {sans[0]!r} is not a SPIFFE ID") from err


def sign_workload_csr(
    ca: CertificateAuthority, csr_pem: bytes, allowed: SpiffeId, ttl: timedelta
) -> bytes:
    """Sign ``csr_pem`` if it asks for exactly ``allowed``; the chain as PEM, leaf first.

    Raises:
        InvalidCertificateError: the CSR cannot be parsed (see :func:`requested_spiffe_id`).
        SigningRefusedError: the CSR asks for another SPIFFE ID, its signature does not verify
            (the caller does not hold the key), or the CA refuses (expired, foreign domain).
    """
    asked = requested_spiffe_id(csr_pem)
    if asked != allowed:
        raise SigningRefusedError(f"the CSR asks for {asked}, the credential is for {allowed}")
    chain = ca.sign_csr(pki.load_csr(csr_pem), allowed, ttl)
    return pki.certificates_to_pem(chain)


def issued_under(svid: X509Svid, ca_chain_pem: bytes) -> bool:
    """True if ``svid`` carries ``ca_chain_pem`` (the issuing CA's current chain) above its
    leaf -- False after the CA was re-signed (a root rotation), when the SVID must renew to
    present a chain to the new root.

    Raises:
        InvalidCertificateError: ``ca_chain_pem`` is not PEM certificates.
    """
    chain = pki.load_certificates(ca_chain_pem, source="CA chain")
    return list(svid.cert_chain[1:]) == chain


def issued_by_authority(leaf_pem: bytes, ca: LocalCertificateAuthority) -> bool:
    """True if the leaf certificate ``leaf_pem`` was signed by ``ca``'s *key* and names its
    certificate's subject as issuer (cryptography's ``verify_directly_issued_by``: issuer
    name, then the signature checked with the CA's public key).

    A renewal, and any call on a control plane's xDS port, is served only to SVIDs of this
    cluster's own CA. The key is what is checked, not the name: a cluster removed and joined
    again under the same name has a new intermediate key, and SVIDs signed by the old one
    (for instance by the compromised cluster that was removed) must not renew into SVIDs of
    the new one -- though they still verify against the shared root. A re-signed
    intermediate (root rotation) keeps its key (:mod:`trust.root_rotation`), so SVIDs from
    before a re-sign still renew. The chain itself was verified by TLS.

    Raises:
        InvalidCertificateError: ``leaf_pem`` is not a PEM certificate.
    """
    leaf = pki.load_certificates(leaf_pem, source="peer certificate")[0]
    try:
        leaf.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
