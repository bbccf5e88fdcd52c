"""Choosing a provider: ``for_cloud()`` builds the :class:`~providers.base.ClusterProvider`
of a cloud, and ``cluster_for_join()`` reads what joining a cloud's cluster needs (its
locality and network and, on AWS, the east-west gateway's load balancer).

SDKs are imported only when their cloud is asked for, so the CLI starts without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from providers.base import ClusterInfo, ClusterProvider
from providers.errors import ProviderConfigError

CLOUDS: tuple[str, ...] = ("aws", "gcp", "local")


def for_cloud(
    cloud: str,
    *,
    region: str | None = None,
    profile: str | None = None,
    project: str | None = None,
    location: str = "-",
    clusters: Sequence[ClusterInfo] = (),
) -> ClusterProvider:
    """The provider of ``cloud``.

    Args:
        region / profile: AWS region (required) and profile (None: the SDK's usual chain).
        project / location: Google Cloud project (required) and GKE location (``-``: all).
        clusters: the clusters of the ``local`` provider.

    Raises:
        ProviderConfigError: an unknown cloud, or a required argument is missing.
    """
    if cloud == "local":
        from providers.local import LocalProvider

        return LocalProvider(clusters)
    if cloud == "aws":
        if not region:
            raise ProviderConfigError("--region is required with --provider aws", provider="aws")
        from providers.aws import AwsProvider

        return AwsProvider(region, profile=profile)
    if cloud == "gcp":
        if not project:
            raise ProviderConfigError("--project is required with --provider gcp", provider="gcp")
        from providers.gcp import GcpProvider

        return GcpProvider(project, location=location)
    raise ProviderConfigError(
        f"unknown provider {cloud!r} (one of {', '.join(CLOUDS)})", provider=cloud
    )


def parse_cluster_ref(ref: str) -> tuple[str, list[str]]:
    """``aws:eks/<region>/<cluster>`` -> ``("aws", [region, cluster])``;
    ``gcp:gke/<project>/<location>/<cluster>`` -> ``("gcp", [project, location, cluster])``.

    Raises:
        ProviderConfigError: any other shape.
    """
    kind, _, rest = ref.partition(":")
    parts = rest.split("/")
    if kind == "aws" and len(parts) == 3 and parts[0] == "eks" and all(parts):
        return "aws", parts[1:]
    if kind == "gcp" and len(parts) == 4 and parts[0] == "gke" and all(parts):
        return "gcp", parts[1:]
    raise ProviderConfigError(
        f"--from {ref!r}: use aws:eks/<region>/<cluster> or gcp:gke/<project>/<location>/<cluster>",
        provider=kind or "?",
    )


def cluster_ref(info: ClusterInfo, project: str | None = None, location: str = "-") -> str:
    """The ``--from`` reference of a discovered cluster ("-" for local ones)."""
    if info.cloud == "aws":
        return f"aws:eks/{info.region}/{info.name}"
    if info.cloud == "gcp":
        return f"gcp:gke/{project}/{location}/{info.name}"
    return "-"


@dataclass(frozen=True, slots=True)
class JoinFacts:
    """What a cloud says about a cluster to join.

    Attributes:
        gateway: ``host:port`` of the gateway's load balancer (AWS), or None.
        note: what was done for it (e.g. ``gateway load balancer created: <dns>``), or "".
    """

    info: ClusterInfo
    gateway: str | None
    note: str


def cluster_for_join(ref: str, *, profile: str | None, want_gateway: bool) -> JoinFacts:
    """Describe the cluster ``ref`` (see :func:`parse_cluster_ref`); on AWS with
    ``want_gateway`` also create (or find again, by tag) the internet-facing NLB with a TCP
    15443 listener for its east-west gateway.

    Raises:
        ProviderConfigError: a bad reference.
        providers.errors.ProviderError: the cloud refused or could not be reached.
    """
    cloud, parts = parse_cluster_ref(ref)
    if cloud == "aws":
        from providers.aws import AwsProvider

        aws = AwsProvider(parts[0], profile=profile)
        info = aws.describe_cluster(parts[1])
        if not want_gateway:
            return JoinFacts(info, None, "")
        lb = aws.ensure_gateway_lb(info)
        verb = "created" if lb.created else "found"
        return JoinFacts(info, lb.address, f"gateway load balancer {verb}: {lb.dns_name}")
    provider = for_cloud("gcp", project=parts[0], location=parts[1])
    return JoinFacts(provider.describe_cluster(parts[2]), None, "")
