"""``meshfed controller install`` (issue 39): the replicated controller's manifests."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from federation.cli.main import cli
from federation.install.controller import (
    TRUST_MOUNT,
    TRUST_SECRET,
    ControllerInstall,
    controller_manifests,
)
from federation.install.manifests import KUBERNETES_VERSION
from tests.unit.install.pod_security import restricted_violations

IMAGE = "registry.example.com/meshfed/meshfed@sha256:" + "5e" * 32
FILES = (
    "bundle.pem",
    "intermediates/meshfed-controller/ca-key.pem",
    "intermediates/meshfed-controller/ca.pem",
    "roots/ab12/ca-key.pem",
    "roots/ab12/ca.pem",
    "trust.json",
)


def test_two_replicas_on_postgresql_valid_restricted_and_disruption_safe() -> None:
    objects = controller_manifests(
        ControllerInstall(image=IMAGE, trust_files=FILES, sync_address="ctl.example.org:15090",
                          provider="aws", allowed_cidrs=("198.51.100.0/24",))
    )  # fmt: skip
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    by_kind = {o["kind"]: o for o in objects}
    deployment = by_kind["Deployment"]["spec"]
    pod = deployment["template"]["spec"]
    assert deployment["replicas"] == 2 and restricted_violations(pod) == []
    assert pod["automountServiceAccountToken"] is False  # it calls no Kubernetes API
    (container,) = pod["containers"]
    args = container["args"]
    assert args[args.index("--advertise-sync") + 1] == "ctl.example.org:15090"
    assert args[args.index("--replica-name") + 1] == "$(POD_NAME)"
    env = {e["name"]: e for e in container["env"]}
    assert env["MESHFED_CONTROLLER_STORE"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    trust = next(v for v in pod["volumes"] if v["name"] == "trust")
    assert trust["secret"]["secretName"] == TRUST_SECRET
    assert {"key": "roots.ab12.ca-key.pem", "path": "roots/ab12/ca-key.pem"} in trust["secret"][
        "items"
    ]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "trust")
    assert mount == {"name": "trust", "mountPath": TRUST_MOUNT, "readOnly": True}
    assert by_kind["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    service = by_kind["Service"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == ["198.51.100.0/24"]
    assert "Secret" not in by_kind  # key material never passes through meshfed's output


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (FILES[:-1], "no trust.json"),
        (("trust.json", "bundle.pem"), "no controller intermediate"),
    ],
)
def test_a_trust_directory_without_what_the_controller_needs_is_refused(files, message) -> None:
    with pytest.raises(ValueError, match=message):
        controller_manifests(ControllerInstall(image=IMAGE, trust_files=files))


def test_the_cli_prints_the_manifests_and_the_kubectl_commands_for_the_secrets(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    env = {"MESHFED_HOME": str(tmp_path)}
    assert (
        runner.invoke(cli, ["trust", "init", "--trust-domain", "example.org"], env=env).exit_code
        == 0
    )
    out = runner.invoke(cli, ["controller", "install", "--image", IMAGE], env=env)
    assert out.exit_code == 0, out.output
    docs = list(yaml.safe_load_all(out.stdout))
    assert [d["kind"] for d in docs][-3:] == ["Deployment", "PodDisruptionBudget", "Service"]
    # the controller's intermediate was made here, and the Secret's commands name every file
    key_files = sorted((tmp_path / "trust").rglob("*key.pem"))
    assert len(key_files) == 2 and all(k.stat().st_mode & 0o077 == 0 for k in key_files)
    assert "kubectl -n meshfed-system create secret generic meshfed-controller-trust" in out.stderr
    for key in key_files:
        assert f"={key}" in out.stderr
        assert key.read_text() not in out.output  # no key material in what is printed
    as_json = json.loads(
        runner.invoke(
            cli, ["controller", "install", "--image", IMAGE, "-o", "json"], env=env
        ).stdout
    )
    assert as_json["kind"] == "List"
    tag = runner.invoke(cli, ["controller", "install", "--image", "meshfed:latest"], env=env)
    assert tag.exit_code == 2 and "names no digest" in tag.stderr
    none = runner.invoke(cli, ["controller", "install", "--image", IMAGE],
                         env={"MESHFED_HOME": str(tmp_path / "empty")})  # fmt: skip
    assert none.exit_code == 2 and "no root of trust there" in none.stderr
