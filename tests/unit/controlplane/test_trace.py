"""Issue #37: propagation traces -- each hop recorded where it happens, only proxies the
change altered, an ACK counted only when every response of the snapshot was ACKed."""

from __future__ import annotations

import asyncio
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from federation.controlplane import resource
from federation.controlplane.ads import _SotwStream
from federation.controlplane.metrics import ControlPlaneMetrics
from federation.controlplane.snapshot import Snapshot
from federation.controlplane.status import StatusRegistry
from federation.controlplane.trace import PropagationTracker
from federation.sync.messages import ChangeTrace
from tests.prometheus import samples
from tests.unit.controlplane.test_ads_streams import _snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_trace_records_every_hop_and_only_the_proxies_it_altered() -> None:
    clock, metrics = Clock(), ControlPlaneMetrics()
    tracker = PropagationTracker(metrics, clock)
    trace = ChangeTrace("a", 7, 999.0, 999.01, 999.02, 999.025)
    clock.now = 999.03
    tracker.applied(trace, received_at=999.027, version=41)
    clock.now = 999.05
    snapshot = 11  # snapshots are named by their serials
    tracker.published("sidecar~demo~x", "sidecar", 41, snapshot)
    tracker.published("old~node", "sidecar", 40, 12)  # built from an older version
    tracker.synced("sidecar~demo~x", 13)  # another snapshot's ACK: not this one
    clock.now = 999.08
    tracker.synced("sidecar~demo~x", snapshot)
    tracker.applied(trace, received_at=999.5, version=42)  # the same change again: ignored
    (row,) = tracker.traces()
    assert row["origin"] == "a" and row["originVersion"] == 7 and row["version"] == 41
    assert row["hopsMs"] == {
        "report": 10.0,
        "controller": 5.0,
        "deliver": 2.0,
        "apply": 3.0,
        "firstBuild": 20.0,
    }
    assert row["proxies"] == {
        "sidecar~demo~x": {"role": "sidecar", "buildMs": 20.0, "ackMs": 30.0, "totalMs": 80.0}
    }
    assert (row["acked"], row["pending"]) == (1, 0)
    counts = {
        dict(labels)["hop"]: value
        for (name, labels), value in samples(metrics.exposition().decode()).items()
        if name == "meshfed_propagation_hop_seconds_count"
    }
    assert counts == {"deliver": 1, "apply": 1, "build": 1, "ack": 1, "total": 1}


def test_a_stream_is_synced_only_once_every_response_of_the_snapshot_is_acked() -> None:
    queue: asyncio.Queue = asyncio.Queue()
    stream = _SotwStream("n1", StatusRegistry().open("n1", "sidecar", "sotw"), queue)
    synced: list[int] = []
    stream.on_synced = lambda node, snap: synced.append(snap)
    first = _snapshot("a")
    stream.on_snapshot(first)
    stream.handle(discovery_pb2.DiscoveryRequest(type_url=resource.CLUSTER))
    stream.handle(discovery_pb2.DiscoveryRequest(type_url=resource.ENDPOINT, resource_names=["a"]))
    sent = {}
    while not queue.empty():
        r = discovery_pb2.DiscoveryResponse.FromString(queue.get_nowait())
        sent[r.type_url] = r
    assert synced == []  # nothing ACKed yet
    cds, eds = sent[resource.CLUSTER], sent[resource.ENDPOINT]
    stream.handle(
        discovery_pb2.DiscoveryRequest(
            type_url=resource.CLUSTER, version_info=cds.version_info, response_nonce=cds.nonce
        )
    )
    assert synced == []  # EDS still unacknowledged
    nack = discovery_pb2.DiscoveryRequest(
        type_url=resource.ENDPOINT, response_nonce=eds.nonce, resource_names=["a"]
    )
    nack.error_detail.message = "bad"
    stream.handle(nack)
    assert synced == []  # a NACK is not a sync
    stream.handle(_eds_ack(eds))
    assert synced == [first.serial]


def _with_endpoints(count: int) -> Snapshot:
    """Cluster ``a`` and its assignment with ``count`` endpoints: a change of ``count`` is an
    EDS change alone."""
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

    hosts = [endpoint_components_pb2.LbEndpoint() for _ in range(count)]
    return Snapshot.build(
        {
            resource.CLUSTER: [
                cluster_pb2.Cluster(
                    name="a",
                    type=cluster_pb2.Cluster.DiscoveryType.EDS,
                    eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(service_name="a"),
                )
            ],
            resource.ENDPOINT: [
                endpoint_pb2.ClusterLoadAssignment(
                    cluster_name="a",
                    endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=hosts)],
                )
            ],
        }
    )


def _eds_ack(eds: discovery_pb2.DiscoveryResponse) -> discovery_pb2.DiscoveryRequest:
    """The SotW ACK of ``eds`` by a proxy subscribed to cluster ``a``'s assignment."""
    return discovery_pb2.DiscoveryRequest(
        type_url=resource.ENDPOINT,
        version_info=eds.version_info,
        response_nonce=eds.nonce,
        resource_names=["a"],
    )


def _recorded(kind: Any, protocol: str) -> tuple[Any, asyncio.Queue, list[int]]:
    """A stream of class ``kind`` and the serials of the snapshots it reports held, in
    order."""
    queue: asyncio.Queue = asyncio.Queue()
    stream = kind("n1", StatusRegistry().open("n1", "sidecar", protocol), queue)
    synced: list[int] = []
    stream.on_synced = lambda node, snap: synced.append(snap)
    return stream, queue, synced


def _responses(queue: asyncio.Queue, kind: type) -> dict[str, list]:
    out: dict[str, list] = {}
    while not queue.empty():
        r = kind.FromString(queue.get_nowait())
        out.setdefault(r.type_url, []).append(r)
    return out


def test_a_snapshot_is_held_once_its_responses_are_acked_even_if_a_newer_one_came_first() -> None:
    """SotW: the proxy applies and ACKs responses in order, so the ACK of the first
    snapshot's EDS -- stale by then, a newer EDS is in flight -- means it holds the first
    snapshot: reported then, not only once it has caught up with the second (which made a
    trace's ACK hop include the next change's build and push)."""
    stream, queue, synced = _recorded(_SotwStream, "sotw")
    first, second = _with_endpoints(1), _with_endpoints(2)
    stream.on_snapshot(first)
    stream.handle(discovery_pb2.DiscoveryRequest(type_url=resource.CLUSTER))
    stream.handle(discovery_pb2.DiscoveryRequest(type_url=resource.ENDPOINT, resource_names=["a"]))
    sent = _responses(queue, discovery_pb2.DiscoveryResponse)
    (cds,), (eds1,) = sent[resource.CLUSTER], sent[resource.ENDPOINT]
    stream.handle(
        discovery_pb2.DiscoveryRequest(
            type_url=resource.CLUSTER, version_info=cds.version_info, response_nonce=cds.nonce
        )
    )
    stream.on_snapshot(second)  # EDS alone changed; the first EDS is not ACKed yet
    (eds2,) = _responses(queue, discovery_pb2.DiscoveryResponse)[resource.ENDPOINT]
    assert synced == []

    def ack(eds: discovery_pb2.DiscoveryResponse) -> None:
        stream.handle(_eds_ack(eds))

    ack(eds1)
    assert synced == [first.serial]
    ack(eds2)
    assert synced == [first.serial, second.serial]
    ack(eds2)  # again: nothing new
    assert synced == [first.serial, second.serial]


def test_a_delta_stream_reports_each_snapshot_held_in_order() -> None:
    """The same for delta: the first snapshot's ACK reports it while the second's EDS is in
    flight; a NACK of the second reports nothing; its later ACK does."""
    from federation.controlplane.ads import _DeltaStream

    stream, queue, synced = _recorded(_DeltaStream, "delta")
    first, second = _with_endpoints(1), _with_endpoints(2)
    stream.on_snapshot(first)
    stream.handle(discovery_pb2.DeltaDiscoveryRequest(type_url=resource.CLUSTER))
    stream.handle(
        discovery_pb2.DeltaDiscoveryRequest(
            type_url=resource.ENDPOINT, resource_names_subscribe=["a"]
        )
    )
    sent = _responses(queue, discovery_pb2.DeltaDiscoveryResponse)
    cds, eds1 = sent[resource.CLUSTER][0], sent[resource.ENDPOINT][-1]

    def ack(response: discovery_pb2.DeltaDiscoveryResponse, error: str = "") -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=response.type_url, response_nonce=response.nonce
        )
        if error:
            request.error_detail.message = error
        stream.handle(request)

    for response in sent[resource.CLUSTER]:
        ack(response)
    stream.on_snapshot(second)
    (eds2,) = _responses(queue, discovery_pb2.DeltaDiscoveryResponse)[resource.ENDPOINT]
    for response in sent[resource.ENDPOINT]:
        ack(response)
    assert synced == [first.serial] and eds1 in sent[resource.ENDPOINT] and cds
    ack(eds2, error="bad")
    assert synced == [first.serial]
    ack(eds2)
    assert synced == [first.serial, second.serial]


def test_a_trace_ends_when_the_first_snapshot_carrying_the_change_is_held() -> None:
    """A snapshot published after the change's and before the ACK does not move the end of
    the hop: whichever of them the stream reports held first ends it."""
    clock = Clock()
    tracker = PropagationTracker(ControlPlaneMetrics(), clock)
    tracker.applied(ChangeTrace("a", 7, 999.0, 999.01, 999.02, 999.025), 999.027, 41)
    clock.now = 1000.0
    first, second = 21, 22
    tracker.published("n", "sidecar", 41, first)
    clock.now = 1000.2
    tracker.published("n", "sidecar", 42, second)  # the next change, before the ACK
    clock.now = 1000.3
    tracker.synced("n", first)
    clock.now = 1000.9
    tracker.synced("n", second)
    (row,) = tracker.traces()
    assert row["proxies"]["n"]["ackMs"] == 300.0
