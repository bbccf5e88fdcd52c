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
