"""Pure PKI helpers: keys, CSRs, certificate templates and renewal times.

Nothing here touches the file system or the network; the issuers in :mod:`trust.authority` pass
keys, certificates and the current time in. Profiles follow the X.509-SVID specification
(github.com/spiffe/spiffe, standards/X509-SVID.md, sections 4 and 5) and RFC 5280:

==============  ======================  ====================================  ==============
certificate     basicConstraints        keyUsage (critical)                   default TTL
==============  ======================  ====================================  ==============
root CA         CA:true (critical)      keyCertSign, cRLSign                  10 years
intermediate    CA:true, pathlen 0      keyCertSign, cRLSign                  1 year
X.509-SVID      CA:false (critical)     digitalSignature (+keyEncipherment    24 hours
                                        for RSA keys)
==============  ======================  ====================================  ==============

Every certificate carries Subject and Authority Key Identifiers. CA certificates carry the trust
domain's ID (``spiffe://<td>``) as URI SAN; a leaf carries exactly one URI SAN, its SPIFFE ID,
and an empty subject, so its SAN extension is critical (RFC 5280 section 4.2.1.6). Leaves get
EKU serverAuth + clientAuth because mesh workloads are both.

**The cluster claim.** A cluster's intermediate carries a critical nameConstraints extension
(RFC 5280 4.2.1.10) permitting only DNS names under ``<cluster>.cluster.meshfed.internal``,
and every leaf it signs carries that DNS name (:func:`cluster_dns_name`) beside its SPIFFE ID
(X509-SVID.md 4.2 allows other SAN types). The name is never dialled; it says which
cluster issued the SVID, and because every verifier (BoringSSL in Envoy and gRPC, OpenSSL,
``cryptography``) enforces name constraints, a compromised cluster's CA cannot claim to be
another cluster. AuthorizationPolicy's ``clusters`` matches it.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trust.errors import InvalidCertificateError, SigningRefusedError
from trust.spiffe import SpiffeId, TrustDomain

DEFAULT_ROOT_TTL = timedelta(days=3650)
DEFAULT_INTERMEDIATE_TTL = timedelta(days=365)
DEFAULT_SVID_TTL = timedelta(hours=24)
#: ``notBefore`` is set this far in the past to tolerate clock skew between hosts.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)
#: Renewal happens at half life minus up to this fraction of the lifetime (random jitter),
#: so a fleet issued at one moment does not renew at one moment.
DEFAULT_RENEWAL_JITTER = 0.1
#: The DNS domain under which a cluster's CA may name things (see the module docstring).
CLUSTER_NAME_DOMAIN = "cluster.meshfed.internal"
#: The controller's own intermediate CA (signs its server certificate); no cluster may be
#: named so.
CONTROLLER_CA_NAME = "meshfed-controller"
#: The DNS SAN of the controller's server certificate (sync and REST API), which its
#: intermediate's name constraints permit besides its own cluster domain.
CONTROLLER_SERVER_NAME = "controller.meshfed.internal"

IssuerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
CertifiablePublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 (secp256r1) private key, meshfed's only key type for issued certs."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_to_pem(key: IssuerKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the caller writes it to a 0600 file)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes, *, source: str) -> IssuerKey:
    """Parse a PEM private key (EC or RSA).

    Raises:
        InvalidCertificateError: the data is not a PEM EC/RSA private key. The message names
            ``source`` (e.g. a path) and never includes the key bytes.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise InvalidCertificateError(f"{source}: not a readable PEM private key") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidCertificateError(f"{source}: only EC and RSA private keys are supported")
    return key


def certificates_to_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """Concatenated PEM blocks, in the order given."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def validity(pem: bytes, *, source: str) -> list[tuple[str, datetime, datetime]]:
    """``(subject common name, notBefore, notAfter)`` (UTC) of each certificate of ``pem``,
    in file order (``meshfed check``'s certificate lifetimes).

    Raises:
        InvalidCertificateError: as :func:`load_certificates`.
    """
    out = []
    for cert in load_certificates(pem, source=source):
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(names[0].value) if names else cert.subject.rfc4514_string()
        out.append((name, cert.not_valid_before_utc, cert.not_valid_after_utc))
    return out


def csr_to_pem(csr: x509.CertificateSigningRequest) -> bytes:
    """A CSR as one PEM block."""
    return csr.public_bytes(serialization.Encoding.PEM)


def load_certificates(pem: bytes, *, source: str) -> list[x509.Certificate]:
    """Parse one or more PEM certificates, in file order.

    Raises:
        InvalidCertificateError: no certificate, or an unparsable one, in ``source``.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as err:
        raise InvalidCertificateError(f"{source}: not a PEM certificate list ({err})") from err
    return certs


def load_csr(data: bytes, *, source: str = "CSR") -> x509.CertificateSigningRequest:
    """Parse a PEM or DER PKCS#10 certificate signing request.

    Raises:
        InvalidCertificateError: the bytes are not a CSR.
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as err:
        raise InvalidCertificateError(f"{source}: not a PKCS#10 certificate request") from err


def build_csr(
    key: IssuerKey,
    *,
    spiffe_id: SpiffeId | None = None,
    common_name: str | None = None,
    subject: x509.Name | None = None,
) -> x509.CertificateSigningRequest:
    """A PKCS#10 CSR signed with ``key``; the SPIFFE ID, if given, as its URI SAN; the
    subject is ``subject``, else just ``CN=<common_name>`` (or empty)."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    name = subject if subject is not None else x509.Name(attrs)
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if spiffe_id is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


def check_csr_signature(csr: x509.CertificateSigningRequest) -> None:
    """Refuse a CSR whose self-signature does not verify (proof of possession of the key).

    Raises:
        SigningRefusedError: the signature is invalid.
    """
    try:
        valid = csr.is_signature_valid
    except (InvalidSignature, ValueError) as err:  # unsupported algorithms end up here
        raise SigningRefusedError(f"CSR signature cannot be checked: {err}") from err
    if not valid:
        raise SigningRefusedError("CSR signature is invalid (the requester does not hold the key)")


#: Smallest RSA key (bits) a workload CSR may carry (NIST SP 800-57 part 1, table 2).
MIN_RSA_BITS = 2048
#: Elliptic curves a workload key may use: the ones Envoy's BoringSSL verifies in TLS.
LEAF_CURVES = ("secp256r1", "secp384r1")


def check_leaf_key(csr: x509.CertificateSigningRequest) -> None:
    """Refuse a CSR whose key meshfed will not certify: ECDSA on P-256 or P-384, or RSA of
    at least :data:`MIN_RSA_BITS` bits (the keys Envoy and gRPC accept in TLS); Ed25519,
    other curves and short RSA keys are refused.

    Raises:
        SigningRefusedError: naming the key type and what is accepted.
    """
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in LEAF_CURVES:
        return
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        what = f"an EC key on {key.curve.name}"
    elif isinstance(key, rsa.RSAPublicKey):
        what = f"a {key.key_size}-bit RSA key"
    else:
        what = f"a {type(key).__name__.removeprefix('_')} key"
    raise SigningRefusedError(
        f"the CSR has {what}; workload keys must be ECDSA P-256/P-384 or RSA of at least"
        f" {MIN_RSA_BITS} bits"
    )


def _ca_name(trust_domain: TrustDomain, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain.name),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _validity(
    now: datetime, ttl: timedelta, issuer: x509.Certificate | None
) -> tuple[datetime, datetime]:
    """(notBefore, notAfter), backdated for skew and clipped to the issuer's validity."""
    if ttl <= timedelta(0):
        raise SigningRefusedError(f"TTL must be positive, got {ttl}")
    not_before = now - CLOCK_SKEW_ALLOWANCE
    not_after = now + ttl
    if issuer is not None:
        not_before = max(not_before, issuer.not_valid_before_utc)
        not_after = min(not_after, issuer.not_valid_after_utc)
        if not_after <= now:
            raise SigningRefusedError("the issuing CA certificate has expired")
    return not_before, not_after


def _sign(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertifiablePublicKey,
    issuer_key: IssuerKey,
    validity: tuple[datetime, datetime],
    basic_constraints: x509.BasicConstraints,
    key_usage: x509.KeyUsage,
    san: x509.SubjectAlternativeName,
    san_critical: bool,
    extra: Sequence[x509.ExtensionType] = (),
    critical_extra: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    """The one certificate builder: subject, issuer, random serial, validity, basic
    constraints and key usage (critical), ``critical_extra`` (critical), ``extra``
    extensions (non-critical), SKI, AKI and the SAN; signed with SHA-256 by ``issuer_key``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(basic_constraints, critical=True)
        .add_extension(key_usage, critical=True)
    )
    for extension in critical_extra:
        builder = builder.add_extension(extension, critical=True)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return (
        builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(san, critical=san_critical)
        .sign(issuer_key, hashes.SHA256())
    )


def root_certificate(
    key: IssuerKey,
    trust_domain: TrustDomain,
    *,
    now: datetime,
    ttl: timedelta = DEFAULT_ROOT_TTL,
    common_name: str | None = None,
) -> x509.Certificate:
    """A self-signed root CA certificate for ``trust_domain``.

    Shape: subject ``O=<td>, CN=<common_name or "meshfed root CA <key id>">``, CA:true (no
    path length limit: intermediates sit below it), keyCertSign+cRLSign, URI SAN ``spiffe://<td>``.
    """
    public_key = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    # A unique CN per root keeps two roots in one bundle (during rotation) apart by name too.
    name = _ca_name(trust_domain, common_name or f"meshfed root CA {ski.digest.hex()[:16]}")
    return _sign(
        subject=name,
        issuer=name,
        public_key=public_key,
        issuer_key=key,
        validity=_validity(now, ttl, None),
        basic_constraints=x509.BasicConstraints(ca=True, path_length=None),
        key_usage=_ca_key_usage(),
        san=x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(trust_domain.id))]),
        san_critical=False,
    )


def intermediate_certificate(
    csr: x509.CertificateSigningRequest,
    cluster: str,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: IssuerKey,
    trust_domain: TrustDomain,
    now: datetime,
    ttl: timedelta = DEFAULT_INTERMEDIATE_TTL,
) -> x509.Certificate:
    """A cluster's intermediate CA certificate, signed by the root (the "plug-in CA" model).

    Shape: subject ``O=<td>, OU=<cluster>, CN=meshfed intermediate CA <cluster>``, CA:true
    pathlen 0, keyCertSign+cRLSign, URI SAN ``spiffe://<td>``, nameConstraints (critical)
    permitting DNS names under ``<cluster>.cluster.meshfed.internal`` only
    (:func:`permitted_dns_names`); validity clipped to the root's.

    Raises:
        SigningRefusedError: bad CSR signature, empty cluster name, or an expired issuer.
    """
    check_csr_signature(csr)
    if not cluster:
        raise SigningRefusedError("the cluster name is empty")
    subject = intermediate_subject(trust_domain, cluster)
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise SigningRefusedError("only EC and RSA keys can be certified")
    return _sign(
        subject=subject,
        issuer=issuer_cert.subject,
        public_key=public_key,
        issuer_key=issuer_key,
        validity=_validity(now, ttl, issuer_cert),
        basic_constraints=x509.BasicConstraints(ca=True, path_length=0),
        key_usage=_ca_key_usage(),
        san=x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(trust_domain.id))]),
        san_critical=False,
        critical_extra=[
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(n) for n in permitted_dns_names(cluster)],
                excluded_subtrees=None,
            )
        ],
    )


def intermediate_subject(trust_domain: TrustDomain, cluster: str) -> x509.Name:
    """``O=<trust domain>, OU=<cluster>, CN=<intermediate_common_name>``: the subject of
    every cluster intermediate, whichever root signs it -- a local root sets it, Vault is
    asked for it (``organization``/``ou``), and intermediate CSRs carry it for AWS Private
    CA, whose subordinate template takes the CSR's subject. SVIDs name it as issuer, so a
    re-signed intermediate must keep it for them to renew."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain.name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, cluster),
            x509.NameAttribute(NameOID.COMMON_NAME, intermediate_common_name(cluster)),
        ]
    )


def intermediate_common_name(cluster: str) -> str:
    """``meshfed intermediate CA <cluster>``: the CN of a cluster's intermediate (and of its
    CSRs)."""
    return f"meshfed intermediate CA {cluster}"


def cluster_dns_name(cluster: str) -> str:
    """``<cluster>.cluster.meshfed.internal``: the DNS SAN every SVID of ``cluster``'s CA
    carries (its cluster claim), and the domain that CA's nameConstraints permit."""
    return f"{cluster}.{CLUSTER_NAME_DOMAIN}"


def permitted_dns_names(cluster: str) -> list[str]:
    """The DNS subtrees the nameConstraints of ``cluster``'s intermediate permit:
    :func:`cluster_dns_name`, and for the controller's own CA also
    :data:`CONTROLLER_SERVER_NAME`. URI and IP address SANs stay unconstrained (RFC 5280
    applies a permitted subtree to its own name type only)."""
    names = [cluster_dns_name(cluster)]
    return [*names, CONTROLLER_SERVER_NAME] if cluster == CONTROLLER_CA_NAME else names


def _claimed_cluster(dns_name: str) -> str | None:
    """``<cluster>`` of a ``<cluster>.cluster.meshfed.internal`` name, else None."""
    head, dot, domain = dns_name.partition(".")
    return head if dot and head and domain == CLUSTER_NAME_DOMAIN else None


def cluster_claims(ca_cert: x509.Certificate) -> list[str]:
    """The cluster DNS names ``ca_cert``'s nameConstraints permit (``[]`` for a CA without
    the extension, e.g. one a backend issued without it): what its leaves carry."""
    try:
        ext = ca_cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return []
    return [
        name.value
        for name in ext.value.permitted_subtrees or []
        if isinstance(name, x509.DNSName) and _claimed_cluster(name.value)
    ]


def leaf_cluster(cert: x509.Certificate) -> str | None:
    """The cluster a leaf SVID claims (its ``<cluster>.cluster.meshfed.internal`` DNS SAN),
    or None. Meaningful only after the chain verified (name constraints are checked then)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    claims = (_claimed_cluster(n) for n in ext.value.get_values_for_type(x509.DNSName))
    return next((c for c in claims if c), None)


def leaf_certificate(
    csr: x509.CertificateSigningRequest,
    spiffe_id: SpiffeId,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: IssuerKey,
    now: datetime,
    ttl: timedelta = DEFAULT_SVID_TTL,
    dns_names: Sequence[str] = (),
) -> x509.Certificate:
    """A workload X.509-SVID for ``spiffe_id`` (X509-SVID.md section 4).

    The CSR's own subject and SANs are ignored: the certificate carries exactly one URI SAN,
    ``spiffe_id``, chosen by the CA, plus ``dns_names`` as DNS SANs, or IP address SANs for
    IP literals (X509-SVID.md 4.2 allows
    other SAN types; servers that gRPC clients dial by name need one). Validity is clipped to
    the issuer's.

    Raises:
        SigningRefusedError: bad CSR signature, unsupported key type, or an expired issuer.
    """
    check_csr_signature(csr)
    check_leaf_key(csr)
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    not_before, not_after = _validity(now, ttl, issuer_cert)
    key_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return _sign(
        subject=x509.Name([]),
        issuer=issuer_cert.subject,
        public_key=public_key,
        issuer_key=issuer_key,
        validity=(not_before, not_after),
        basic_constraints=x509.BasicConstraints(ca=False, path_length=None),
        key_usage=key_usage,
        extra=[
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            )
        ],
        san=x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(str(spiffe_id))]
            + [_name_san(name) for name in dns_names]
        ),
        san_critical=True,
    )


def _name_san(name: str) -> x509.GeneralName:
    """An IP address SAN for an IP literal (clients that dial an IP verify it), else DNS."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def csr_uri_sans(csr: x509.CertificateSigningRequest) -> list[str]:
    """The URI SANs a CSR asks for (``[]`` when it has no SAN extension)."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def uri_sans(cert: x509.Certificate) -> list[str]:
    """The certificate's URI SANs, in order; ``[]`` when it has no SAN extension."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def leaf_svid_problems(cert: x509.Certificate) -> list[str]:
    """Every way ``cert`` breaks the X.509-SVID leaf rules (X509-SVID.md 4.1-4.3), or ``[]``."""
    problems: list[str] = []
    sans = uri_sans(cert)
    if len(sans) != 1:
        problems.append(f"a leaf SVID must have exactly one URI SAN, found {len(sans)}")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            problems.append("a leaf SVID must have CA:false")
    except x509.ExtensionNotFound:
        problems.append("a leaf SVID must have the basicConstraints extension")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            problems.append("a leaf SVID must have keyUsage digitalSignature")
        if ku.key_cert_sign or ku.crl_sign:
            problems.append("a leaf SVID must not have keyUsage keyCertSign or cRLSign")
    except x509.ExtensionNotFound:
        problems.append("a leaf SVID must have the keyUsage extension")
    return problems


def signing_cert_problems(cert: x509.Certificate) -> list[str]:
    """Every way ``cert`` breaks the X.509-SVID signing-certificate rules (X509-SVID.md 4.4)."""
    problems: list[str] = []
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            problems.append("a signing certificate must have CA:true")
    except x509.ExtensionNotFound:
        problems.append("a signing certificate must have the basicConstraints extension")
    try:
        if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            problems.append("a signing certificate must have keyUsage keyCertSign")
    except x509.ExtensionNotFound:
        problems.append("a signing certificate must have the keyUsage extension")
    return problems


def renewal_time(
    not_before: datetime,
    not_after: datetime,
    *,
    jitter: float = DEFAULT_RENEWAL_JITTER,
    rng: random.Random | None = None,
) -> datetime:
    """When to renew a certificate: at half its lifetime, minus up to ``jitter`` x lifetime.

    With the default jitter of 0.1 a 24 h SVID renews between 9.6 h and 12 h after notBefore.
    ``rng`` makes the jitter reproducible in tests.

    Raises:
        ValueError: ``not_after`` is not after ``not_before`` or jitter is outside [0, 0.5).
    """
    if not_after <= not_before:
        raise ValueError("not_after must be after not_before")
    if not 0 <= jitter < 0.5:
        raise ValueError("jitter must be in [0, 0.5)")
    lifetime = not_after - not_before
    draw = (rng or random.Random()).random()  # noqa: S311 - jitter, not security
    return not_before + lifetime / 2 - lifetime * (jitter * draw)


def fingerprint(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the DER certificate."""
    return cert.fingerprint(hashes.SHA256()).hex()


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` signed ``cert`` directly (issuer name and signature both match).

    Used to pin a peer to one particular CA, beyond chain validation to any root.
    """
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
