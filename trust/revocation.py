"""Certificate revocation lists of cluster CAs, used as an allow-list of member clusters.

Every member cluster's CA signs an (empty) CRL for itself (RFC 5280 section 5: version 2,
``thisUpdate``/``nextUpdate``, CRL number, authority key identifier). Envoy's validation
context gets the CRLs of every current member with ``only_verify_leaf_cert_crl: true``
(Envoy API, ``CertificateValidationContext.crl``): a leaf is then accepted only if the CRL of
its issuer is present, so an SVID of a cluster whose CRL is no longer distributed -- a
removed cluster -- fails verification, while the root (and its bundle) stays as it is.

CRLs expire (``nextUpdate``; BoringSSL refuses an expired CRL), so a CA re-issues its CRL
well before: :func:`crl_due`. Their validity does not weaken revocation (a revoked cluster's
CRL is simply no longer distributed), so it is long: a controller outage must not make
members refuse each other before their intermediates themselves expire.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from trust import pki
from trust.authority import LocalCertificateAuthority
from trust.errors import InvalidCertificateError

#: Validity of a cluster CA's CRL (clipped to the CA's own); re-issued after a quarter of it
#: (:func:`crl_due`).
CRL_TTL = timedelta(days=7)


def cluster_crl(ca: LocalCertificateAuthority, *, now: datetime | None = None) -> bytes:
    """An empty CRL signed by ``ca`` (PEM), valid from five minutes ago for :data:`CRL_TTL`.

    The CRL number is the issue time in seconds, so later CRLs have higher numbers.
    """
    return empty_crl(ca.certificate, ca.key, now=now)


def empty_crl(
    certificate: x509.Certificate, key: pki.IssuerKey, *, now: datetime | None = None
) -> bytes:
    """An empty CRL of the CA ``certificate`` signed with its ``key`` (PEM), as
    :func:`cluster_crl` makes it. Also a root's: Envoy's SPIFFE validator (SPIFFE
    federation) checks a CRL for every certificate of a chain once its bundle holds any
    (BoringSSL ``X509_V_FLAG_CRL_CHECK_ALL``), so the intermediates need their root's."""
    now = now or pki.utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(certificate.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(min(now + CRL_TTL, certificate.not_valid_after_utc))
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
            critical=False,
        )
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def load_crl(pem: bytes, *, source: str = "CRL") -> x509.CertificateRevocationList:
    """Parse one PEM CRL.

    Raises:
        InvalidCertificateError: not a PEM CRL.
    """
    try:
        return x509.load_pem_x509_crl(pem)
    except ValueError as err:
        raise InvalidCertificateError(f"{source}: not a PEM CRL ({err})") from err


def crl_renew_at(pem: bytes) -> datetime:
    """When a quarter of the CRL's validity has passed (its ``thisUpdate`` if it has no
    ``nextUpdate``); of concatenated CRLs, the earliest.

    Raises:
        InvalidCertificateError: a block is not a PEM CRL.
    """
    times = []
    for block in _pem_blocks(pem):
        crl = load_crl(block)
        start, end = crl.last_update_utc, crl.next_update_utc
        times.append(start if end is None else start + (end - start) / 4)
    if not times:
        raise InvalidCertificateError("no PEM CRL")
    return min(times)


def crl_due(pem: bytes | None, *, now: datetime | None = None) -> bool:
    """True when there is no CRL or a quarter of its validity has passed."""
    return not pem or (now or pki.utcnow()) >= crl_renew_at(pem)


def crl_next_update(pem: bytes) -> datetime:
    """The earliest ``nextUpdate`` of concatenated CRLs (``datetime.max`` when none has one):
    until then all of them are valid.

    Raises:
        InvalidCertificateError: no PEM CRL, or a block is not one.
    """
    crls = [load_crl(block) for block in _pem_blocks(pem)]
    if not crls:
        raise InvalidCertificateError("no PEM CRL")
    never = datetime.max.replace(tzinfo=UTC)
    return min(c.next_update_utc or never for c in crls)


def _pem_blocks(pem: bytes) -> list[bytes]:
    """Each ``-----BEGIN X509 CRL-----`` block of concatenated PEM CRLs."""
    end = b"-----END X509 CRL-----"
    return [part.strip() + b"\n" + end + b"\n" for part in pem.split(end) if part.strip()]


def crl_issued_by(pem: bytes, issuer: x509.Certificate) -> bool:
    """True if the CRL ``pem`` verifies with ``issuer``'s key and names it as issuer."""
    crl = load_crl(pem)
    public_key = issuer.public_key()
    if crl.issuer != issuer.subject:
        return False
    try:
        return bool(crl.is_signature_valid(public_key))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def root_crl_problem(
    pem: bytes, root: x509.Certificate, *, source: str, now: datetime | None = None
) -> str | None:
    """Why a remote root's CRL (Vault's, AWS Private CA's) cannot go to the proxies, or None:
    it does not parse, is not signed by ``root`` (``source`` names it in the answer), or has
    passed its ``nextUpdate`` (BoringSSL refuses an expired CRL)."""
    try:
        crl = load_crl(pem, source=source)
    except InvalidCertificateError as err:
        return str(err)
    if not crl_issued_by(pem, root):
        return f"{source} is not signed by the root {root.subject.rfc4514_string()}"
    moment = now or pki.utcnow()
    if crl.next_update_utc is not None and crl.next_update_utc <= moment:
        return f"{source} expired at {crl.next_update_utc.isoformat()}"
    return None
