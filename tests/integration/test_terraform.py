"""meshfed's Terraform modules with the real terraform CLI.

Only the ``hashicorp/aws`` provider is available offline, in a filesystem mirror: it is found
from ``$MESHFED_TF_PLUGIN_MIRROR`` or by searching for ``terraform-provider-aws*`` (as
``find / -name 'terraform-provider-aws*'`` would), and a CLI config with a
``filesystem_mirror`` block is written and passed through ``TF_CLI_CONFIG_FILE``. The GCP
module and example need the google provider, so they get ``terraform fmt`` only.

The apply test runs ``examples/aws-two-regions`` against moto in server mode (a real HTTP
endpoint on loopback; ``MOTO_IAM_LOAD_MANAGED_POLICIES=true`` for the EKS policy attachment)
with the provider's endpoints pointed at it, a real ``meshfed controller serve`` that the
federation module's ``meshfed cluster join`` / ``cluster remove`` talk to, and one Kubernetes
API server fake per cluster (tests/kube_fake.py) that its ``meshfed install --apply`` /
``uninstall --apply`` write to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest

from federation.controlplane.kube.pod import NAMESPACE
from tests.integration.harness import ControllerHandle, free_port, wait_until
from tests.kube_fake import fake_kube

pytestmark = [pytest.mark.integration]
TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "terraform"
#: Terraform's implied local mirror directories, then /opt (where this machine keeps it).
IMPLIED_MIRRORS = [
    Path.home() / ".terraform.d" / "plugins",
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
]


def _mirror() -> Path | None:
    """The filesystem mirror root holding registry.terraform.io/hashicorp/aws."""
    explicit = os.environ.get("MESHFED_TF_PLUGIN_MIRROR")
    if explicit:
        return Path(explicit)
    for root in IMPLIED_MIRRORS:
        if (root / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return root
    for found in Path("/opt").glob("*/registry.terraform.io/hashicorp/aws"):
        return found.parents[2]
    for found in Path("/opt").glob("**/terraform-provider-aws*"):
        # <mirror>/registry.terraform.io/hashicorp/aws/<version>/<platform>/terraform-provider-aws*
        return found.parents[5]
    return None


TERRAFORM = shutil.which("terraform")
MIRROR = _mirror()
needs_terraform = pytest.mark.skipif(
    TERRAFORM is None or MIRROR is None,
    reason="terraform or its offline hashicorp/aws provider mirror is not on this machine",
)


@pytest.fixture(scope="module")
def tf_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("terraform")
    cli = base / "cli.tfrc"
    cli.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{MIRROR}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n'
    )
    env = dict(
        os.environ, TF_CLI_CONFIG_FILE=str(cli), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1"
    )
    return base, env


OTHER = {"aws-us-east-1": "aws-eu-west-1", "aws-eu-west-1": "aws-us-east-1"}


def _aws(service: str, region: str, endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


IMAGE = "registry.example.com/meshfed/meshfed@sha256:" + "5e" * 32
IMAGE_V2 = "registry.example.com/meshfed/meshfed@sha256:" + "6f" * 32


def _tf(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    return subprocess.run(
        [TERRAFORM, *args, "-no-color"] if args[0] != "fmt" else [TERRAFORM, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@needs_terraform
def test_fmt_is_clean_and_every_aws_module_and_example_validates(tf_env) -> None:
    base, env = tf_env
    fmt = _tf(["fmt", "-check", "-recursive", str(TERRAFORM_DIR)], base, env)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    tree = base / "validate"
    shutil.copytree(TERRAFORM_DIR, tree)
    for rel in (
        "modules/aws-member",
        "modules/aws-network",
        "modules/federation",
        "examples/aws-two-regions",
    ):
        cwd = tree / rel
        run_env = dict(env, TF_DATA_DIR=str(base / f"data-{rel.replace('/', '-')}"))
        init = _tf(["init", "-input=false", "-backend=false"], cwd, run_env)
        assert init.returncode == 0, f"{rel}: {init.stderr}"
        validate = _tf(["validate"], cwd, run_env)
        assert validate.returncode == 0 and "Success" in validate.stdout, (
            f"{rel}: {validate.stderr}"
        )


@pytest.fixture
def moto_iam(procs):
    """moto's server as its own process (``python -m moto.server``) with
    ``MOTO_IAM_LOAD_MANAGED_POLICIES=true``: moto reads that variable when its IAM module is
    first imported, which in this test process may already have happened."""
    port = free_port()
    env = dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true")
    procs.spawn(
        "moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as resp:
            return int(resp.status) == 200

    wait_until(up, 30, "moto server")
    return url


@pytest.mark.slow
@needs_terraform
def test_apply_federates_two_regions_and_destroy_unfederates(
    tf_env, moto_iam, procs, tmp_path
) -> None:
    """``terraform apply`` registers both EKS clusters, creates no load balancer of its own,
    and installs meshfed into each cluster (the gateway's LoadBalancer Service open to the
    federation's CIDRs only, the join token in a Secret); ``destroy`` uninstalls and removes
    them."""
    _base, env = tf_env
    home = tmp_path / "home"
    controller = ControllerHandle(procs, home)
    controller.start()
    tree = tmp_path / "tree"
    shutil.copytree(TERRAFORM_DIR, tree)
    cwd = tree / "examples" / "aws-two-regions"
    run_env = dict(
        env,
        TF_DATA_DIR=str(tmp_path / "tfdata"),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        MESHFED_HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    names = ("aws-us-east-1", "aws-eu-west-1")
    with fake_kube() as use1, fake_kube() as euw1:
        kubes = dict(zip(names, (use1, euw1), strict=True))
        kubeconfigs = {
            n: str(k.write_kubeconfig(tmp_path / f"{n}.kubeconfig")) for n, k in kubes.items()
        }
        variables = [
            "-var",
            f"aws_endpoint={moto_iam}",
            "-var",
            f"meshfed_home={home}",
            "-var",
            f"kubeconfigs={json.dumps(kubeconfigs)}",
            "-var",
            "controller_url=https://controller.example.org:15080",
            "-var",
            "meshfed_image=" + IMAGE,
            "-var",
            'federation_cidrs=["198.51.100.0/24"]',
        ]
        assert _tf(["init", "-input=false"], cwd, run_env).returncode == 0
        apply = _tf(
            ["apply", "-auto-approve", "-input=false", *variables], cwd, run_env, timeout=600
        )
        assert apply.returncode == 0, apply.stdout[-3000:] + apply.stderr
        outputs = json.loads(_tf(["output", "-json"], cwd, run_env).stdout)
        roles = outputs["load_balancer_controller_roles"]["value"]
        assert set(roles) == set(names) and all(
            "aws-load-balancer-controller" in r for r in roles.values()
        )
        nat_ips = {
            f"aws-{region}": _aws("ec2", region, moto_iam).describe_addresses()["Addresses"][0][
                "PublicIp"
            ]
            for region in ("us-east-1", "eu-west-1")
        }
        assert outputs["localities"]["value"] == {
            "aws-us-east-1": "aws/us-east-1/us-east-1a",
            "aws-eu-west-1": "aws/eu-west-1/eu-west-1a",
        }
        assert outputs["installed"]["value"] == sorted(names)
        # the federation module joined both clusters; their gateways come from their
        # control planes (the LoadBalancer Service), so none is registered
        members = {c["name"]: c for c in controller.api("GET", "/v1/clusters")["clusters"]}
        assert set(members) == set(names)
        assert members["aws-us-east-1"]["gateway"] == ""
        assert members["aws-eu-west-1"]["network"].startswith("vpc-")
        token_file = home / "join-tokens" / "aws-us-east-1.json"
        token = json.loads(token_file.read_text())["token"]
        assert token.startswith("mfj_") and token_file.stat().st_mode & 0o077 == 0
        assert token not in apply.stdout + apply.stderr  # never on a command line or in logs
        # ... and meshfed is installed into each cluster, the gateway open to the
        # federation's CIDRs only; meshfed made no load balancer in the account
        for name, kube in kubes.items():
            secret = kube.get("Secret", NAMESPACE, "meshfed-join")
            expected = json.loads((home / "join-tokens" / f"{name}.json").read_text())["token"]
            assert secret is not None and secret["stringData"]["token"] == expected
            deployment = kube.get("Deployment", NAMESPACE, "meshfed-controlplane")
            assert deployment is not None
            args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            assert name in args and "https://controller.example.org:15080" in args
            gateway = kube.get("Service", NAMESPACE, "meshfed-gateway")
            assert gateway is not None and gateway["spec"]["type"] == "LoadBalancer"
            # the federation's range and the other region's NAT address, nothing else
            ranges = gateway["spec"]["loadBalancerSourceRanges"]
            assert ranges[0] == "198.51.100.0/24" and len(ranges) == 2
            assert ranges[1] == f"{nat_ips[OTHER[name]]}/32"
        for region in ("us-east-1", "eu-west-1"):
            ec2 = _aws("ec2", region, moto_iam)
            # a cluster that can run pods and get an NLB: nodes, subnets the load balancer
            # controller finds, a way out to the internet and in from it
            public = ec2.describe_subnets(
                Filters=[{"Name": "tag:kubernetes.io/role/elb", "Values": ["1"]}]
            )["Subnets"]
            private = ec2.describe_subnets(
                Filters=[{"Name": "tag:kubernetes.io/role/internal-elb", "Values": ["1"]}]
            )["Subnets"]
            assert len(public) == 2 and len(private) == 2
            assert ec2.describe_internet_gateways()["InternetGateways"]
            assert ec2.describe_nat_gateways()["NatGateways"]
            routes = [r for t in ec2.describe_route_tables()["RouteTables"] for r in t["Routes"]]
            assert any(r.get("NatGatewayId") for r in routes)
            assert any(r.get("GatewayId", "").startswith("igw-") for r in routes)
            cluster = "aws-" + region
            eks = _aws("eks", region, moto_iam)
            assert eks.list_nodegroups(clusterName=cluster)["nodegroups"] == [f"{cluster}-default"]
            elb = boto3.client(
                "elbv2",
                region_name=region,
                endpoint_url=moto_iam,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            assert elb.describe_load_balancers()["LoadBalancers"] == []
        # a second plan shows no changes
        plan = _tf(["plan", "-detailed-exitcode", "-input=false", *variables], cwd, run_env)
        assert plan.returncode == 0, plan.stdout[-2000:]
        # a changed input reaches the clusters: the install re-runs (an in-place upgrade)
        wider = [*variables[:-1], 'federation_cidrs=["198.51.100.0/24","203.0.113.0/24"]']
        wider[wider.index("meshfed_image=" + IMAGE)] = "meshfed_image=" + IMAGE_V2
        again = _tf(["apply", "-auto-approve", "-input=false", *wider], cwd, run_env, timeout=600)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr
        assert "must be replaced" in again.stdout or "replaced" in again.stdout
        for kube in kubes.values():
            gateway = kube.get("Service", NAMESPACE, "meshfed-gateway")
            assert gateway["spec"]["loadBalancerSourceRanges"][:2] == [
                "198.51.100.0/24",
                "203.0.113.0/24",
            ]
            deployment = kube.get("Deployment", NAMESPACE, "meshfed-gateway")
            assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V2
            assert kube.get("Secret", NAMESPACE, "meshfed-join") is not None
        variables = wider
        destroy = _tf(
            ["destroy", "-auto-approve", "-input=false", *variables], cwd, run_env, timeout=600
        )
        assert destroy.returncode == 0, destroy.stdout[-3000:] + destroy.stderr
        assert controller.api("GET", "/v1/clusters")["clusters"] == []
        assert not token_file.exists()
        for kube in kubes.values():
            assert kube.get("Deployment", NAMESPACE, "meshfed-controlplane") is None
            assert kube.get("Namespace", "", NAMESPACE) is None


@needs_terraform
def test_destroy_succeeds_when_the_controller_is_gone(tf_env, procs, tmp_path) -> None:
    """The federation module alone (no cloud): a member joined by ``apply``; the controller
    then stops for good; ``destroy`` still completes and says the member stays registered."""
    _base, env = tf_env
    home = tmp_path / "home"
    controller = ControllerHandle(procs, home)
    controller.start()
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.tf").write_text(
        'module "federation" {\n'
        f'  source       = "{TERRAFORM_DIR / "modules" / "federation"}"\n'
        f'  meshfed_home = "{home}"\n'
        '  members = [{ name = "east", locality = "aws/us-east-1", network = "vpc-1",\n'
        '               gateway = "", provider = "aws" }]\n'
        "}\n"
    )
    run_env = dict(
        env,
        TF_DATA_DIR=str(tmp_path / "tfdata"),
        MESHFED_HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    assert _tf(["init", "-input=false"], root, run_env).returncode == 0
    apply = _tf(["apply", "-auto-approve", "-input=false"], root, run_env)
    assert apply.returncode == 0, apply.stdout[-2000:] + apply.stderr
    assert [c["name"] for c in controller.api("GET", "/v1/clusters")["clusters"]] == ["east"]
    assert controller.proc is not None
    controller.proc.terminate()
    controller.proc.wait(10)
    destroy = _tf(["destroy", "-auto-approve", "-input=false"], root, run_env)
    assert destroy.returncode == 0, destroy.stdout[-2000:] + destroy.stderr
    assert "the controller is unreachable; east stays registered" in destroy.stdout
    state = _tf(["state", "list"], root, run_env)
    assert state.stdout.strip() == ""


CHECKOV = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"


def test_checkov_finds_no_failed_check_and_every_skip_says_why() -> None:
    """checkov (``make checkov`` installs it in a venv of its own) over terraform/: no check
    fails; each skipped check is a ``#checkov:skip=ID:reason`` in its resource."""
    assert CHECKOV.exists(), "checkov is not installed: make checkov (make test does)"
    out = subprocess.run(
        [str(CHECKOV), "-d", str(TERRAFORM_DIR), "--framework", "terraform", "-o", "json",
         "--skip-download"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    report = json.loads(out.stdout)  # --quiet would drop passed and skipped checks
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    assert failed == [], [(c["check_id"], c["resource"]) for c in failed]
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    assert skipped and all(c["check_result"].get("suppress_comment") for c in skipped)
