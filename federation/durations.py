"""Go-style durations (``24h``, ``1h30m``, ``500ms``, ``7d``), as kubectl and Istio write them
in flags and documents, and RFC 3339 times (``2026-12-05T09:08:09Z``), as the Kubernetes API
writes them (``metav1.Time``). Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["format_duration", "parse_duration", "parse_rfc3339", "rfc3339"]

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration such as ``24h``, ``8760h``, ``1h30m``, ``90s``, ``500ms``, ``7d``.

    Raises:
        ValueError: empty, unknown unit, trailing garbage, or not positive.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f"{text!r} is not a duration (use e.g. 24h, 1h30m, 90s)")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not total > 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    try:
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any duration meshfed takes") from None


def format_duration(td: timedelta) -> str:
    """``timedelta(hours=24)`` -> ``24h0m0s`` style, the inverse of :func:`parse_duration`."""
    seconds = int(td.total_seconds())
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m}m{s}s"


def rfc3339(ts: float | None) -> str | None:
    """Seconds since the epoch as RFC 3339 in UTC, to the second (``2026-12-05T09:08:09Z``,
    as Kubernetes' ``metav1.Time``); None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """The inverse of :func:`rfc3339` (any RFC 3339 offset): seconds since the epoch.

    Raises:
        ValueError: not an RFC 3339 time.
    """
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text!r}: an RFC 3339 time has a zone (Z or +HH:MM)")
    return when.timestamp()
