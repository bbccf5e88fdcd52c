"""``meshfed install --apply`` / ``meshfed uninstall --apply`` against the Kubernetes API
server fake (tests/kube_fake.py), through the real CLI and ``kubernetes_asyncio`` (issue #20):
what ``kubectl apply -f -`` would leave in the cluster, without kubectl."""

from __future__ import annotations

import copy

import pytest
import yaml

from federation.controlplane.kube.pod import NAMESPACE
from tests.integration.harness import run_meshfed
from tests.kube_fake import fake_kube

pytestmark = pytest.mark.integration

ARGS = [
    "--image",
    "registry.example.com/meshfed/meshfed@sha256:" + "5e" * 32,
    "--cluster",
    "east",
    "--locality",
    "aws/us-east-1/us-east-1a",
    "--controller",
    "https://127.0.0.1:15080",
    "--join-token",
    "mfj_secret.0123",
    "--provider",
    "aws",
    "--gateway-allowed-cidrs",
    "198.51.100.0/24",
]


def _names(objects: list[dict]) -> list[tuple[str, str, str]]:
    return [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects]


def test_install_apply_writes_every_object_keeps_others_fields_and_uninstall_removes_them(
    tmp_path,
) -> None:
    home = tmp_path / "home"
    printed = list(yaml.safe_load_all(run_meshfed(home, "install", *ARGS).stdout))
    with fake_kube() as kube:
        # Gateway API already installed, a newer release: its CRD is left as it is
        theirs = next(o for o in printed if o["metadata"]["name"].startswith("httproutes."))
        theirs = copy.deepcopy(theirs)
        del theirs["metadata"]["annotations"]["meshfed.io/install"]
        theirs["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] = "v1.7.0"
        kube.create(theirs)
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        first = run_meshfed(home, "install", *ARGS, "--apply", "--kubeconfig", str(kubeconfig))
        assert first.stdout == ""  # nothing printed for kubectl: it was applied
        for kind, ns, name in _names(printed):
            stored = kube.get(kind, ns, name)
            assert stored is not None, f"{kind} {ns}/{name} not applied"
            if name == theirs["metadata"]["name"]:
                assert f"{kind} {name} left as it is (already installed)" in first.stderr
                assert stored["metadata"]["annotations"] == theirs["metadata"]["annotations"]
                continue
            assert f"{kind} {ns + '/' if ns else ''}{name} created" in first.stderr
        assert f"{len(printed)} objects applied" in first.stderr
        gateway = kube.get("Service", NAMESPACE, "meshfed-gateway")
        assert gateway is not None
        assert gateway["spec"]["loadBalancerSourceRanges"] == ["198.51.100.0/24"]
        assert "mfj_secret" not in first.stderr  # the token's Secret is applied, not echoed

        # the control plane writes its CA into the webhook configuration; the cloud gives the
        # gateway an address; a second apply (an upgrade) keeps both: only meshfed's fields
        hook = kube.get("MutatingWebhookConfiguration", "", "meshfed-sidecar-injector")
        assert hook is not None
        hook = copy.deepcopy(hook)
        hook["webhooks"][0]["clientConfig"]["caBundle"] = "Q0EK"
        kube.replace(hook)
        kube.set_status(
            {**gateway, "status": {"loadBalancer": {"ingress": [{"hostname": "gw.elb.test"}]}}}
        )
        again = run_meshfed(home, "install", *ARGS, "--apply", "--kubeconfig", str(kubeconfig))
        assert "Deployment meshfed-system/meshfed-gateway configured" in again.stderr
        hook = kube.get("MutatingWebhookConfiguration", "", "meshfed-sidecar-injector")
        assert hook is not None and hook["webhooks"][0]["clientConfig"]["caBundle"] == "Q0EK"
        gateway = kube.get("Service", NAMESPACE, "meshfed-gateway")
        assert gateway is not None and gateway["status"]["loadBalancer"]["ingress"]

        gone = run_meshfed(home, "uninstall", *ARGS, "--apply", "--kubeconfig", str(kubeconfig))
        crds = [o for o in printed if o["kind"] == "CustomResourceDefinition"]
        others = [o for o in printed if o["kind"] != "CustomResourceDefinition"]
        assert f"{len(others)} objects deleted" in gone.stderr
        assert all(kube.get(kind, ns, name) is None for kind, ns, name in _names(others))
        # the MCS CRDs stay (another MCS implementation's exports with them) unless asked; the
        # official Istio and Gateway API CRDs always (they hold the user's documents)
        mcs = [o for o in crds if o["spec"]["group"] == "multicluster.x-k8s.io"]
        assert len(crds) == 11 and all(kube.get(k, n, m) for k, n, m in _names(crds))
        run_meshfed(home, "uninstall", "--delete-crds", "--apply", "--kubeconfig", str(kubeconfig))
        assert all(kube.get(kind, ns, name) is None for kind, ns, name in _names(mcs))
        kept = [o for o in crds if o not in mcs]
        assert len(kept) == 9 and all(kube.get(k, n, m) for k, n, m in _names(kept))
        twice = run_meshfed(home, "uninstall", *ARGS, "--apply", "--kubeconfig", str(kubeconfig))
        assert "Namespace meshfed-system not found" in twice.stderr


def test_install_apply_without_a_reachable_api_server_exits_1_naming_the_object(
    tmp_path,
) -> None:
    home = tmp_path / "home"
    with fake_kube() as kube:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    # the fake is stopped: its address refuses connections
    down = run_meshfed(
        home, "install", *ARGS, "--apply", "--kubeconfig", str(kubeconfig), check=False
    )
    assert down.returncode == 1
    assert "Namespace meshfed-system: Kubernetes API unreachable" in down.stderr
    assert "Traceback" not in down.stderr
    missing = run_meshfed(
        home, "install", *ARGS, "--apply", "--kubeconfig", str(tmp_path / "nope"), check=False
    )
    assert missing.returncode == 2 and "--kubeconfig" in missing.stderr
