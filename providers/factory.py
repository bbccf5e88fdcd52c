"""Choosing a provider: ``for_cloud()`` builds the :class:`~providers.base.ClusterProvider`
of a cloud, and ``cluster_from()`` reads what joining a cloud's cluster needs (its locality
and network).

SDKs are imported only when their cloud is asked for, so the CLI starts without them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

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


#: A GKE cluster's self link (``Cluster.self_link``): its project and location.
_GKE_LINK = re.compile(r"/projects/([^/]+)/(?:locations|zones)/([^/]+)/clusters/")


def cluster_ref(info: ClusterInfo, project: str | None = None, location: str = "-") -> str:
    """The ``--from`` reference of a discovered cluster ("-" for local ones). A GKE cluster's
    project and location come from its self link (the listing's ``project`` and ``location``
    may be a default and the ``-`` wildcard, which ``--from`` does not take)."""
    if info.cloud == "aws":
        return f"aws:eks/{info.region}/{info.name}"
    if info.cloud == "gcp":
        found = _GKE_LINK.search(info.provider_id)
        if found:
            project, location = found.group(1), found.group(2)
        return f"gcp:gke/{project or '<project>'}/{location}/{info.name}"
    return "-"


def cluster_from(ref: str, *, profile: str | None) -> ClusterInfo:
    """Describe the cluster ``ref`` (see :func:`parse_cluster_ref`) for ``meshfed cluster
    join --from``. meshfed creates nothing in the cloud: the cluster's east-west gateway is
    the LoadBalancer Service of ``meshfed install``, whose address its control plane reports.

    Raises:
        ProviderConfigError: a bad reference.
        providers.errors.ProviderError: the cloud refused or could not be reached.
    """
    cloud, parts = parse_cluster_ref(ref)
    if cloud == "aws":
        from providers.aws import AwsProvider

        return AwsProvider(parts[0], profile=profile).describe_cluster(parts[1])
    provider = for_cloud("gcp", project=parts[0], location=parts[1])
    return provider.describe_cluster(parts[2])


def discovered(
    info: ClusterInfo, project: str | None = None, location: str = "-"
) -> dict[str, Any]:
    """One row of ``meshfed cluster discover -o json``: the cluster's name, cloud, region,
    locality, zones, network, status, API endpoint, and ``from``, what ``cluster join
    --from`` takes (:func:`cluster_ref`)."""
    return {
        "name": info.name,
        "cloud": info.cloud,
        "region": info.region,
        "locality": info.locality,
        "zones": list(info.zones),
        "network": info.network,
        "status": info.status,
        "endpoint": info.endpoint,
        "from": cluster_ref(info, project, location),
    }
