"""Rates over a window are computed between the times a control plane read its counters,
not the times its reports reached the controller: a report held up in transit (a busy
controller, a slow link) must not bend a rate (the dashboard showed 18.4 req/s of a steady
16 in CI while a browser started on the same host)."""

from __future__ import annotations

import pytest

from federation.controller.traffic import CLOCK_SLACK_S, TrafficHistory, interval_s
from federation.traffic import Edge, TrafficTable

EDGE = Edge("east", "aws/us-east-1/a", "echo.demo", "east", "aws/us-east-1/a", "same-zone", "2xx")


def _table(requests: int, taken_at: float, started_at: float = 1000.0) -> TrafficTable:
    table = TrafficTable(started_at, taken_at=taken_at)
    for _ in range(requests):
        table.record(EDGE, 10, 10, 1.0, 0.0)
    return table


def _rps(history: TrafficHistory, now: float) -> float:
    _, rows = history.rates(10, now)
    [row] = rows
    return float(row["rps"])


def test_a_report_received_late_does_not_bend_the_rate() -> None:
    """16 req/s, counters read every 2 s (at 2000 + 2i s); the first two reports reached
    the controller 1.5 s and 0.5 s late. The window starts at the first: 10.5 s apart by
    receipt (18.3 req/s) but 12 s by what was counted (16 req/s)."""
    history = TrafficHistory()
    for i, received in enumerate([1.5, 2.5, 4.0, 6.0, 8.0, 10.0, 12.0]):
        history.add("east", _table(32 * i, 2000.0 + 2 * i), received)
    assert _rps(history, 12.0) == pytest.approx(16.0)


def test_the_receipt_times_are_used_when_the_read_times_cannot_be() -> None:
    # an older control plane sends no read time
    assert interval_s(_table(0, 0.0), _table(10, 0.0), 9.0) == 9.0
    # the counters restarted between the two
    assert interval_s(_table(0, 10.0, 1.0), _table(10, 20.0, 2.0), 9.0) == 9.0
    # the control plane's clock stepped between the two reports
    assert interval_s(_table(0, 10.0), _table(10, 3610.0), 9.0) == 9.0
    assert interval_s(_table(0, 10.0), _table(10, 5.0), 9.0) == 9.0
    # within the slack the read times win
    assert interval_s(_table(0, 10.0), _table(10, 20.0 + CLOCK_SLACK_S - 1), 10.0) == 14.0
