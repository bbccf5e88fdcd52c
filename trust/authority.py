"""Certificate authorities: the interfaces and the local (key-in-a-file) implementations.

As in cert-manager, the issuers only decide *who* may get *what*; certificate shapes come from
the pure helpers in :mod:`trust.pki`. Two roles:

- :class:`RootAuthority` -- holds the root of trust; signs one intermediate CA per cluster.
- :class:`CertificateAuthority` -- a cluster's intermediate CA; signs workload X.509-SVIDs.

Other backends (Vault PKI, AWS Private CA) implement the same protocols.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509

from trust import pki
from trust.bundle import TrustBundle
from trust.errors import InvalidCertificateError, SigningRefusedError, TrustStoreError
from trust.spiffe import SpiffeId, TrustDomain
from trust.svid import X509Svid

Clock = Callable[[], datetime]


@runtime_checkable
class CertificateAuthority(Protocol):
    """Signs workload X.509-SVIDs for one trust domain."""

    @property
    def trust_domain(self) -> TrustDomain:
        """The trust domain every issued SPIFFE ID must belong to."""
        ...

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        spiffe_id: SpiffeId,
        ttl: timedelta,
        *,
        dns_names: Sequence[str] = (),
    ) -> tuple[x509.Certificate, ...]:
        """Sign ``csr`` as an X.509-SVID for ``spiffe_id``, valid for ``ttl``, with optional
        extra DNS SANs (for servers dialled by name).

        Returns:
            The chain, leaf first, then every CA certificate up to (not including) the root.

        Raises:
            SigningRefusedError: the CSR's signature is invalid, ``spiffe_id`` is in another
                trust domain, or the CA has expired. Not retryable.
        """
        ...

    def trust_bundle(self) -> TrustBundle:
        """The roots an issued chain verifies against."""
        ...


@runtime_checkable
class RootAuthority(Protocol):
    """Holds the federation's root of trust and signs one intermediate CA per cluster."""

    @property
    def trust_domain(self) -> TrustDomain:
        """The federation's trust domain."""
        ...

    def sign_intermediate_csr(
        self, csr: x509.CertificateSigningRequest, cluster: str, ttl: timedelta
    ) -> tuple[x509.Certificate, ...]:
        """Sign ``csr`` as the intermediate CA of ``cluster`` (CA:true, pathlen 0).

        Returns:
            The intermediate certificate first, then any CA certificates up to the root.

        Raises:
            SigningRefusedError: bad CSR signature, empty cluster name, or expired root.
        """
        ...

    def trust_bundle(self) -> TrustBundle:
        """The trust bundle (every root currently trusted)."""
        ...


def _refuse_foreign(trust_domain: TrustDomain, spiffe_id: SpiffeId) -> None:
    if not spiffe_id.member_of(trust_domain):
        raise SigningRefusedError(
            f"refusing to sign {spiffe_id}: it is not in this CA's trust domain {trust_domain}"
        )


@dataclass(frozen=True, slots=True, repr=False)
class LocalCertificateAuthority:
    """A cluster intermediate CA whose key is held in memory (loaded from a 0600 file).

    Attributes:
        certificate: the intermediate CA certificate.
        key: its private key (never shown by ``repr``).
        chain_above: CA certificates between ``certificate`` and the root (usually empty).
        bundle: the trust bundle the chain verifies against.
        clock: returns the current UTC time (injected for tests).
    """

    domain: TrustDomain
    certificate: x509.Certificate
    key: pki.IssuerKey
    bundle: TrustBundle
    chain_above: tuple[x509.Certificate, ...] = ()
    clock: Clock = pki.utcnow

    def __post_init__(self) -> None:
        problems = pki.signing_cert_problems(self.certificate)
        if problems:
            raise InvalidCertificateError(f"intermediate CA certificate: {problems[0]}")

    @property
    def trust_domain(self) -> TrustDomain:
        """See :class:`CertificateAuthority`."""
        return self.domain

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        spiffe_id: SpiffeId,
        ttl: timedelta = pki.DEFAULT_SVID_TTL,
        *,
        dns_names: Sequence[str] = (),
    ) -> tuple[x509.Certificate, ...]:
        """See :meth:`CertificateAuthority.sign_csr`. The leaf also carries this CA's cluster
        claim (:func:`trust.pki.cluster_claims`), when its certificate has one."""
        _refuse_foreign(self.domain, spiffe_id)
        leaf = pki.leaf_certificate(
            csr,
            spiffe_id,
            issuer_cert=self.certificate,
            issuer_key=self.key,
            now=self.clock(),
            ttl=ttl,
            dns_names=[*pki.cluster_claims(self.certificate), *dns_names],
        )
        return (leaf, self.certificate, *self.chain_above)

    def trust_bundle(self) -> TrustBundle:
        """See :meth:`CertificateAuthority.trust_bundle`."""
        return self.bundle

    @classmethod
    def load(
        cls, cert_path: Path, key_path: Path, bundle: TrustBundle, *, clock: Clock = pki.utcnow
    ) -> LocalCertificateAuthority:
        """Load an intermediate CA from PEM files; the key file must not be group/world readable.

        Raises:
            TrustStoreError: a file is missing or the key file's mode is looser than 0600.
            InvalidCertificateError: the files do not hold a CA certificate and its key.
        """
        key = load_key_file(key_path)
        certs = _read_certs(cert_path)
        return cls(bundle.trust_domain, certs[0], key, bundle, tuple(certs[1:]), clock)

    def __repr__(self) -> str:
        return f"LocalCertificateAuthority({self.certificate.subject.rfc4514_string()})"


def refuse_foreign_intermediate_csr(
    csr: x509.CertificateSigningRequest, trust_domain: TrustDomain
) -> None:
    """Refuse an intermediate CSR asking for a URI SAN that is not a SPIFFE ID of
    ``trust_domain`` (every root backend applies this before signing).

    Raises:
        SigningRefusedError: naming the SAN and the trust domains.
    """
    for uri in pki.csr_uri_sans(csr):
        try:
            asked = SpiffeId.parse(uri)
        except ValueError as err:
            raise SigningRefusedError(f"CSR URI SAN {uri!r} is not a SPIFFE ID") from err
        if not asked.member_of(trust_domain):
            raise SigningRefusedError(
                f"refusing to sign an intermediate for {asked.trust_domain}:"
                f" this root serves trust domain {trust_domain}"
            )


def chain_above(
    issued: x509.Certificate, chain: Sequence[x509.Certificate], bundle: TrustBundle
) -> tuple[x509.Certificate, ...]:
    """The CA certificates between an issued intermediate and the bundle's roots (a remote
    backend's CA may itself be an intermediate): ``chain`` without the issued certificate and
    without the roots."""
    roots = {pki.fingerprint(r) for r in bundle.roots}
    mine = pki.fingerprint(issued)
    return tuple(c for c in chain if pki.fingerprint(c) not in roots | {mine})


def check_issued_intermediate(cert: x509.Certificate, backend: str) -> x509.Certificate:
    """Refuse what a remote backend returned when it cannot sign SVIDs.

    Raises:
        SigningRefusedError: not a CA certificate (e.g. the backend's role or template is wrong).
    """
    problems = pki.signing_cert_problems(cert)
    if problems:
        raise SigningRefusedError(
            f"{backend} issued an intermediate meshfed cannot use: {problems[0]}"
            " (check the role or template: it must issue a CA certificate, path length 0)"
        )
    return cert


#: ``(CSR PEM, cluster, ttl) -> (certificate PEM, chain PEM)``: a remote backend's signing.
RemoteIssue = Callable[[bytes, str, timedelta], tuple[str, str]]


def sign_with_remote_root(
    csr: x509.CertificateSigningRequest,
    cluster: str,
    ttl: timedelta,
    bundle: TrustBundle,
    backend: str,
    issue: RemoteIssue,
) -> tuple[x509.Certificate, ...]:
    """What every remote root (Vault, AWS Private CA) does around its own signing call: check
    the CSR (signature, trust domain) first, ask ``issue`` for ``cluster``'s intermediate
    (common name :func:`trust.pki.intermediate_common_name`), refuse a non-CA answer, return
    the chain up to (not including) the bundle's roots.

    Raises:
        SigningRefusedError: bad CSR, foreign trust domain, or a certificate that cannot sign.
    """
    pki.check_csr_signature(csr)
    refuse_foreign_intermediate_csr(csr, bundle.trust_domain)
    csr_pem = pki.csr_to_pem(csr)
    cert_pem, chain_pem = issue(csr_pem, cluster, ttl)
    cert = check_issued_intermediate(
        pki.load_certificates(cert_pem.encode(), source=f"{backend} certificate")[0], backend
    )
    chain = (
        pki.load_certificates(chain_pem.encode(), source=f"{backend} chain") if chain_pem else []
    )
    return (cert, *chain_above(cert, chain, bundle))


@dataclass(frozen=True, slots=True, repr=False)
class LocalRootAuthority:
    """The federation root CA with its key held in memory (loaded from a 0600 file)."""

    certificate: x509.Certificate
    key: pki.IssuerKey
    bundle: TrustBundle
    clock: Clock = pki.utcnow

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
        """See :meth:`RootAuthority.sign_intermediate_csr`.

        Also refuses a CSR that asks for a URI SAN outside this trust domain.
        """
        refuse_foreign_intermediate_csr(csr, self.trust_domain)
        cert = pki.intermediate_certificate(
            csr,
            cluster,
            issuer_cert=self.certificate,
            issuer_key=self.key,
            trust_domain=self.trust_domain,
            now=self.clock(),
            ttl=ttl,
        )
        return (cert,)

    def trust_bundle(self) -> TrustBundle:
        """See :meth:`RootAuthority.trust_bundle`."""
        return self.bundle

    def __repr__(self) -> str:
        return f"LocalRootAuthority({self.certificate.subject.rfc4514_string()})"


def issue_svid(
    ca: CertificateAuthority,
    spiffe_id: SpiffeId,
    ttl: timedelta = pki.DEFAULT_SVID_TTL,
    *,
    dns_names: Sequence[str] = (),
) -> X509Svid:
    """Generate a P-256 key, have ``ca`` sign a CSR for ``spiffe_id``, return the SVID.

    Raises:
        SigningRefusedError: as :meth:`CertificateAuthority.sign_csr`.
    """
    key = pki.generate_private_key()
    chain = ca.sign_csr(
        pki.build_csr(key, spiffe_id=spiffe_id), spiffe_id, ttl, dns_names=dns_names
    )
    return X509Svid(spiffe_id, chain, key)


def load_key_file(path: Path) -> pki.IssuerKey:
    """Read a PEM private key that must be readable by its owner only (mode 0600 or stricter).

    Raises:
        TrustStoreError: the file is missing or group/world accessible.
        InvalidCertificateError: it does not hold a PEM key.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as err:
        raise TrustStoreError(f"cannot read key file {path}: {err.strerror}") from err
    if mode & 0o077:
        raise TrustStoreError(
            f"key file {path} has mode {mode:04o}; it must not be group/world accessible (0600)"
        )
    return pki.load_private_key(data, source=str(path))


def _read_certs(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TrustStoreError(f"cannot read certificate file {path}: {err.strerror}") from err
    return pki.load_certificates(data, source=str(path))
