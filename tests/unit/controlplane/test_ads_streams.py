"""The ADS per-stream state machines (SotW and delta) without a network.

Rules under test come from Envoy's xDS protocol doc and DESIGN.md's measured facts: stale
nonces are ignored, a NACK keeps the last version and is recorded, EDS is answered after CDS
even when nothing changed, LDS/CDS wildcard vs named subscriptions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.controlplane import resource
from federation.controlplane.ads import _DeltaStream, _SotwStream
from federation.controlplane.snapshot import Snapshot
from federation.controlplane.status import StatusRegistry, sync_state


def _eds_cluster(name: str, connect_timeout_s: int | None = None) -> cluster_pb2.Cluster:
    """An EDS cluster whose EDS resource is named as it is (as meshfed makes them)."""
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.DiscoveryType.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(service_name=name),
    )
    if connect_timeout_s is not None:
        cluster.connect_timeout.FromSeconds(connect_timeout_s)
    return cluster


def _snapshot(*clusters: str) -> Snapshot:
    return Snapshot.build(
        {
            resource.CLUSTER: [_eds_cluster(c) for c in clusters],
            resource.ENDPOINT: [
                endpoint_pb2.ClusterLoadAssignment(cluster_name=c) for c in clusters
            ],
            resource.LISTENER: [listener_pb2.Listener(name="l1")],
        }
    )


def _assignment(packed: Any) -> endpoint_pb2.ClusterLoadAssignment:
    out = endpoint_pb2.ClusterLoadAssignment()
    packed.Unpack(out)
    return out


def _drain(queue: asyncio.Queue, kind: Any = discovery_pb2.DiscoveryResponse) -> list:
    """The responses queued (bytes parsed as ``kind``)."""
    items = []
    while not queue.empty():
        item = queue.get_nowait()
        items.append(kind.FromString(item) if isinstance(item, bytes) else item)
    return items


def _drain_delta(queue: asyncio.Queue) -> list:
    return _drain(queue, discovery_pb2.DeltaDiscoveryResponse)


def _sotw():
    status = StatusRegistry().open("n1", "sidecar", "sotw")
    queue: asyncio.Queue = asyncio.Queue()
    return _SotwStream("n1", status, queue), status, queue


def _req(type_url, *, names=(), version="", nonce="", error=None):
    req = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=list(names), version_info=version, response_nonce=nonce
    )
    if error:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def test_nothing_is_sent_before_a_snapshot_exists() -> None:
    stream, _, queue = _sotw()
    stream.handle(_req(resource.CLUSTER))
    assert queue.empty()
    stream.on_snapshot(_snapshot("a"))
    (resp,) = _drain(queue)
    assert resp.type_url == resource.CLUSTER and len(resp.resources) == 1


def test_ack_records_version_and_sends_nothing_more() -> None:
    stream, status, queue = _sotw()
    stream.on_snapshot(_snapshot("a"))
    stream.handle(_req(resource.CLUSTER))
    (resp,) = _drain(queue)
    stream.handle(_req(resource.CLUSTER, version=resp.version_info, nonce=resp.nonce))
    assert queue.empty()
    ts = status.type(resource.CLUSTER)
    assert ts.acked_version == resp.version_info
    assert sync_state(ts, resp.version_info) == "SYNCED"


def test_stale_nonce_is_ignored() -> None:
    stream, status, queue = _sotw()
    stream.on_snapshot(_snapshot("a"))
    stream.handle(_req(resource.CLUSTER))
    first = _drain(queue)[0]
    stream.on_snapshot(_snapshot("a", "b"))
    second = _drain(queue)[0]
    # an ACK of the first response arrives after the second was sent: stale, ignored
    stream.handle(
        _req(resource.CLUSTER, version=first.version_info, nonce=first.nonce, error="late")
    )
    assert queue.empty()
    assert status.type(resource.CLUSTER).nack_error == ""
    assert second.nonce != first.nonce


def test_nack_is_recorded_and_not_answered() -> None:
    stream, status, queue = _sotw()
    stream.on_snapshot(_snapshot("a"))
    stream.handle(_req(resource.CLUSTER))
    good = _drain(queue)[0]
    stream.handle(_req(resource.CLUSTER, version=good.version_info, nonce=good.nonce))
    stream.on_snapshot(_snapshot("a", "bad"))
    bad = _drain(queue)[0]
    stream.handle(
        _req(
            resource.CLUSTER,
            version=good.version_info,
            nonce=bad.nonce,
            error="cluster bad: invalid",
        )
    )
    assert queue.empty()  # no resend of the rejected version
    ts = status.type(resource.CLUSTER)
    assert ts.nack_error == "cluster bad: invalid"
    assert ts.acked_version == good.version_info  # the proxy keeps its last good version
    assert sync_state(ts, bad.version_info) == "NACKED"


def test_eds_is_answered_after_cds_even_with_same_version_and_nonce() -> None:
    stream, _, queue = _sotw()
    stream.on_snapshot(_snapshot("a"))
    stream.handle(_req(resource.CLUSTER))
    cds = _drain(queue)[0]
    stream.handle(_req(resource.CLUSTER, version=cds.version_info, nonce=cds.nonce))
    stream.handle(_req(resource.ENDPOINT, names=["a"]))
    eds = _drain(queue)[0]
    stream.handle(_req(resource.ENDPOINT, names=["a"], version=eds.version_info, nonce=eds.nonce))
    assert queue.empty()
    # a CDS update (cluster b added, a unchanged): Envoy re-requests EDS for a and b while b
    # warms; the answer carries b, the name it added -- a did not change and does not warm
    stream.on_snapshot(_snapshot("a", "b"))
    pushed = _drain(queue)
    assert [r.type_url for r in pushed] == [resource.CLUSTER]
    stream.handle(
        _req(resource.ENDPOINT, names=["a", "b"], version=eds.version_info, nonce=eds.nonce)
    )
    (answer,) = _drain(queue)
    assert [_assignment(r).cluster_name for r in answer.resources] == ["b"]


def test_eds_owed_after_cds_push_without_endpoint_change() -> None:
    stream, _, queue = _sotw()
    snap = _snapshot("a")
    stream.on_snapshot(snap)
    stream.handle(_req(resource.CLUSTER))
    stream.handle(_req(resource.ENDPOINT, names=["a"]))
    _cds, eds = _drain(queue)
    stream.handle(_req(resource.ENDPOINT, names=["a"], version=eds.version_info, nonce=eds.nonce))
    # the cluster changes, its endpoints do not
    changed = Snapshot.build(
        {
            resource.CLUSTER: [_eds_cluster("a", 2)],
            resource.ENDPOINT: [endpoint_pb2.ClusterLoadAssignment(cluster_name="a")],
        }
    )
    stream.on_snapshot(changed)
    (cds2,) = _drain(queue)
    assert cds2.type_url == resource.CLUSTER
    # Envoy's warming re-request: same version, same nonce as the last EDS response
    stream.handle(_req(resource.ENDPOINT, names=["a"], version=eds.version_info, nonce=eds.nonce))
    (again,) = _drain(queue)
    assert again.type_url == resource.ENDPOINT and again.version_info == eds.version_info


def test_wildcard_for_envoy_and_named_for_grpc() -> None:
    stream, _, queue = _sotw()
    stream.on_snapshot(_snapshot("a", "b"))
    stream.handle(_req(resource.CLUSTER))  # Envoy: wildcard
    assert len(_drain(queue)[0].resources) == 2
    named, _, nqueue = _sotw()
    named.on_snapshot(_snapshot("a", "b"))
    named.handle(_req(resource.CLUSTER, names=["b"]))  # gRPC: named
    (resp,) = _drain(nqueue)
    assert len(resp.resources) == 1


def _delta():
    status = StatusRegistry().open("n1", "sidecar", "delta")
    queue: asyncio.Queue = asyncio.Queue()
    return _DeltaStream("n1", status, queue), status, queue


def test_delta_sends_changes_and_removals_only() -> None:
    stream, status, queue = _delta()
    stream.on_snapshot(_snapshot("a", "b"))
    stream.handle(discovery_pb2.DeltaDiscoveryRequest(type_url=resource.CLUSTER))
    (first,) = _drain_delta(queue)
    assert sorted(r.name for r in first.resources) == ["a", "b"]
    stream.handle(
        discovery_pb2.DeltaDiscoveryRequest(type_url=resource.CLUSTER, response_nonce=first.nonce)
    )
    assert status.type(resource.CLUSTER).acked_version == first.system_version_info
    stream.on_snapshot(_snapshot("a"))
    (second,) = _drain_delta(queue)
    assert list(second.removed_resources) == ["b"] and len(second.resources) == 0


def test_delta_resends_the_eds_of_the_clusters_a_cds_push_rewarms_and_no_other() -> None:
    """An updated cluster is warmed anew and needs its EDS again; an unchanged one keeps its
    endpoints, and a new one's EDS goes when Envoy subscribes to it."""
    stream, _, queue = _delta()
    stream.on_snapshot(_snapshot("a", "b", "z"))
    stream.handle(discovery_pb2.DeltaDiscoveryRequest(type_url=resource.CLUSTER))
    stream.handle(
        discovery_pb2.DeltaDiscoveryRequest(
            type_url=resource.ENDPOINT, resource_names_subscribe=["a", "b", "z"]
        )
    )
    _drain_delta(queue)
    updated = _snapshot("a", "b", "c", "z")
    changed = cluster_pb2.Cluster()
    changed.CopyFrom(updated.get(resource.CLUSTER)["a"])
    changed.connect_timeout.FromMilliseconds(250)
    clusters = {**updated.get(resource.CLUSTER), "a": changed}
    stream.on_snapshot(
        Snapshot.build(
            {
                **{t: list(updated.get(t).values()) for t in updated.resources},
                resource.CLUSTER: list(clusters.values()),
            }
        )
    )
    sent = {r.type_url: sorted(x.name for x in r.resources) for r in _drain_delta(queue)}
    assert sent == {resource.CLUSTER: ["a", "c"], resource.ENDPOINT: ["a"]}
    stream.handle(
        discovery_pb2.DeltaDiscoveryRequest(
            type_url=resource.ENDPOINT, resource_names_subscribe=["c"]
        )
    )
    assert [sorted(x.name for x in r.resources) for r in _drain_delta(queue)] == [["c"]]


def test_delta_initial_versions_avoid_resending_known_resources() -> None:
    snap = _snapshot("a")
    stream, _, queue = _delta()
    stream.on_snapshot(snap)
    known = dict(snap.resource_versions[resource.CLUSTER])
    stream.handle(
        discovery_pb2.DeltaDiscoveryRequest(
            type_url=resource.CLUSTER, initial_resource_versions=known
        )
    )
    assert queue.empty()


def test_delta_named_subscribe_and_unsubscribe() -> None:
    stream, _, queue = _delta()
    stream.on_snapshot(_snapshot("a", "b"))
    stream.handle(
        discovery_pb2.DeltaDiscoveryRequest(
            type_url=resource.ENDPOINT, resource_names_subscribe=["a"]
        )
    )
    (resp,) = _drain_delta(queue)
    assert [r.name for r in resp.resources] == ["a"]
    stream.handle(
        discovery_pb2.DeltaDiscoveryRequest(
            type_url=resource.ENDPOINT, resource_names_unsubscribe=["a"], response_nonce=resp.nonce
        )
    )
    stream.on_snapshot(_snapshot("a", "b", "c"))
    assert all(r.type_url != resource.ENDPOINT for r in _drain_delta(queue))


def test_a_type_with_nothing_left_to_hold_is_synced_without_an_ack() -> None:
    """Found by ``meshfed check``: a gateway whose last EDS cluster went away stays STALE for
    ever -- Envoy does not ACK a response for a type it no longer watches."""
    from federation.controlplane.snapshot import Snapshot
    from federation.controlplane.status import EMPTY_VERSION, TypeStatus

    empty = Snapshot.build({resource.ENDPOINT: []}).versions[resource.ENDPOINT]
    assert empty == EMPTY_VERSION  # the snapshot's version of no resources
    gone = TypeStatus(sent_version=EMPTY_VERSION, sent_nonce="7", acked_version="44852a79")
    assert sync_state(gone, EMPTY_VERSION) == "SYNCED"
    behind = TypeStatus(sent_version="c18cd979", sent_nonce="8", acked_version="44852a79")
    assert sync_state(behind, "c18cd979") == "STALE"


def _assignment_of(name: str, zone: int) -> endpoint_pb2.ClusterLoadAssignment:
    """A ClusterLoadAssignment whose content (so its version) is set by ``zone``."""
    from envoy.config.core.v3 import base_pb2
    from envoy.config.endpoint.v3 import endpoint_components_pb2

    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(locality=base_pb2.Locality(zone=f"z{zone}"))
        ],
    )


def _endpoints(state: dict[str, int], previous: Snapshot | None) -> Snapshot:
    """EDS only: one ClusterLoadAssignment per name, its content (so its version) set by the
    number (an endpoint weight)."""
    return Snapshot.build(
        {resource.ENDPOINT: [_assignment_of(n, weight) for n, weight in sorted(state.items())]},
        previous,
    )


NAMES = [f"svc{i}" for i in range(6)]


@settings(max_examples=150, deadline=None)
@given(
    st.booleans(),
    st.lists(
        st.one_of(
            st.tuples(
                st.just("snapshot"), st.dictionaries(st.sampled_from(NAMES), st.integers(0, 2))
            ),
            st.tuples(st.just("subscribe"), st.lists(st.sampled_from(NAMES), max_size=3)),
            st.tuples(st.just("unsubscribe"), st.lists(st.sampled_from(NAMES), max_size=3)),
        ),
        max_size=12,
    ),
)
def test_a_delta_client_holds_exactly_what_it_wants_after_every_change(
    wildcard: bool, steps: list[tuple[str, Any]]
) -> None:
    """Issue 37: a delta stream sends from the last snapshot by the changes between two
    snapshots (shared by every stream) instead of comparing each name; whatever the order of
    snapshots and subscription changes, the client ends up holding exactly the current
    version of every resource it wants, and is sent nothing it holds already (unless it
    subscribes to it again)."""
    stream, _, queue = _delta()
    held: dict[str, str] = {}
    wanted: set[str] = set()
    snapshot = _endpoints({}, None)
    stream.on_snapshot(snapshot)

    def receive(subscribed: frozenset[str] = frozenset()) -> None:
        for response in _drain_delta(queue):
            for r in response.resources:
                # again at the same version only when the client asked for it again
                again = held.get(r.name) == r.version and r.name not in subscribed
                assert not again, f"{r.name} sent again at the same version"
                held[r.name] = r.version
            for name in response.removed_resources:
                held.pop(name)
            stream.handle(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=resource.ENDPOINT, response_nonce=response.nonce
                )
            )

    first = discovery_pb2.DeltaDiscoveryRequest(type_url=resource.ENDPOINT)
    if wildcard:
        first.resource_names_subscribe.append("*")
    stream.handle(first)
    receive()
    for op, arg in steps:
        if op == "snapshot":
            snapshot = _endpoints(arg, snapshot)
            stream.on_snapshot(snapshot)
        elif not wildcard:
            field = (
                "resource_names_subscribe" if op == "subscribe" else "resource_names_unsubscribe"
            )
            stream.handle(
                discovery_pb2.DeltaDiscoveryRequest(type_url=resource.ENDPOINT, **{field: arg})
            )
            wanted = wanted | set(arg) if op == "subscribe" else wanted - set(arg)
            for name in arg if op == "unsubscribe" else []:
                held.pop(name, None)  # the client forgets what it unsubscribed from
        receive(frozenset(arg) if op == "subscribe" else frozenset())
        versions = snapshot.resource_versions[resource.ENDPOINT]
        want = set(versions) if wildcard else wanted & set(versions)
        assert held == {n: versions[n] for n in want}


def _clusters_and_endpoints(state: dict[str, tuple[int, int]]) -> Snapshot:
    """CDS and EDS: per name, a cluster whose content is set by the first number and its
    ClusterLoadAssignment by the second."""
    return Snapshot.build(
        {
            resource.CLUSTER: [_eds_cluster(name, 1 + c) for name, (c, _) in sorted(state.items())],
            resource.ENDPOINT: [_assignment_of(name, e) for name, (_, e) in sorted(state.items())],
        }
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(NAMES), st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1
        ),
        min_size=1,
        max_size=10,
    ),
    st.lists(st.booleans(), max_size=10),
)
def test_a_sotw_envoy_warms_every_cluster_and_holds_current_endpoints_after_every_change(
    states: list[dict[str, tuple[int, int]]], late: list[bool]
) -> None:
    """A SotW client that behaves as Envoy does (wildcard CDS; after every CDS response it
    asks EDS again for every cluster with the last EDS version and nonce, and an added or
    changed cluster warms until an EDS response carries its assignment; EDS responses are
    not state of the world: an assignment left out is kept): whatever the changes, and
    whether a snapshot comes before or after the client's re-request, no cluster is left
    warming and the client holds every cluster's current assignment. The server sends the
    re-warming clusters' EDS only, not every subscribed one."""
    stream, _, queue = _sotw()
    snapshot = _clusters_and_endpoints(states[0])
    stream.on_snapshot(snapshot)
    stream.handle(_req(resource.CLUSTER))
    held_clusters: dict[str, str] = {}
    held_eds: dict[str, str] = {}
    warming: set[str] = set()
    last_eds: tuple[str, str] = ("", "")
    pending: list[discovery_pb2.DiscoveryRequest] = []

    def receive() -> None:
        nonlocal last_eds
        for response in _drain(queue):
            if response.type_url == resource.CLUSTER:
                clusters = {}
                for r in response.resources:
                    c = cluster_pb2.Cluster()
                    r.Unpack(c)
                    clusters[c.name] = c.SerializeToString(deterministic=True)
                warming.update(n for n, v in clusters.items() if held_clusters.get(n) != v)
                warming.intersection_update(clusters)
                held_clusters.clear()
                held_clusters.update(clusters)
                for gone in set(held_eds) - set(clusters):
                    del held_eds[gone]
                ack = _req(resource.CLUSTER, version=response.version_info, nonce=response.nonce)
                eds = _req(
                    resource.ENDPOINT,
                    names=sorted(clusters),
                    version=last_eds[0],
                    nonce=last_eds[1],
                )
                pending.extend([ack, eds])
            else:
                for r in response.resources:
                    a = _assignment(r)
                    if a.cluster_name in held_clusters:
                        held_eds[a.cluster_name] = a.SerializeToString(deterministic=True)
                        warming.discard(a.cluster_name)
                last_eds = (response.version_info, response.nonce)
                pending.append(
                    _req(
                        resource.ENDPOINT,
                        names=sorted(held_clusters),
                        version=response.version_info,
                        nonce=response.nonce,
                    )
                )

    def settle() -> None:
        for _ in range(20):  # bounded: each round answers what the last one asked
            receive()
            if not pending:
                return
            while pending:
                stream.handle(pending.pop(0))
        raise AssertionError("the exchange did not settle")

    settle()
    for i, state in enumerate(states[1:]):
        snapshot = _clusters_and_endpoints(state)
        stream.on_snapshot(snapshot)
        if i < len(late) and late[i]:
            receive()  # the CDS is read; another snapshot comes before the re-request
            snapshot = _clusters_and_endpoints({**state, **dict.fromkeys(list(state)[:1], (2, 2))})
            stream.on_snapshot(snapshot)
        settle()
        assert not warming, f"clusters still warming: {sorted(warming)}"
        want = {
            n: a.SerializeToString(deterministic=True)
            for n, a in snapshot.get(resource.ENDPOINT).items()
        }
        assert held_eds == want
