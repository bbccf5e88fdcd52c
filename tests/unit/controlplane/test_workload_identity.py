"""Workload identity decisions: tokens, node identity checks, CSR signing, the SDS files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from federation.ca.files import IdentityDirectory
from federation.ca.names import namespace_and_account
from federation.ca.tokens import TokenRefusedError, TokenStore, WorkloadToken, refusal
from federation.sync.node import ProxyDescription, identity_problem
from trust.bundle import TrustBundle
from trust.errors import InvalidCertificateError, SigningRefusedError
from trust.spiffe import TrustDomain
from trust.workload import new_key_and_csr, requested_spiffe_id, sign_workload_csr

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TD = TrustDomain("example.org")


def _record(**changes) -> WorkloadToken:
    base = {
        "digest": "d",
        "namespace": "demo",
        "service_account": "a",
        "expires_at": NOW + timedelta(minutes=5),
    }
    return WorkloadToken(**{**base, **changes})


@pytest.mark.parametrize(
    ("record", "ns", "sa", "reason"),
    [
        (None, "demo", "a", "unknown workload token"),
        (_record(expires_at=NOW), "demo", "a", "expired"),
        (_record(used_at=NOW), "demo", "a", "already used"),
        (_record(), "demo", "b", "for ns/demo/sa/a, not ns/demo/sa/b"),
        (_record(), "prod", "a", "not ns/prod/sa/a"),
    ],
)
def test_token_refusals(record, ns, sa, reason) -> None:
    assert reason in (refusal(record, ns, sa, NOW) or "")


def test_token_accepted_and_reusable_tokens_stay_usable() -> None:
    assert refusal(_record(), "demo", "a", NOW) is None
    assert refusal(_record(single_use=False, used_at=NOW), "demo", "a", NOW) is None


def test_token_store_redeems_a_single_use_token_once(tmp_path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token, _ = store.mint("demo", "a", now=NOW)
    assert token not in store.path.read_text()
    with pytest.raises(TokenRefusedError, match="not ns/demo/sa/b"):
        store.redeem(token, "demo", "b", now=NOW)
    store.redeem(token, "demo", "a", now=NOW)
    with pytest.raises(TokenRefusedError, match="already used"):
        store.redeem(token, "demo", "a", now=NOW)
    with pytest.raises(ValueError, match="ttl"):
        store.mint("demo", "a", ttl=timedelta(days=8))


def test_expired_tokens_are_dropped_from_the_file(tmp_path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    store.mint("demo", "a", ttl=timedelta(seconds=1), now=NOW - timedelta(hours=1))
    store.mint("demo", "b", now=NOW)
    assert len(json.loads(store.path.read_text())["tokens"]) == 1


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ns/demo/sa/a", ("demo", "a")),
        ("/ns/demo/sa/", None),
        ("/ns//sa/a", None),
        ("/ns/demo/sa/a/b", None),
        ("/x/demo/sa/a", None),
    ],
)
def test_namespace_and_account(path, expected) -> None:
    assert namespace_and_account(path) == expected


def test_identity_problem_compares_the_claim_with_the_certificate() -> None:
    sidecar = ProxyDescription("sidecar~demo~x", "sidecar", "demo", "x", "frontend")
    ok = "spiffe://example.org/ns/demo/sa/frontend"
    assert identity_problem(sidecar, ok, "example.org") is None
    assert "no client certificate" in (identity_problem(sidecar, None, "example.org") or "")
    problem = identity_problem(sidecar, "spiffe://example.org/ns/demo/sa/other", "example.org")
    assert problem is not None and "claims" in problem
    gateway = ProxyDescription("gateway~east", "gateway", listen="127.0.0.1:1")
    gw = "spiffe://example.org/ns/meshfed-system/sa/eastwest-gateway"
    assert identity_problem(gateway, gw, "example.org") is None
    assert identity_problem(gateway, ok, "example.org") is not None


def test_csr_signing_is_bound_to_the_credentials_identity(trust_dir) -> None:
    ca = trust_dir.cluster_authority("east")
    key_pem, csr_pem = new_key_and_csr(TD.workload_id("demo", "a"))
    assert b"PRIVATE KEY" in key_pem and b"PRIVATE KEY" not in csr_pem
    assert str(requested_spiffe_id(csr_pem)) == "spiffe://example.org/ns/demo/sa/a"
    chain = sign_workload_csr(ca, csr_pem, TD.workload_id("demo", "a"), timedelta(hours=1))
    assert chain.count(b"BEGIN CERTIFICATE") == 2
    with pytest.raises(SigningRefusedError, match="asks for"):
        sign_workload_csr(ca, csr_pem, TD.workload_id("demo", "b"), timedelta(hours=1))
    with pytest.raises(InvalidCertificateError):
        requested_spiffe_id(b"not a csr")


def test_identity_directory_publishes_versions_atomically(tmp_path) -> None:
    d = IdentityDirectory(tmp_path / "id")
    first = d.write(b"chain1", b"key1", b"bundle1")
    second = d.write(b"chain2", b"key2", b"bundle2")
    assert first != second
    svid = json.loads(d.svid_sds.read_text())["resources"][0]
    assert svid["name"] == "default"
    assert svid["tls_certificate"]["private_key"]["filename"] == str(second / "key.pem")
    rootca = json.loads(d.rootca_sds.read_text())["resources"][0]
    assert rootca["validation_context"]["trusted_ca"]["filename"] == str(second / "bundle.pem")
    assert (second / "key.pem").stat().st_mode & 0o777 == 0o600
    assert d.key.stat().st_mode & 0o777 == 0o600
    assert d.read() == (b"chain2", b"key2", b"bundle2", b"")
    assert "crl" not in rootca["validation_context"]
    third = d.write(b"chain3", b"key3", b"bundle3", b"crls")
    rootca = json.loads(d.rootca_sds.read_text())["resources"][0]["validation_context"]
    assert rootca["crl"]["filename"] == str(third / "crl.pem")
    assert rootca["only_verify_leaf_cert_crl"] is True
    assert d.read() == (b"chain3", b"key3", b"bundle3", b"crls")
    for _ in range(4):
        d.write(b"c", b"k", b"b")
    assert len([p for p in d.path.iterdir() if p.is_dir()]) == 3
    assert not d.crl.exists()


def _root_pem(domain: str) -> bytes:
    from trust import pki

    cert = pki.root_certificate(pki.generate_private_key(), TrustDomain(domain), now=NOW)
    return pki.certificates_to_pem([cert])


def test_federated_bundles_make_envoy_validate_each_domain_with_its_own(tmp_path) -> None:
    d = IdentityDirectory(tmp_path / "id")
    b_roots, c_roots = _root_pem("b.example"), _root_pem("c.example")
    bundle, members = _root_pem("a.org"), _root_pem("a.org") + _root_pem("a.org")
    federated = {"b.example": b_roots, "c.example": c_roots}
    v = d.write(
        b"chain", b"key", bundle, b"crls", members, federated=federated, trust_domain="a.org"
    )
    context = json.loads(d.rootca_sds.read_text())["resources"][0]["validation_context"]
    assert "trusted_ca" not in context and "crl" not in context  # never one merged bundle
    validator = context["custom_validator_config"]
    assert validator["name"] == "envoy.tls.cert_validator.spiffe"
    domains = {
        t["name"]: t["trust_bundle"]["filename"] for t in validator["typed_config"]["trust_domains"]
    }
    assert domains == {
        "a.org": str(v / "local.pem"),
        "b.example": str(v / "federated" / "b.example.pem"),
        "c.example": str(v / "federated" / "c.example.pem"),
    }
    assert (v / "local.pem").read_bytes() == bundle + b"crls\n"  # the CRLs stay checked
    assert (v / "federated" / "c.example.pem").read_bytes() == c_roots
    # gRPC's SPIFFE bundle map (gRFC A87): the members' CAs for the local domain (no CRL in
    # gRPC), each federated domain's roots under its own name
    bundle_map = json.loads(d.spiffe_bundles.read_text())["trust_domains"]
    assert sorted(bundle_map) == ["a.org", "b.example", "c.example"]
    for name, pem in (("a.org", members), ("b.example", b_roots), ("c.example", c_roots)):
        parsed = TrustBundle.from_spiffe_json(TrustDomain(name), json.dumps(bundle_map[name]))
        assert parsed.to_pem() == pem
    with pytest.raises(ValueError, match="not a trust domain name"):
        d.write(b"c", b"k", b"b", federated={"../x": b"r"}, trust_domain="a.org")


def test_member_crls_keeps_only_crls_signed_by_each_members_joined_intermediate(
    trust_dir,
) -> None:
    from federation.controller.membership import member_cas, member_crls
    from federation.controller.store import ClusterRecord
    from federation.sync.messages import ClusterReport
    from trust import pki
    from trust.revocation import cluster_crl

    trust_dir.create_intermediate("west")
    east, west = trust_dir.cluster_authority("east"), trust_dir.cluster_authority("west")

    def record(name: str, ca) -> ClusterRecord:
        return ClusterRecord(
            name, "aws/us-east-1", "n", "", "local", 1.0, 1.0, 1.0,
            pki.certificates_to_pem([ca.certificate]).decode(),
        )  # fmt: skip

    east_crl, west_crl = cluster_crl(east).decode(), cluster_crl(west).decode()
    reports = {
        "east": ClusterReport(cluster="east", crl_pem=east_crl),
        # west reports east's CRL: refused (not signed by west's intermediate)
        "west": ClusterReport(cluster="west", crl_pem=east_crl),
        # a removed cluster has no record: its report is ignored
        "gone": ClusterReport(cluster="gone", crl_pem=west_crl),
    }
    crls = member_crls([record("east", east), record("west", west)], reports)
    assert crls == {"east": east_crl}
    # proxyless gRPC's trust anchors: the CA certificates of exactly those members
    cas = member_cas([record("east", east), record("west", west)], crls)
    assert cas == {"east": pki.certificates_to_pem([east.certificate]).decode()}


def test_member_cas_for_grpc_are_this_clusters_ca_and_the_members_only(trust_dir) -> None:
    """Issue #35 (5): what proxyless gRPC trusts -- nothing outside a federation (it trusts
    the bundle), else this cluster's CA and every other member's; a removed member drops."""
    from federation.controlplane.identities import ClusterAuthority
    from trust import pki

    trust_dir.create_intermediate("west")
    east, west = trust_dir.cluster_authority("east"), trust_dir.cluster_authority("west")
    assert ClusterAuthority(east, "east").member_cas_pem() == b""
    joined = ClusterAuthority(east, "east", revocation=True)
    west_pem = pki.certificates_to_pem([west.certificate]).decode()
    joined.set_member_cas({"west": west_pem, "east": "ignored: this cluster's own is used"})
    anchors = pki.load_certificates(joined.member_cas_pem(), source="members")
    assert anchors == [east.certificate, west.certificate]
    joined.set_member_cas({})
    assert pki.load_certificates(joined.member_cas_pem(), source="m") == [east.certificate]
    d = IdentityDirectory(trust_dir.path.parent / "identity")
    d.write(b"c", b"k", b"bundle")
    assert d.members.read_bytes() == b"bundle"  # outside a federation: the bundle
    d.write(b"c", b"k", b"bundle", members_pem=joined.member_cas_pem())
    assert d.members.read_bytes() == joined.member_cas_pem()
