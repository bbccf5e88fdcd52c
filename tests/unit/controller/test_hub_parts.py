"""The sync hub's parts, each alone (issue #36): the open streams, what each member is sent,
the leader's work and the traffic feed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from federation.controller.leader_work import LeaderWork
from federation.controller.planner import Planner, PlannerSettings
from federation.controller.roles import SoleReplica
from federation.controller.store import ClusterRecord, SqliteStore, StoreError
from federation.controller.streams import Closed, SyncStreams
from federation.controller.traffic import TrafficHistory
from federation.controller.traffic_feed import TrafficFeed
from federation.controller.views import StoredPolicies, federation_view
from federation.model.authz import AuthorizationPolicy
from federation.sync.messages import ControllerUpdate, RoutingPlan
from federation.traffic import TrafficTable


def test_streams_send_only_after_the_first_report_and_only_what_changed() -> None:
    streams = SyncStreams()
    queue = streams.attach("a")
    assert streams.ready() == [] and streams.send("b", ControllerUpdate()) is None
    assert streams.mark_reported("a") is True and streams.mark_reported("a") is False
    assert streams.ready() == ["a"]
    first = ControllerUpdate(lease_seconds=30)
    assert streams.send("a", first) == 1
    assert streams.send("a", first) is None  # the same view is not sent again
    assert streams.send("a", ControllerUpdate(lease_seconds=10)) == 2
    assert [queue.get_nowait().version, queue.get_nowait().version] == [1, 2]


def test_a_newer_stream_replaces_and_closes_the_older_and_its_late_detach_is_ignored() -> None:
    streams = SyncStreams()
    old = streams.attach("a")
    streams.mark_reported("a")
    new = streams.attach("a")
    closed = old.get_nowait()
    assert isinstance(closed, Closed) and not closed.retryable
    streams.detach("a", old)  # the old stream's handler ends after the new one attached
    assert streams.connected() == {"a"} and streams.ready() == []  # new: not reported yet
    streams.close_all("cut off", retryable=True)
    assert new.get_nowait() == Closed("cut off", True)
    streams.detach("a", new)
    assert len(streams) == 0


def _record(name: str, intermediate: str = "") -> ClusterRecord:
    return ClusterRecord(
        name, "aws/us-east-1", "n", "127.0.0.1:15443", "local", 0, intermediate_pem=intermediate
    )


def test_the_view_gives_each_member_its_own_parts_and_the_default_deny() -> None:
    kw = {
        "imports": {"a": []},
        "export_statuses": [],
        "central": {"a": [("demo", "echo")]},
        "policies": [],
        "bundle": b"B",
        "lease_s": 0.4,
        "records": {"a": _record("a", "CHAIN-A"), "b": _record("b")},
        "reports": {},
        "plans": {},
        "addresses": ["127.0.0.1:1"],
    }
    allow = federation_view(authz_default="allow", **kw)  # type: ignore[arg-type]
    deny = federation_view(authz_default="deny", **kw)  # type: ignore[arg-type]
    a, b = deny.update_for("a"), deny.update_for("b")
    assert (a.intermediate_chain_pem, b.intermediate_chain_pem) == ("CHAIN-A", "")
    assert a.exports == [("demo", "echo")] and b.exports == []
    assert a.lease_seconds == 1  # at least one second
    assert allow.update_for("a").authorization_policies == []
    [policy] = a.authorization_policies
    assert isinstance(policy, AuthorizationPolicy)


def test_stored_policies_leave_out_an_invalid_document_and_keep_unchanged_models(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "c.db")
    good = {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "echo", "namespace": "demo"},
        "spec": {"host": "echo.demo.svc.clusterset.local"},
    }
    bad = {**good, "metadata": {"name": "old", "namespace": "demo"}, "spec": {"nope": 1}}
    store.put_documents(
        [((d["kind"], "demo", d["metadata"]["name"], ""), d) for d in (good, bad)], 0.0
    )
    policies = StoredPolicies(store)
    [first] = policies.read()
    [second] = policies.read()
    assert first is second  # validated once
    assert policies.traffic_policies() == [first]
    assert "aws" in policies.price_tables()
    store.close()


class Follower(SoleReplica):
    is_leader = False  # type: ignore[assignment]

    def __init__(self, plans: dict[str, list[RoutingPlan]] | None) -> None:
        super().__init__("f", lambda: "")
        self._plans = plans

    def shared_plans(self) -> dict[str, list[RoutingPlan]] | None:
        return self._plans


def _leader_work(store: SqliteStore, replica: SoleReplica, changed: list[int]) -> LeaderWork:
    return LeaderWork(
        Planner(PlannerSettings()),
        None,
        store,
        lambda: replica,
        TrafficHistory(),
        (lambda: [], dict, list),
        lambda: changed.append(1),
    )


def test_a_follower_reads_the_leaders_plans_and_neither_plans_nor_re_signs(tmp_path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    plan = RoutingPlan("demo", "echo", "aws/us-east-1/z", (("a", "aws/us-east-1/z", 1.0),))
    changed: list[int] = []
    follower = _leader_work(store, Follower({"a": [plan]}), changed)
    assert follower.plans() == {"a": [plan]}
    assert follower.resign_due() is False
    follower.replan()  # no policy in cost mode optimize: nothing to plan
    assert changed == []
    assert _leader_work(store, Follower(None), changed).plans() == {}
    store.close()


class Unshared(SoleReplica):
    def share_traffic(self, cluster: str, table: TrafficTable) -> None:
        raise StoreError("the database is away")


def test_the_traffic_feed_keeps_a_table_even_when_sharing_it_fails(caplog) -> None:
    feed = TrafficFeed(lambda: Unshared("r", lambda: ""))
    feed.report("a", TrafficTable(()))
    assert "not shared" in caplog.text
    assert len(feed.history.latest()) == 1


def test_the_traffic_feed_takes_other_replicas_tables_for_streams_it_does_not_hold() -> None:
    asked: list[frozenset[str]] = []

    class Sharing(SoleReplica):
        def shared_traffic(self, skip=frozenset()):  # type: ignore[no-untyped-def]
            asked.append(skip)
            return [("b", TrafficTable(()), 1.0)]

    feed = TrafficFeed(lambda: Sharing("r", lambda: ""))

    async def one_round() -> None:
        task = asyncio.create_task(feed.watch(lambda: {"a"}, interval_s=0.01))
        for _ in range(200):
            if feed.history.latest():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(one_round())
    assert asked[0] == frozenset({"a"}) and len(feed.history.latest()) == 1


async def test_a_change_another_replica_made_is_recomputed_at_once_and_a_burst_is_shared(
    tmp_path,
) -> None:
    """A NOTIFY after a quiet spell is recomputed without waiting; the changes of a burst
    that arrive within :data:`RECOMPUTE_SPACING_S` of a recompute share the next one."""
    import time

    from federation.controller import hub as hub_module
    from federation.controller.hub import SyncHub

    store = SqliteStore(tmp_path / "c.db")
    hub = SyncHub(store, lambda: b"BUNDLE", lease_s=30, clock=time.time)
    times: list[float] = []
    hub.recompute = lambda trace=None: times.append(time.monotonic())  # type: ignore[method-assign]
    watcher = asyncio.create_task(hub.watch_changes())
    try:
        await asyncio.sleep(0.05)
        hub.changed_elsewhere()
        for _ in range(5):  # loop turns, no timer: the recompute waits for none
            await asyncio.sleep(0)
        assert len(times) == 1, times
        for _ in range(5):  # a burst right after it
            hub.changed_elsewhere()
            await asyncio.sleep(0)
        deadline = time.monotonic() + 5
        while len(times) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(hub_module.RECOMPUTE_SPACING_S * 3)
        assert len(times) == 2, times  # the burst shared one recompute
        assert times[1] - times[0] >= hub_module.RECOMPUTE_SPACING_S * 0.9, times
    finally:
        watcher.cancel()
        store.close()
