"""Times as the Kubernetes API writes them (issue 41: "epoch floats instead of RFC 3339")."""

from __future__ import annotations

import pytest

from federation.durations import parse_rfc3339, rfc3339


def test_rfc3339_in_utc_to_the_second_and_back() -> None:
    assert rfc3339(1764925689.75) == "2025-12-05T09:08:09Z"
    assert rfc3339(None) is None
    assert parse_rfc3339("2025-12-05T09:08:09Z") == 1764925689.0
    assert parse_rfc3339("2025-12-05T10:08:09+01:00") == 1764925689.0


@pytest.mark.parametrize("text", ["2025-12-05T09:08:09", "yesterday", ""])
def test_a_time_without_a_zone_or_not_a_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)
