"""The provider interface: one protocol for every cloud, and what it returns.

A provider finds the Kubernetes clusters a user already runs, with what meshfed needs to
federate them: locality (cloud, region, zones), network (VPC id / VPC network), API endpoint
and CA, status. Errors are :mod:`providers.errors` exceptions, never SDK ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """One cluster as its cloud describes it.

    Attributes:
        name: the cloud's cluster name.
        cloud: ``aws``, ``gcp`` or ``local``.
        region: the cloud's region name (``us-east-1``, ``europe-west1``).
        zones: the zones its nodes run in (first is the primary), sorted otherwise.
        endpoint: the Kubernetes API server URL or address.
        ca_data: the API server's CA (base64 PEM, as the cloud returns it); not a secret.
        network: VPC id (AWS) or VPC network name (GCP) -- meshfed's ``network``.
        status: the cloud's status word (``ACTIVE``, ``RUNNING``, ...).
        provider_id: the cloud's full id (ARN, self link).
        subnets: subnet ids / subnetwork of the cluster.
    """

    name: str
    cloud: str
    region: str
    zones: tuple[str, ...]
    endpoint: str
    ca_data: str
    network: str
    status: str
    provider_id: str = ""
    subnets: tuple[str, ...] = field(default_factory=tuple)

    @property
    def locality(self) -> str:
        """meshfed's locality: ``<cloud>/<region>[/<first zone>]``."""
        zone = f"/{self.zones[0]}" if self.zones else ""
        return f"{self.cloud}/{self.region}{zone}"


class ClusterProvider(Protocol):
    """What meshfed needs from a cloud."""

    @property
    def cloud(self) -> str: ...
    def list_clusters(self) -> list[ClusterInfo]: ...
    def describe_cluster(self, name: str) -> ClusterInfo: ...
    def zones(self) -> Sequence[str]: ...
