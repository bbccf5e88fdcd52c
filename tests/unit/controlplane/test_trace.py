"""Issue #37: propagation traces -- each hop recorded where it happens, only proxies the
change altered, an ACK counted only when every response of the snapshot was ACKed."""

from __future__ import annotations

import asyncio

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
    snapshot = object()
    tracker.published("sidecar~demo~x", "sidecar", 41, snapshot)
    tracker.published("old~node", "sidecar", 40, object())  # built from an older version
    tracker.synced("sidecar~demo~x", object())  # another snapshot's ACK: not this one
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
    synced: list[Snapshot] = []
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
    stream.handle(
        discovery_pb2.DiscoveryRequest(
            type_url=resource.ENDPOINT,
            version_info=eds.version_info,
            response_nonce=eds.nonce,
            resource_names=["a"],
        )
    )
    assert synced == [first]
