"""The federation's traffic as the control planes report it: the latest table of every
cluster and a short history to compute rates from. In memory only: counters are cumulative
at their control plane, so a restarted controller has rates again one report later.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from federation.traffic import DEFAULT_GROUP, TrafficTable, edge_rates, hop_rates

#: How much history is kept per cluster (s); the longest window :meth:`rates` can give.
HISTORY_S = 300.0
#: A cluster whose last table is older than the window plus this (s) has no current rates.
STALE_S = 10.0
#: How far (s) the control plane's clock may disagree with the controller's about the time
#: between two of its reports before :func:`interval_s` trusts the controller's instead.
CLOCK_SLACK_S = 5.0


class TrafficHistory:
    """cluster -> ``(time, table)`` snapshots, oldest first, at most :data:`HISTORY_S` old."""

    def __init__(self) -> None:
        self._snapshots: dict[str, deque[tuple[float, TrafficTable]]] = {}

    def add(self, cluster: str, table: TrafficTable, now: float) -> None:
        """Keep the table ``cluster`` reported at ``now`` (monotonic s)."""
        history = self._snapshots.setdefault(cluster, deque())
        history.append((now, table))
        while history and now - history[0][0] > HISTORY_S:
            history.popleft()

    def forget(self, cluster: str) -> None:
        """Drop a removed cluster's traffic."""
        self._snapshots.pop(cluster, None)

    def latest(self) -> list[TrafficTable]:
        """The latest table of every cluster."""
        return [h[-1][1] for _, h in sorted(self._snapshots.items()) if h]

    def rates(
        self, window_s: float, now: float, by: Sequence[str] = DEFAULT_GROUP
    ) -> tuple[float, list[dict[str, Any]]]:
        """Rates over about the last ``window_s`` seconds, every cluster's edges together
        (:func:`federation.traffic.edge_rates`).

        Returns:
            ``(seconds, rows)``: the longest window actually used (s; shorter than asked
            while history is short, 0 without two snapshots) and the rows.
        """
        rows: list[dict[str, Any]] = []
        used = 0.0
        for start, end, seconds in self._windows(window_s, now):
            used = max(used, seconds)
            rows.extend(edge_rates(start, end, seconds, by))
        return used, rows

    def hop_rates(self, window_s: float, now: float) -> list[dict[str, Any]]:
        """Gateway-hop rates over about the last ``window_s`` seconds, every cluster's
        (:func:`federation.traffic.hop_rates`)."""
        rows: list[dict[str, Any]] = []
        for start, end, seconds in self._windows(window_s, now):
            rows.extend(hop_rates(start, end, seconds))
        return rows

    def _windows(
        self, window_s: float, now: float
    ) -> Iterator[tuple[TrafficTable, TrafficTable, float]]:
        """Per cluster reporting now, ``(first snapshot, last, seconds between)`` over about
        the last ``window_s`` seconds (clusters with less than two snapshots are left out)."""
        for cluster in sorted(self._snapshots):
            history = self._snapshots[cluster]
            if not history:
                continue
            end_t, end = history[-1]
            if now - end_t > window_s + STALE_S:
                continue  # its control plane stopped reporting: no current rate
            start_t, start = history[0]
            for t, table in history:
                if end_t - t >= window_s:
                    start_t, start = t, table
                else:
                    break
            seconds = interval_s(start, end, end_t - start_t)
            if seconds > 0:
                yield start, end, seconds


def interval_s(start: TrafficTable, end: TrafficTable, received_s: float) -> float:
    """Seconds between two tables of one cluster (``received_s`` apart at the controller):
    between the times their control plane read them (``taken_at``) when both carry one of
    the same counting run and those times agree with ``received_s`` to within
    :data:`CLOCK_SLACK_S` -- a report delayed in transit or queued at a busy controller then
    does not bend the rate. Otherwise (an older control plane, a clock stepped between the
    two) ``received_s``."""
    taken_s = end.taken_at - start.taken_at
    if (
        start.taken_at > 0
        and start.started_at == end.started_at
        and taken_s > 0
        and abs(taken_s - received_s) <= CLOCK_SLACK_S
    ):
        return taken_s
    return received_s
