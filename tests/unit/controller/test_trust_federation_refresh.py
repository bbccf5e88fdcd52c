"""The leader's refresh of foreign trust domains' bundles
(:mod:`federation.controller.trust_federation`), with a fetch that answers what the test says
and a SQLite store: schedule, failures, sequence, the operator's edits, followers, expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from federation.controller.roles import SoleReplica
from federation.controller.store import SqliteStore
from federation.controller.trust_federation import (
    BundleRefresher,
    bundles_in_force,
    federations,
    states,
    status_rows,
)
from federation.errors import BundleFetchError
from federation.model.trust_federation import federation_document
from trust import pki
from trust.bundle import TrustBundle
from trust.federation import BundleEndpoint
from trust.spiffe import TrustDomain

B = TrustDomain("b.example")
URL = "https://b.example/v1/spiffe-bundle"


def _bundle(sequence: int, hint: int = 30, days: int = 30) -> TrustBundle:
    key = pki.generate_private_key()
    root = pki.root_certificate(key, B, now=pki.utcnow(), ttl=timedelta(days=days))
    return TrustBundle(B, (root,), sequence, hint)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _apply(store: SqliteStore, bootstrap: TrustBundle, url: str = URL) -> None:
    doc = federation_document(
        "b.example", url, "https_spiffe", "spiffe://b.example/ns/meshfed-system/sa/controller",
        bootstrap.to_spiffe_json(),
    )  # fmt: skip
    body = doc.model_dump(by_alias=True, mode="json", exclude_none=True)
    store.put_documents([(("TrustDomainFederation", "default", "b-example", ""), body)], 0.0)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "controller.db")


def _refresher(store: SqliteStore, answers: list[Any], calls: list[Any], clock: Clock, **kw: Any):  # type: ignore[no-untyped-def]
    async def fetch(endpoint: BundleEndpoint, authenticator: TrustBundle | None) -> TrustBundle:
        calls.append((endpoint.url, authenticator))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    changed: list[int] = []
    own = _bundle(1)
    refresher = BundleRefresher(
        store, kw.get("replica", lambda: SoleReplica("c", str)), lambda: own,
        lambda: changed.append(1), fetch=fetch, clock=clock,
    )  # fmt: skip
    return refresher, changed


def test_fetch_at_the_hint_keep_on_failure_and_never_roll_back(store: SqliteStore) -> None:
    clock, calls = Clock(), []  # type: ignore[var-annotated]
    boot, first, older, second = _bundle(1), _bundle(2, hint=30), _bundle(1), _bundle(3, hint=60)
    _apply(store, boot)
    answers: list[Any] = [first, BundleFetchError("down"), older, second]
    refresher, changed = _refresher(store, answers, calls, clock)

    assert asyncio.run(refresher.refresh_due()) == ["b.example"]
    assert calls[0][1].fingerprints() == boot.fingerprints()  # self-serving: the given bundle
    assert changed and states(store)["b.example"].parsed().fingerprints() == first.fingerprints()
    assert asyncio.run(refresher.refresh_due()) == []  # not due before the hint
    clock.now += 30
    asyncio.run(refresher.refresh_due())  # fails: the bundle held stays in force, error shown
    [row] = status_rows(federations(store), states(store), clock.now)
    assert row["inForce"] and row["failures"] == 1 and "down" in row["error"]
    assert row["sequence"] == 2 and row["nextAt"] == clock.now + 30
    assert calls[1][1].fingerprints() == first.fingerprints()  # authenticated by the latest
    clock.now += 30
    asyncio.run(refresher.refresh_due())  # an older sequence does not replace the held one
    assert states(store)["b.example"].parsed().sequence == 2
    clock.now += 30
    asyncio.run(refresher.refresh_due())
    held = states(store)["b.example"]
    assert held.parsed().sequence == 3 and held.next_at == clock.now + 60 and not held.error


def test_an_edited_document_is_fetched_at_once_and_its_bundle_is_the_latest(
    store: SqliteStore,
) -> None:
    clock, calls = Clock(), []  # type: ignore[var-annotated]
    boot, fetched, given = _bundle(1), _bundle(2, hint=3600), _bundle(5)
    _apply(store, boot)
    refresher, _ = _refresher(store, [fetched, BundleFetchError("down")], calls, clock)
    asyncio.run(refresher.refresh_due())
    _apply(store, given, url="https://b.example:8443/bundle")  # the operator fixes the URL
    in_force = bundles_in_force(federations(store), states(store), clock.now)
    assert in_force["b.example"] == given.to_pem()  # the bundle given by hand, at once
    assert asyncio.run(refresher.refresh_due()) == ["b.example"]  # not an hour later
    assert calls[-1] == ("https://b.example:8443/bundle", given)


def test_a_follower_fetches_nothing_and_expired_roots_leave(store: SqliteStore) -> None:
    clock, calls = Clock(), []  # type: ignore[var-annotated]
    boot = _bundle(1, days=1)
    _apply(store, boot)

    class Follower(SoleReplica):
        is_leader = False

    follower = Follower("f", str)
    refresher, _ = _refresher(store, [], calls, clock, replica=lambda: follower)
    assert asyncio.run(refresher.refresh_due()) == [] and calls == []
    now = pki.utcnow().timestamp()
    assert "b.example" in bundles_in_force(federations(store), states(store), now)
    later = now + 2 * 86_400  # the given bundle's only root has expired
    assert bundles_in_force(federations(store), states(store), later) == {}
    [row] = status_rows(federations(store), states(store), later)
    assert row["roots"] == 0 and not row["inForce"]
