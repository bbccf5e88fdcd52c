"""The on-disk trust directory behind ``meshfed trust`` (default ``$MESHFED_HOME/trust``).

Layout::

    trust.json                         TrustConfig: trust domain, backend (local, vault, aws-pca
                                       with its non-secret settings), active root, bundle roots
    bundle.pem                         every trusted root (PEM)
    bundle.spiffe.json                 the same as a SPIFFE bundle (JWK Set)
    roots/<root-id>/ca.pem             a root CA certificate (root-id: first 16 hex of its SHA-256)
    roots/<root-id>/ca-key.pem         its key, 0600 (deleted when the root is retired; absent
                                       when the root lives in Vault or AWS Private CA)
    intermediates/<cluster>/ca.pem     the cluster's intermediate CA certificate
    intermediates/<cluster>/ca-key.pem its key, 0600

Directories holding keys are 0700. Every file is written atomically; nothing that exists is
overwritten unless the caller passes ``force=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from pydantic import BaseModel, ConfigDict, ValidationError

from trust import pki
from trust.authority import (
    LocalCertificateAuthority,
    LocalRootAuthority,
    RootAuthority,
    issue_svid,
    load_key_file,
)
from trust.bundle import TrustBundle
from trust.errors import TrustStoreError
from trust.files import (
    CERT_FILE_MODE,
    KEY_FILE_MODE,
    ensure_dir,
    refuse_overwrite,
    write_atomic,
)
from trust.spiffe import SpiffeId, TrustDomain
from trust.svid import X509Svid

CONFIG_FILE = "trust.json"
#: Cluster names: DNS-label-like, as Kubernetes cluster and context names usually are.
CLUSTER_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class VaultBackend(BaseModel):
    """``trust.json`` ``vault``: where the PKI mount is and how to log in (no secret here:
    see :class:`trust.vault_client.VaultSettings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str
    mount: str = "pki"
    auth: Literal["token", "approle", "kubernetes"] = "token"
    role: str = ""
    namespace: str | None = None


class PcaBackend(BaseModel):
    """``trust.json`` ``aws_pca``: the AWS Private CA and its region."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_arn: str
    region: str


class TrustConfig(BaseModel):
    """Schema of ``trust.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trust_domain: str
    backend: Literal["local", "vault", "aws-pca"] = "local"
    active_root: str
    bundle_roots: list[str]
    bundle_sequence: int = 1
    vault: VaultBackend | None = None
    aws_pca: PcaBackend | None = None
    #: a root in the bundle that does not sign yet (``rotate-root --publish-only``)
    published_root: str | None = None


Backend = Literal["local", "vault", "aws-pca"]


def backend_settings(
    backend: str,
    *,
    vault_address: str | None = None,
    vault_mount: str = "pki",
    vault_auth: str = "token",
    vault_role: str = "",
    pca_arn: str | None = None,
    pca_region: str | None = None,
) -> tuple[VaultBackend | None, PcaBackend | None]:
    """The settings of a root's backend from flags: Vault's for ``vault``, AWS Private CA's
    for ``aws-pca``, neither for ``local``.

    Raises:
        TrustStoreError: a setting the backend needs is missing (names the flag).
    """
    if backend == "vault":
        if not vault_address:
            raise TrustStoreError("--vault-address (or VAULT_ADDR) is required for a Vault root")
        return VaultBackend.model_validate(
            {"address": vault_address, "mount": vault_mount, "auth": vault_auth, "role": vault_role}
        ), None
    if backend == "aws-pca":
        if not pca_arn or not pca_region:
            raise TrustStoreError("--pca-arn and --pca-region are required for AWS Private CA")
        return None, PcaBackend(ca_arn=pca_arn, region=pca_region)
    return None, None


def root_id(cert: x509.Certificate) -> str:
    """A root's short id: the first 16 hex digits of its SHA-256 fingerprint."""
    return pki.fingerprint(cert)[:16]


def validate_cluster_name(name: str) -> str:
    """Return ``name`` if it is a valid cluster name (lowercase DNS label, <= 63 chars).

    Raises:
        TrustStoreError: naming the rule broken.
    """
    if not CLUSTER_NAME_RE.match(name):
        raise TrustStoreError(
            f"invalid cluster name {name!r}: use 1-63 lowercase letters, digits and '-',"
            " starting and ending with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class SvidFiles:
    """Where :meth:`TrustDirectory.write_svid` put an SVID."""

    chain: Path
    key: Path
    bundle: Path


class TrustDirectory:
    """Reads and writes a trust directory; see the module docstring for the layout."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # -- paths -----------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """``trust.json``."""
        return self.path / CONFIG_FILE

    @property
    def bundle_pem_path(self) -> Path:
        """``bundle.pem``."""
        return self.path / "bundle.pem"

    @property
    def bundle_spiffe_path(self) -> Path:
        """``bundle.spiffe.json``."""
        return self.path / "bundle.spiffe.json"

    def root_dir(self, rid: str) -> Path:
        """``roots/<rid>``."""
        return self.path / "roots" / rid

    def intermediate_dir(self, cluster: str) -> Path:
        """``intermediates/<cluster>``."""
        return self.path / "intermediates" / validate_cluster_name(cluster)

    # -- reading ---------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when ``trust.json`` is present."""
        return self.config_path.exists()

    def config(self) -> TrustConfig:
        """Parse ``trust.json``.

        Raises:
            TrustStoreError: missing (run ``meshfed trust init``) or invalid.
        """
        try:
            text = self.config_path.read_text()
        except FileNotFoundError as err:
            raise TrustStoreError(
                f"no trust directory at {self.path} (run 'meshfed trust init' first)"
            ) from err
        except OSError as err:
            raise TrustStoreError(f"cannot read {self.config_path}: {err.strerror}") from err
        try:
            return TrustConfig.model_validate_json(text)
        except ValidationError as err:
            raise TrustStoreError(f"{self.config_path} is invalid: {err}") from err

    def trust_domain(self) -> TrustDomain:
        """The configured trust domain."""
        return TrustDomain(self.config().trust_domain)

    def _root_cert(self, rid: str) -> x509.Certificate:
        path = self.root_dir(rid) / "ca.pem"
        try:
            return pki.load_certificates(path.read_bytes(), source=str(path))[0]
        except OSError as err:
            raise TrustStoreError(f"cannot read root certificate {path}: {err.strerror}") from err

    def bundle(self) -> TrustBundle:
        """The trust bundle: every root listed in ``trust.json``, oldest first."""
        cfg = self.config()
        roots = tuple(self._root_cert(rid) for rid in cfg.bundle_roots)
        return TrustBundle(TrustDomain(cfg.trust_domain), roots, cfg.bundle_sequence)

    def root_authority(self) -> RootAuthority:
        """The root CA of the configured backend, ready to sign intermediates: the local key
        file, Vault PKI (:mod:`trust.vault`) or AWS Private CA (:mod:`trust.aws_pca`).

        Raises:
            TrustStoreError: the local key file is missing or has loose permissions.
            TrustBackendError: the remote backend cannot be logged in to.
        """
        cfg = self.config()
        if cfg.backend == "vault" and cfg.vault is not None:
            from trust.vault import VaultRootAuthority
            from trust.vault_client import VaultPkiClient, VaultSettings

            client = VaultPkiClient(VaultSettings(**cfg.vault.model_dump()))
            return VaultRootAuthority(client, self.bundle())
        if cfg.backend == "aws-pca" and cfg.aws_pca is not None:
            from trust.aws_pca import AwsPcaRootAuthority, PcaClient

            return AwsPcaRootAuthority(
                PcaClient(cfg.aws_pca.ca_arn, cfg.aws_pca.region), self.bundle()
            )
        key = load_key_file(self.root_dir(cfg.active_root) / "ca-key.pem")
        return LocalRootAuthority(self._root_cert(cfg.active_root), key, self.bundle())

    def init_remote(
        self,
        trust_domain: TrustDomain,
        *,
        vault: VaultBackend | None = None,
        aws_pca: PcaBackend | None = None,
        force: bool = False,
    ) -> TrustBundle:
        """Use a root of trust held in Vault or AWS Private CA: read its CA certificate (and
        chain) from the backend and keep the self-signed one(s) as the trust bundle; no key is
        stored here.

        Raises:
            KeyMaterialExistsError: a trust directory exists here and ``force`` is False.
            TrustBackendError: the backend cannot be reached or refuses.
            InvalidCertificateError: the backend returned no usable CA certificate.
        """
        refuse_overwrite([self.config_path], force=force)
        backend, roots = self.read_remote_roots(vault=vault, aws_pca=aws_pca)
        ids = self.add_root_certificates(roots)
        bundle = TrustBundle(trust_domain, tuple(roots))
        self._write_bundle_files(bundle)
        self._write_config(
            TrustConfig(
                trust_domain=trust_domain.name,
                backend=backend,
                active_root=ids[0],
                bundle_roots=ids,
                vault=vault,
                aws_pca=aws_pca,
            )
        )
        return bundle

    @staticmethod
    def read_remote_roots(
        *, vault: VaultBackend | None = None, aws_pca: PcaBackend | None = None
    ) -> tuple[Backend, list[x509.Certificate]]:
        """The backend's name and the self-signed CA certificate(s) it holds (else the last
        of its chain).

        Raises:
            TrustStoreError: neither setting given.
            TrustBackendError: the backend cannot be reached or refuses.
            InvalidCertificateError: it returned no usable CA certificate.
        """
        if vault is not None:
            from trust.vault_client import VaultPkiClient, VaultSettings

            pem = VaultPkiClient(VaultSettings(**vault.model_dump())).ca_pem()
            backend: Backend = "vault"
        elif aws_pca is not None:
            from trust.aws_pca import PcaClient

            pem = PcaClient(aws_pca.ca_arn, aws_pca.region).ca_pem()
            backend = "aws-pca"
        else:
            raise TrustStoreError("a remote root needs the vault or aws_pca settings")
        certs = pki.load_certificates(pem.encode(), source=f"{backend} CA certificate")
        return backend, [c for c in certs if c.issuer == c.subject] or [certs[-1]]

    def add_root_certificates(self, roots: list[x509.Certificate]) -> list[str]:
        """Store root certificates without keys (a remote root's) under ``roots/<id>``;
        their ids."""
        ensure_dir(self.path)
        ids = []
        for cert in roots:
            rid = root_id(cert)
            ensure_dir(self.root_dir(rid))
            write_atomic(
                self.root_dir(rid) / "ca.pem", pki.certificates_to_pem([cert]), CERT_FILE_MODE
            )
            ids.append(rid)
        return ids

    def clusters(self) -> list[str]:
        """Clusters that have an intermediate CA, sorted."""
        base = self.path / "intermediates"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "ca.pem").exists())

    def intermediate_certificate(self, cluster: str) -> x509.Certificate:
        """The intermediate CA certificate of ``cluster``.

        Raises:
            TrustStoreError: the cluster has none (run ``meshfed trust intermediate``).
        """
        path = self.intermediate_dir(cluster) / "ca.pem"
        if not path.exists():
            raise TrustStoreError(
                f"cluster {cluster!r} has no intermediate CA in {self.path}"
                f" (run 'meshfed trust intermediate --cluster {cluster}')"
            )
        return pki.load_certificates(path.read_bytes(), source=str(path))[0]

    def cluster_authority(self, cluster: str) -> LocalCertificateAuthority:
        """The intermediate CA of ``cluster``, ready to sign SVIDs."""
        self.intermediate_certificate(cluster)  # friendly error when missing
        d = self.intermediate_dir(cluster)
        return LocalCertificateAuthority.load(d / "ca.pem", d / "ca-key.pem", self.bundle())

    # -- writing ---------------------------------------------------------------------------

    def _write_config(self, cfg: TrustConfig) -> None:
        write_atomic(
            self.config_path, (cfg.model_dump_json(indent=2) + "\n").encode(), CERT_FILE_MODE
        )

    def _write_bundle_files(self, bundle: TrustBundle) -> None:
        write_atomic(self.bundle_pem_path, bundle.to_pem(), CERT_FILE_MODE)
        write_atomic(self.bundle_spiffe_path, bundle.to_spiffe_json().encode(), CERT_FILE_MODE)

    def write_root(self, cert: x509.Certificate, key: pki.IssuerKey) -> str:
        """Store a root certificate and key under ``roots/<id>``; return the id."""
        rid = root_id(cert)
        d = self.root_dir(rid)
        ensure_dir(d)
        write_atomic(d / "ca-key.pem", pki.private_key_to_pem(key), KEY_FILE_MODE)
        write_atomic(d / "ca.pem", pki.certificates_to_pem([cert]), CERT_FILE_MODE)
        return rid

    def init(
        self,
        trust_domain: TrustDomain,
        *,
        ttl: timedelta = pki.DEFAULT_ROOT_TTL,
        force: bool = False,
    ) -> TrustBundle:
        """Create a root CA (ECDSA P-256, self-signed) and the trust bundle.

        Raises:
            KeyMaterialExistsError: a trust directory exists here and ``force`` is False.
            TrustStoreError: files cannot be written.
        """
        refuse_overwrite([self.config_path], force=force)
        ensure_dir(self.path)
        key = pki.generate_private_key()
        cert = pki.root_certificate(key, trust_domain, now=pki.utcnow(), ttl=ttl)
        rid = self.write_root(cert, key)
        bundle = TrustBundle(trust_domain, (cert,))
        self._write_bundle_files(bundle)
        self._write_config(
            TrustConfig(trust_domain=trust_domain.name, active_root=rid, bundle_roots=[rid])
        )
        return bundle

    def create_intermediate(
        self, cluster: str, *, ttl: timedelta = pki.DEFAULT_INTERMEDIATE_TTL, force: bool = False
    ) -> x509.Certificate:
        """Generate the intermediate CA of ``cluster`` and have the active root sign it.

        Raises:
            KeyMaterialExistsError: the cluster has one and ``force`` is False.
            TrustStoreError: no trust directory, bad cluster name, unwritable files.
        """
        d = self.intermediate_dir(cluster)
        refuse_overwrite([d / "ca-key.pem", d / "ca.pem"], force=force)
        root = self.root_authority()
        key = pki.generate_private_key()
        csr = pki.build_csr(key, subject=pki.intermediate_subject(self.trust_domain(), cluster))
        chain = root.sign_intermediate_csr(csr, cluster, ttl)
        ensure_dir(d)
        write_atomic(d / "ca-key.pem", pki.private_key_to_pem(key), KEY_FILE_MODE)
        write_atomic(d / "ca.pem", pki.certificates_to_pem(chain), CERT_FILE_MODE)
        return chain[0]

    def issue_svid(
        self, cluster: str, spiffe_id: SpiffeId, *, ttl: timedelta = pki.DEFAULT_SVID_TTL
    ) -> X509Svid:
        """Issue an X.509-SVID for ``spiffe_id`` from ``cluster``'s intermediate CA.

        Raises:
            SigningRefusedError: ``spiffe_id`` is outside the trust domain.
            TrustStoreError: the cluster has no intermediate CA.
        """
        return issue_svid(self.cluster_authority(cluster), spiffe_id, ttl)

    @staticmethod
    def svid_paths(out_dir: Path) -> SvidFiles:
        """Where an SVID goes inside ``out_dir``: ``svid.pem``, ``svid-key.pem``, ``bundle.pem``."""
        return SvidFiles(out_dir / "svid.pem", out_dir / "svid-key.pem", out_dir / "bundle.pem")

    @classmethod
    def write_svid(
        cls, svid: X509Svid, bundle: TrustBundle, out_dir: Path, *, force: bool = False
    ) -> SvidFiles:
        """Write ``svid.pem`` (leaf then intermediates), ``svid-key.pem`` (0600), ``bundle.pem``.

        Raises:
            KeyMaterialExistsError: any of them exists and ``force`` is False (nothing written).
        """
        files = cls.svid_paths(out_dir)
        refuse_overwrite([files.key, files.chain, files.bundle], force=force)
        ensure_dir(out_dir)
        write_atomic(files.key, svid.private_key_pem(), KEY_FILE_MODE)
        write_atomic(files.chain, svid.chain_pem(), CERT_FILE_MODE)
        write_atomic(files.bundle, bundle.to_pem(), CERT_FILE_MODE)
        return files

    # -- root rotation primitives (the procedure lives in trust.root_rotation) --------------

    def set_roots(
        self,
        *,
        active: str,
        bundle_roots: list[str],
        published: str | None = None,
        backend: tuple[Backend, VaultBackend | None, PcaBackend | None] | None = None,
    ) -> TrustBundle:
        """Make ``active`` the signing root and trust exactly ``bundle_roots`` (``published``:
        one of them that does not sign yet; ``backend``: where ``active`` lives, with its
        settings, when it moves -- written in the same ``trust.json``); rewrite bundles.

        The bundle sequence increases when the set of roots changes.
        """
        cfg = self.config()
        sequence = cfg.bundle_sequence + (1 if bundle_roots != cfg.bundle_roots else 0)
        new_cfg = cfg.model_copy(
            update={
                "active_root": active,
                "bundle_roots": bundle_roots,
                "bundle_sequence": sequence,
                "published_root": published,
                **(
                    {"backend": backend[0], "vault": backend[1], "aws_pca": backend[2]}
                    if backend is not None
                    else {}
                ),
            }
        )
        roots = tuple(self._root_cert(rid) for rid in bundle_roots)
        bundle = TrustBundle(TrustDomain(cfg.trust_domain), roots, sequence)
        self._write_bundle_files(bundle)
        self._write_config(new_cfg)
        return bundle

    def root_crls(self, *, now: datetime | None = None) -> bytes | None:
        """A CRL (PEM, concatenated) of every root in the bundle: an empty one signed with
        the root's key file (:func:`trust.revocation.empty_crl`), or, for the active root in
        Vault or AWS Private CA, the backend's own CRL
        (:meth:`trust.vault.VaultRootAuthority.root_crl`,
        :meth:`trust.aws_pca.AwsPcaRootAuthority.root_crl`); None when a root has neither (a
        remote root no longer active; a retired root's deleted key).

        Raises:
            TrustStoreError: a key file is unreadable or group/world accessible.
            TrustBackendError: the backend cannot be reached, publishes no CRL (AWS Private
                CA without a CRL configuration), or its CRL is not the root's or expired.
        """
        from trust.revocation import empty_crl

        cfg = self.config()
        out = []
        for rid in cfg.bundle_roots:
            path = self.root_dir(rid) / "ca-key.pem"
            root = self._root_cert(rid)
            if path.exists():
                out.append(empty_crl(root, load_key_file(path), now=now))
                continue
            if rid != cfg.active_root or cfg.backend not in ("vault", "aws-pca"):
                return None
            read_crl = getattr(self.root_authority(), "root_crl", None)  # a remote root's
            if read_crl is None:
                return None
            out.append(read_crl(root, now=now))
        return b"".join(out)

    def destroy_root_key(self, rid: str) -> None:
        """Delete a retired root's private key (its certificate stays for the record)."""
        key = self.root_dir(rid) / "ca-key.pem"
        try:
            key.unlink(missing_ok=True)
        except OSError as err:
            raise TrustStoreError(f"cannot delete {key}: {err.strerror}") from err

    def intermediate_issuer_id(self, cluster: str) -> str:
        """The id of the root that signed ``cluster``'s intermediate (by AKI = root SKI)."""
        cert = self.intermediate_certificate(cluster)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        for rid in [*self.config().bundle_roots, self.config().active_root]:
            root = self._root_cert(rid)
            ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            if ski.digest == aki.key_identifier:
                return rid
        return "unknown"

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary: trust domain, roots, clusters (for ``-o json``)."""
        cfg = self.config()
        return {
            "trust_domain": cfg.trust_domain,
            "dir": str(self.path),
            "active_root": cfg.active_root,
            "bundle_roots": cfg.bundle_roots,
            "bundle_sequence": cfg.bundle_sequence,
            "clusters": self.clusters(),
        }
