"""Duration parsing for --ttl options."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("8760h", timedelta(days=365)),
        ("1h30m", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("7d", timedelta(days=7)),
    ],
)
def test_parse(text, expected) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "24", "24x", "1h junk", "0s", "-1h"])
def test_parse_rejects(text) -> None:
    with pytest.raises(ValueError, match=r"duration|positive"):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**7))
def test_format_round_trip(seconds: int) -> None:
    td = timedelta(seconds=seconds)
    assert parse_duration(format_duration(td)) == td
