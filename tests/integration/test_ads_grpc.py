"""The ADS server over real gRPC (grpc.aio on loopback), driven by a grpcio client stub."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from federation.controlplane import resource
from federation.controlplane.ads import AggregatedDiscoveryService
from federation.controlplane.builder import SnapshotBuilder
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.identities import IdentityManager
from federation.controlplane.registry import ServiceRegistry
from federation.controlplane.snapshot import SnapshotCache
from federation.controlplane.status import StatusRegistry
from federation.model.locality import Locality

pytestmark = pytest.mark.integration


async def test_no_answer_before_state_is_loaded_then_full_config(trust_dir) -> None:
    cache = SnapshotCache()
    identities = IdentityManager(trust_dir.cluster_authority("east"), lambda _sid: None)
    builder = SnapshotBuilder(
        MeshContext("east", "example.org", Locality("aws/us-east-1", "us-east-1a")),
        ServiceRegistry(),
        identities,
        cache,
    )
    server = grpc.aio.server()
    status = StatusRegistry()
    AggregatedDiscoveryService(cache, builder, status).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    requests: asyncio.Queue = asyncio.Queue()

    async def gen():
        while True:
            yield await requests.get()

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(gen())
            node = base_pb2.Node(id="sidecar~demo~client")
            node.metadata.update({"meshfed.io/role": "sidecar", "meshfed.io/namespace": "demo"})
            await requests.put(
                discovery_pb2.DiscoveryRequest(node=node, type_url=resource.LISTENER)
            )
            first = asyncio.ensure_future(call.read())
            done, _ = await asyncio.wait({first}, timeout=0.5)
            assert not done  # state not loaded: no answer
            builder.ready.set()
            resp = await asyncio.wait_for(first, 5)
            assert resp.type_url == resource.LISTENER
            assert [r.type_url for r in resp.resources] == [resource.LISTENER]
            assert status.get("sidecar~demo~client") is not None
            call.cancel()
    finally:
        await server.stop(0)
        await identities.close()


async def test_unusable_node_is_refused(trust_dir) -> None:
    cache = SnapshotCache()
    identities = IdentityManager(trust_dir.cluster_authority("east"), lambda _sid: None)
    builder = SnapshotBuilder(
        MeshContext("east", "example.org", Locality("aws/us-east-1")),
        ServiceRegistry(),
        identities,
        cache,
    )
    builder.ready.set()
    server = grpc.aio.server()
    AggregatedDiscoveryService(cache, builder, StatusRegistry()).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            node = base_pb2.Node(id="x")
            node.metadata.update({"meshfed.io/role": "toaster"})

            async def one():
                yield discovery_pb2.DiscoveryRequest(node=node, type_url=resource.CLUSTER)
                await asyncio.sleep(5)

            call = stub.StreamAggregatedResources(one())
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(call.read(), 5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "unknown meshfed.io/role 'toaster'" in info.value.details()
    finally:
        await server.stop(0)
        await identities.close()
