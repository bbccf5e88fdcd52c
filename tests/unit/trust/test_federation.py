"""The rules of a SPIFFE bundle endpoint's client (:mod:`trust.federation`): endpoint
parameters, the https_spiffe server check, the fetched answer, refresh timing."""

from __future__ import annotations

import ssl
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from trust import pki
from trust.authority import issue_svid
from trust.bundle import TrustBundle
from trust.errors import InvalidCertificateError, InvalidSpiffeIdError, VerificationError
from trust.federation import (
    MAX_BUNDLE_BYTES,
    MAX_REFRESH_S,
    MIN_REFRESH_S,
    BundleEndpoint,
    check_endpoint_svid,
    client_context,
    is_newer,
    next_refresh_s,
    parse_endpoint,
    parse_fetched,
    url_problem,
)
from trust.spiffe import SpiffeId, TrustDomain
from trust.store import TrustDirectory

TD = TrustDomain("b.example")
ENDPOINT_ID = "spiffe://b.example/ns/meshfed-system/sa/controller"


def _spiffe(url: str = "https://b.example:8443/bundle") -> BundleEndpoint:
    return parse_endpoint("b.example", url, "https_spiffe", ENDPOINT_ID)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://b.example/bundle", None),
        ("https://10.0.0.1:8443/", None),
        ("http://b.example/bundle", "the scheme must be https"),
        ("https://user:pw@b.example/", "userinfo is not allowed"),
        ("https:///bundle", "no host"),
        ("https://b.example:port/", "Port could not be cast"),
    ],
)
def test_bundle_endpoint_urls_are_https_without_userinfo(url: str, problem: str | None) -> None:
    found = url_problem(url)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_endpoint_parameters_by_profile() -> None:
    assert _spiffe().self_serving
    other = parse_endpoint("b.example", "https://x/", "https_spiffe", "spiffe://c.example/srv")
    assert not other.self_serving
    with pytest.raises(ValueError, match="needs the endpoint's SPIFFE ID"):
        parse_endpoint("b.example", "https://x/", "https_spiffe", None)
    with pytest.raises(ValueError, match="for profile https_spiffe only"):
        parse_endpoint("b.example", "https://x/", "https_web", ENDPOINT_ID)
    with pytest.raises(ValueError, match="use one of https_web, https_spiffe"):
        parse_endpoint("b.example", "https://x/", "https", None)
    with pytest.raises(InvalidSpiffeIdError, match="names a workload"):
        parse_endpoint("b.example", "https://x/", "https_spiffe", "spiffe://b.example")
    with pytest.raises(InvalidSpiffeIdError):
        parse_endpoint("B_.example!", "https://x/", "https_web", None)


def _bundle(td: TrustDomain) -> TrustBundle:
    key = pki.generate_private_key()
    return TrustBundle(td, (pki.root_certificate(key, td, now=pki.utcnow()),))


def test_https_spiffe_trusts_only_the_bundle_of_the_endpoint_ids_domain() -> None:
    own = _bundle(TD)
    context = client_context(_spiffe(), own)
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname
    assert len(context.get_ca_certs()) == 1
    foreign = _bundle(TrustDomain("c.example"))
    with pytest.raises(VerificationError, match=r"no trust bundle of b\.example"):
        client_context(_spiffe(), foreign)  # another domain's roots never authenticate b's
    with pytest.raises(VerificationError, match=r"no trust bundle of b\.example"):
        client_context(_spiffe(), None)
    with pytest.raises(VerificationError, match="holds no root"):
        client_context(_spiffe(), TrustBundle(TD, ()))
    web = parse_endpoint("b.example", "https://b.example/", "https_web", None)
    assert client_context(web).check_hostname  # RFC 6125: the URL's host is checked


def test_the_https_spiffe_server_must_present_exactly_the_configured_id(tmp_path) -> None:
    trust = TrustDirectory(tmp_path / "trust")
    trust.init(TD)
    trust.create_intermediate("east", ttl=timedelta(days=1))
    ca = trust.cluster_authority("east")

    def der(sid: str) -> bytes:
        svid = issue_svid(ca, SpiffeId.parse(sid), timedelta(minutes=5))
        return svid.cert_chain[0].public_bytes(serialization.Encoding.DER)

    check_endpoint_svid(_spiffe(), der(ENDPOINT_ID))
    with pytest.raises(VerificationError, match=r"presented spiffe://b\.example/ns/x/sa/y, not"):
        check_endpoint_svid(_spiffe(), der("spiffe://b.example/ns/x/sa/y"))
    with pytest.raises(VerificationError, match="no X509-SVID"):  # a CA certificate
        check_endpoint_svid(
            _spiffe(), trust.bundle().roots[0].public_bytes(serialization.Encoding.DER)
        )
    with pytest.raises(VerificationError, match="no certificate"):
        check_endpoint_svid(_spiffe(), None)
    web = parse_endpoint("b.example", "https://b.example/", "https_web", None)
    check_endpoint_svid(web, None)  # https_web: the TLS host check is the whole check


def test_a_fetched_answer_is_bounded_utf8_spiffe_json() -> None:
    bundle = _bundle(TD)
    got = parse_fetched(_spiffe(), bundle.to_spiffe_json().encode())
    assert got.trust_domain == TD and got.fingerprints() == bundle.fingerprints()
    with pytest.raises(InvalidCertificateError, match="more than"):
        parse_fetched(_spiffe(), b" " * (MAX_BUNDLE_BYTES + 1))
    with pytest.raises(InvalidCertificateError, match="not UTF-8"):
        parse_fetched(_spiffe(), b"\xff\xfe")
    with pytest.raises(InvalidCertificateError, match="not JSON"):
        parse_fetched(_spiffe(), b"<html>")
    empty = parse_fetched(_spiffe(), b'{"keys": [], "spiffe_sequence": 9}')
    assert empty.roots == () and empty.sequence == 9  # revoked: trust no SVID of b.example


def test_sequence_and_refresh_timing() -> None:
    bundle = _bundle(TD)
    older = TrustBundle(TD, bundle.roots, sequence=3)
    newer = TrustBundle(TD, bundle.roots, sequence=4)
    assert is_newer(newer, older) and is_newer(older, None) and is_newer(older, older)
    assert not is_newer(older, newer)  # a stale replica's answer does not roll back
    assert next_refresh_s(None, 300) == 300
    assert next_refresh_s(0, 300) == MIN_REFRESH_S
    assert next_refresh_s(10**9, 300) == MAX_REFRESH_S
    assert next_refresh_s(7, 300) == 7
