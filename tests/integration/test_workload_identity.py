"""Workload identity against a real ``meshfed controlplane serve``: first SVIDs for workload
tokens, renewals with the current SVID, and the attacks of issue #15 (attack 3): a CSR for
another identity than the token's, an expired token, a reused single-use token, no token,
a renewal for another identity, and a renewal with another cluster's SVID."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from federation.ca.client import CaEndpoints, IdentityError, WorkloadIdentity
from federation.ca.files import IdentityDirectory
from federation.ca.proto import ca_pb2, ca_pb2_grpc
from federation.client import call
from tests.integration.harness import ControlPlaneHandle, run_meshfed, wait_until
from trust.spiffe import SpiffeId, TrustDomain
from trust.store import TrustDirectory
from trust.workload import new_key_and_csr

pytestmark = pytest.mark.integration

#: Generated inputs of the fuzz pass: 120 in CI; MESHFED_FUZZ_EXAMPLES=N gives N x 6
#: (a longer pass: ``MESHFED_FUZZ_EXAMPLES=500 pytest tests/integration/test_workload_identity.py -k fuzz``).
CA_REQUESTS = int(os.environ.get("MESHFED_FUZZ_EXAMPLES", "20")) * 6


ZONE = "aws/us-east-1/us-east-1a"
TD = TrustDomain("example.org")


@pytest.fixture
def cp(procs, mesh_home):
    plane = ControlPlaneHandle(procs, mesh_home, "east", ZONE)
    plane.start()
    return plane


def _identity(cp, tmp_path, account: str, token: str | None, name: str = "") -> WorkloadIdentity:
    info = cp.info()
    return WorkloadIdentity(
        SpiffeId.parse(f"spiffe://example.org/ns/demo/sa/{account}"),
        IdentityDirectory(tmp_path / (name or account)),
        CaEndpoints(info["caAddress"], info["xdsAddress"], info["serverName"]),
        info["trustBundle"].encode(),
        token,
    )


def _create(cp, csr_pem: bytes, *, token: str | None = None, svid=None):
    """One CreateCertificate call: on the CA port with ``token``, or on the xDS port with
    ``svid`` as client certificate."""
    return asyncio.run(_call(cp.info(), csr_pem, token, svid))


async def _call(info, csr_pem: bytes, token: str | None, svid):
    bundle = info["trustBundle"].encode()
    if svid is not None:
        creds = grpc.ssl_channel_credentials(bundle, svid.private_key_pem(), svid.chain_pem())
        target = info["xdsAddress"]
    else:
        creds = grpc.ssl_channel_credentials(bundle)
        target = info["caAddress"]
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.secure_channel(
        target, creds, options=[("grpc.ssl_target_name_override", info["serverName"])]
    ) as channel:
        stub = ca_pb2_grpc.CertificateServiceStub(channel)
        return await stub.CreateCertificate(
            ca_pb2.CreateCertificateRequest(csr_pem=csr_pem), metadata=metadata, timeout=10
        )


def _csr(account: str) -> bytes:
    return new_key_and_csr(TD.workload_id("demo", account))[1]


def _issued(cp) -> int:
    return cp.procs.log(f"controlplane-east-{cp.starts}").count("issued an SVID for")


def test_first_svid_with_a_token_then_renewal_with_the_svid(cp, tmp_path) -> None:
    identity = _identity(cp, tmp_path, "frontend", cp.mint("demo", "frontend"))
    svid = asyncio.run(identity.ensure())
    assert str(svid.spiffe_id) == "spiffe://example.org/ns/demo/sa/frontend"
    files = identity.directory
    assert files.key.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in files.cert.read_bytes()
    assert files.svid_sds.exists() and files.rootca_sds.exists()
    # renewal: over mTLS with the current SVID, a new key
    renewed = asyncio.run(identity._issue(renew=True))
    assert renewed.spiffe_id == svid.spiffe_id
    assert renewed.private_key_pem() != svid.private_key_pem()
    assert _issued(cp) == 2
    # a restarted agent reuses its SVID from disk: no token needed
    again = _identity(cp, tmp_path, "frontend", None)
    assert asyncio.run(again.ensure()).leaf == renewed.leaf


def test_attack_csr_for_another_identity_than_the_token(cp, tmp_path) -> None:
    token = cp.mint("demo", "a")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _create(cp, _csr("b"), token=token)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "ns/demo/sa/a, not ns/demo/sa/b" in info.value.details()
    assert _issued(cp) == 0
    # refused requests do not use the token up: it still obtains sa/a
    assert _create(cp, _csr("a"), token=token).cert_chain_pem


def test_attack_reused_single_use_token(cp) -> None:
    token = cp.mint("demo", "a")
    _create(cp, _csr("a"), token=token)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _create(cp, _csr("a"), token=token)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "already used" in info.value.details()
    assert _issued(cp) == 1
    reusable = cp.mint("demo", "a", single_use=False)
    for _ in range(2):
        assert _create(cp, _csr("a"), token=reusable).cert_chain_pem


def test_attack_expired_token(cp) -> None:
    minted = run_meshfed(
        cp.home,
        "workload",
        "token",
        "--controlplane",
        cp.api_url,
        "-n",
        "demo",
        "--service-account",
        "a",
        "--ttl",
        "1s",
        "-o",
        "json",
    ).stdout
    data = json.loads(minted)
    expires = datetime.fromisoformat(data["expiresAt"])
    wait_until(lambda: datetime.now(UTC) > expires + timedelta(milliseconds=50), 5, "expiry")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _create(cp, _csr("a"), token=data["token"])
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "expired" in info.value.details()


def test_attack_no_or_an_unknown_token(cp, tmp_path) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _create(cp, _csr("a"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _create(cp, _csr("a"), token="mfw_forged")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # the agent side says so and does not retry forever
    with pytest.raises(IdentityError) as err:
        asyncio.run(_identity(cp, tmp_path, "a", "mfw_forged").ensure())
    assert not err.value.retryable
    assert _issued(cp) == 0


def test_attack_renewal_for_another_identity_or_with_another_clusters_svid(
    cp, tmp_path, mesh_home
) -> None:
    identity = _identity(cp, tmp_path, "a", cp.mint("demo", "a"))
    svid = asyncio.run(identity.ensure())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _create(cp, _csr("b"), svid=svid)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "asks for spiffe://example.org/ns/demo/sa/b" in info.value.details()
    # an SVID of cluster west (same root, valid for TLS) cannot renew at east
    west = TrustDirectory(mesh_home / "trust").issue_svid("west", TD.workload_id("demo", "a"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _create(cp, _csr("a"), svid=west)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not issued by this cluster" in info.value.details()
    assert _issued(cp) == 1


def test_attack_renewal_with_an_svid_of_the_clusters_old_key(cp, tmp_path, mesh_home) -> None:
    """Issue #35 (3): cluster east is removed (say it was compromised) and joins again under
    the same name with a new intermediate key. An SVID signed by the old key chains to the
    same root and names the same issuer -- it must not renew into an SVID of the new key.
    Before the fix the renewal compared issuer names and signed it."""
    trust = TrustDirectory(mesh_home / "trust")
    old = trust.issue_svid("east", TD.workload_id("demo", "a"))
    cp.stop()
    trust.create_intermediate("east", force=True)
    cp.start()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _create(cp, _csr("a"), svid=old)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not issued by this cluster" in info.value.details()
    fresh = trust.issue_svid("east", TD.workload_id("demo", "a"))
    assert _create(cp, _csr("a"), svid=fresh).cert_chain_pem


def test_an_svid_chained_to_a_retired_root_still_renews(cp, mesh_home) -> None:
    """Found by the soak (issue #35): after ``rotate-root --retire-old``, a workload that had
    not renewed yet holds an SVID whose chain ends in the retired root. Its cluster's key is
    unchanged (a re-sign keeps it), but the xDS port verified client chains against the
    bundle alone, so the renewal handshake failed -- for ever, its token being spent. Now
    the cluster's own CA certificate is an anchor too, and the renewal goes through."""
    from trust import pki
    from trust.root_rotation import begin_root_rotation, retire_old_roots

    trust = TrustDirectory(mesh_home / "trust")
    old = trust.issue_svid("east", TD.workload_id("demo", "a"))
    cp.stop()
    d = trust.intermediate_dir("east")
    key_pem = (d / "ca-key.pem").read_bytes()
    begin_root_rotation(trust)
    # as the controller does for a joined cluster: the new root re-signs east's same key
    key = pki.load_private_key(key_pem, source="east key")
    csr = pki.build_csr(key, common_name=pki.intermediate_common_name("east"))
    (d / "ca-key.pem").write_bytes(key_pem)
    (d / "ca.pem").write_bytes(
        pki.certificates_to_pem(trust.root_authority().sign_intermediate_csr(csr, "east"))
    )
    retire_old_roots(trust)
    cp.start()
    renewed = _create(cp, _csr("a"), svid=old)
    chain = pki.load_certificates(renewed.cert_chain_pem, source="renewed")
    trust.bundle().verify(chain)  # under the new root only


@pytest.mark.parametrize("key", ["ed25519", "rsa-1024", "secp521r1"])
def test_a_refused_csr_does_not_spend_the_single_use_token(cp, key) -> None:
    """Issue #35 (5): a first-certificate request the CA refuses (an Ed25519 key, a short
    RSA key, a curve Envoy does not verify) is refused before the token is redeemed: the
    same single-use token then gets a certificate for a good CSR. Before the fix the
    Ed25519 CSR passed the checks, spent the token, and only then failed to sign."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    private = {
        "ed25519": ed25519.Ed25519PrivateKey.generate,
        "rsa-1024": lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "secp521r1": lambda: ec.generate_private_key(ec.SECP521R1()),
    }[key]()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(str(TD.workload_id("demo", "a")))]
            ),
            critical=False,
        )
        .sign(private, None if key == "ed25519" else hashes.SHA256())
    )
    token = cp.mint("demo", "a")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _create(cp, csr.public_bytes(serialization.Encoding.PEM), token=token)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "workload keys must be ECDSA P-256/P-384 or RSA" in info.value.details()
    assert _create(cp, _csr("a"), token=token).cert_chain_pem
    assert _issued(cp) == 1


def test_an_agent_without_a_bundle_reads_the_bootstrap_then_verifies_the_api(
    cp, tmp_path, monkeypatch
) -> None:
    """Issue #35 (5): the control plane's API is HTTPS. An agent with no bundle and no
    endpoint.json (a pod) reads the public /v1/bootstrap unverified -- sending no token,
    not even $MESHFED_TOKEN -- and verifies every later call against the bundle it got, by
    the control plane's DNS name; with the wrong bundle, a call fails."""
    from federation.agent.config import IdentityOptions
    from federation.agent.controlplane_api import fetch_bootstrap
    from federation.client import ClientTls, tls_context
    from federation.errors import ApiError

    monkeypatch.setenv("MESHFED_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("MESHFED_TOKEN", "not-for-unverified-peers")
    monkeypatch.delenv("MESHFED_CA_FILE", raising=False)
    info, tls = fetch_bootstrap(cp.api_url, "east", None, IdentityOptions())
    assert "BEGIN CERTIFICATE" in info["trustBundle"]
    assert tls is not None and tls.server_hostname == "controlplane.east.cluster.meshfed.internal"
    token = (cp.home / "controlplanes" / "east" / "api-token").read_text().strip()
    assert call("GET", cp.api_url, "/v1/info", token=token, tls=tls)["cluster"] == "east"
    other = TrustDirectory(tmp_path / "other")
    other.init(TD)
    wrong = ClientTls(tls_context(other.bundle().to_pem()), tls.server_hostname)
    with pytest.raises(ApiError, match="not trusted"):
        call("GET", cp.api_url, "/v1/info", token=token, tls=wrong)


def test_fuzz_the_certificate_service_refuses_cleanly_and_spends_nothing(cp) -> None:
    """Issue #35: generated first-certificate requests -- random bytes, PEM-wrapped garbage,
    CSRs for odd SPIFFE IDs, odd bearer tokens -- each end in INVALID_ARGUMENT,
    PERMISSION_DENIED or UNAUTHENTICATED (never UNKNOWN or INTERNAL: an unhandled error),
    nothing is signed, and the single-use token they carried is still unspent."""
    import base64

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    token = cp.mint("demo", "a")
    text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)

    def csr_for(path: str) -> bytes:
        try:
            spiffe_id = SpiffeId.parse(f"spiffe://example.org{path}")
        except ValueError:
            return b"-----BEGIN CERTIFICATE REQUEST-----\n\n-----END CERTIFICATE REQUEST-----\n"
        return new_key_and_csr(spiffe_id)[1]

    csrs = st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(
            lambda b: (
                b"-----BEGIN CERTIFICATE REQUEST-----\n"
                + base64.encodebytes(b)
                + b"-----END CERTIFICATE REQUEST-----\n"
            )
        ),
        st.sampled_from(["/ns/demo/sa/b", "/ns/Demo/sa/a", "/ns/meshfed-system/sa/x", "/x"]).map(
            csr_for
        ),
        text.map(lambda t: csr_for("/ns/demo/sa/" + t)),
    )
    header_safe = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)
    tokens = st.one_of(st.just(token), st.just("mfw_" + "a" * 43), header_safe)
    seen: Counter[str] = Counter()

    @settings(
        max_examples=CA_REQUESTS,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(csr=csrs, bearer=tokens)
    def ask(csr: bytes, bearer: str) -> None:
        try:
            _create(cp, csr, token=bearer or None)
        except grpc.aio.AioRpcError as err:
            seen[err.code().name] += 1
            assert err.code().name in {"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED"}
            return
        raise AssertionError(f"signed {csr[:80]!r} for {bearer[:20]!r}")

    ask()
    assert _issued(cp) == 0
    assert _create(cp, _csr("a"), token=token).cert_chain_pem  # the token was never spent
    print(dict(seen))
