"""Rotating the root of trust without downtime.

The procedure (as Istio's plug-in CA and SPIRE do it) has two steps, run some time apart
(three with SPIFFE federation):

0. :func:`publish_next_root` (optional, first) -- create the new root and add it to the
   bundle without signing with it: meshes federated with this trust domain fetch it at their
   refresh hint (SPIFFE_Federation.md 4.1: publish keys before they are used), while every
   SVID still chains to the old root. Step 1 then makes this root the signing one.

1. :func:`begin_root_rotation` -- create a new root, add it to the trust bundle next to the old
   one, make it the signing root, and re-issue every cluster's intermediate CA under it. While
   both roots are in the bundle, SVIDs chained to either verify, so workloads can pick up new
   SVIDs at their own pace (they renew at half life).
2. :func:`retire_old_roots` -- once every SVID issued under the old root has been renewed
   (wait at least one SVID lifetime, 24 h by default), drop the old roots from the bundle and
   delete their keys. Refused while any intermediate is still signed by an old root.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trust import pki
from trust.authority import RootAuthority
from trust.bundle import TrustBundle
from trust.errors import SigningRefusedError, TrustStoreError
from trust.store import PcaBackend, TrustDirectory, VaultBackend, root_id


@dataclass(frozen=True, slots=True)
class RootRotation:
    """What a rotation step did: the root ids involved and the clusters re-issued."""

    new_root: str
    bundle_roots: tuple[str, ...]
    retired_roots: tuple[str, ...] = ()
    reissued_clusters: tuple[str, ...] = ()


def _local_only(backend: str) -> None:
    if backend != "local":
        raise TrustStoreError(
            f"the root lives in {backend}: rotate it there, then run 'meshfed trust init"
            f" --backend {backend} --force' to read the new CA"
        )


def published_root(store: TrustDirectory) -> str | None:
    """The id of the root :func:`publish_next_root` added and step 1 has not activated yet
    (``trust.json``'s ``published_root``), or None."""
    cfg = store.config()
    rid = cfg.published_root
    return rid if rid in cfg.bundle_roots and rid != cfg.active_root else None


def publish_next_root(
    store: TrustDirectory, *, root_ttl: timedelta = pki.DEFAULT_ROOT_TTL
) -> RootRotation:
    """Step 0: add a new root to the bundle, not signing with it (see the module docstring).
    The active root stays last in the bundle (join tokens pin the last root, and the
    controller re-signs joined intermediates under it).

    Raises:
        TrustStoreError: as :func:`begin_root_rotation`, or a root is already published and
            waits for step 1.
    """
    cfg = store.config()
    _local_only(cfg.backend)
    waiting = published_root(store)
    if waiting is not None:
        raise TrustStoreError(
            f"root {waiting} is already published: make it the signing root with"
            " 'meshfed trust rotate-root'"
        )
    key = pki.generate_private_key()
    cert = pki.root_certificate(key, store.trust_domain(), now=pki.utcnow(), ttl=root_ttl)
    new = store.write_root(cert, key)
    roots = [*(r for r in cfg.bundle_roots if r != cfg.active_root), new, cfg.active_root]
    store.set_roots(active=cfg.active_root, bundle_roots=roots, published=new)
    return RootRotation(new, tuple(roots))


def begin_root_rotation(
    store: TrustDirectory,
    *,
    root_ttl: timedelta = pki.DEFAULT_ROOT_TTL,
    intermediate_ttl: timedelta = pki.DEFAULT_INTERMEDIATE_TTL,
) -> RootRotation:
    """Step 1: add a new root (or take the one step 0 published), make it active, re-issue
    every intermediate under it.

    Order (crash-safe): the new root's files, then the bundle with both roots, then the
    intermediates. A crash part-way leaves a bundle that still trusts everything issued.

    Raises:
        TrustStoreError: no trust directory, files cannot be written, or the root lives in
            Vault / AWS Private CA (rotate it there).
    """
    cfg = store.config()
    _local_only(cfg.backend)
    new = published_root(store)
    if new is None:
        key = pki.generate_private_key()
        cert = pki.root_certificate(key, store.trust_domain(), now=pki.utcnow(), ttl=root_ttl)
        new = store.write_root(cert, key)
    roots = [*(r for r in cfg.bundle_roots if r != new), new]
    store.set_roots(active=new, bundle_roots=roots)
    clusters = store.clusters()
    for cluster in clusters:
        store.create_intermediate(cluster, ttl=intermediate_ttl, force=True)
    return RootRotation(new, tuple(roots), reissued_clusters=tuple(clusters))


def move_root(
    store: TrustDirectory,
    *,
    vault: VaultBackend | None = None,
    aws_pca: PcaBackend | None = None,
    root_ttl: timedelta = pki.DEFAULT_ROOT_TTL,
    intermediate_ttl: timedelta = pki.DEFAULT_INTERMEDIATE_TTL,
) -> RootRotation:
    """Step 1, moving the root to another backend: the root of the Vault PKI mount
    (``vault``) or AWS Private CA (``aws_pca``) -- or, with neither, a new local root (back
    from Vault or AWS Private CA) -- joins the bundle, becomes the signing root (``trust.json``
    names its backend from now on) and re-issues every intermediate. The same guarantees as
    :func:`begin_root_rotation`: both roots are trusted until :func:`retire_old_roots`, which
    deletes a local old root's key (a remote one stays in its backend, only untrusted).

    Raises:
        TrustStoreError: a root is published and not signing (step 0 is for rotations inside
            one backend), or the backend's root is one the bundle already holds.
        TrustBackendError: the backend cannot be reached or refuses to sign.
    """
    cfg = store.config()
    waiting = published_root(store)
    if waiting is not None:
        raise TrustStoreError(
            f"root {waiting} is published and not signing yet: finish that rotation first"
            " (meshfed trust rotate-root)"
        )
    if vault is not None or aws_pca is not None:
        backend, certs = store.read_remote_roots(vault=vault, aws_pca=aws_pca)
        new = store.add_root_certificates(certs[:1])[0]
    else:
        backend = "local"
        key = pki.generate_private_key()
        cert = pki.root_certificate(key, store.trust_domain(), now=pki.utcnow(), ttl=root_ttl)
        new = store.write_root(cert, key)
    if new in cfg.bundle_roots:
        raise TrustStoreError(f"the {backend} root {new} is already in the bundle: nothing to move")
    roots = [*cfg.bundle_roots, new]
    store.set_roots(active=new, bundle_roots=roots, backend=(backend, vault, aws_pca))
    clusters = store.clusters()
    for cluster in clusters:
        store.create_intermediate(cluster, ttl=intermediate_ttl, force=True)
    return RootRotation(new, tuple(roots), reissued_clusters=tuple(clusters))


#: How long a joined cluster's intermediate must have been signed by the active root before
#: the old roots may be retired: its control plane keeps issuing under the previous
#: certificate for 15 s after a re-sign (``RECHAIN_GRACE_S``, so agents first fetch the
#: two-root bundle, every 5 s), then its workloads renew within one more poll -- about 20 s,
#: doubled here for loaded hosts. Retiring earlier cut every not-yet-renewed workload off
#: (found by the soak, issue #35).
RETIRE_AFTER_RESIGN = timedelta(seconds=40)


def retire_old_roots(
    store: TrustDirectory,
    joined: Mapping[str, bytes] | None = None,
    *,
    now: datetime | None = None,
) -> RootRotation:
    """Step 2: keep only the active root in the bundle and delete the other roots' keys.

    Args:
        joined: intermediates (PEM) the root signed for clusters that joined a federation
            and keep their key themselves, by cluster; each must be signed by the active root,
            at least :data:`RETIRE_AFTER_RESIGN` before ``now`` (default: the current time).

    Raises:
        TrustStoreError: an intermediate (of this directory, or a joined cluster's) is still
            signed by a root that would be retired, or was re-signed too recently for its
            workloads to have renewed -- every such cluster is named, with how long to
            wait -- or there is nothing to retire.
    """
    cfg = store.config()
    old = [rid for rid in cfg.bundle_roots if rid != cfg.active_root]
    if not old:
        raise TrustStoreError("nothing to retire: the bundle holds only the active root")
    waiting = published_root(store)
    if waiting is not None:
        raise TrustStoreError(
            f"root {waiting} is published and not signing yet: run 'meshfed trust rotate-root'"
            " to make it the signing root first (retiring now would drop it)"
        )
    active = store.bundle().roots[cfg.bundle_roots.index(cfg.active_root)]
    stale = sorted(
        name
        for name, pem in (joined or {}).items()
        if not pki.issued_by(pki.load_certificates(pem, source=name)[0], active)
    )
    if stale:
        raise TrustStoreError(
            f"joined clusters {', '.join(stale)} still chain only to the old root; retiring"
            " it would cut them off. The controller re-signs a joined cluster's intermediate"
            " over the sync channel once its control plane reports (within seconds while it"
            " is connected): check 'meshfed cluster list' and try again"
        )
    moment = now or pki.utcnow()
    waits = {
        name: RETIRE_AFTER_RESIGN - (moment - issued)
        for name, pem in (joined or {}).items()
        if moment - (issued := _issued_at(pem, name)) < RETIRE_AFTER_RESIGN
    }
    if waits:
        longest = math.ceil(max(waits.values()).total_seconds())
        raise TrustStoreError(
            f"joined clusters {', '.join(sorted(waits))} were re-signed under the new root"
            f" less than {RETIRE_AFTER_RESIGN.total_seconds():g} s ago; their workloads may"
            " not have renewed their SVIDs yet, and retiring the old root now would cut those"
            f" off until they do: try again in {longest} s"
        )
    for cluster in store.clusters():
        issuer = store.intermediate_issuer_id(cluster)
        if issuer != cfg.active_root:
            raise TrustStoreError(
                f"cluster {cluster!r} still has an intermediate signed by root {issuer};"
                " run 'meshfed trust rotate-root' to re-issue it first"
            )
    store.set_roots(active=cfg.active_root, bundle_roots=[cfg.active_root])
    for rid in old:
        store.destroy_root_key(rid)
    return RootRotation(cfg.active_root, (cfg.active_root,), retired_roots=tuple(old))


def _issued_at(pem: bytes, name: str) -> datetime:
    """When an intermediate was signed: its notBefore plus the skew allowance it was
    backdated by (:data:`trust.pki.CLOCK_SKEW_ALLOWANCE`)."""
    cert = pki.load_certificates(pem, source=name)[0]
    return cert.not_valid_before_utc + pki.CLOCK_SKEW_ALLOWANCE


def resign_reason(
    intermediate: x509.Certificate, active_root: x509.Certificate, now: datetime
) -> str | None:
    """Why a joined cluster's intermediate must be re-signed now, or None: it is not signed by
    the active root (a root rotation), or half its lifetime has passed (intermediates are
    short-lived and renewed over the sync channel)."""
    start, end = intermediate.not_valid_before_utc, intermediate.not_valid_after_utc
    return _reason(pki.issued_by(intermediate, active_root), start, end, now)


def _reason(issued: bool, start: datetime, end: datetime, now: datetime) -> str | None:
    """:func:`resign_reason` from what it reads of the certificates."""
    if not issued:
        return "not signed by the active root"
    if now >= start + (end - start) / 2:
        return f"past half of its lifetime (expires {end.isoformat()})"
    return None


def same_public_key(csr: x509.CertificateSigningRequest, cert: x509.Certificate) -> bool:
    """True when ``csr`` is for the key ``cert`` certifies (a re-sign keeps the key)."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(
        csr.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)
    )


__all__ = [
    "RootRotation",
    "begin_root_rotation",
    "move_root",
    "publish_next_root",
    "published_root",
    "resign_intermediate",
    "resign_needed",
    "resign_reason",
    "retire_old_roots",
    "root_id",
    "same_public_key",
]


def resign_needed(intermediate_pem: bytes, bundle: TrustBundle, now: datetime) -> str | None:
    """:func:`resign_reason` of a joined cluster's intermediate (PEM) against the newest root
    of ``bundle`` (the active one: :meth:`trust.store.TrustDirectory.set_roots` keeps it last,
    as join tokens pin it)."""
    active = bundle.roots[-1].public_bytes(serialization.Encoding.DER)
    return _reason(*_resign_facts(intermediate_pem, active), now)


@functools.lru_cache(maxsize=1024)
def _resign_facts(
    intermediate_pem: bytes, active_root_der: bytes
) -> tuple[bool, datetime, datetime]:
    """What :func:`resign_reason` decides from, for one intermediate (PEM) and active root
    (DER): signed by it, its notBefore and notAfter. Kept: a leader asks it for every
    member every few seconds, and the signature check and parse were ~2 ms a member with the
    event loop held (50 members: ~100 ms every lease/10).

    Raises:
        InvalidCertificateError: the intermediate does not parse (not kept).
    """
    cert = pki.load_certificates(intermediate_pem, source="joined intermediate")[0]
    root = x509.load_der_x509_certificate(active_root_der)
    return pki.issued_by(cert, root), cert.not_valid_before_utc, cert.not_valid_after_utc


def resign_intermediate(
    root: RootAuthority, csr_pem: bytes, current_pem: bytes, cluster: str, ttl: timedelta
) -> bytes:
    """Have the active root re-sign a joined cluster's intermediate (PEM chain out).

    The CSR must be for the key of ``current_pem`` (the one pinned at join): a cluster can
    renew its intermediate, never swap its key through the sync channel.

    Raises:
        InvalidCertificateError: the CSR or certificate does not parse.
        SigningRefusedError: another key, a bad CSR signature or trust domain.
    """
    csr = pki.load_csr(csr_pem, source=f"intermediate CSR of {cluster}")
    current = pki.load_certificates(current_pem, source=f"intermediate of {cluster}")[0]
    if not same_public_key(csr, current):
        raise SigningRefusedError(
            f"the intermediate CSR of {cluster!r} is for another key than the one it joined with"
        )
    return pki.certificates_to_pem(list(root.sign_intermediate_csr(csr, cluster, ttl)))
