"""A control plane holds the snapshots in force, not every snapshot it ever made.

Each snapshot kept what streams derived from an earlier one together with that earlier
snapshot, which kept the one before it: after N changes all N snapshots (their resources,
serialized bodies and packed resources: megabytes each for a sidecar of a thousand services)
stayed in memory. Streams, the consistency check and propagation traces held snapshots too,
and an idle stream its last response. The first test runs the ADS state machines, the cache
and the tracker as the server wires them, then counts the snapshots still alive.
"""

from __future__ import annotations

import asyncio
import gc

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2

from federation.controlplane import resource
from federation.controlplane.ads import _DeltaStream, _SotwStream
from federation.controlplane.metrics import ControlPlaneMetrics
from federation.controlplane.snapshot import Snapshot, SnapshotCache
from federation.controlplane.status import StatusRegistry
from federation.controlplane.trace import PropagationTracker
from federation.sync.messages import ChangeTrace

CLUSTERS = [f"c{i}" for i in range(20)]
CHANGES = 40


def _assignment(name: str, hosts: int) -> endpoint_pb2.ClusterLoadAssignment:
    endpoints = [endpoint_components_pb2.LbEndpoint() for _ in range(hosts)]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=endpoints)],
    )


def _inputs(change: int) -> dict[str, list]:
    """CDS fixed; one assignment per change differs (an endpoint change: EDS alone)."""
    clusters = [
        cluster_pb2.Cluster(
            name=c,
            type=cluster_pb2.Cluster.DiscoveryType.EDS,
            eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(service_name=c),
        )
        for c in CLUSTERS
    ]
    hosts = {CLUSTERS[change % len(CLUSTERS)]: 1 + change}
    return {
        resource.CLUSTER: clusters,
        resource.ENDPOINT: [_assignment(c, hosts.get(c, 1)) for c in CLUSTERS],
    }


def _alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Snapshot)


def _acks(queue: asyncio.Queue, delta: bool) -> list:
    """The ACK of every response queued."""
    acks = []
    while not queue.empty():
        raw = queue.get_nowait()
        if delta:
            r = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
            acks.append(
                discovery_pb2.DeltaDiscoveryRequest(type_url=r.type_url, response_nonce=r.nonce)
            )
        else:
            r = discovery_pb2.DiscoveryResponse.FromString(raw)
            acks.append(
                discovery_pb2.DiscoveryRequest(
                    type_url=r.type_url,
                    version_info=r.version_info,
                    response_nonce=r.nonce,
                    resource_names=CLUSTERS if r.type_url == resource.ENDPOINT else [],
                )
            )
    return acks


async def test_snapshots_of_past_changes_are_not_kept_by_streams_cache_or_traces() -> None:
    before = _alive()
    cache, registry = SnapshotCache(), StatusRegistry()
    tracker = PropagationTracker(ControlPlaneMetrics(), lambda: 1000.0)
    sotw_q: asyncio.Queue = asyncio.Queue()
    delta_q: asyncio.Queue = asyncio.Queue()
    sotw = _SotwStream("s", registry.open("s", "sidecar", "sotw"), sotw_q)
    delta = _DeltaStream("d", registry.open("d", "sidecar", "delta"), delta_q)
    for stream in (sotw, delta):
        stream.on_synced = tracker.synced
    snapshot = Snapshot.build(_inputs(0))
    for change in range(CHANGES + 1):
        if change:
            snapshot = Snapshot.build(_inputs(change), snapshot)  # as the builder does
            tracker.applied(ChangeTrace("b", change, 999.0, 999.0, 999.0, 999.0), 999.0, change)
        for node, stream in (("s", sotw), ("d", delta)):
            await cache.set_snapshot(node, snapshot)
            tracker.published(node, "sidecar", change, snapshot.serial)
            stream.on_snapshot(snapshot)
        if change == 0:
            sotw.handle(discovery_pb2.DiscoveryRequest(type_url=resource.CLUSTER))
            delta.handle(discovery_pb2.DeltaDiscoveryRequest(type_url=resource.CLUSTER))
            sotw.handle(
                discovery_pb2.DiscoveryRequest(type_url=resource.ENDPOINT, resource_names=CLUSTERS)
            )
            delta.handle(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=resource.ENDPOINT, resource_names_subscribe=CLUSTERS
                )
            )
        for stream, queue, is_delta in ((sotw, sotw_q, False), (delta, delta_q, True)):
            for ack in _acks(queue, is_delta):
                stream.handle(ack)
        assert sotw.types[resource.ENDPOINT].nonce  # the streams are answering
    acked = [p["ackMs"] for t in tracker.traces() for p in t["proxies"].values()]
    assert len(acked) == 2 * CHANGES and None not in acked  # every change traced to its ACK
    # in force: the current snapshot (the old code kept all CHANGES + 1)
    assert _alive() - before <= 1
    del snapshot


class _Context:
    """What ``_serve`` asks of a gRPC servicer context: no peer certificate here."""

    def auth_context(self) -> dict:
        return {}


class _Callbacks:
    async def on_stream_open(self, node, peer) -> str:  # type: ignore[no-untyped-def]
        return "n1"

    def on_stream_closed(self, node_id: str) -> None:
        pass


async def test_an_idle_stream_does_not_hold_the_last_response_it_sent() -> None:
    """gRPC resumes a stream's response generator only when it wants the next response, so
    whatever the generator's frame holds at its ``yield`` stays alive while the stream
    idles: it held the last response's bytes (after an initial push, a whole EDS or RDS of
    the estate, on every stream)."""
    from federation.controlplane.ads import AggregatedDiscoveryService, serialize_response

    cache = SnapshotCache()
    await cache.set_snapshot("n1", Snapshot.build(_inputs(0)))
    idle = asyncio.Event()

    async def requests():  # type: ignore[no-untyped-def]
        first = discovery_pb2.DiscoveryRequest(type_url=resource.CLUSTER)
        first.node.id = "n1"
        yield first
        await idle.wait()  # the proxy sends nothing more

    service = AggregatedDiscoveryService(cache, _Callbacks(), StatusRegistry())
    responses = service._serve("sotw", requests(), _Context())  # type: ignore[arg-type]
    try:
        outgoing = await anext(responses)  # gRPC takes a response...
        raw = serialize_response(outgoing)  # ...serializes and sends it
        assert discovery_pb2.DiscoveryResponse.FromString(raw).type_url == resource.CLUSTER
        assert outgoing.response is None
        assert not any(r is raw for r in gc.get_referents(responses))
    finally:
        idle.set()
        await responses.aclose()
