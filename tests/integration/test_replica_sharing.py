"""What replicas on one real PostgreSQL share besides the state (issue #19): traffic tables
(the leader plans on the whole federation's demand, any replica shows it), the leader's
routing plans (fenced), change notifications and the list of live replicas. In-process
replicas and hubs, a real database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from federation.controller.hub import SyncHub
from federation.controller.leader import NotLeaderError
from federation.controller.pgstore import PostgresStore
from federation.controller.replicas import PostgresReplica
from federation.sync.messages import RoutingPlan
from federation.traffic import Counters, Edge, TrafficTable


@pytest.fixture
def pair(postgres_dsn) -> Iterator[tuple[PostgresReplica, PostgresReplica]]:
    stores = [PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)]
    reps = []
    for i, store in enumerate(stores):
        store.notify_as = f"r{i}"
        reps.append(
            PostgresReplica(
                store,
                f"r{i}",
                lambda i=i: f"https://127.0.0.1:{i + 1}",
                lambda i=i: f"127.0.0.1:{i + 11}",
            )
        )
    yield reps[0], reps[1]
    for store in stores:
        store.close()


def _hub(replica: PostgresReplica) -> SyncHub:
    return SyncHub(replica.store, lambda: b"", lease_s=10, replica=replica)


def _table(requests: int) -> TrafficTable:
    edge = Edge("a", "aws/us-east-1/us-east-1a", "echo.demo", "b", "aws/us-west-2/us-west-2a",
                "cross-region", "2xx")  # fmt: skip
    return TrafficTable(100.0, {edge: Counters(requests=requests, request_bytes=10 * requests)})


def _plan(share_b: float) -> RoutingPlan:
    return RoutingPlan(
        namespace="demo",
        service="echo",
        caller_locality="aws/us-east-1/us-east-1a",
        shares=(
            ("a", "aws/us-east-1/us-east-1a", round(1 - share_b, 3)),
            ("b", "aws/us-west-2/us-west-2a", share_b),
        ),
        demand_rps=60.0,
    )


def test_one_leader_and_every_live_replica_known(pair) -> None:
    r0, r1 = pair
    assert r0.renew() and r1.renew()
    assert r0.is_leader and not r1.is_leader
    assert r1.describe()["leader"] == "r0" and r1.describe()["fencing"] == 1
    assert r0.renew()
    assert r0.sync_addresses() == ["127.0.0.1:11", "127.0.0.1:12"]
    assert r1.sync_addresses() == ["127.0.0.1:12", "127.0.0.1:11"]
    assert r0.healthy and r1.healthy


def test_traffic_reported_to_one_replica_reaches_the_other(pair) -> None:
    r0, r1 = pair
    h0, h1 = _hub(r0), _hub(r1)
    h0.report_traffic("a", _table(100))

    async def one_round() -> None:
        assert r1.renew()
        task = asyncio.create_task(h1.watch_traffic(interval_s=0.05))
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(one_round())
    latest = h1.traffic.latest()
    assert len(latest) == 1 and next(iter(latest[0].edges.values())).requests == 100
    assert r1.shared_traffic() == []  # read once: nothing new since
    h0.report_traffic("a", _table(160))
    ((cluster, table, age),) = r1.shared_traffic()
    assert cluster == "a" and next(iter(table.edges.values())).request_bytes == 1600
    assert 0 <= age < 5


def test_the_leaders_plans_reach_the_other_replica_and_a_deposed_leader_cannot_publish(
    pair,
) -> None:
    r0, r1 = pair
    assert r0.renew() and r1.renew()
    h1 = _hub(r1)
    assert h1.plans() == {}
    r0.publish_plans({"a": [_plan(0.4)]})
    assert h1.plans() == {"a": [_plan(0.4)]}
    with pytest.raises(NotLeaderError):
        r1.publish_plans({"a": [_plan(0.9)]})
    r0.elector.term = None  # r0's term ran out (by its clock) ...
    with pytest.raises(NotLeaderError):
        r0.publish_plans({"a": [_plan(0.9)]})
    assert h1.plans() == {"a": [_plan(0.4)]}  # ... and nothing of it was published


def test_a_change_committed_by_one_replica_is_notified_to_the_other(pair) -> None:
    r0, r1 = pair
    seen: list[int] = []

    async def scenario() -> None:
        listener = asyncio.create_task(r1.listen(lambda: seen.append(1)))
        for _ in range(100):  # the first call comes when the listening connection is open
            if seen:
                break
            await asyncio.sleep(0.02)
        opened = len(seen)
        r1.store.put_documents([(("PriceTable", "x", "own", ""), {"a": 1})], 1.0)  # own: quiet
        r0.store.put_documents([(("PriceTable", "x", "other", ""), {"a": 2})], 1.0)
        for _ in range(100):
            if len(seen) > opened:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        listener.cancel()
        assert opened == 1 and len(seen) == 2

    asyncio.run(scenario())
