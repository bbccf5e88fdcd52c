"""The GCP provider against a local ``google.container.v1.ClusterManager`` gRPC server (a fake
implementing ListClusters and GetCluster with the real request/response messages of
google-cloud-container; NOT_FOUND and PERMISSION_DENIED as GKE returns them), reached by the
real ``ClusterManagerClient`` through its gRPC transport. ``meshfed cluster discover`` and
``cluster join --from`` run as real processes against it (``MESHFED_GKE_ENDPOINT``)."""

from __future__ import annotations

import json
from concurrent import futures

import grpc
import pytest
from google.cloud.container_v1.types import cluster_service as cs

from providers.errors import AccessDeniedError, ClusterNotFoundError
from providers.gcp import GcpProvider
from tests.integration.harness import ControllerHandle, run_meshfed

pytestmark = [pytest.mark.integration]
PROJECT = "acme-prod"

CLUSTERS = [
    cs.Cluster(
        name="eu-1",
        location="europe-west1",
        locations=["europe-west1-b", "europe-west1-c"],
        network="prod-vpc",
        subnetwork="eu-subnet",
        endpoint="34.1.2.3",
        status=cs.Cluster.Status.RUNNING,
        master_auth=cs.MasterAuth(cluster_ca_certificate="LS0tLS1CRUdJTg=="),
        self_link=f"https://container.googleapis.com/v1/projects/{PROJECT}/locations/europe-west1/clusters/eu-1",
    ),
    cs.Cluster(
        name="us-1",
        location="us-east4-a",
        locations=["us-east4-a"],
        network="prod-vpc",
        endpoint="35.1.2.3",
        status=cs.Cluster.Status.RUNNING,
        self_link=f"https://container.googleapis.com/v1/projects/{PROJECT}/zones/us-east4-a/clusters/us-1",
    ),
]


class FakeClusterManager:
    """ListClusters and GetCluster of google.container.v1.ClusterManager."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def _project(self, path: str, context: grpc.ServicerContext) -> str:
        project = path.split("/")[1]
        if project != PROJECT:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied on {project}")
        return project

    def list_clusters(self, request: cs.ListClustersRequest, context: grpc.ServicerContext):
        self.requests.append(request.parent)
        self._project(request.parent, context)
        location = request.parent.split("/")[3]
        return cs.ListClustersResponse(
            clusters=[
                c
                for c in CLUSTERS
                if location == "-"
                or c.location == location
                or c.location.startswith(location + "-")
            ]
        )

    def get_cluster(self, request: cs.GetClusterRequest, context: grpc.ServicerContext):
        self.requests.append(request.name)
        self._project(request.name, context)
        _, _, _, location, _, name = request.name.split("/")
        for c in CLUSTERS:
            if c.name == name and c.location == location:
                return c
        context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: {request.name}.")


@pytest.fixture(scope="module")
def gke():
    fake = FakeClusterManager()
    handler = grpc.method_handlers_generic_handler(
        "google.container.v1.ClusterManager",
        {
            "ListClusters": grpc.unary_unary_rpc_method_handler(
                fake.list_clusters,
                request_deserializer=cs.ListClustersRequest.deserialize,
                response_serializer=cs.ListClustersResponse.serialize,
            ),
            "GetCluster": grpc.unary_unary_rpc_method_handler(
                fake.get_cluster,
                request_deserializer=cs.GetClusterRequest.deserialize,
                response_serializer=cs.Cluster.serialize,
            ),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def test_lists_clusters_across_locations_with_zones_and_network(gke) -> None:
    provider = GcpProvider(PROJECT, endpoint=gke)
    try:
        found = provider.list_clusters()
        assert [c.name for c in found] == ["eu-1", "us-1"]
        eu = found[0]
        assert (eu.region, eu.zones, eu.network) == (
            "europe-west1",
            ("europe-west1-b", "europe-west1-c"),
            "prod-vpc",
        )
        assert eu.locality == "gcp/europe-west1/europe-west1-b" and eu.status == "RUNNING"
        assert found[1].region == "us-east4"  # a zonal cluster's region
        assert provider.zones() == ["europe-west1-b", "europe-west1-c", "us-east4-a"]
        assert (
            GcpProvider(PROJECT, location="europe-west1", endpoint=gke)
            .describe_cluster("eu-1")
            .name
            == "eu-1"
        )
    finally:
        provider.close()


def test_not_found_and_permission_denied_map_to_meshfed_errors(gke) -> None:
    with pytest.raises(ClusterNotFoundError, match="not found"):
        GcpProvider(PROJECT, location="europe-west1", endpoint=gke).describe_cluster("nope")
    with pytest.raises(ClusterNotFoundError):
        GcpProvider(PROJECT, endpoint=gke).describe_cluster("nope")  # searched everywhere
    with pytest.raises(AccessDeniedError, match="access denied"):
        GcpProvider("someone-else", endpoint=gke).list_clusters()


def test_discover_and_join_from_gke_end_to_end(gke, procs, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MESHFED_GKE_ENDPOINT", gke)
    home = tmp_path / "home"
    out = run_meshfed(
        home, "cluster", "discover", "--provider", "gcp", "--project", PROJECT, "-o", "json"
    ).stdout
    listed = json.loads(out)
    # issue #41: each cluster's own location, never the listing's "-" wildcard
    assert [c["from"] for c in listed] == [
        f"gcp:gke/{PROJECT}/europe-west1/eu-1",
        f"gcp:gke/{PROJECT}/us-east4-a/us-1",
    ]
    denied = run_meshfed(
        home, "cluster", "discover", "--provider", "gcp", "--project", "other", check=False
    )
    assert denied.returncode == 2 and "access denied" in denied.stderr
    controller = ControllerHandle(procs, home)
    controller.start()
    bad_gateway = run_meshfed(
        home, "cluster", "join", "eu", "--from", f"gcp:gke/{PROJECT}/europe-west1/eu-1",
        "--gateway", "34.9.9.9", check=False,
    )  # fmt: skip
    assert bad_gateway.returncode == 2 and "--gateway" in bad_gateway.stderr
    assert controller.api("GET", "/v1/clusters")["clusters"] == []  # nothing registered
    run_meshfed(
        home,
        "cluster",
        "join",
        "eu",
        "--from",
        f"gcp:gke/{PROJECT}/europe-west1/eu-1",
        "--gateway",
        "34.9.9.9:15443",
    )
    [member] = controller.api("GET", "/v1/clusters")["clusters"]
    assert (member["locality"], member["network"], member["provider"]) == (
        "gcp/europe-west1/europe-west1-b",
        "prod-vpc",
        "gcp",
    )
