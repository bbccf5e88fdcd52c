"""The trust walkthrough with real processes: the installed ``meshfed`` console script and the
``openssl`` command line verify what we issue, independently of our own Python code."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trust import pki
from trust.spiffe import SpiffeId

pytestmark = pytest.mark.integration

MESHFED = str(Path(sys.executable).with_name("meshfed"))
OPENSSL = shutil.which("openssl")


def _run(
    args: list[str], env: dict[str, str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}): {result.stderr}")
    return result


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["MESHFED_HOME"] = str(tmp_path / "home")
    e["MESHFED_LOG_LEVEL"] = "debug"
    return e


@pytest.mark.skipif(OPENSSL is None, reason="openssl CLI missing (make test installs it)")
def test_openssl_verifies_chain_and_leaf_has_one_uri_san(env, tmp_path) -> None:
    assert OPENSSL is not None
    spiffe_id = "spiffe://example.org/ns/demo/sa/echo"
    logs = []
    logs.append(_run([MESHFED, "trust", "init", "--trust-domain", "example.org"], env))
    logs.append(_run([MESHFED, "trust", "intermediate", "--cluster", "aws-us-east-1"], env))
    out = tmp_path / "svid"
    logs.append(
        _run(
            [
                MESHFED,
                "trust",
                "issue",
                "--cluster",
                "aws-us-east-1",
                "--spiffe-id",
                spiffe_id,
                "--out",
                str(out),
            ],
            env,
        )
    )
    intermediate = (
        Path(env["MESHFED_HOME"]) / "trust" / "intermediates" / "aws-us-east-1" / "ca.pem"
    )
    verify = _run(
        [
            OPENSSL,
            "verify",
            "-CAfile",
            str(out / "bundle.pem"),
            "-untrusted",
            str(intermediate),
            str(out / "svid.pem"),
        ],
        env,
    )
    assert verify.stdout.strip() == f"{out / 'svid.pem'}: OK"
    # the chain file itself (leaf + intermediate) verifies with -untrusted pointing at it
    verify_chain = _run(
        [
            OPENSSL,
            "verify",
            "-CAfile",
            str(out / "bundle.pem"),
            "-untrusted",
            str(out / "svid.pem"),
            str(out / "svid.pem"),
        ],
        env,
    )
    assert verify_chain.stdout.strip().endswith("OK")
    text = _run([OPENSSL, "x509", "-in", str(out / "svid.pem"), "-noout", "-text"], env).stdout
    uris = re.findall(r"URI:([^\s,]+)", text)
    assert uris == [spiffe_id]
    assert re.findall(r"DNS:([^\s,]+)", text) == ["aws-us-east-1.cluster.meshfed.internal"]
    # attack: the cluster's CA key signs a leaf claiming another cluster; openssl refuses it
    # because of the name constraints the root put on the intermediate
    forged = tmp_path / "forged.pem"
    ca_key = pki.load_private_key(
        intermediate.with_name("ca-key.pem").read_bytes(), source="intermediate key"
    )
    [ca_cert] = pki.load_certificates(intermediate.read_bytes(), source="intermediate")
    sid = SpiffeId.parse(spiffe_id)
    leaf = pki.leaf_certificate(
        pki.build_csr(pki.generate_private_key(), spiffe_id=sid),
        sid,
        issuer_cert=ca_cert,
        issuer_key=ca_key,
        now=pki.utcnow(),
        dns_names=["gcp-europe-west1.cluster.meshfed.internal"],
    )
    forged.write_bytes(pki.certificates_to_pem([leaf]))
    refused = _run(
        [OPENSSL, "verify", "-CAfile", str(out / "bundle.pem"), "-untrusted", str(intermediate),
         str(forged)],
        env,
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "permitted subtree violation" in refused.stdout + (
        refused.stderr
    )
    assert "CA:FALSE" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    # the key pairs with the leaf (openssl compares the public keys)
    leaf_pub = _run(
        [OPENSSL, "x509", "-in", str(out / "svid.pem"), "-noout", "-pubkey"], env
    ).stdout
    key_pub = _run([OPENSSL, "pkey", "-in", str(out / "svid-key.pem"), "-pubout"], env).stdout
    assert leaf_pub == key_pub
    # every key file is 0600; no log line or output carries key material
    keys = [*Path(env["MESHFED_HOME"]).rglob("*-key.pem"), out / "svid-key.pem"]
    assert len(keys) == 3
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    bodies = ["".join(k.read_text().splitlines()[1:-1])[:32] for k in keys]
    for result in logs:
        assert "DEBUG" in result.stderr or "INFO" in result.stderr
        for stream in (result.stdout, result.stderr):
            assert "PRIVATE KEY" not in stream
            assert not any(body in stream.replace("\n", "") for body in bodies)


@pytest.mark.skipif(OPENSSL is None, reason="openssl CLI missing (make test installs it)")
def test_openssl_sees_old_svid_valid_during_rotation_and_invalid_after(env, tmp_path) -> None:
    assert OPENSSL is not None
    home = Path(env["MESHFED_HOME"]) / "trust"
    _run([MESHFED, "trust", "init", "--trust-domain", "example.org"], env)
    _run([MESHFED, "trust", "intermediate", "--cluster", "east"], env)
    old = tmp_path / "old"
    _run(
        [
            MESHFED,
            "trust",
            "issue",
            "--cluster",
            "east",
            "--spiffe-id",
            "spiffe://example.org/a",
            "--out",
            str(old),
        ],
        env,
    )
    _run([MESHFED, "trust", "rotate-root"], env)
    new = tmp_path / "new"
    _run(
        [
            MESHFED,
            "trust",
            "issue",
            "--cluster",
            "east",
            "--spiffe-id",
            "spiffe://example.org/a",
            "--out",
            str(new),
        ],
        env,
    )
    bundle = home / "bundle.pem"

    def verifies(svid_dir: Path) -> bool:
        r = _run(
            [
                OPENSSL,
                "verify",
                "-CAfile",
                str(bundle),
                "-untrusted",
                str(svid_dir / "svid.pem"),
                str(svid_dir / "svid.pem"),
            ],
            env,
            check=False,
        )
        return r.returncode == 0

    assert verifies(old) and verifies(new)
    _run([MESHFED, "trust", "rotate-root", "--retire-old"], env)
    assert verifies(new)
    assert not verifies(old)


def test_invalid_spiffe_id_exit_code_from_real_process(env, tmp_path) -> None:
    _run([MESHFED, "trust", "init", "--trust-domain", "example.org"], env)
    _run([MESHFED, "trust", "intermediate", "--cluster", "east"], env)
    result = _run(
        [
            MESHFED,
            "trust",
            "issue",
            "--cluster",
            "east",
            "--spiffe-id",
            "spiffe://example.org:443/ns/a/sa/b",
            "--out",
            str(tmp_path / "x"),
        ],
        env,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: --spiffe-id:")
    assert "port" in result.stderr
