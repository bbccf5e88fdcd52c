"""The round-trip and loss matrix of ``meshfed up --isolate``. Pure.

A federation file may set, per pair of regions (either order; ``->`` reads "between")::

    spec:
      latency: {"aws/us-east-1 -> gcp/europe-west1": 85ms}   # round trip, ms (or "0.085s")
      loss:    {"aws/us-east-1 -> aws/eu-west-1": 0.5%}      # per packet, each direction

Pairs it does not name get the built-in figures of ``latency.yaml`` (published medians, with
their sources in that file), then the distance estimate of
:func:`providers.pricing.estimate_rtt_ms`; two clusters of one region are 1 ms apart (other
zone) or 0.2 ms (same zone). The link emulator delays each packet by half the round trip.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources

import yaml

from federation.lb.paths import site
from federation.model.locality import Locality
from providers.pricing import estimate_rtt_ms

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


def parse_rtt_ms(value: object) -> float:
    """``85ms``, ``0.085s`` or a bare number of ms -> ms.

    Raises:
        ValueError: not a duration, or above 10 s.
    """
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (e.g. 85ms)")
    ms = float(match.group(1)) * (1000 if match.group(2) == "s" else 1)
    if ms > 10_000:
        raise ValueError(f"{value!r}: a round trip above 10 s is not a network")
    return ms


def parse_loss(value: object) -> float:
    """``0.5%`` or a bare number of percent -> a probability (0-1).

    Raises:
        ValueError: not a percentage, or above 100 %.
    """
    match = _PERCENT.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a percentage (e.g. 0.5%)")
    percent = float(match.group(1))
    if percent > 100:
        raise ValueError(f"{value!r}: loss above 100 %")
    return percent / 100


def parse_pair(key: str) -> frozenset[str]:
    """``"aws/us-east-1 -> gcp/europe-west1"`` -> the two regions.

    Raises:
        ValueError: not ``<cloud>/<region> -> <cloud>/<region>``, or a region with itself.
    """
    left, sep, right = key.partition("->")
    regions = [left.strip(), right.strip()]
    if not sep or not all(re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+", r) for r in regions):
        raise ValueError(f"{key!r}: write <cloud>/<region> -> <cloud>/<region>")
    if regions[0] == regions[1]:
        raise ValueError(f"{key!r}: give two different regions")
    return frozenset(regions)


@functools.cache
def _builtin() -> tuple[float, float, dict[frozenset[str], float]]:
    raw = yaml.safe_load(resources.files(__package__).joinpath("latency.yaml").read_text())
    pairs = {parse_pair(k): float(v) for k, v in raw["pairs"].items()}
    return float(raw["sameZoneMs"]), float(raw["crossZoneMs"]), pairs


def default_rtt_ms(a: Locality, b: Locality) -> float:
    """The built-in round trip (ms) between two localities (see the module docstring); 150 ms
    for two regions neither table nor estimate knows (a long intercontinental path)."""
    same_zone, cross_zone, pairs = _builtin()
    if a.region == b.region:
        return same_zone if a.zone == b.zone else cross_zone
    published = pairs.get(frozenset((a.region, b.region)))
    if published is not None:
        return published
    estimate = estimate_rtt_ms(site(a), site(b))
    return round(estimate, 1) if estimate is not None else 150.0


def rtt_ms(a: Locality, b: Locality, overrides: Mapping[frozenset[str], float]) -> float:
    """Round trip (ms) between ``a`` and ``b``: the federation file's figure for their regions
    when it gives one, else :func:`default_rtt_ms`."""
    given = overrides.get(frozenset((a.region, b.region)))
    return given if given is not None and a.region != b.region else default_rtt_ms(a, b)
