"""A workload's identity directory: its SVID, key and trust bundle as files Envoy and gRPC
watch, replaced atomically.

Layout of ``<dir>`` (mode 0700)::

    cert.pem  key.pem (0600)  bundle.pem     the current files (gRPC ``file_watcher``,
    [crl.pem]  members.pem                   ``meshfed`` reuse after a restart); members.pem
                                             is what gRPC trusts: every member cluster's CA
                                             (the bundle when not in a federation)
    spiffe_bundles.json                      the same anchors per trust domain, with every
                                             federated domain's bundle: gRPC's SPIFFE bundle
                                             map (gRFC A87, ``spiffe_bundle_map_file``)
    v<N>/cert.pem key.pem bundle.pem [crl.pem]  one directory per version, never modified
    svid.json                                SDS secret ``default`` (tls_certificate) -> v<N>
    rootca.json                              SDS secret ``ROOTCA`` (validation_context: bundle,
                                             member CRLs) -> v<N>

Envoy reads ``svid.json`` and ``rootca.json`` as file-based SDS
(``sds_config.path_config_source``; Envoy docs, "config.core.v3.PathConfigSource": "the path
is watched for moves"). A new version is written to a fresh ``v<N>`` first and then each JSON
file is replaced by a rename, so Envoy always reads a certificate and key of the same version.
The two previous versions are kept for readers still on them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trust.bundle import spiffe_bundle_map
from trust.errors import InvalidSpiffeIdError
from trust.files import CERT_FILE_MODE, KEY_FILE_MODE, ensure_dir, write_atomic
from trust.spiffe import TrustDomain

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
#: SDS secret names (as Istio): the proxy's own SVID and the trust bundle.
SVID_SECRET = "default"
ROOTCA_SECRET = "ROOTCA"
SVID_SDS_FILE = "svid.json"
#: Envoy's type URL of the SPIFFE validator's configuration.
SPIFFE_VALIDATOR_TYPE = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"
)
ROOTCA_SDS_FILE = "rootca.json"
_KEEP_VERSIONS = 3


def svid_sds_document(version_dir: Path) -> dict[str, Any]:
    """File-based SDS for secret ``default`` (a DiscoveryResponse as JSON)."""
    return {
        "resources": [
            {
                "@type": SECRET_TYPE,
                "name": SVID_SECRET,
                "tls_certificate": {
                    "certificate_chain": {"filename": str(version_dir / "cert.pem")},
                    "private_key": {"filename": str(version_dir / "key.pem")},
                },
            }
        ]
    }


def rootca_sds_document(
    version_dir: Path,
    *,
    crl: bool = False,
    trust_domain: str = "",
    federated: Sequence[str] = (),
) -> dict[str, Any]:
    """File-based SDS for secret ``ROOTCA``: the trust bundle as ``trusted_ca``; with ``crl``
    also the member clusters' CRLs (``crl.pem``), checked for leaf certificates only
    (``only_verify_leaf_cert_crl``: a leaf whose issuer has no CRL there is refused).

    With ``federated`` trust domains (SPIFFE federation), Envoy's SPIFFE validator instead
    (``envoy.tls.cert_validator.spiffe``, ``SPIFFECertValidatorConfig.trust_domains``): each
    SVID is verified with the bundle of the domain its URI SAN names, never another's --
    ``trust_domain``'s is ``local.pem`` (bundle and CRLs: BoringSSL then checks a CRL for
    every CA of the chain, so the CRLs include the roots'), each foreign one
    ``federated/<domain>.pem``."""
    context: dict[str, Any] = {"trusted_ca": {"filename": str(version_dir / "bundle.pem")}}
    if federated:
        domains = [
            {"name": trust_domain, "trust_bundle": {"filename": str(version_dir / "local.pem")}}
        ]
        domains += [
            {"name": d, "trust_bundle": {"filename": str(version_dir / "federated" / f"{d}.pem")}}
            for d in federated
        ]
        context = {
            "custom_validator_config": {
                "name": "envoy.tls.cert_validator.spiffe",
                "typed_config": {"@type": SPIFFE_VALIDATOR_TYPE, "trust_domains": domains},
            }
        }
    elif crl:
        context["crl"] = {"filename": str(version_dir / "crl.pem")}
        context["only_verify_leaf_cert_crl"] = True
    return {
        "resources": [{"@type": SECRET_TYPE, "name": ROOTCA_SECRET, "validation_context": context}]
    }


@dataclass(frozen=True, slots=True)
class IdentityDirectory:
    """See the module docstring. ``path`` should be absolute (Envoy resolves it)."""

    path: Path

    @property
    def cert(self) -> Path:
        """The current chain (leaf first)."""
        return self.path / "cert.pem"

    @property
    def key(self) -> Path:
        """The current private key (0600)."""
        return self.path / "key.pem"

    @property
    def bundle(self) -> Path:
        """The current trust bundle."""
        return self.path / "bundle.pem"

    @property
    def svid_sds(self) -> Path:
        """Envoy's file-based SDS source of secret ``default``."""
        return self.path / SVID_SDS_FILE

    @property
    def rootca_sds(self) -> Path:
        """Envoy's file-based SDS source of secret ``ROOTCA``."""
        return self.path / ROOTCA_SDS_FILE

    def _versions(self) -> list[int]:
        if not self.path.exists():
            return []
        return sorted(
            int(p.name[1:])
            for p in self.path.iterdir()
            if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit()
        )

    @property
    def crl(self) -> Path:
        """The current member CRLs (may be absent: no revocation checks)."""
        return self.path / "crl.pem"

    @property
    def members(self) -> Path:
        """The trust anchors of a proxyless gRPC workload (its bootstrap's
        ``ca_certificate_file``): every member cluster's CA certificate, so an SVID of a
        removed cluster does not verify (gRPC checks no CRL; it accepts an intermediate as
        anchor). The trust bundle itself when the control plane is not in a federation."""
        return self.path / "members.pem"

    @property
    def spiffe_bundles(self) -> Path:
        """The SPIFFE bundle map of a proxyless gRPC workload (its bootstrap's
        ``spiffe_bundle_map_file``, read by gRPC when ``GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE``
        is true): this trust domain's anchors (:attr:`members`) and each federated domain's
        bundle, so an SVID is verified with its own domain's anchors only. Written when the
        trust domain is known."""
        return self.path / "spiffe_bundles.json"

    def write(
        self,
        chain_pem: bytes,
        key_pem: bytes,
        bundle_pem: bytes,
        crl_pem: bytes = b"",
        members_pem: bytes = b"",
        *,
        federated: Mapping[str, bytes] | None = None,
        trust_domain: str = "",
    ) -> Path:
        """Publish a new version; returns its directory. ``crl_pem`` empty: no CRL checks;
        ``members_pem`` empty: gRPC trusts the bundle (:attr:`members`); ``federated``:
        foreign trust domain -> its bundle, validated per domain (:func:`rootca_sds_document`;
        ``trust_domain`` is this proxy's).

        Raises:
            trust.errors.TrustStoreError: the directory cannot be created.
            OSError: a file cannot be written.
        """
        ensure_dir(self.path)
        versions = self._versions()
        version_dir = self.path / f"v{(versions[-1] + 1) if versions else 1}"
        ensure_dir(version_dir)
        write_atomic(version_dir / "key.pem", key_pem, KEY_FILE_MODE)
        write_atomic(version_dir / "cert.pem", chain_pem, CERT_FILE_MODE)
        write_atomic(version_dir / "bundle.pem", bundle_pem, CERT_FILE_MODE)
        if crl_pem:
            write_atomic(version_dir / "crl.pem", crl_pem, CERT_FILE_MODE)
        domains = sorted(federated or {})
        for d in domains:  # names become file names: SPIFFE-ID.md 2.1's characters only
            try:
                TrustDomain(d)
            except InvalidSpiffeIdError as err:
                raise ValueError(
                    f"federated trust domain {d!r} is not a trust domain name"
                ) from err
        if domains:
            write_atomic(version_dir / "local.pem", _joined(bundle_pem, crl_pem), CERT_FILE_MODE)
            ensure_dir(version_dir / "federated")
            for d in domains:
                pem = (federated or {})[d]
                write_atomic(version_dir / "federated" / f"{d}.pem", pem, CERT_FILE_MODE)
        rootca = rootca_sds_document(
            version_dir, crl=bool(crl_pem), trust_domain=trust_domain, federated=domains
        )
        for path, doc in (
            (self.svid_sds, svid_sds_document(version_dir)),
            (self.rootca_sds, rootca),
        ):
            write_atomic(path, json.dumps(doc, indent=1).encode(), CERT_FILE_MODE)
        write_atomic(self.key, key_pem, KEY_FILE_MODE)
        write_atomic(self.cert, chain_pem, CERT_FILE_MODE)
        write_atomic(self.bundle, bundle_pem, CERT_FILE_MODE)
        write_atomic(self.members, members_pem or bundle_pem, CERT_FILE_MODE)
        if trust_domain:
            anchors = {**(federated or {}), trust_domain: members_pem or bundle_pem}
            bundle_map = json.dumps(spiffe_bundle_map(anchors), indent=1).encode()
            write_atomic(self.spiffe_bundles, bundle_map, CERT_FILE_MODE)
        if crl_pem:
            write_atomic(self.crl, crl_pem, CERT_FILE_MODE)
        else:
            self.crl.unlink(missing_ok=True)
        for old in self._versions()[:-_KEEP_VERSIONS]:
            shutil.rmtree(self.path / f"v{old}", ignore_errors=True)
        return version_dir

    def read(self) -> tuple[bytes, bytes, bytes, bytes] | None:
        """``(chain, key, bundle, crls)`` PEM of the current version (crls ``b""`` when there
        are none), or None if incomplete."""
        try:
            found = self.cert.read_bytes(), self.key.read_bytes(), self.bundle.read_bytes()
        except FileNotFoundError:
            return None
        return (*found, self.crl.read_bytes() if self.crl.exists() else b"")


def _joined(*pems: bytes) -> bytes:
    """PEM texts concatenated, each ending in a newline."""
    return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in pems if p)
