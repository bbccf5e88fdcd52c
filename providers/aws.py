"""AWS (boto3): EKS clusters, availability zones and the cluster's VPC. Every botocore error
is translated into :mod:`providers.errors` here.
Egress prices are the shipped table of :mod:`providers.pricing` (``aws.yaml``).

Credentials and endpoints come from boto3's usual chain (``--profile``, environment,
``~/.aws``, instance roles; ``AWS_ENDPOINT_URL`` points every client elsewhere, e.g. at moto).

meshfed creates nothing in the account: the east-west gateway's Network Load Balancer is
made by the cluster's load balancer controller from the annotated ``LoadBalancer`` Service of
``meshfed install`` (see :mod:`federation.install.manifests`), and goes with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.exceptions

from providers.base import ClusterInfo
from providers.errors import (
    AccessDeniedError,
    ClusterNotFoundError,
    ProviderError,
    ProviderUnreachableError,
    ThrottledError,
)

_NOT_FOUND = {"ResourceNotFoundException", "NotFoundException"}
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
}


def translate(err: Exception, what: str) -> ProviderError:
    """The meshfed error for a botocore exception raised while doing ``what``."""
    if isinstance(err, botocore.exceptions.NoCredentialsError):
        return AccessDeniedError(
            f"{what}: no AWS credentials (use --profile, AWS_PROFILE or AWS_ACCESS_KEY_ID)",
            provider="aws",
        )
    if isinstance(
        err, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
    ):
        return ProviderUnreachableError(f"{what}: AWS API unreachable ({err})", provider="aws")
    if isinstance(err, botocore.exceptions.ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        message = err.response.get("Error", {}).get("Message", "")
        if code in _NOT_FOUND:
            return ClusterNotFoundError(f"{what}: not found ({message})", provider="aws")
        if code in _DENIED:
            return AccessDeniedError(f"{what}: access denied ({code}: {message})", provider="aws")
        if code in _THROTTLED:
            return ThrottledError(
                f"{what}: throttled by AWS; retry in a few seconds", provider="aws", retry_after_s=2
            )
        if not message:  # e.g. a 404 from something that is not the AWS API
            return ProviderError(
                f"{what}: the endpoint answered {code or 'an error'} with no message (is"
                " AWS_ENDPOINT_URL, or the service's own, pointing at the AWS API?)",
                provider="aws",
            )
        return ProviderError(f"{what}: {code}: {message}", provider="aws")
    if isinstance(err, botocore.exceptions.BotoCoreError):
        return ProviderError(f"{what}: {err}", provider="aws")
    raise err


@contextmanager
def _aws(what: str) -> Iterator[None]:
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        raise translate(err, what) from err


ClientFactory = Callable[[str], Any]


class AwsProvider:
    """EKS in one region (see the module docstring).

    Args:
        region: e.g. ``us-east-1``.
        profile: an AWS CLI profile (None: the default chain).
        client: ``service name -> boto3 client`` (tests pass stubbed clients).
    """

    cloud = "aws"

    def __init__(
        self, region: str, *, profile: str | None = None, client: ClientFactory | None = None
    ) -> None:
        self.region = region
        if client is None:
            session = boto3.Session(profile_name=profile, region_name=region)
            client = session.client
        self._client = client
        self._clients: dict[str, Any] = {}

    def _c(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._client(service)
        return self._clients[service]

    def list_clusters(self, page_size: int = 100) -> list[ClusterInfo]:
        """Every EKS cluster of the region (all pages), described.

        Raises:
            ProviderError: as :func:`translate`.
        """
        names: list[str] = []
        with _aws(f"listing EKS clusters in {self.region}"):
            paginator = self._c("eks").get_paginator("list_clusters")
            for page in paginator.paginate(PaginationConfig={"PageSize": page_size}):
                names.extend(page.get("clusters", []))
        return [self.describe_cluster(n) for n in sorted(names)]

    def describe_cluster(self, name: str) -> ClusterInfo:
        """One EKS cluster with its VPC and zones (from its subnets).

        Raises:
            ClusterNotFoundError: no such cluster in the region.
            ProviderError: as :func:`translate`.
        """
        with _aws(f"EKS cluster {name!r} in {self.region}"):
            c = self._c("eks").describe_cluster(name=name)["cluster"]
        vpc_config = c.get("resourcesVpcConfig", {})
        subnets = tuple(vpc_config.get("subnetIds", []))
        vpc, zones = vpc_config.get("vpcId", ""), ()
        if subnets:
            with _aws(f"subnets of EKS cluster {name!r}"):
                described = self._c("ec2").describe_subnets(SubnetIds=list(subnets))["Subnets"]
            zones = tuple(sorted({s["AvailabilityZone"] for s in described}))
            vpc = vpc or (described[0]["VpcId"] if described else "")
        return ClusterInfo(
            name=c["name"],
            cloud="aws",
            region=self.region,
            zones=zones,
            endpoint=c.get("endpoint", ""),
            ca_data=c.get("certificateAuthority", {}).get("data", ""),
            network=vpc,
            status=c.get("status", ""),
            provider_id=c.get("arn", ""),
            subnets=subnets,
        )

    def zones(self) -> Sequence[str]:
        """Available zones of the region, sorted."""
        with _aws(f"availability zones of {self.region}"):
            zones = self._c("ec2").describe_availability_zones()["AvailabilityZones"]
        return sorted(z["ZoneName"] for z in zones if z.get("State", "available") == "available")
