"""Cluster CRLs: signed by the cluster CA, expiring, re-issued before they expire."""

from __future__ import annotations

from datetime import timedelta

import pytest

from trust import pki
from trust.errors import InvalidCertificateError
from trust.revocation import CRL_TTL, cluster_crl, crl_due, crl_issued_by, load_crl


def test_a_cluster_crl_is_empty_signed_by_its_ca_and_due_after_a_quarter(trust_dir) -> None:
    trust_dir.create_intermediate("west")
    east = trust_dir.cluster_authority("east")
    now = pki.utcnow()
    pem = cluster_crl(east, now=now)
    crl = load_crl(pem)
    assert list(crl) == []
    assert crl.issuer == east.certificate.subject
    assert crl_issued_by(pem, east.certificate)
    assert not crl_issued_by(pem, trust_dir.intermediate_certificate("west"))
    assert not crl_due(pem, now=now)
    assert crl_due(pem, now=now + CRL_TTL / 4 + timedelta(minutes=1))
    assert crl_due(None)
    with pytest.raises(InvalidCertificateError):
        load_crl(b"junk")


def test_a_joined_intermediate_is_re_signed_with_its_own_key_only(trust_dir, tmp_path) -> None:
    from datetime import timedelta

    from trust.cluster_ca import ClusterCaDirectory
    from trust.errors import SigningRefusedError
    from trust.root_rotation import begin_root_rotation, resign_intermediate, resign_needed
    from trust.spiffe import TrustDomain

    td = TrustDomain("example.org")
    ca_dir = ClusterCaDirectory(tmp_path / "ca")
    csr = ca_dir.new_csr(td, "joined")
    root = trust_dir.root_authority()
    current = pki.certificates_to_pem(
        list(root.sign_intermediate_csr(pki.load_csr(csr), "joined", timedelta(days=7)))
    )
    now = pki.utcnow()
    assert resign_needed(current, trust_dir.bundle(), now) is None
    assert "half" in (resign_needed(current, trust_dir.bundle(), now + timedelta(days=4)) or "")
    begin_root_rotation(trust_dir)
    assert resign_needed(current, trust_dir.bundle(), now) == "not signed by the active root"
    renewal = ca_dir.renewal_csr(td, "joined")
    chain = resign_intermediate(
        trust_dir.root_authority(), renewal, current, "joined", timedelta(days=7)
    )
    assert resign_needed(chain, trust_dir.bundle(), now) is None
    other = ClusterCaDirectory(tmp_path / "other").new_csr(td, "joined")
    with pytest.raises(SigningRefusedError, match="another key"):
        resign_intermediate(trust_dir.root_authority(), other, current, "joined", timedelta(days=7))
