"""Issuers: who may get what (trust domain, proof of possession), and chains that verify."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trust import pki
from trust.authority import CertificateAuthority, RootAuthority, issue_svid
from trust.errors import SigningRefusedError, TrustStoreError, VerificationError
from trust.spiffe import SpiffeId


def _tampered_csr() -> x509.CertificateSigningRequest:
    """A CSR whose signature does not match its content (a flipped bit in the subject key)."""
    key = pki.generate_private_key()
    other = pki.generate_private_key()
    csr = pki.build_csr(key)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    own = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    swapped = other.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    i = bytes(der).index(own)
    der[i : i + len(own)] = swapped
    return x509.load_der_x509_csr(bytes(der))


def test_local_authorities_satisfy_the_protocols(trust_dir) -> None:
    assert isinstance(trust_dir.cluster_authority("east"), CertificateAuthority)
    assert isinstance(trust_dir.root_authority(), RootAuthority)


def test_issued_chain_is_leaf_then_intermediate_and_verifies(trust_dir) -> None:
    ca = trust_dir.cluster_authority("east")
    sid = SpiffeId.parse("spiffe://example.org/ns/demo/sa/echo")
    svid = issue_svid(ca, sid, timedelta(hours=1))
    assert len(svid.cert_chain) == 2
    assert svid.cert_chain[1] == trust_dir.intermediate_certificate("east")
    assert trust_dir.bundle().verify(svid.cert_chain) == sid


def test_foreign_trust_domain_is_refused(trust_dir) -> None:
    ca = trust_dir.cluster_authority("east")
    key = pki.generate_private_key()
    with pytest.raises(SigningRefusedError, match=r"not in this CA's trust domain example\.org"):
        ca.sign_csr(
            pki.build_csr(key), SpiffeId.parse("spiffe://evil.org/ns/a/sa/b"), timedelta(hours=1)
        )


def test_bad_csr_signature_is_refused(trust_dir) -> None:
    csr = _tampered_csr()
    assert not csr.is_signature_valid
    with pytest.raises(SigningRefusedError, match="signature is invalid"):
        trust_dir.cluster_authority("east").sign_csr(
            csr, SpiffeId.parse("spiffe://example.org/a"), timedelta(hours=1)
        )
    with pytest.raises(SigningRefusedError, match="signature is invalid"):
        trust_dir.root_authority().sign_intermediate_csr(csr, "west", timedelta(days=1))


def test_chain_from_another_root_does_not_verify(trust_dir, tmp_path) -> None:
    from trust.spiffe import TrustDomain
    from trust.store import TrustDirectory

    other = TrustDirectory(tmp_path / "other")
    other.init(TrustDomain("example.org"))
    other.create_intermediate("east")
    svid = other.issue_svid("east", SpiffeId.parse("spiffe://example.org/a"))
    with pytest.raises(VerificationError, match="does not chain"):
        trust_dir.bundle().verify(svid.cert_chain)


def test_key_file_with_loose_mode_is_refused(trust_dir) -> None:
    key = trust_dir.intermediate_dir("east") / "ca-key.pem"
    key.chmod(0o644)
    with pytest.raises(TrustStoreError, match="must not be group/world accessible") as info:
        trust_dir.cluster_authority("east")
    assert "PRIVATE KEY" not in str(info.value)


def test_authority_repr_hides_key(trust_dir) -> None:
    ca = trust_dir.cluster_authority("east")
    assert "PRIVATE" not in repr(ca)
    assert "east" in repr(ca)


def test_root_refuses_intermediate_csr_for_another_trust_domain(trust_dir) -> None:
    key = pki.generate_private_key()
    csr = pki.build_csr(key, spiffe_id=SpiffeId.parse("spiffe://evil.org"))
    with pytest.raises(SigningRefusedError, match=r"serves trust domain example\.org"):
        trust_dir.root_authority().sign_intermediate_csr(csr, "west", timedelta(days=1))


def test_svid_may_carry_extra_dns_sans_beside_its_cluster_claim(trust_dir) -> None:
    sid = SpiffeId.parse("spiffe://example.org/ns/meshfed-system/sa/controlplane-east")
    svid = issue_svid(
        trust_dir.cluster_authority("east"),
        sid,
        timedelta(hours=1),
        dns_names=["controlplane.east.cluster.meshfed.internal"],
    )
    san = svid.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "east.cluster.meshfed.internal",
        "controlplane.east.cluster.meshfed.internal",
    ]
    assert pki.uri_sans(svid.leaf) == [str(sid)]
    assert pki.leaf_cluster(svid.leaf) == "east"
    assert trust_dir.bundle().verify(list(svid.cert_chain)) == sid


def test_a_cluster_ca_cannot_claim_another_cluster(trust_dir) -> None:
    """Attack: a compromised cluster CA (its key in hand) signs an SVID claiming another
    cluster; the name constraints the root put on its intermediate make every verifier
    refuse it."""
    trust_dir.create_intermediate("west", ttl=timedelta(days=7))
    west = trust_dir.cluster_authority("west")
    sid = SpiffeId.parse("spiffe://example.org/ns/demo/sa/frontend")
    key = pki.generate_private_key()
    forged = pki.leaf_certificate(
        pki.build_csr(key, spiffe_id=sid),
        sid,
        issuer_cert=west.certificate,
        issuer_key=west.key,
        now=pki.utcnow(),
        dns_names=["east.cluster.meshfed.internal"],
    )
    assert pki.leaf_cluster(forged) == "east"
    with pytest.raises(VerificationError, match="name constraint"):
        trust_dir.bundle().verify([forged, west.certificate])
    honest = issue_svid(west, sid, timedelta(hours=1))
    assert pki.leaf_cluster(honest.leaf) == "west"
    assert trust_dir.bundle().verify(list(honest.cert_chain)) == sid
