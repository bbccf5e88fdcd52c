"""The image's rules (issue 39; image/rootfs.py, image/sbom.py) and image references written
into manifests (federation/install/images.py). Pure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from federation.install.images import ImageReference, pinned_image
from image import rootfs, sbom

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32


def test_every_aws_service_the_code_calls_keeps_its_botocore_model() -> None:
    named = set()
    for path in [*ROOT.glob("providers/*.py"), *ROOT.glob("trust/*.py")]:
        text = path.read_text()
        named |= set(re.findall(r"""_c\(\s*["']([a-z0-9-]+)["']""", text))
        named |= set(re.findall(r"""client\(\s*["']([a-z0-9-]+)["']""", text))
    assert named, "no boto3 client found: the pattern is stale"
    assert named <= rootfs.BOTOCORE_SERVICES, named - rootfs.BOTOCORE_SERVICES
    for service in named:
        assert not rootfs.prunable(f"botocore/data/{service}")


@pytest.mark.parametrize(
    ("rel", "removed"),
    [
        ("botocore/data/sqs", True),
        ("botocore/data/eks", False),
        ("botocore/data/_retry.json", False),
        ("botocore/data/endpoints.json", False),
        ("numpy/_core/tests", True),
        ("federation/tests", False),
        ("kubernetes_asyncio/client", False),
    ],
)
def test_what_the_build_prunes_from_site_packages(rel: str, removed: bool) -> None:
    assert rootfs.prunable(rel) is removed


def test_nothing_the_image_runs_imports_scipy() -> None:
    """SciPy is a test dependency only (85 MB the image does not carry): the optimizer solves
    with highspy."""
    for package in ("federation", "trust", "providers", "eastwest_gateway"):
        for path in ROOT.glob(f"{package}/**/*.py"):
            assert not re.search(r"^\s*(from|import) scipy\b", path.read_text(), re.M), path


def test_users_have_no_login_shell_and_the_proxy_is_istio_s_1337() -> None:
    rows = [line.split(":") for line in rootfs.passwd().splitlines()]
    assert {r[0]: int(r[2]) for r in rows}["meshfed-proxy"] == 1337
    assert all(r[6] == "/usr/sbin/nologin" for r in rows)
    groups = {line.split(":")[0] for line in rootfs.group().splitlines()}
    assert {"meshfed", "meshfed-proxy"} <= groups


def test_the_launcher_runs_the_image_s_python() -> None:
    text = rootfs.launcher("federation.cli.main", "main")
    assert text.startswith(f"#!/usr/bin/{rootfs.PYTHON}\n")
    compile(text, "meshfed", "exec")


def test_world_writable_finds_files_and_directories_but_not_links(tmp_path: Path) -> None:
    (tmp_path / "ok").write_text("x")
    (tmp_path / "bad").write_text("x")
    (tmp_path / "bad").chmod(0o666)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp").chmod(0o1777)
    (tmp_path / "link").symlink_to("ok")
    assert sorted(rootfs.world_writable(tmp_path)) == ["bad", "tmp"]


def test_pruned_paths_lists_files_deepest_first() -> None:
    assert rootfs.pruned_paths(["./usr/bin/dpkg", "./usr/", "./usr/bin/dpkg-deb"]) == [
        "usr/bin/dpkg-deb",
        "usr/bin/dpkg",
    ]


def test_the_sbom_is_valid_cyclonedx_1_6_and_the_same_for_the_same_input() -> None:
    debs = [sbom.DebPackage("libc6", "2.36-9+deb12u14", "amd64")]
    python = [("grpcio", "1.76.0"), ("meshfed", "0.1.0")]
    one = sbom.bom_json(version="0.1.0", debs=debs, python=python, epoch=1764892800)
    two = sbom.bom_json(version="0.1.0", debs=debs, python=python, epoch=1764892800)
    assert one == two
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(one)
    assert error is None, error
    purls = {c["purl"] for c in json.loads(one)["components"]}
    assert "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12" in purls
    assert "pkg:pypi/grpcio@1.76.0" in purls


@pytest.mark.parametrize(
    "ref",
    [
        f"ghcr.io/meshfed/meshfed@{DIGEST}",
        f"registry.example.com:5000/team/meshfed:0.1.0@{DIGEST}",
        f"localhost/meshfed@{DIGEST}",
        f"meshfed@{DIGEST}",
    ],
)
def test_an_image_by_digest_is_written_as_given(ref: str) -> None:
    assert pinned_image(ref, allow_tag=False) == ref
    assert ImageReference.parse(ref).digest == DIGEST


@pytest.mark.parametrize(
    ("ref", "allow_tag", "message"),
    [
        ("ghcr.io/meshfed/meshfed:latest", False, "names no digest, and a tag can be moved"),
        ("ghcr.io/meshfed/meshfed", False, "ghcr.io/meshfed/meshfed@sha256:<digest>"),
        ("ghcr.io/meshfed/meshfed@sha256:abc", True, "64 lowercase hex digits"),
        (f"ghcr.io/meshfed/meshfed@md5:{'ab' * 16}", True, "a digest is sha256:"),
        ("GHCR.io/Meshfed/X:1", True, "is not an image reference"),
        ("", True, "is not an image reference"),
    ],
)
def test_a_reference_without_a_digest_or_malformed_is_refused(
    ref: str, allow_tag: bool, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        pinned_image(ref, allow_tag=allow_tag)


def test_a_tag_is_accepted_when_allowed() -> None:
    assert pinned_image("ghcr.io/meshfed/meshfed:0.1.0", allow_tag=True).endswith(":0.1.0")
