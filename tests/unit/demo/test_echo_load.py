"""The demo echo's load model (``--max-rps``, ``--busy-ms``): what the headroom learner
(federation.lb.headroom) is tested against -- a zone whose latency rises with load."""

from __future__ import annotations

import pytest

from federation.demo.echo_http import BUSY_CAP, RateMeter, TokenBucket, busy_delay_ms


def test_service_time_rises_with_load_as_a_queues_does() -> None:
    assert busy_delay_ms(5, 0.0) == 0.0
    assert busy_delay_ms(5, 0.5) == pytest.approx(5.0)
    assert busy_delay_ms(5, 0.8) == pytest.approx(20.0)
    assert busy_delay_ms(5, 0.9) == pytest.approx(45.0)
    capped = busy_delay_ms(5, BUSY_CAP)
    assert busy_delay_ms(5, 3.0) == capped == pytest.approx(95.0)  # never unbounded
    assert busy_delay_ms(5, -1.0) == 0.0
    assert busy_delay_ms(0, 0.9) == 0.0  # no --busy-ms: no added time


def test_the_rate_meter_counts_the_last_second_and_the_bucket_sheds_beyond_it() -> None:
    now = [100.0]
    meter = RateMeter(lambda: now[0])
    rates = []
    for _ in range(30):  # 1/16 s apart (exact in binary): 16 per second after a second
        rates.append(meter.hit())
        now[0] += 0.0625
    assert rates[:3] == [1.0, 2.0, 3.0] and rates[-1] == 16.0
    now[0] += 5
    assert meter.hit() == 1.0  # the old ones aged out
    longer = RateMeter(lambda: now[0], window_s=4.0)
    for _ in range(8):  # a burst of 8 at once counts as 2 per second over the window
        burst = longer.hit()
    assert burst == 2.0
    bucket = TokenBucket(10, 1.0, lambda: now[0])
    assert sum(bucket.take() for _ in range(15)) == 10  # a burst of one second, then shed
