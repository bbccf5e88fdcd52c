"""The loopback clusters of ``meshfed up``, behind the provider interface: what the caller
describes is what exists (no API to ask). Free of charge: every path costs $0."""

from __future__ import annotations

from collections.abc import Sequence

from providers.base import ClusterInfo
from providers.errors import ClusterNotFoundError


class LocalProvider:
    """Clusters given as :class:`ClusterInfo` (built from a LocalFederation by the caller)."""

    cloud = "local"

    def __init__(self, clusters: Sequence[ClusterInfo]) -> None:
        self._clusters = {c.name: c for c in clusters}

    def list_clusters(self) -> list[ClusterInfo]:
        """Every cluster, by name."""
        return [self._clusters[n] for n in sorted(self._clusters)]

    def describe_cluster(self, name: str) -> ClusterInfo:
        """One cluster.

        Raises:
            ClusterNotFoundError: no such cluster.
        """
        try:
            return self._clusters[name]
        except KeyError:
            raise ClusterNotFoundError(
                f"local cluster {name!r} not found (clusters: {', '.join(sorted(self._clusters))})",
                provider="local",
            ) from None

    def zones(self) -> Sequence[str]:
        """Every zone of every cluster, sorted."""
        return sorted({z for c in self._clusters.values() for z in c.zones})
