"""``meshfed trust`` as a user sees it: files, exit codes, one-line errors, no key material."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner

from federation.cli.main import cli
from tests.unit.trust.test_spiffe import INVALID_IDS


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHFED_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def initialized(run):
    assert run("trust", "init", "--trust-domain", "example.org").exit_code == 0
    assert run("trust", "intermediate", "--cluster", "east").exit_code == 0
    return run


@pytest.mark.parametrize(("spiffe_id", "rule"), INVALID_IDS)
def test_issue_refuses_invalid_spiffe_ids_with_exit_2(
    initialized, tmp_path, spiffe_id, rule
) -> None:
    out = tmp_path / "out"
    result = initialized(
        "trust", "issue", "--cluster", "east", "--spiffe-id", spiffe_id, "--out", str(out)
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: --spiffe-id: invalid SPIFFE ID")
    assert rule in lines[0]
    assert not out.exists()


def test_issue_refuses_foreign_trust_domain(initialized, tmp_path) -> None:
    result = initialized(
        "trust",
        "issue",
        "--cluster",
        "east",
        "--spiffe-id",
        "spiffe://other.org/ns/a/sa/b",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 2
    assert "not in this CA's trust domain example.org" in result.output


def test_issue_writes_files_with_modes_and_json(initialized, tmp_path) -> None:
    out = tmp_path / "out"
    result = initialized(
        "trust",
        "issue",
        "--cluster",
        "east",
        "--spiffe-id",
        "spiffe://example.org/ns/demo/sa/echo",
        "--out",
        str(out),
        "--ttl",
        "2h",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["spiffe_id"] == "spiffe://example.org/ns/demo/sa/echo"
    assert stat.S_IMODE((out / "svid-key.pem").stat().st_mode) == 0o600
    assert (out / "svid.pem").read_text().count("BEGIN CERTIFICATE") == 2
    assert (out / "bundle.pem").exists()
    again = initialized(
        "trust",
        "issue",
        "--cluster",
        "east",
        "--spiffe-id",
        "spiffe://example.org/ns/demo/sa/echo",
        "--out",
        str(out),
    )
    assert again.exit_code == 2
    assert "already exists; pass --force" in again.output


def test_init_twice_needs_force(initialized) -> None:
    result = initialized("trust", "init", "--trust-domain", "example.org")
    assert result.exit_code == 2
    assert "--force" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("trust", "init", "--trust-domain", "Example.org"),
        ("trust", "intermediate", "--cluster", "Bad_Name"),
        ("trust", "intermediate", "--cluster", "west", "--ttl", "ten years"),
        (
            "trust",
            "issue",
            "--cluster",
            "nope",
            "--spiffe-id",
            "spiffe://example.org/a",
            "--out",
            "x",
        ),
    ],
)
def test_bad_input_exit_2(initialized, args) -> None:
    result = initialized(*args)
    assert result.exit_code == 2, result.output


def test_missing_trust_dir_is_explained(run) -> None:
    result = run("trust", "bundle")
    assert result.exit_code == 2
    assert "run 'meshfed trust init' first" in result.output


def test_bundle_outputs(initialized) -> None:
    pem = initialized("trust", "bundle")
    assert pem.output.count("BEGIN CERTIFICATE") == 1
    spiffe = json.loads(initialized("trust", "bundle", "-o", "spiffe").output)
    assert spiffe["keys"][0]["use"] == "x509-svid"


def test_rotate_root_two_steps(initialized) -> None:
    first = initialized("trust", "rotate-root", "-o", "json")
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert len(data["bundle_roots"]) == 2 and data["reissued_clusters"] == ["east"]
    second = initialized("trust", "rotate-root", "--retire-old", "-o", "json")
    assert json.loads(second.output)["bundle_roots"] == [data["active_root"]]
    third = initialized("trust", "rotate-root", "--retire-old")
    assert third.exit_code == 2 and "nothing to retire" in third.output


def test_no_key_material_in_output_or_logs(run, tmp_path) -> None:
    outputs = [
        run("--log-level", "debug", "trust", "init", "--trust-domain", "example.org"),
        run("--log-level", "debug", "trust", "intermediate", "--cluster", "east"),
        run(
            "--log-level",
            "debug",
            "trust",
            "issue",
            "--cluster",
            "east",
            "--spiffe-id",
            "spiffe://example.org/a",
            "--out",
            str(tmp_path / "o"),
        ),
        run("--log-level", "debug", "trust", "rotate-root"),
    ]
    keys = [p.read_text() for p in (tmp_path / "home").rglob("*-key.pem")]
    keys.append((tmp_path / "o" / "svid-key.pem").read_text())
    bodies = ["".join(k.splitlines()[1:-1]) for k in keys]
    for result in outputs:
        assert result.exit_code == 0
        assert "PRIVATE KEY" not in result.output
        for body in bodies:
            assert body[:40] not in result.output.replace("\n", "")
