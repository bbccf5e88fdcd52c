"""Full garbage collections at quiet moments (federation/gc_pacing.py): CPython runs none of
its own while a collector is installed, the collector runs them when quiet, and cyclic
garbage is still freed."""

from __future__ import annotations

import gc
import weakref

import pytest

from federation.gc_pacing import NEVER, Pacing, QuietCollector, due

P = Pacing(quiet_s=2.0, min_interval_s=10.0, max_interval_s=60.0)


@pytest.mark.parametrize(
    ("now", "last_full", "last_activity", "promoted", "expected", "why"),
    [
        (100.0, 95.0, 50.0, 3, False, "a full collection 5 s ago (min interval 10 s)"),
        (100.0, 80.0, 99.0, 3, False, "a change 1 s ago: not quiet"),
        (100.0, 80.0, 97.0, 3, True, "quiet for 3 s, 20 s since the last one"),
        (100.0, 80.0, 50.0, 0, False, "nothing reached generation 2"),
        (100.0, 30.0, 99.9, 1, True, "70 s since the last one: due however busy"),
        (100.0, 30.0, 99.9, 0, False, "70 s, but nothing to collect"),
    ],
)
def test_when_a_full_collection_is_due(now, last_full, last_activity, promoted, expected, why):
    assert due(P, now, last_full, last_activity, promoted) is expected, why


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Node:
    """A weak-referenceable object to make cycles of."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _gen1_collections() -> None:
    """Enough allocations of surviving containers for CPython to run generation-1
    collections (which, without a collector, lead to a full one)."""
    kept = []
    for _ in range(60):
        kept.append([[] for _ in range(2_000)])
    del kept


def test_installed_cpython_runs_no_full_collection_and_the_collector_frees_cycles() -> None:
    generations: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            generations.append(info["generation"])

    clock = Clock()
    collector = QuietCollector(P, clock)
    before = gc.get_threshold()
    gc.callbacks.append(record)
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del b
        gc.collect()  # the cycle, still in use, is in generation 2 now
        collector.install()
        generations.clear()
        assert gc.get_threshold() == (before[0], before[1], NEVER)
        del a  # garbage now, which only a full collection can find
        for _ in range(30):
            _gen1_collections()
        assert 1 in generations and 2 not in generations  # young ones only
        assert ref() is not None  # the cycle waits for a full collection
        clock.now += 11
        collector.activity()
        assert not collector.collect_if_due()  # a change a moment ago
        clock.now += 3
        assert collector.collect_if_due() and collector.collections == 1
        assert ref() is None  # freed by the collector's full collection
        assert generations.count(2) == 1
    finally:
        gc.callbacks.remove(record)
        collector.uninstall()
    assert gc.get_threshold() == before
