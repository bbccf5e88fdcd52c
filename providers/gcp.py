"""Google Cloud (google-cloud-container): GKE clusters across locations, their zones and
VPC network. Every google.api_core / google.auth error is translated into
:mod:`providers.errors` here.

Credentials come from Application Default Credentials. ``endpoint`` (or
``$MESHFED_GKE_ENDPOINT``, ``host:port``) points the real ``ClusterManagerClient`` at another
``google.container.v1.ClusterManager`` over plain gRPC -- an emulator or a test server -- with
anonymous credentials.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import container_v1
from google.cloud.container_v1.services.cluster_manager.transports import (
    ClusterManagerGrpcTransport,
)

from providers.base import ClusterInfo
from providers.errors import (
    AccessDeniedError,
    ClusterNotFoundError,
    ProviderError,
    ProviderUnreachableError,
    ThrottledError,
)

ENDPOINT_ENV = "MESHFED_GKE_ENDPOINT"


def translate(err: Exception, what: str) -> ProviderError:
    """The meshfed error for a Google API exception raised while doing ``what``."""
    if isinstance(err, gexc.NotFound):
        return ClusterNotFoundError(f"{what}: not found ({err.message})", provider="gcp")
    if isinstance(err, gexc.PermissionDenied | gexc.Unauthenticated | gexc.Forbidden):
        return AccessDeniedError(f"{what}: access denied ({err.message})", provider="gcp")
    if isinstance(err, auth_exc.DefaultCredentialsError):
        return AccessDeniedError(
            f"{what}: no Google credentials (run 'gcloud auth application-default login'"
            " or set GOOGLE_APPLICATION_CREDENTIALS)",
            provider="gcp",
        )
    if isinstance(err, gexc.TooManyRequests | gexc.ResourceExhausted):
        return ThrottledError(
            f"{what}: rate limited by Google; retry in a few seconds",
            provider="gcp",
            retry_after_s=2,
        )
    if isinstance(err, gexc.ServiceUnavailable | gexc.DeadlineExceeded | gexc.RetryError):
        return ProviderUnreachableError(f"{what}: Google API unreachable ({err})", provider="gcp")
    if isinstance(err, gexc.GoogleAPIError):
        return ProviderError(f"{what}: {err}", provider="gcp")
    raise err


@contextmanager
def _gcp(what: str) -> Iterator[None]:
    try:
        yield
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as err:
        raise translate(err, what) from err


def _region_of(location: str) -> str:
    """``europe-west1-b`` -> ``europe-west1``; a region stays as it is."""
    parts = location.split("-")
    return "-".join(parts[:2]) if len(parts) > 2 else location


class GcpProvider:
    """GKE clusters of one project (see the module docstring).

    Args:
        project: the Google Cloud project id.
        location: a region or zone, or ``-`` for all locations.
        client: a ClusterManagerClient (default: built from ``endpoint`` or ADC).
        endpoint: ``host:port`` of a ClusterManager to use instead of Google's (plain gRPC).
    """

    cloud = "gcp"

    def __init__(
        self,
        project: str,
        *,
        location: str = "-",
        client: Any = None,
        endpoint: str | None = None,
    ) -> None:
        self.project = project
        self.location = location
        self._endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
        self._client = client
        self._channel: grpc.Channel | None = None

    def _c(self) -> Any:
        if self._client is None:
            with _gcp("creating the GKE client"):
                if self._endpoint:
                    self._channel = grpc.insecure_channel(self._endpoint)
                    transport = ClusterManagerGrpcTransport(
                        channel=self._channel,
                        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    )
                    self._client = container_v1.ClusterManagerClient(transport=transport)
                else:
                    self._client = container_v1.ClusterManagerClient()
        return self._client

    def close(self) -> None:
        """Close a channel this provider opened."""
        if self._channel is not None:
            self._channel.close()

    def _info(self, c: Any) -> ClusterInfo:
        zones = tuple(c.locations) or ((c.zone,) if getattr(c, "zone", "") else ())
        return ClusterInfo(
            name=c.name,
            cloud="gcp",
            region=_region_of(c.location),
            zones=zones,
            endpoint=c.endpoint,
            ca_data=c.master_auth.cluster_ca_certificate if c.master_auth else "",
            network=c.network,
            status=container_v1.Cluster.Status(c.status).name,
            provider_id=c.self_link,
            subnets=(c.subnetwork,) if c.subnetwork else (),
        )

    def list_clusters(self) -> list[ClusterInfo]:
        """Every GKE cluster in the location (``-``: all), sorted by name.

        Raises:
            ProviderError: as :func:`translate`.
        """
        parent = f"projects/{self.project}/locations/{self.location}"
        with _gcp(f"listing GKE clusters in {parent}"):
            response = self._c().list_clusters(parent=parent)
        return sorted((self._info(c) for c in response.clusters), key=lambda i: i.name)

    def describe_cluster(self, name: str) -> ClusterInfo:
        """One GKE cluster (with ``location`` ``-``, found by listing every location).

        Raises:
            ClusterNotFoundError: no such cluster.
            ProviderError: as :func:`translate`.
        """
        if self.location == "-":
            for info in self.list_clusters():
                if info.name == name:
                    return info
            raise ClusterNotFoundError(
                f"GKE cluster {name!r} not found in project {self.project}", provider="gcp"
            )
        path = f"projects/{self.project}/locations/{self.location}/clusters/{name}"
        with _gcp(f"GKE cluster {path}"):
            return self._info(self._c().get_cluster(name=path))

    def zones(self) -> Sequence[str]:
        """Zones the project's clusters run in (from their locations), sorted."""
        return sorted({z for c in self.list_clusters() for z in c.zones})
