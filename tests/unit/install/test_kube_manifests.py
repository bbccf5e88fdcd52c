"""``meshfed install`` / ``uninstall`` / ``inject`` and the injection webhook's answer
(issue #20, proofs 4 and 6): the manifests pass kubernetes-validate for the stated Kubernetes
version, RBAC grants no ``*``; an AdmissionReview of a pod gets a JSONPatch (RFC 6902,
applied here with the jsonpatch library) that adds the sidecar."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import jsonpatch
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from federation.cli.main import cli
from federation.controlplane.kube.inject import (
    INIT,
    SIDECAR,
    admission_response,
    inject_document,
    pod_patch,
)
from federation.controlplane.kube.pod import (
    FEDERATION_CONFIGMAP,
    IDENTITY_SECRET,
    LEADER_LEASE,
    NAMESPACE,
)
from federation.install.manifests import (
    KUBERNETES_VERSION,
    InstallOptions,
    install,
    uninstall,
)
from tests.unit.install.pod_security import restricted_violations

OPTIONS = InstallOptions(
    cluster="east",
    locality="aws/us-east-1",
    controller="https://ctl-a.example.com:15080,https://ctl-b.example.com:15080",
    join_token="mfj_secret.0123",
    provider="aws",
    mesh_namespaces=("shop",),
    gateway_allowed_cidrs=("198.51.100.0/24", "2001:db8::/32"),
)


ADDRESSES = {"aws": "eipalloc-0123456789abcdef0", "gcp": "meshfed-east-gw", "local": "203.0.113.9"}


@pytest.mark.parametrize("provider", ["aws", "gcp", "local"])
def test_install_manifests_are_valid_kubernetes_objects(provider: str) -> None:
    objects = install(replace(OPTIONS, provider=provider, gateway_ip=ADDRESSES[provider]))
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)  # raises when invalid
    kinds = [o["kind"] for o in objects]
    # the MCS CRDs, and the official Gateway API (3) and Istio (6) CRDs of the kinds read
    assert kinds[0] == "Namespace" and kinds.count("CustomResourceDefinition") == 11
    assert {"ClusterRole", "Deployment", "MutatingWebhookConfiguration"} <= set(kinds)
    lb = next(o for o in objects if o["kind"] == "Service" and o["spec"]["type"] == "LoadBalancer")
    if provider == "aws":
        assert (
            lb["metadata"]["annotations"][
                "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"
            ]
            == "ip"
        )
    # only the federation's ranges reach the gateway; the reserved address is asked for, by
    # each cloud's annotation (spec.loadBalancerIP is deprecated): local keeps the field
    assert lb["spec"]["loadBalancerSourceRanges"] == ["198.51.100.0/24", "2001:db8::/32"]
    asked = {
        "aws": lb["metadata"]["annotations"].get(
            "service.beta.kubernetes.io/aws-load-balancer-eip-allocations"
        ),
        "gcp": lb["metadata"]["annotations"].get("networking.gke.io/load-balancer-ip-addresses"),
        "local": lb["spec"].get("loadBalancerIP"),
    }
    assert asked[provider] == ADDRESSES[provider]
    assert provider == "local" or "loadBalancerIP" not in lb["spec"]
    plain = install(replace(OPTIONS, gateway_allowed_cidrs=()))
    lb = next(o for o in plain if o["kind"] == "Service" and o["spec"]["type"] == "LoadBalancer")
    assert "loadBalancerSourceRanges" not in lb["spec"] and "loadBalancerIP" not in lb["spec"]


@pytest.mark.parametrize("provider", ["aws", "gcp", "local"])
def test_meshfed_s_own_pods_pass_pod_security_restricted_and_survive_drains(
    provider: str,
) -> None:
    objects = install(replace(OPTIONS, provider=provider))
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    budgets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodDisruptionBudget"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert restricted_violations(pod) == [], name
        spec = deployment["spec"]
        assert spec["replicas"] >= 2, name
        keys = {c["topologyKey"] for c in spec["template"]["spec"]["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
        assert budgets[name]["spec"]["selector"] == spec["selector"], name
    gateway = deployments["meshfed-gateway"]["spec"]
    container = gateway["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"


def test_control_plane_replicas_share_state_through_objects_their_role_names() -> None:
    """No RWO volume (one node at a time) and no Recreate: replicas keep their copy in
    memory and share through the Secret, ConfigMap and Lease the install creates, which the
    control plane's Role may read and update by name only -- not create, not any other
    Secret."""
    objects = install(OPTIONS)
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    [deployment] = [o for o in objects if o["metadata"]["name"] == "meshfed-controlplane"
                    and o["kind"] == "Deployment"]  # fmt: skip
    spec = deployment["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["template"]["spec"]["volumes"] == [
        {"name": "state", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
    ]
    shared = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Secret", IDENTITY_SECRET), ("ConfigMap", FEDERATION_CONFIGMAP),
            ("Lease", LEADER_LEASE)} <= shared  # fmt: skip
    [role] = [o for o in objects if o["kind"] == "Role"]
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secret_rules == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"],
         "resourceNames": [IDENTITY_SECRET]}
    ]  # fmt: skip
    for rule in role["rules"]:
        assert "create" not in rule["verbs"] and "delete" not in rule["verbs"], rule
        assert "list" not in rule["verbs"] or rule["resources"] == ["configmaps"], rule
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "meshfed-controlplane", "namespace": NAMESPACE}
    ]
    [cluster_role] = [o for o in objects if o["kind"] == "ClusterRole"]
    assert not [r for r in cluster_role["rules"] if "secrets" in r["resources"]]


def test_the_restricted_check_can_fail_an_injected_pod_needs_net_admin_for_capture() -> None:
    injected = inject_document(POD, "east", "img@sha256:" + "0" * 64)
    violations = restricted_violations(injected["spec"])
    assert any("NET_ADMIN" in v for v in violations), violations


def test_install_apply_knows_the_api_path_of_every_kind_install_emits() -> None:
    from federation.install.apply import RESOURCES, resource_path

    for provider in ("aws", "gcp", "local"):
        for obj in install(replace(OPTIONS, provider=provider)):
            assert (obj["apiVersion"], obj["kind"]) in RESOURCES
            assert resource_path(obj).endswith("/" + obj["metadata"]["name"])


def test_printed_manifests_hold_no_yaml_anchors() -> None:
    args = ["--cluster", "east", "--locality", "aws/us-east-1", "--image", IMAGE]
    out = CliRunner().invoke(cli, ["install", *args])
    assert out.exit_code == 0 and "&id" not in out.output and "*id" not in out.output
    assert yaml.safe_load_all(out.output)


def test_uninstall_keeps_the_mcs_crds_unless_asked_and_needs_no_locality() -> None:
    runner = CliRunner()
    kept = list(yaml.safe_load_all(runner.invoke(cli, ["uninstall"]).output))
    assert kept and "CustomResourceDefinition" not in {d["kind"] for d in kept}
    gone = list(yaml.safe_load_all(runner.invoke(cli, ["uninstall", "--delete-crds"]).output))
    assert [d["kind"] for d in gone].count("CustomResourceDefinition") == 2
    assert gone[-1]["kind"] == "CustomResourceDefinition"  # after everything that uses them


@pytest.mark.parametrize(
    ("provider", "address", "message"),
    [
        ("gcp", "203.0.113.9", "the reserved address's name"),
        ("aws", "203.0.113.9", "Elastic IP allocation IDs"),
        ("local", "gw-name", "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_a_gateway_address_in_the_wrong_form_for_the_cloud_is_refused(
    provider: str, address: str, message: str
) -> None:
    args = ["--cluster", "east", "--locality", "aws/us-east-1", "--image", IMAGE]
    out = CliRunner().invoke(
        cli, ["install", *args, "--provider", provider, "--gateway-ip", address]
    )
    assert out.exit_code == 2 and message in out.stderr


def test_rbac_grants_no_wildcard_and_only_what_the_control_plane_uses() -> None:
    rules = [
        r for o in install(OPTIONS) if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]
    ]
    for rule in rules:
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule[field], rule
    writes = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
        if v not in ("get", "list", "watch")
    }
    assert writes == {
        ("multicluster.x-k8s.io", "serviceexports/status", "update"),
        ("multicluster.x-k8s.io", "serviceimports", "create"),
        ("multicluster.x-k8s.io", "serviceimports", "update"),
        ("multicluster.x-k8s.io", "serviceimports", "delete"),
        ("multicluster.x-k8s.io", "serviceimports/status", "update"),
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "update"),
        # what the replicas share, each by name (the test above)
        ("", "secrets", "update"),
        ("", "configmaps", "update"),
        ("coordination.k8s.io", "leases", "update"),
        # the status of the Istio and Gateway API documents it reads, nothing of their spec
        *(
            ("networking.istio.io", f"{r}/status", "update")
            for r in ("virtualservices", "destinationrules", "serviceentries", "sidecars")
        ),
        ("security.istio.io", "authorizationpolicies/status", "update"),
        ("security.istio.io", "peerauthentications/status", "update"),
        ("gateway.networking.k8s.io", "httproutes/status", "update"),
        ("gateway.networking.k8s.io", "grpcroutes/status", "update"),
    }


IMAGE = "registry.example.com/meshfed/meshfed@sha256:" + "5e" * 32


def test_install_writes_the_image_by_digest_and_refuses_a_tag_unless_allowed() -> None:
    """Issue 39, proof 3: every container of ``meshfed install --image REPO@sha256:...`` runs
    that digest, and the manifests pass kubernetes-validate."""
    runner = CliRunner()
    args = ["--cluster", "east", "--locality", "aws/us-east-1", "--provider", "aws"]
    out = runner.invoke(cli, ["install", *args, "--image", IMAGE])
    assert out.exit_code == 0, out.output
    images, flags = [], []
    for obj in yaml.safe_load_all(out.output):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            images.append(c["image"])
            flags += [a for a in c.get("args", []) if a.startswith("registry.")]
    assert images and set(images) == {IMAGE}
    assert set(flags) <= {IMAGE}  # the injector's --sidecar-image
    tag = runner.invoke(cli, ["install", *args, "--image", "ghcr.io/meshfed/meshfed:latest"])
    assert tag.exit_code == 2 and "names no digest" in tag.stderr and "--allow-tag" in tag.stderr
    allowed = ["install", *args, "--image", "ghcr.io/meshfed/meshfed:1.0", "--allow-tag"]
    assert runner.invoke(cli, allowed).exit_code == 0
    missing = runner.invoke(cli, ["install", *args])
    assert missing.exit_code == 2 and "--image is required" in missing.stderr
    assert runner.invoke(cli, ["uninstall", *args]).exit_code == 0  # needs no image


def test_the_cli_prints_install_and_uninstall_and_refuses_bad_input() -> None:
    runner = CliRunner()
    args = ["--cluster", "east", "--locality", "aws/us-east-1", "--image", IMAGE]
    out = runner.invoke(cli, ["install", *args, "--provider", "gcp"])
    assert out.exit_code == 0, out.output
    docs = list(yaml.safe_load_all(out.output))
    assert docs[0]["kind"] == "Namespace"
    gone = list(yaml.safe_load_all(runner.invoke(cli, ["uninstall", *args]).output))
    kept = [d["kind"] for d in reversed(docs) if d["kind"] != "CustomResourceDefinition"]
    assert [d["kind"] for d in gone] == kept
    as_json = json.loads(runner.invoke(cli, ["install", *args, "-o", "json"]).output)
    assert as_json["kind"] == "List" and len(as_json["items"]) == len(docs)
    bad = runner.invoke(
        cli, ["install", *args[4:], "--cluster", "East", "--locality", "aws/us-east-1"]
    )
    assert bad.exit_code == 2 and "--cluster: 'East'" in bad.stderr
    bad = runner.invoke(cli, ["install", *args[4:], "--cluster", "east", "--locality", "nowhere"])
    assert bad.exit_code == 2 and "--locality" in bad.stderr
    bad = runner.invoke(cli, ["install", *args, "--join-token", "t"])
    assert bad.exit_code == 2 and "--join-token needs --controller" in bad.stderr
    bad = runner.invoke(cli, ["install", *args, "--gateway-allowed-cidrs", "10.0.0.0/8,10.1.2.3/8"])
    assert bad.exit_code == 2 and "--gateway-allowed-cidrs" in bad.stderr
    bad = runner.invoke(
        cli, ["install", *args, "--gateway-ip", "gw.example.com", "--provider", "local"]
    )
    assert bad.exit_code == 2 and "--gateway-ip" in bad.stderr


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "api-1", "namespace": "shop", "labels": {"app": "api"}},
    "spec": {
        "serviceAccountName": "api",
        "containers": [{"name": "api", "image": "api:1", "ports": [{"containerPort": 8080}]}],
    },
}


def _review(pod: dict, kind: str = "Pod") -> dict:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "operation": "CREATE",
            "namespace": "shop",
            "object": pod,
        },
    }


def test_the_webhook_answers_an_admission_review_with_a_json_patch_adding_the_sidecar() -> None:
    answer = admission_response(_review(POD), "east", "meshfed:test")
    response = answer["response"]
    assert answer["kind"] == "AdmissionReview" and answer["apiVersion"] == "admission.k8s.io/v1"
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002" and response["allowed"]
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    pod = jsonpatch.apply_patch(POD, patch)  # a real RFC 6902 implementation
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    sidecar = next(c for c in pod["spec"]["containers"] if c["name"] == SIDECAR)
    assert sidecar["args"][sidecar["args"].index("--app-port") + 1] == "8080"
    assert sidecar["args"][sidecar["args"].index("--service") + 1] == "api"
    assert pod["metadata"]["labels"]["meshfed.io/sidecar"] == "true"
    token = next(v for v in pod["spec"]["volumes"] if v["name"] == "meshfed-token")
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "meshfed"
    # injected twice is injected once
    assert pod_patch(pod, "east", "meshfed:test") == []
    # not a pod (the webhook only gets pods; anything else passes untouched)
    other = admission_response(_review(POD, kind="Service"), "east", "meshfed:test")
    assert "patch" not in other["response"] and other["response"]["allowed"]


def test_a_pod_without_service_name_or_port_is_annotated_not_injected() -> None:
    bare = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x"}]}}
    pod = jsonpatch.apply_patch(bare, pod_patch(bare, "east", "meshfed:test"))
    assert [c["name"] for c in pod["spec"]["containers"]] == ["x"]
    assert "no service name" in pod["metadata"]["annotations"]["meshfed.io/inject-skipped"]


def test_meshfed_inject_adds_the_sidecar_to_a_deployment_and_leaves_the_rest(tmp_path) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}}, "spec": POD["spec"]},
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
               "spec": {"ports": [{"port": 80}]}}  # fmt: skip
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump_all([deployment, service]))
    out = CliRunner().invoke(
        cli, ["inject", "-f", str(path), "--cluster", "east", "--image", IMAGE]
    )
    assert out.exit_code == 0, out.output
    tag = CliRunner().invoke(cli, ["inject", "-f", str(path), "--cluster", "east"])
    assert tag.exit_code == 2 and "--image" in tag.stderr
    injected, unchanged = yaml.safe_load_all(out.output)
    kubernetes_validate.validate(injected, KUBERNETES_VERSION, strict=True)
    names = [c["name"] for c in injected["spec"]["template"]["spec"]["containers"]]
    assert names == ["api", SIDECAR] and unchanged == service
    assert inject_document(injected, "east", "x") == injected  # idempotent
    uninstall(OPTIONS)  # the reverse of install, never raises


def test_the_injected_pod_is_captured_by_an_init_container_and_uninject_restores_it(
    tmp_path,
) -> None:
    """Issue #38: ``meshfed-init`` (root, NET_ADMIN and NET_RAW only) with the pod's capture
    annotations in both spellings; the sidecar as UID/GID 1337 with every capability dropped
    and ``--capture``; ``meshfed uninject`` gives back the manifest as it was."""
    annotated = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {
                    "labels": {"app": "api"},
                    "annotations": {
                        "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
                        "traffic.meshfed.io/excludeInboundPorts": "9102",
                        "prometheus.io/scrape": "true",
                    },
                },
                "spec": POD["spec"],
            },
        },
    }
    injected = inject_document(annotated, "east", "meshfed:test")
    kubernetes_validate.validate(injected, KUBERNETES_VERSION, strict=True)
    spec = injected["spec"]["template"]["spec"]
    [init] = spec["initContainers"]
    assert init["name"] == INIT and init["args"] == [
        "proxy",
        "init",
        "--annotation=traffic.meshfed.io/excludeInboundPorts=9102",
        "--annotation=traffic.sidecar.istio.io/excludeOutboundPorts=5432",
    ]
    assert init["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_ADMIN", "NET_RAW"],
    }
    sidecar = next(c for c in spec["containers"] if c["name"] == SIDECAR)
    context = sidecar["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (1337, 1337)
    assert context["capabilities"] == {"drop": ["ALL"]} and "--capture" in sidecar["args"]
    path = tmp_path / "injected.yaml"
    path.write_text(yaml.safe_dump(injected))
    out = CliRunner().invoke(cli, ["uninject", "-f", str(path)])
    assert out.exit_code == 0, out.output
    assert yaml.safe_load(out.output) == annotated


def test_the_ecosystem_crds_are_the_official_ones_created_only_where_missing() -> None:
    """The CRDs shipped are those whose schemas the upstream examples are checked against
    (tests/data/crd, from the same commits); each is marked create-only; a set can be left
    out; the wrong name is refused naming the flag."""
    import gzip
    import json
    from pathlib import Path

    from federation.install.ecosystem_crds import IF_ABSENT, ecosystem_crds

    crds = {c["spec"]["names"]["kind"]: c for c in ecosystem_crds(("gateway-api", "istio"))}
    assert set(crds) == {
        "HTTPRoute", "GRPCRoute", "ReferenceGrant", "VirtualService", "DestinationRule",
        "ServiceEntry", "Sidecar", "AuthorizationPolicy", "PeerAuthentication",
    }  # fmt: skip
    data = Path(__file__).parents[2] / "data" / "crd"
    schemas = {
        **json.loads(gzip.decompress((data / "gateway-api-v1.6.1.json.gz").read_bytes())),
        **json.loads(gzip.decompress((data / "istio-86c9f01.json.gz").read_bytes())),
    }
    compared = 0
    for crd in crds.values():
        assert crd["metadata"]["annotations"][IF_ABSENT] == "if-absent"
        for version in crd["spec"]["versions"]:
            key = f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"
            if key in schemas:
                assert version["schema"]["openAPIV3Schema"] == schemas[key], key
                compared += 1
    assert compared == len(schemas)
    assert (
        crds["HTTPRoute"]["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"]
        == "v1.6.1"
    )
    none = install(replace(OPTIONS, ecosystem_crds=()))
    assert [o["kind"] for o in none].count("CustomResourceDefinition") == 2
    args = ["--cluster", "east", "--locality", "aws/us-east-1", "--image", IMAGE]
    out = CliRunner().invoke(cli, ["install", *args, "--ecosystem-crds", "gateway-api,linkerd"])
    assert out.exit_code == 2 and "--ecosystem-crds: 'linkerd' unknown" in out.output
    out = CliRunner().invoke(cli, ["install", *args, "--ecosystem-crds", "none"])
    assert out.exit_code == 0
    assert [d["kind"] for d in yaml.safe_load_all(out.output)].count(
        "CustomResourceDefinition"
    ) == 2


def test_zone_gateways_get_a_deployment_and_load_balancer_each_pinned_to_their_zone() -> None:
    """``--zone-gateways a,b``: besides the cluster's gateway, one per zone
    (``meshfed-gateway-<zone>``) whose pods run ``--zone-local`` on that zone's nodes, and
    the control plane reads each one's load balancer back for its zone; uninstall given the
    same zones deletes them too; a zone that is no zone name is refused."""
    from federation.install.manifests import uninstall

    opts = replace(OPTIONS, locality="aws/us-east-1/us-east-1a",
                   zone_gateways=("us-east-1a", "us-east-1b"))  # fmt: skip
    objects = install(opts)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for zone in ("us-east-1a", "us-east-1b"):
        name = f"meshfed-gateway-{zone}"
        assert {("Deployment", name), ("Service", name), ("PodDisruptionBudget", name)} <= names
        [deployment] = [
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name
        ]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"topology.kubernetes.io/zone": zone}
        args = pod["containers"][0]["args"]
        assert args[-3:] == ["--zone-local", "--locality", f"aws/us-east-1/{zone}"]
        [service] = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == name]
        assert service["spec"]["type"] == "LoadBalancer"
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": name}
    [cp] = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "meshfed-controlplane"
    ]
    cp_args = cp["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "us-east-1b=meshfed-system/meshfed-gateway-us-east-1b" in cp_args
    # the cluster's own gateway is untouched: not pinned, no --zone-local
    [main] = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "meshfed-gateway"
    ]
    assert "nodeSelector" not in main["spec"]["template"]["spec"]
    gone = {(o["kind"], o["metadata"]["name"]) for o in uninstall(replace(opts, locality=""))}
    assert ("Deployment", "meshfed-gateway-us-east-1b") in gone
    out = CliRunner().invoke(cli, ["install", "--cluster", "east", "--locality",
                                   "aws/us-east-1", "--image", IMAGE, "--zone-gateways", "Bad_Zone"])  # fmt: skip
    assert out.exit_code == 2 and "--zone-gateways: 'Bad_Zone' is not a zone name" in out.output
