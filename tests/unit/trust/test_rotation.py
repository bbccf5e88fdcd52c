"""SVID renewal at half life, and root rotation without downtime."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import pytest

from trust import pki
from trust.authority import issue_svid
from trust.errors import SigningRefusedError, TrustStoreError, VerificationError
from trust.root_rotation import RETIRE_AFTER_RESIGN, begin_root_rotation, retire_old_roots
from trust.rotation import SvidRotator
from trust.spiffe import SpiffeId, TrustDomain

SID = SpiffeId.parse("spiffe://example.org/ns/demo/sa/echo")


class FakeClock:
    """A clock that only moves when the rotator 'sleeps'."""

    def __init__(self, start) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self):
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


async def test_rotator_renews_at_half_life_with_jitter_and_notifies(trust_dir) -> None:
    clock = FakeClock(pki.utcnow())
    ca = dataclasses.replace(trust_dir.cluster_authority("east"), clock=clock)

    async def issue():
        return issue_svid(ca, SID, timedelta(hours=24))

    rotator = SvidRotator(issue, now=clock, sleep=clock.sleep, rng=random.Random(1))
    seen = []
    rotator.subscribe(seen.append)
    await rotator.run(max_renewals=3)
    assert len(seen) == 3
    assert rotator.current is seen[-1]
    # first sleep is 0 (no SVID yet); later ones land between 40% and 50% of 24 h (+ skew)
    later = clock.sleeps[1:]
    assert len(later) == 2
    for seconds in later:
        assert 0.4 * 24 * 3600 - 600 <= seconds <= 0.5 * 24 * 3600


async def test_rotator_keeps_current_svid_when_issuance_fails(trust_dir) -> None:
    calls = {"n": 0}
    good = trust_dir.issue_svid("east", SID, ttl=timedelta(hours=1))

    async def flaky():
        calls["n"] += 1
        if calls["n"] == 2:
            raise SigningRefusedError("CA unavailable")
        return good

    clock = FakeClock(good.not_before)
    rotator = SvidRotator(flaky, now=clock, sleep=clock.sleep, retry_delay_s=3.0)
    await rotator.run(max_renewals=2)
    assert calls["n"] == 3
    assert 3.0 in clock.sleeps
    assert rotator.current is good


def test_subscribe_gets_current_immediately_and_unsubscribes(trust_dir) -> None:
    async def issue():
        return trust_dir.issue_svid("east", SID)

    rotator = SvidRotator(issue)
    seen = []
    unsubscribe = rotator.subscribe(seen.append)
    unsubscribe()
    assert seen == []


def test_root_rotation_both_roots_verify_then_old_fails(trust_dir) -> None:
    old_svid = trust_dir.issue_svid("east", SID)
    old_bundle = trust_dir.bundle()
    result = begin_root_rotation(trust_dir)
    assert result.reissued_clusters == ("east",)
    bundle = trust_dir.bundle()
    assert len(bundle.roots) == 2
    assert bundle.sequence == old_bundle.sequence + 1
    new_svid = trust_dir.issue_svid("east", SID)
    assert new_svid.cert_chain[1] != old_svid.cert_chain[1]
    # while both roots are trusted, both chains verify
    assert bundle.verify(old_svid.cert_chain) == SID
    assert bundle.verify(new_svid.cert_chain) == SID
    # a workload still holding only the old bundle can't verify the new chain: that is why
    # the bundle is distributed before new SVIDs are issued
    with pytest.raises(VerificationError):
        old_bundle.verify(new_svid.cert_chain)

    retired = retire_old_roots(trust_dir)
    assert retired.retired_roots == (old_bundle.fingerprints()[0][:16],)
    final = trust_dir.bundle()
    assert len(final.roots) == 1
    assert final.verify(new_svid.cert_chain) == SID
    with pytest.raises(VerificationError):
        final.verify(old_svid.cert_chain)
    assert not (trust_dir.root_dir(retired.retired_roots[0]) / "ca-key.pem").exists()


def test_retire_refused_when_nothing_to_retire_or_intermediate_not_reissued(trust_dir) -> None:
    with pytest.raises(TrustStoreError, match="nothing to retire"):
        retire_old_roots(trust_dir)
    begin_root_rotation(trust_dir)
    # simulate an intermediate that was not re-issued: sign one with the old root again
    cfg = trust_dir.config()
    old = next(r for r in cfg.bundle_roots if r != cfg.active_root)
    trust_dir.set_roots(active=old, bundle_roots=cfg.bundle_roots)
    trust_dir.create_intermediate("west")
    trust_dir.set_roots(active=cfg.active_root, bundle_roots=cfg.bundle_roots)
    with pytest.raises(
        TrustStoreError, match="cluster 'west' still has an intermediate signed by root"
    ):
        retire_old_roots(trust_dir)
    assert len(trust_dir.bundle().roots) == 2


def test_retire_refused_while_a_joined_cluster_chains_only_to_the_old_root(trust_dir) -> None:
    key = pki.generate_private_key()
    csr = pki.build_csr(key, spiffe_id=trust_dir.trust_domain().id)
    chain = trust_dir.root_authority().sign_intermediate_csr(csr, "joined")
    joined = {"joined": pki.certificates_to_pem(list(chain))}
    begin_root_rotation(trust_dir)
    with pytest.raises(TrustStoreError, match="joined clusters joined still chain only"):
        retire_old_roots(trust_dir, joined)
    assert len(trust_dir.bundle().roots) == 2  # nothing changed
    # re-signed under the active root just now: its workloads may not have renewed yet
    resigned = {"joined": pki.certificates_to_pem(list(
        trust_dir.root_authority().sign_intermediate_csr(csr, "joined")
    ))}  # fmt: skip
    with pytest.raises(
        TrustStoreError, match=r"joined clusters joined were re-signed .* try again in \d+ s"
    ):
        retire_old_roots(trust_dir, resigned)
    assert len(trust_dir.bundle().roots) == 2  # nothing changed
    # RETIRE_AFTER_RESIGN later, retiring goes ahead
    later = pki.utcnow() + RETIRE_AFTER_RESIGN + timedelta(seconds=1)
    retire_old_roots(trust_dir, resigned, now=later)
    assert len(trust_dir.bundle().roots) == 1


def test_a_published_root_is_trusted_before_it_signs_then_activated_by_step_one(
    trust_dir,
) -> None:
    from trust.root_rotation import publish_next_root, published_root, resign_needed

    old = trust_dir.config().active_root
    step0 = publish_next_root(trust_dir)
    cfg = trust_dir.config()
    assert cfg.active_root == old and cfg.bundle_roots[-1] == old  # signing root stays last
    assert published_root(trust_dir) == step0.new_root and len(trust_dir.bundle().roots) == 2
    # SVIDs still chain to the old root; joined intermediates need no re-sign yet
    svid = issue_svid(trust_dir.cluster_authority("east"), SID, timedelta(hours=1))
    assert pki.issued_by(svid.cert_chain[1], trust_dir.bundle().roots[-1])
    inter = trust_dir.intermediate_certificate("east")
    assert resign_needed(pki.certificates_to_pem([inter]), trust_dir.bundle(), pki.utcnow()) is None
    with pytest.raises(TrustStoreError, match="already published"):
        publish_next_root(trust_dir)
    with pytest.raises(TrustStoreError, match="published and not signing yet"):
        retire_old_roots(trust_dir)
    step1 = begin_root_rotation(trust_dir)  # takes the published root, creates none
    assert step1.new_root == step0.new_root == trust_dir.config().active_root
    assert trust_dir.config().bundle_roots == [old, step0.new_root]
    assert published_root(trust_dir) is None
    assert pki.issued_by(trust_dir.intermediate_certificate("east"), trust_dir.bundle().roots[-1])


def test_moving_the_root_re_signs_under_the_new_backend_and_refuses_what_it_cannot(
    trust_dir,
) -> None:
    from trust.root_rotation import move_root, publish_next_root

    old = trust_dir.config().active_root
    moved = move_root(trust_dir)  # to a (new) local root, as back from Vault
    cfg = trust_dir.config()
    assert cfg.backend == "local" and cfg.active_root == moved.new_root != old
    assert cfg.bundle_roots == [old, moved.new_root] and moved.reissued_clusters == ("east",)
    assert pki.issued_by(trust_dir.intermediate_certificate("east"), trust_dir.bundle().roots[-1])
    retire = retire_old_roots(trust_dir)
    assert retire.retired_roots == (old,)
    publish_next_root(trust_dir)
    with pytest.raises(TrustStoreError, match="finish that rotation first"):
        move_root(trust_dir)


def test_a_renewal_csr_keeps_the_current_subject_for_roots_that_copy_it(tmp_path) -> None:
    """AWS Private CA's subordinate template takes the CSR's subject; SVIDs name the
    intermediate's subject as issuer, so a re-sign must not change it (a local -> PCA move
    left every SVID unable to renew before this)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from trust.cluster_ca import ClusterCaDirectory

    td = TrustDomain("example.org")
    ca = ClusterCaDirectory(tmp_path / "ca")
    fresh = pki.load_csr(ca.new_csr(td, "east"))
    assert fresh.subject == pki.intermediate_subject(td, "east")
    assert pki.load_csr(ca.renewal_csr(td, "east")).subject == fresh.subject  # no cert yet
    older = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshfed intermediate CA east")])
    root_key = pki.generate_private_key()
    root = pki.root_certificate(root_key, td, now=pki.utcnow())
    key = pki.load_private_key(ca.key_path.read_bytes(), source="key")
    cert = (
        x509.CertificateBuilder()
        .subject_name(older)
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(pki.utcnow())
        .not_valid_after(pki.utcnow() + timedelta(days=1))
        .sign(root_key, hashes.SHA256())
    )
    ca.cert_path.write_bytes(pki.certificates_to_pem([cert]))
    assert pki.load_csr(ca.renewal_csr(td, "east")).subject == older
