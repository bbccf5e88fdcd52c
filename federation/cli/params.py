"""Shared click parameter types and options."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import click


class InputError(click.ClickException):
    """Bad input on the command line: prints ``Error: <message>`` and exits with code 2."""

    exit_code = 2


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
    if total <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    """``timedelta(hours=24)`` -> ``24h0m0s`` style, the inverse of :func:`parse_duration`."""
    seconds = int(td.total_seconds())
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m}m{s}s"


class Duration(click.ParamType[timedelta]):
    """A click parameter holding a :class:`~datetime.timedelta` (see :func:`parse_duration`)."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


DURATION = Duration()


controller_option = click.option(
    "--controller",
    envvar="MESHFED_CONTROLLER",
    default=None,
    metavar="URL",
    help="Controller API, e.g. http://127.0.0.1:15080.  [default: from $MESHFED_HOME/config.yaml]",
)
