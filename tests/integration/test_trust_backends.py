"""The root of trust in Vault PKI and in AWS Private CA, through the real CLI.

- Vault: no Vault server can be installed here; the tests use :mod:`tests.integration.fake_vault`,
  a FAKE that implements the few PKI and AppRole endpoints meshfed calls, as Vault's API
  documentation describes them, reached by the real hvac client.
- AWS Private CA: moto in server mode (a real HTTP endpoint on loopback) with real boto3. moto
  5.2 does not implement the ``SubordinateCACertificate_PathLen0/V1`` template (it issues a
  certificate without BasicConstraints); the fixture adds the extensions AWS documents for that
  template (``UsingTemplates.html``: CA:true, pathlen 0, keyCertSign/cRLSign) -- without it no
  intermediate from moto could sign anything. Nor does it honour ``Validity`` and
  ``ValidityNotBefore``: modelled too (:func:`_model_pca_validity`). Nor does it write the
  CRL a CA with ``CrlConfiguration`` publishes to S3: :func:`_publish_pca_crl` does, as the
  User Guide describes it (DER, ``crl/<CA id>.crl`` in the configured bucket, signed by the
  CA), into moto's own S3.

Every chain is checked with ``openssl verify``.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from moto.acmpca import models as pca_models
from moto.server import ThreadedMotoServer

from tests.integration.fake_vault import FakeVault
from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    RateLoop,
    free_port,
    run_meshfed,
    wait_until,
)
from trust import pki
from trust.authority import load_key_file
from trust.errors import SigningRefusedError
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory

pytestmark = [pytest.mark.integration]
SVID = "spiffe://example.org/ns/demo/sa/echo"


@pytest.fixture
def vault():
    fake = FakeVault().start()
    try:
        yield fake
    finally:
        fake.stop()


def _openssl_verify(out: Path, intermediate: Path) -> str:
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(out / "bundle.pem"),
            "-untrusted",
            str(intermediate),
            str(out / "svid.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def _init_vault(home: Path, vault: FakeVault, *extra: str) -> str:
    return run_meshfed(
        home, "trust", "init", "--trust-domain", "example.org", "--backend", "vault",
        "--vault-address", vault.url, *extra,
    ).stdout  # fmt: skip


def _issue_and_verify(home: Path, cluster: str) -> None:
    run_meshfed(home, "trust", "intermediate", "--cluster", cluster)
    out = home / f"svid-{cluster}"
    run_meshfed(
        home, "trust", "issue", "--cluster", cluster, "--spiffe-id", SVID, "--out", str(out)
    )
    assert "OK" in _openssl_verify(out, home / "trust" / "intermediates" / cluster / "ca.pem")


def test_vault_token_auth_signs_intermediates_and_the_chain_verifies(
    vault, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", vault.token)
    home = tmp_path / "home"
    out = _init_vault(home, vault)
    assert "Using the root CA in vault" in out
    cfg = json.loads((home / "trust" / "trust.json").read_text())
    assert cfg["backend"] == "vault" and cfg["vault"]["address"] == vault.url
    assert vault.token not in (home / "trust" / "trust.json").read_text()  # no secret stored
    assert not list((home / "trust" / "roots").glob("*/ca-key.pem"))  # the root key is in Vault
    _issue_and_verify(home, "east")
    assert vault.signed == ["meshfed intermediate CA east"]
    inter = x509.load_pem_x509_certificate((home / "trust/intermediates/east/ca.pem").read_bytes())
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    # a CSR for another trust domain is refused before Vault is asked
    key = pki.generate_private_key()
    evil = pki.build_csr(key, spiffe_id=TrustDomain("evil.org").id)
    with pytest.raises(SigningRefusedError, match=r"evil\.org"):
        TrustDirectory(home / "trust").root_authority().sign_intermediate_csr(evil, "x")
    assert len(vault.signed) == 1


def test_vault_approle_auth(vault, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    monkeypatch.setenv("VAULT_ROLE_ID", vault.role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", vault.secret_id)
    home = tmp_path / "home"
    _init_vault(home, vault, "--vault-auth", "approle")
    _issue_and_verify(home, "west")
    monkeypatch.setenv("VAULT_SECRET_ID", "wrong")
    refused = run_meshfed(home, "trust", "intermediate", "--cluster", "north", check=False)
    assert refused.returncode == 2 and "refused the login" in refused.stderr


def test_vault_kubernetes_auth(vault, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    jwt = tmp_path / "sa-token"
    jwt.write_text(vault.k8s_jwt)
    monkeypatch.setenv("VAULT_K8S_JWT_PATH", str(jwt))
    home = tmp_path / "home"
    _init_vault(home, vault, "--vault-auth", "kubernetes", "--vault-role", vault.k8s_role)
    _issue_and_verify(home, "south")


def test_vault_sealed_and_denied_are_clear_and_change_nothing(vault, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", vault.token)
    home = tmp_path / "home"
    _init_vault(home, vault)
    vault.sealed = True
    sealed = run_meshfed(home, "trust", "intermediate", "--cluster", "east", check=False)
    assert sealed.returncode == 1, sealed.stderr  # retryable
    assert "sealed" in sealed.stderr and "retry" in sealed.stderr
    vault.sealed = False
    monkeypatch.setenv("VAULT_TOKEN", "s.wrong")
    denied = run_meshfed(home, "trust", "intermediate", "--cluster", "east", check=False)
    assert denied.returncode == 2 and "permission denied" in denied.stderr
    assert not (home / "trust" / "intermediates" / "east" / "ca.pem").exists()
    assert "s.wrong" not in denied.stderr + denied.stdout


def test_controller_and_joining_control_planes_use_the_vault_root(
    vault, procs, tmp_path, monkeypatch
) -> None:
    """The controller signs with whatever backend trust.json names: here its own intermediate
    and a joining cluster's are both signed by (fake) Vault."""
    monkeypatch.setenv("VAULT_TOKEN", vault.token)
    home = tmp_path / "home"
    _init_vault(home, vault)
    controller = ControllerHandle(procs, home)
    controller.start()
    token = json.loads(
        run_meshfed(
            home,
            "cluster",
            "join",
            "east",
            "--locality",
            "aws/us-east-1/us-east-1a",
            "--gateway",
            f"127.0.1.1:{free_port()}",
            "-o",
            "json",
        ).stdout
    )["token"]
    cp = ControlPlaneHandle(
        procs,
        home,
        "east",
        "aws/us-east-1/us-east-1a",
        extra_args=["--controller", f"127.0.0.1:{controller.api_port}", "--join-token", token],
    )
    cp.start()
    assert vault.signed == [
        "meshfed intermediate CA meshfed-controller",
        "meshfed intermediate CA east",
    ]
    chain = (home / "controlplanes" / "east" / "ca" / "ca.pem").read_bytes()
    east = x509.load_pem_x509_certificate(chain)
    assert east.issuer == vault.ca.subject
    # Vault's permitted_dns_domains: east's CA may name only east's cluster domain
    constraints = east.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [x509.DNSName("east.cluster.meshfed.internal")]


_PCA_REQUEST = threading.local()


def _model_pca_validity(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """moto 5.2 ignores IssueCertificate's ``Validity`` and ``ValidityNotBefore`` (notBefore
    is the issuance time, notAfter a year later). Modelled here as the API reference
    documents them: notBefore is ``ValidityNotBefore`` (``ABSOLUTE``: epoch seconds), else
    the issuance time minus 60 minutes; notAfter from ``Validity`` (``DAYS``, ``YEARS``,
    ``ABSOLUTE``). The server runs in this process, so the request's fields reach the
    certificate builder through a thread-local."""
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes, serialization
    from moto.acmpca import responses as pca_responses

    original = pca_responses.ACMPCAResponse.issue_certificate

    def issue(self):  # type: ignore[no-untyped-def]
        _PCA_REQUEST.validity = self._get_param("Validity")
        _PCA_REQUEST.not_before = self._get_param("ValidityNotBefore")
        try:
            return original(self)
        finally:
            _PCA_REQUEST.validity = _PCA_REQUEST.not_before = None

    def generate_cert(self, subject, public_key, extensions):  # type: ignore[no-untyped-def]
        now = datetime.now(UTC)
        start = getattr(_PCA_REQUEST, "not_before", None)
        not_before = (
            datetime.fromtimestamp(int(start["Value"]), UTC) if start else now - timedelta(hours=1)
        )
        validity = getattr(_PCA_REQUEST, "validity", None) or {"Type": "DAYS", "Value": 365}
        value = int(validity["Value"])
        not_after = {
            "DAYS": now + timedelta(days=value),
            "YEARS": now + timedelta(days=365 * value),
            "ABSOLUTE": datetime.fromtimestamp(value, UTC),
        }[validity["Type"]]
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM)

    monkeypatch.setattr(pca_responses.ACMPCAResponse, "issue_certificate", issue)
    monkeypatch.setattr(pca_models.CertificateAuthority, "generate_cert", generate_cert)


PCA_CRL_BUCKET = "meshfed-pca-crl"


def _publish_pca_crl(arn: str) -> str:
    """Write the CA's (empty) CRL where AWS Private CA would: DER, signed with the CA's key,
    at ``crl/<CA id>.crl`` in its CRL bucket (moto writes none). Returns the object key."""
    from cryptography.hazmat.primitives import serialization

    from trust.revocation import empty_crl

    ca = pca_models.acmpca_backends["123456789012"]["us-east-1"].certificate_authorities[arn]
    crl = x509.load_pem_x509_crl(empty_crl(ca.certificate, ca.key))  # moto's CA certificate
    key = f"crl/{arn.rsplit('/', 1)[-1]}.crl"
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=PCA_CRL_BUCKET, Key=key, Body=crl.public_bytes(serialization.Encoding.DER)
    )
    return key


@pytest.fixture
def pca(tmp_path, monkeypatch):
    """moto server with the subordinate template (see the module docstring); a root CA
    created in it as a user would (create, self-issue with RootCACertificate, import)."""
    original = pca_models.CertificateAuthority._x509_extensions

    def with_subordinate(self, csr, template_arn):  # type: ignore[no-untyped-def]
        if template_arn and "SubordinateCACertificate_PathLen0" in template_arn:
            return [
                (x509.BasicConstraints(ca=True, path_length=0), True),
                (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
                (x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), False),
                (x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False),
            ]
        return original(self, csr, template_arn)

    monkeypatch.setattr(pca_models.CertificateAuthority, "_x509_extensions", with_subordinate)
    _model_pca_validity(monkeypatch)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for k, v in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(k, v)
    try:
        client = boto3.client("acm-pca", region_name="us-east-1")
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=PCA_CRL_BUCKET)
        arn = client.create_certificate_authority(
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": "EC_prime256v1",
                "SigningAlgorithm": "SHA256WITHECDSA",
                "Subject": {"CommonName": "Example Org root", "Organization": "example.org"},
            },
            RevocationConfiguration={
                "CrlConfiguration": {
                    "Enabled": True,
                    "ExpirationInDays": 7,
                    "S3BucketName": PCA_CRL_BUCKET,
                }
            },
            CertificateAuthorityType="ROOT",
        )["CertificateAuthorityArn"]
        csr = client.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
        root_arn = client.issue_certificate(
            CertificateAuthorityArn=arn,
            Csr=csr.encode(),
            SigningAlgorithm="SHA256WITHECDSA",
            TemplateArn="arn:aws:acm-pca:::template/RootCACertificate/V1",
            Validity={"Value": 10, "Type": "YEARS"},
        )["CertificateArn"]
        root = client.get_certificate(CertificateAuthorityArn=arn, CertificateArn=root_arn)
        client.import_certificate_authority_certificate(
            CertificateAuthorityArn=arn, Certificate=root["Certificate"].encode()
        )
        yield arn
    finally:
        server.stop()


def test_aws_private_ca_root_issues_intermediates_and_the_chain_verifies(pca, tmp_path) -> None:
    home = tmp_path / "home"
    run_meshfed(
        home,
        "trust",
        "init",
        "--trust-domain",
        "example.org",
        "--backend",
        "aws-pca",
        "--pca-arn",
        pca,
        "--pca-region",
        "us-east-1",
    )
    cfg = json.loads((home / "trust" / "trust.json").read_text())
    assert cfg["backend"] == "aws-pca" and cfg["aws_pca"]["ca_arn"] == pca
    _issue_and_verify(home, "east")
    inter = x509.load_pem_x509_certificate((home / "trust/intermediates/east/ca.pem").read_bytes())
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    rotate = run_meshfed(home, "trust", "rotate-root", check=False)
    assert rotate.returncode == 2 and "rotate it there" in rotate.stderr


def test_a_federation_with_an_aws_private_ca_root_sends_its_crl_and_members_stay_served(
    pca, procs, tmp_path
) -> None:
    """Issue 43 with the root in AWS Private CA: federating with another trust domain turns
    every proxy's validation into Envoy's SPIFFE validator, which checks a CRL of every CA
    of a chain -- so the root's own CRL must reach the proxies, and here it is the one AWS
    Private CA publishes to S3. Until it is published, ``trust federate`` is refused with
    the reason (and nothing is stored); once it is, the federation is accepted, every proxy
    validates with the foreign bundle and PCA's CRL, and a member's caller is still served
    across clusters."""
    from tests.integration.test_revocation import _caller, _join, _serve_echo, _status
    from tests.integration.test_trust_federation import wait_validating_with

    home = tmp_path / "home"
    run_meshfed(
        home, "trust", "init", "--trust-domain", "example.org", "--backend", "aws-pca",
        "--pca-arn", pca, "--pca-region", "us-east-1",
    )  # fmt: skip
    controller = ControllerHandle(procs, home, lease_s=10)
    controller.start()
    foreign = ControllerHandle(
        procs, tmp_path / "b-home", name="b-controller", extra_args=["--trust-domain", "b.example"]
    )
    foreign.start()
    cps = {name: _join(procs, home, controller, name) for name in ("a", "b")}
    _serve_echo(procs, home, cps["a"])
    from_b = _caller(procs, home, cps["b"])
    wait_until(lambda: _status(from_b) == 200, 60, "b's caller served")

    federate = [
        "trust", "federate", "--with", "b.example",
        "--bundle-endpoint", f"{foreign.url}/v1/spiffe-bundle",
        "--bundle-file", str(TrustDirectory(foreign.home / "trust").bundle_spiffe_path),
    ]  # fmt: skip
    refused = run_meshfed(home, *federate, check=False)
    assert refused.returncode == 2 and "crl" in refused.stderr.lower(), refused.stderr
    assert json.loads(run_meshfed(home, "get", "trustdomains", "-o", "json").stdout) in ([], {})

    _publish_pca_crl(pca)
    run_meshfed(home, *federate)
    wait_validating_with(home, "b.example", 45)
    pca_root = x509.load_pem_x509_certificate(
        boto3.client("acm-pca", region_name="us-east-1")
        .get_certificate_authority_certificate(CertificateAuthorityArn=pca)["Certificate"]
        .encode()
    )
    # every proxy holds PCA's CRL of its root (with the members'), and members are served
    for doc in home.rglob("rootca.json"):
        issuers = {crl.issuer for crl in _crls_of(doc)}
        assert pca_root.subject in issuers, (doc, issuers)
    wait_until(lambda: all(_status(from_b) == 200 for _ in range(5)), 20, "b still served")


def test_aws_private_ca_crl_problems_are_named_with_what_to_do(pca, tmp_path) -> None:
    """The root CRL read from AWS Private CA (real boto3 against moto): not published yet,
    not a CRL, another issuer's, CRLs not enabled on the CA -- each a clear error."""
    from trust.aws_pca import AwsPcaRootAuthority, PcaClient
    from trust.errors import TrustBackendError
    from trust.revocation import empty_crl

    client = boto3.client("acm-pca", region_name="us-east-1")
    pem = client.get_certificate_authority_certificate(CertificateAuthorityArn=pca)["Certificate"]
    root = x509.load_pem_x509_certificate(pem.encode())
    authority = AwsPcaRootAuthority(PcaClient(pca, "us-east-1"), None)  # type: ignore[arg-type]
    with pytest.raises(TrustBackendError, match="NoSuchKey"):
        authority.root_crl(root)
    key = _publish_pca_crl(pca)
    assert authority.root_crl(root).startswith(b"-----BEGIN X509 CRL-----")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=PCA_CRL_BUCKET, Key=key, Body=b"not a crl")
    with pytest.raises(TrustBackendError, match="not a DER CRL"):
        authority.root_crl(root)
    other = TrustDirectory(tmp_path / "other")
    other.init(TrustDomain("example.org"))
    forged = x509.load_pem_x509_crl(
        empty_crl(
            other.bundle().roots[0],
            load_key_file(other.root_dir(other.config().active_root) / "ca-key.pem"),
        )
    )
    s3.put_object(Bucket=PCA_CRL_BUCKET, Key=key, Body=forged.public_bytes(Encoding.DER))
    with pytest.raises(TrustBackendError, match="not signed by the root"):
        authority.root_crl(root)
    client.update_certificate_authority(
        CertificateAuthorityArn=pca,
        RevocationConfiguration={"CrlConfiguration": {"Enabled": False}},
    )
    with pytest.raises(TrustBackendError, match=r"publishes no CRL.*update-certificate-authority"):
        authority.root_crl(root)


def _crls_of(rootca: Path) -> list[x509.CertificateRevocationList]:
    """Every CRL in the files an SDS ``ROOTCA`` secret (``rootca.json``) names."""
    end = b"-----END X509 CRL-----"
    out = []
    for name in re.findall(r'"filename": "([^"]+)"', rootca.read_text()):
        for part in Path(name).read_bytes().split(end)[:-1]:
            start = part.find(b"-----BEGIN X509 CRL-----")
            if start >= 0:
                out.append(x509.load_pem_x509_crl(part[start:] + end + b"\n"))
    return out


def test_moving_the_root_from_a_local_key_to_vault_then_aws_private_ca_under_200_rps(
    vault, pca, procs, tmp_path, monkeypatch
) -> None:
    """Issue 43 proof 4: ``meshfed trust rotate-root --to vault`` on a federation of three
    clusters under 200 rps: Vault's root joins the bundle and signs from then on, every
    joined cluster is re-signed by Vault, every SVID renews under it, ``--retire-old`` is
    accepted once that is done, the local root's key is deleted, and no request fails. Then,
    under the same load, ``--to aws-pca``: AWS Private CA's root signs every joined cluster's
    intermediate (backdated 5 minutes with ``ValidityNotBefore``, so ``--retire-old`` reads
    the re-sign time as for the other backends -- PCA's own default is 60 minutes: a
    ``--retire-old`` right after the re-sign is refused, naming a wait of most of the 40 s
    gate; waiting it out again is left to the Vault move and to test_federation's rotation).
    One federation for both moves, which covers a remote-to-remote move too."""
    monkeypatch.setenv("VAULT_TOKEN", vault.token)  # the controller signs through Vault too
    to_vault = ["--to", "vault", "--vault-address", vault.url]
    to_pca = ["--to", "aws-pca", "--pca-arn", pca, "--pca-region", "us-east-1"]
    in_vault, in_pca = _move_root_under_load(
        procs, tmp_path, [(to_vault, "vault", True), (to_pca, "aws-pca", False)], 200
    )
    assert in_vault.subject == vault.ca.subject
    ca = boto3.client("acm-pca", region_name="us-east-1")
    pem = ca.get_certificate_authority_certificate(CertificateAuthorityArn=pca)["Certificate"]
    assert in_pca == x509.load_pem_x509_certificate(pem.encode())


def _move_root_under_load(
    procs, tmp_path: Path, moves: list[tuple[list[str], str, bool]], rps: int
) -> list[x509.Certificate]:  # type: ignore[no-untyped-def]
    """Start three clusters and, under ``rps`` requests per second, for each ``(rotate-root
    arguments, backend, retire)`` of ``moves`` in turn: move the root, wait for every
    re-sign and renewal, and retire the previous root (``retire``: then the bundle holds
    only the new root) or see ``--retire-old`` refused for a while yet; every SVID chains to
    the new root only; at the end, that no request failed and the local key is gone.
    Returns the new roots."""
    from tests.integration.test_federation import HOST, _identity_dirs, _roots, _start

    fed = _start(procs, tmp_path / "home")
    home = fed["home"]
    trust = TrustDirectory(home / "trust")
    local_id = trust.config().active_root
    dirs = _identity_dirs(home)
    moved: list[x509.Certificate] = []
    seconds = 120 * len(moves)
    with RateLoop(
        fed["client_port"], HOST, rps=rps, max_requests=rps * seconds, max_seconds=seconds
    ) as load:
        wait_until(lambda: len(load.samples) >= rps, 15, "traffic flowing")
        for to, backend, retire in moves:
            old_root = trust.bundle().roots[-1]
            moved.append(_move_root(home, trust, dirs, to, backend, retire))
            new_root = moved[-1]
            assert trust.bundle().roots == ((new_root,) if retire else (old_root, new_root))
            for d in dirs:
                chain = _roots(d / "cert.pem")
                assert pki.issued_by(chain[1], new_root) and not pki.issued_by(chain[1], old_root)
            print(f"root moved to {backend} under load: {len(load.failures())} failed so far")
        after = len(load.samples)
        wait_until(lambda: len(load.samples) >= after + 5 * rps, 20, "5 s more of traffic")
    assert load.failures() == [], f"{len(load.failures())} failed of {len(load.samples)}"
    print(f"root moves under load: 0 failed of {len(load.samples)} requests")
    assert not (trust.root_dir(local_id) / "ca-key.pem").exists()  # the local key is gone
    return moved


def _move_root(
    home: Path, trust: TrustDirectory, dirs: list[Path], to: list[str], backend: str,
    retire: bool,
) -> x509.Certificate:  # fmt: skip
    """``rotate-root <to>``, then wait until every joined intermediate and every SVID is
    re-signed under the new root; then wait until ``--retire-old`` is accepted (``retire``)
    or check that it is refused now, for most of the 40 s gate (the re-sign time read
    right). Returns the new root."""
    from tests.integration.test_federation import _roots

    said = run_meshfed(home, "trust", "rotate-root", *to).stdout
    assert f"{backend} root" in said and trust.config().backend == backend
    new_root = trust.bundle().roots[-1]

    def re_signed() -> bool:
        cas = [home / "controlplanes" / c / "ca" / "ca.pem" for c in ("a", "b", "c")]
        return all(pki.issued_by(_roots(p)[0], new_root) for p in cas)

    wait_until(re_signed, 30, f"every joined intermediate re-signed by {backend}")

    def renewed() -> bool:
        return all(pki.issued_by(_roots(d / "cert.pem")[1], new_root) for d in dirs)

    wait_until(renewed, 45, f"every SVID renewed under the {backend} root")

    if not retire:
        early = run_meshfed(home, "trust", "rotate-root", "--retire-old", check=False)
        wait = re.search(r"try again in (\d+) s", early.stderr)
        assert early.returncode == 2 and wait is not None, early.stderr
        assert int(wait.group(1)) >= 10, early.stderr  # re-signed seconds ago, not an hour
        return new_root

    def retired() -> bool:
        done = run_meshfed(home, "trust", "rotate-root", "--retire-old", check=False)
        assert done.returncode in (0, 2), done.stderr
        return done.returncode == 0

    wait_until(retired, 60, "--retire-old accepted", interval_s=2)
    return new_root
