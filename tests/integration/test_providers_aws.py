"""The AWS provider against moto in server mode: a real HTTP endpoint on loopback (moto's
``ThreadedMotoServer``, started and stopped by the fixture) with real boto3 clients pointed at
it through ``AWS_ENDPOINT_URL``. EKS clusters, subnets and the gateway NLB are created in moto;
``meshfed cluster discover`` and ``cluster join --from`` run as real processes against it and a
real controller."""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest
from moto.server import ThreadedMotoServer

from providers.aws import AwsProvider
from providers.errors import ClusterNotFoundError, ProviderUnreachableError
from tests.integration.harness import ControllerHandle, free_port, run_meshfed

pytestmark = [pytest.mark.integration]
REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_url, monkeypatch, tmp_path):
    """boto3 pointed at moto with throwaway credentials; moto's state reset per test."""
    reset = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10):
        pass
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_MAX_ATTEMPTS": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _eks_clusters(n: int) -> tuple[str, list[str]]:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for i, zone in enumerate(["us-east-1b", "us-east-1a"])
    ]
    eks = boto3.client("eks", region_name=REGION)
    for i in range(n):
        eks.create_cluster(
            name=f"prod-{i}",
            roleArn="arn:aws:iam::123456789012:role/eks",
            resourcesVpcConfig={"subnetIds": subnets},
        )
    return vpc, subnets


def test_discovers_every_page_of_eks_clusters_with_zones_and_vpc(aws) -> None:
    vpc, subnets = _eks_clusters(7)
    found = AwsProvider(REGION).list_clusters(page_size=2)  # 4 pages
    assert [c.name for c in found] == [f"prod-{i}" for i in range(7)]
    first = found[0]
    assert first.zones == ("us-east-1a", "us-east-1b")
    assert first.locality == "aws/us-east-1/us-east-1a"
    assert first.network == vpc and set(first.subnets) == set(subnets)
    assert first.status == "ACTIVE" and first.endpoint.startswith("https://")
    assert "us-east-1a" in AwsProvider(REGION).zones()


def test_a_missing_cluster_is_meshfeds_not_found(aws) -> None:
    with pytest.raises(ClusterNotFoundError, match="EKS cluster 'nope'"):
        AwsProvider(REGION).describe_cluster("nope")


def test_an_unreachable_endpoint_is_retryable(aws, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderUnreachableError) as err:
        AwsProvider(REGION).list_clusters()
    assert err.value.retryable


def test_discover_and_join_from_eks_end_to_end(aws, procs, tmp_path) -> None:
    vpc, _ = _eks_clusters(3)
    home = tmp_path / "home"
    out = run_meshfed(
        home, "cluster", "discover", "--provider", "aws", "--region", REGION, "-o", "json"
    ).stdout
    listed = json.loads(out)
    assert [c["name"] for c in listed] == ["prod-0", "prod-1", "prod-2"]
    assert listed[1]["from"] == "aws:eks/us-east-1/prod-1" and listed[1]["network"] == vpc
    table = run_meshfed(home, "cluster", "discover", "--provider", "aws", "--region", REGION).stdout
    assert "aws:eks/us-east-1/prod-2" in table and "testing" not in table  # no secret printed
    controller = ControllerHandle(procs, home)
    controller.start()
    joined = run_meshfed(
        home, "cluster", "join", "east", "--from", "aws:eks/us-east-1/prod-1", "-o", "json"
    )
    assert json.loads(joined.stdout)["token"].startswith("mfj_")
    [member] = controller.api("GET", "/v1/clusters")["clusters"]
    assert member["locality"] == "aws/us-east-1/us-east-1a"
    assert member["network"] == vpc and member["provider"] == "aws"
    # meshfed creates nothing in the account: the gateway is the LoadBalancer Service of
    # `meshfed install`, whose address the cluster's control plane reports once joined
    assert member["gateway"] == ""
    elb = boto3.client("elbv2", region_name=REGION)
    assert elb.describe_load_balancers()["LoadBalancers"] == []
    hint = run_meshfed(home, "cluster", "join", "north", "--from", "aws:eks/us-east-1/prod-2")
    assert "meshfed install --cluster north" in hint.stderr and "--provider aws" in hint.stderr
    missing = run_meshfed(
        home, "cluster", "join", "west", "--from", "aws:eks/us-east-1/nope", check=False
    )
    assert missing.returncode == 2 and "not found" in missing.stderr
    bad = run_meshfed(home, "cluster", "join", "west", "--from", "aws:ecs/x", check=False)
    assert bad.returncode == 2 and "aws:eks/<region>/<cluster>" in bad.stderr
