"""Trust bundles (PEM and SPIFFE JWK Set) and X509Svid value objects."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from trust import pki
from trust.bundle import TrustBundle
from trust.errors import InvalidCertificateError, VerificationError
from trust.spiffe import SpiffeId, TrustDomain
from trust.svid import X509Svid

TD = TrustDomain("example.org")


def _root():
    key = pki.generate_private_key()
    return pki.root_certificate(key, TD, now=pki.utcnow())


def test_pem_round_trip_with_several_roots() -> None:
    bundle = TrustBundle(TD, (_root(), _root()))
    again = TrustBundle.from_pem(TD, bundle.to_pem())
    assert again.fingerprints() == bundle.fingerprints()


def test_spiffe_format_fields_and_round_trip() -> None:
    bundle = TrustBundle(TD, (_root(), _root()), sequence=7, refresh_hint_s=60)
    doc = json.loads(bundle.to_spiffe_json())
    assert doc["spiffe_sequence"] == 7
    assert doc["spiffe_refresh_hint"] == 60
    assert len(doc["keys"]) == 2
    for key, root in zip(doc["keys"], bundle.roots, strict=True):
        assert key["use"] == "x509-svid"
        assert key["kty"] == "EC" and key["crv"] == "P-256"
        assert len(key["x5c"]) == 1
        assert base64.b64decode(key["x5c"][0]) == root.public_bytes(pki.serialization.Encoding.DER)
        x = int.from_bytes(base64.urlsafe_b64decode(key["x"] + "=="), "big")
        assert x == root.public_key().public_numbers().x
    again = TrustBundle.from_spiffe_json(TD, bundle.to_spiffe_json())
    assert again == bundle


def test_spiffe_parse_skips_jwt_keys_and_rejects_bad_x5c() -> None:
    root = _root()
    doc = TrustBundle(TD, (root,)).to_spiffe_dict()
    doc["keys"].append({"use": "jwt-svid", "kty": "EC", "kid": "k1"})
    assert len(TrustBundle.from_spiffe_json(TD, json.dumps(doc)).roots) == 1
    doc["keys"][0]["x5c"] = []
    with pytest.raises(InvalidCertificateError, match=r"keys\[0\]\.x5c"):
        TrustBundle.from_spiffe_json(TD, json.dumps(doc))
    with pytest.raises(InvalidCertificateError, match="not JSON"):
        TrustBundle.from_spiffe_json(TD, "{")


def test_with_and_without_roots_bump_sequence() -> None:
    a, b = _root(), _root()
    bundle = TrustBundle(TD, (a,))
    both = bundle.with_root(b)
    assert both.sequence == 2 and len(both.roots) == 2
    assert both.with_root(b) is both
    only_b = both.without_roots([pki.fingerprint(a)])
    assert only_b.roots == (b,) and only_b.sequence == 3
    with pytest.raises(InvalidCertificateError, match="every root"):
        only_b.without_roots([pki.fingerprint(b)])


def test_duplicate_or_leaf_roots_rejected(trust_dir) -> None:
    root = _root()
    with pytest.raises(InvalidCertificateError, match="twice"):
        TrustBundle(TD, (root, root))
    svid = trust_dir.issue_svid("east", SpiffeId.parse("spiffe://example.org/a"))
    with pytest.raises(InvalidCertificateError, match="CA:true"):
        TrustBundle(TD, (svid.leaf,))


def test_verify_refuses_foreign_trust_domain(trust_dir) -> None:
    svid = trust_dir.issue_svid("east", SpiffeId.parse("spiffe://example.org/a"))
    bundle = TrustBundle(TrustDomain("other.org"), trust_dir.bundle().roots)
    with pytest.raises(VerificationError, match=r"not in trust domain other\.org"):
        bundle.verify(svid.cert_chain)


def test_verify_refuses_expired(trust_dir) -> None:
    svid = trust_dir.issue_svid(
        "east", SpiffeId.parse("spiffe://example.org/a"), ttl=timedelta(hours=1)
    )
    with pytest.raises(VerificationError):
        trust_dir.bundle().verify(svid.cert_chain, at=pki.utcnow() + timedelta(hours=2))


def test_svid_round_trip_and_repr_without_key(trust_dir) -> None:
    svid = trust_dir.issue_svid("east", SpiffeId.parse("spiffe://example.org/ns/demo/sa/echo"))
    again = X509Svid.parse(svid.chain_pem(), svid.private_key_pem())
    assert again == svid
    text = repr(svid) + str(svid)
    assert "PRIVATE" not in text
    assert "spiffe://example.org/ns/demo/sa/echo" in text


def test_svid_rejects_mismatched_key(trust_dir) -> None:
    svid = trust_dir.issue_svid("east", SpiffeId.parse("spiffe://example.org/a"))
    other_key = pki.private_key_to_pem(pki.generate_private_key())
    with pytest.raises(InvalidCertificateError, match="does not match"):
        X509Svid.parse(svid.chain_pem(), other_key)


def test_svid_rejects_ca_as_leaf(trust_dir) -> None:
    inter = trust_dir.intermediate_certificate("east")
    with pytest.raises(InvalidCertificateError):
        X509Svid.parse(
            pki.certificates_to_pem([inter]), pki.private_key_to_pem(pki.generate_private_key())
        )


def test_spiffe_bundle_map_keeps_each_domains_anchors_apart_and_refuses_non_pem() -> None:
    from trust.bundle import spiffe_bundle_map

    a, b1, b2 = _root(), _root(), _root()
    doc = spiffe_bundle_map(
        {"b.example": pki.certificates_to_pem([b1, b2]), "a.org": pki.certificates_to_pem([a])}
    )
    assert list(doc["trust_domains"]) == ["a.org", "b.example"]  # sorted: stable bytes
    b = TrustBundle.from_spiffe_json(
        TrustDomain("b.example"), json.dumps(doc["trust_domains"]["b.example"])
    )
    assert b.fingerprints() == [pki.fingerprint(b1), pki.fingerprint(b2)]
    with pytest.raises(InvalidCertificateError, match=r"anchors of c\.example"):
        spiffe_bundle_map({"c.example": b"not a certificate"})
