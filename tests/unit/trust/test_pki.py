"""Certificate profiles and renewal times (X509-SVID.md sections 4-5, RFC 5280)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from trust import pki
from trust.errors import SigningRefusedError
from trust.spiffe import SpiffeId, TrustDomain

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TD = TrustDomain("example.org")


def _root():
    key = pki.generate_private_key()
    return key, pki.root_certificate(key, TD, now=NOW)


def _intermediate(root_key, root_cert, cluster="east"):
    key = pki.generate_private_key()
    cert = pki.intermediate_certificate(
        pki.build_csr(key),
        cluster,
        issuer_cert=root_cert,
        issuer_key=root_key,
        trust_domain=TD,
        now=NOW,
    )
    return key, cert


def test_root_profile() -> None:
    _, cert = _root()
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    assert pki.uri_sans(cert) == ["spiffe://example.org"]
    assert cert.not_valid_after_utc - NOW == pki.DEFAULT_ROOT_TTL
    assert cert.issuer == cert.subject
    assert pki.signing_cert_problems(cert) == []


def test_intermediate_profile_names_cluster_and_has_pathlen_zero() -> None:
    root_key, root = _root()
    _, cert = _intermediate(root_key, root, "aws-us-east-1")
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert ou[0].value == "aws-us-east-1"
    assert cert.issuer == root.subject
    assert cert.not_valid_after_utc - NOW == pki.DEFAULT_INTERMEDIATE_TTL


def test_leaf_profile() -> None:
    root_key, root = _root()
    ikey, inter = _intermediate(root_key, root)
    key = pki.generate_private_key()
    sid = SpiffeId.parse("spiffe://example.org/ns/demo/sa/echo")
    leaf = pki.leaf_certificate(
        pki.build_csr(key), sid, issuer_cert=inter, issuer_key=ikey, now=NOW
    )
    assert pki.uri_sans(leaf) == [str(sid)]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # empty subject -> SAN must be critical (RFC 5280 4.2.1.6)
    assert len(list(san.value)) == 1
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment
    assert not ku.key_cert_sign and not ku.crl_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_after_utc - NOW == pki.DEFAULT_SVID_TTL
    assert pki.leaf_svid_problems(leaf) == []


def test_leaf_ignores_sans_requested_in_csr() -> None:
    root_key, root = _root()
    ikey, inter = _intermediate(root_key, root)
    key = pki.generate_private_key()
    csr = pki.build_csr(
        key, spiffe_id=SpiffeId.parse("spiffe://example.org/ns/kube-system/sa/admin")
    )
    sid = SpiffeId.parse("spiffe://example.org/ns/demo/sa/echo")
    leaf = pki.leaf_certificate(csr, sid, issuer_cert=inter, issuer_key=ikey, now=NOW)
    assert pki.uri_sans(leaf) == [str(sid)]


def test_rsa_leaf_gets_key_encipherment() -> None:
    root_key, root = _root()
    ikey, inter = _intermediate(root_key, root)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sid = SpiffeId.parse("spiffe://example.org/ns/demo/sa/legacy")
    leaf = pki.leaf_certificate(
        pki.build_csr(key), sid, issuer_cert=inter, issuer_key=ikey, now=NOW
    )
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_leaf_validity_is_clipped_to_issuer() -> None:
    root_key, root = _root()
    ikey = pki.generate_private_key()
    inter = pki.intermediate_certificate(
        pki.build_csr(ikey),
        "east",
        issuer_cert=root,
        issuer_key=root_key,
        trust_domain=TD,
        now=NOW,
        ttl=timedelta(hours=1),
    )
    leaf = pki.leaf_certificate(
        pki.build_csr(pki.generate_private_key()),
        SpiffeId.parse("spiffe://example.org/a"),
        issuer_cert=inter,
        issuer_key=ikey,
        now=NOW,
        ttl=timedelta(hours=24),
    )
    assert leaf.not_valid_after_utc == inter.not_valid_after_utc


def test_expired_issuer_refuses() -> None:
    root_key, root = _root()
    with pytest.raises(SigningRefusedError, match="expired"):
        pki.intermediate_certificate(
            pki.build_csr(pki.generate_private_key()),
            "east",
            issuer_cert=root,
            issuer_key=root_key,
            trust_domain=TD,
            now=NOW + timedelta(days=3700),
        )


def test_non_positive_ttl_refused() -> None:
    root_key, root = _root()
    with pytest.raises(SigningRefusedError, match="TTL must be positive"):
        pki.intermediate_certificate(
            pki.build_csr(pki.generate_private_key()),
            "east",
            issuer_cert=root,
            issuer_key=root_key,
            trust_domain=TD,
            now=NOW,
            ttl=timedelta(0),
        )


def test_problems_of_a_ca_used_as_leaf() -> None:
    _, root = _root()
    problems = pki.leaf_svid_problems(root)
    assert any("CA:false" in p for p in problems)
    assert any("keyCertSign" in p for p in problems)


@given(
    st.integers(min_value=1, max_value=10**8),
    st.floats(min_value=0, max_value=0.49),
    st.integers(min_value=0, max_value=2**32),
)
def test_renewal_time_is_between_half_life_minus_jitter_and_half_life(
    lifetime_s: int, jitter: float, seed: int
) -> None:
    start = NOW
    end = NOW + timedelta(seconds=lifetime_s)
    at = pki.renewal_time(start, end, jitter=jitter, rng=random.Random(seed))
    half = start + (end - start) / 2
    tolerance = timedelta(microseconds=2)
    assert half - (end - start) * jitter - tolerance <= at <= half + tolerance


def test_renewal_time_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="after"):
        pki.renewal_time(NOW, NOW)
    with pytest.raises(ValueError, match="jitter"):
        pki.renewal_time(NOW, NOW + timedelta(hours=1), jitter=0.5)
