"""Egress price tables and path classes: what one GB costs to carry between two places.

A *site* is ``(cloud, region, zone)`` with the cloud-qualified names meshfed uses
(``aws``, ``us-east-1``, ``us-east-1a``). Prices are US$ per GB (per GiB for GCP, as Google
bills) for bytes sent **from the serving site to the calling site** -- responses dominate
request/response traffic -- billed by the serving site's cloud:

================================  =============================================================
path class                        when
================================  =============================================================
``same-zone``                     same cloud, region and zone
``cross-zone``                    same cloud and region, other zone
``cross-region``                  same cloud, other region on the same continent
``cross-continent``               same cloud, other region on another continent
``cross-cloud``                   another cloud: the serving cloud's internet egress rate
================================  =============================================================

Built-in tables (``aws.yaml``, ``gcp.yaml`` next to this module) name their source page and
the date they were read; a ``PriceTable`` document overrides a cloud's rates. A cloud without
a table (e.g. ``local``) is free, and says so in its source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

from providers.errors import PricingError

PathClass = Literal["same-zone", "cross-zone", "cross-region", "cross-continent", "cross-cloud"]
PATH_CLASSES: tuple[PathClass, ...] = (
    "same-zone",
    "cross-zone",
    "cross-region",
    "cross-continent",
    "cross-cloud",
)
_FIELD = {
    "same-zone": "same_zone",
    "cross-zone": "cross_zone",
    "cross-region": "cross_region_same_continent",
    "cross-continent": "cross_region_other_continent",
    "cross-cloud": "internet",
}


@dataclass(frozen=True, slots=True)
class Site:
    """Where endpoints run: ``cloud`` (``aws``), ``region`` (``us-east-1``), ``zone``."""

    cloud: str
    region: str
    zone: str = ""


@dataclass(frozen=True, slots=True)
class PriceTable:
    """One cloud's rates in US$ per GB by path class (see the module docstring).

    Attributes:
        usd_per_gb: path class -> rate for the default source continent.
        continent_overrides: source continent -> path class -> rate, where a cloud charges more.
        source: where the numbers come from (URL, or "PriceTable <name>").
        read_on: the date the source was read (ISO 8601).
        pairs: ``(from region, to region or "internet") -> rate``, which wins over the path
            class's rate (the same region twice: across zones).
        discount: multiplies every rate (a negotiated discount; 1.0 = list price).
    """

    cloud: str
    usd_per_gb: Mapping[str, float]
    source: str
    read_on: str
    continent_overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    pairs: Mapping[tuple[str, str], float] = field(default_factory=dict)
    discount: float = 1.0

    def rate(self, path: PathClass, source_continent: str | None) -> float:
        """US$/GB for ``path`` when the bytes leave a region on ``source_continent``."""
        override = self.continent_overrides.get(source_continent or "", {})
        return float(override.get(path, self.usd_per_gb[path])) * self.discount

    def pair_rate(self, from_region: str, to: str) -> float | None:
        """US$/GB of bytes leaving ``from_region`` for region ``to`` (or ``internet``), when
        the table names that pair; None otherwise."""
        rate = self.pairs.get((from_region, to))
        return None if rate is None else rate * self.discount

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str) -> PriceTable:
        """Parse the YAML shape of ``aws.yaml`` (rates keyed by ``same_zone``, ...).

        Raises:
            PricingError: a rate is missing or negative (the message names the field).
        """
        rates: dict[str, float] = {}
        for path, key in _FIELD.items():
            value = data.get(key)
            if not isinstance(value, int | float) or value < 0 or math.isnan(value):
                raise PricingError(f"{where}: {key}: must be a number >= 0 (US$/GB), got {value!r}")
            rates[path] = float(value)
        overrides: dict[str, dict[str, float]] = {}
        for continent, values in (data.get("continent_overrides") or {}).items():
            overrides[continent] = {}
            for path, key in _FIELD.items():
                if key in values:
                    value = values[key]
                    if not isinstance(value, int | float) or value < 0:
                        raise PricingError(
                            f"{where}: continent_overrides.{continent}.{key}: must be >= 0"
                        )
                    overrides[continent][path] = float(value)
        return cls(
            cloud=str(data.get("cloud", "")),
            usd_per_gb=rates,
            source=str(data.get("source", where)),
            read_on=str(data.get("read_on", "")),
            continent_overrides=overrides,
        )


@dataclass(frozen=True, slots=True)
class RegionInfo:
    """A region's continent and its metro's coordinates (degrees)."""

    continent: str
    city: str
    lat: float
    lon: float


def _load_yaml(name: str) -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath(name).read_text())


@cache
def builtin_tables() -> dict[str, PriceTable]:
    """The shipped tables by cloud (``aws``, ``gcp``)."""
    tables = {}
    for name in ("aws.yaml", "gcp.yaml"):
        table = PriceTable.from_mapping(_load_yaml(name), where=f"providers/pricing/{name}")
        tables[table.cloud] = table
    return tables


@cache
def regions() -> dict[tuple[str, str], RegionInfo]:
    """``(cloud, region) -> RegionInfo`` from ``regions.yaml``."""
    out = {}
    for cloud, entries in _load_yaml("regions.yaml").items():
        for region, info in entries.items():
            out[(cloud, region)] = RegionInfo(
                info["continent"], info["city"], float(info["lat"]), float(info["lon"])
            )
    return out


def continent(site: Site) -> str | None:
    """The continent of a site's region, or None for a region meshfed does not know."""
    info = regions().get((site.cloud, site.region))
    return info.continent if info else None


def path_class(server: Site, client: Site) -> PathClass:
    """The path class of bytes from ``server`` to ``client`` (see the module table).

    An unknown region counts as another continent (the dearer guess).
    """
    if server.cloud != client.cloud:
        return "cross-cloud"
    if server.region == client.region:
        return "same-zone" if server.zone == client.zone else "cross-zone"
    a, b = continent(server), continent(client)
    return "cross-region" if a is not None and a == b else "cross-continent"


def free_table(cloud: str) -> PriceTable:
    """The table of a cloud without prices (e.g. ``local``): every path costs $0."""
    return PriceTable(
        cloud, dict.fromkeys(PATH_CLASSES, 0.0), f"no price table for cloud {cloud!r}: free", ""
    )


@dataclass(frozen=True, slots=True)
class PathPrice:
    """The price of one path: ``usd_per_gb``, its ``path`` class and the table's ``source``."""

    usd_per_gb: float
    path: PathClass
    source: str


def path_price(
    server: Site, client: Site, overrides: Mapping[str, PriceTable] | None = None
) -> PathPrice:
    """US$/GB to carry bytes from ``server`` to ``client``, billed by ``server``'s cloud: the
    table's rate for the region pair when it has one (``internet`` for another cloud; none
    within a zone), else its rate for the path class.

    ``overrides`` (cloud -> table, from PriceTable documents) win over the built-in tables.
    """
    path = path_class(server, client)
    table = (overrides or {}).get(server.cloud) or builtin_tables().get(server.cloud)
    if table is None:
        table = free_table(server.cloud)
    to = "internet" if path == "cross-cloud" else client.region
    pair = None if path == "same-zone" else table.pair_rate(server.region, to)
    usd = pair if pair is not None else table.rate(path, continent(server))
    return PathPrice(usd, path, table.source)


def with_rates(table: PriceTable, rates: Mapping[str, float], source: str) -> PriceTable:
    """``table`` with some path-class rates replaced (for PriceTable documents)."""
    return replace(table, usd_per_gb={**table.usd_per_gb, **rates}, source=source)


#: RTT estimate model: light in fibre covers ~200 km per ms; real routes are ~1.5x longer
#: than the great circle; plus a fixed 1 ms for switching and the gateways.
_FIBRE_KM_PER_MS = 200.0
_ROUTE_FACTOR = 1.5
_BASE_MS = 1.0
#: Typical round trips inside one region (ms): same zone, across zones.
SAME_ZONE_RTT_MS = 0.2
CROSS_ZONE_RTT_MS = 1.0


def _great_circle_km(a: RegionInfo, b: RegionInfo) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def estimate_rtt_ms(a: Site, b: Site) -> float | None:
    """Estimated round-trip time (ms) between two sites from their regions' coordinates.

    Same region: 0.2 ms (same zone) or 1 ms (cross zone). Otherwise
    ``1 ms + 2 * distance * 1.5 / (200 km/ms)``: us-east-1 <-> eu-west-1 gives about 83 ms,
    us-east-1 <-> gcp us-east4 about 1 ms. None when a region is unknown.
    """
    if a.cloud == b.cloud and a.region == b.region:
        return SAME_ZONE_RTT_MS if a.zone == b.zone else CROSS_ZONE_RTT_MS
    ra, rb = regions().get((a.cloud, a.region)), regions().get((b.cloud, b.region))
    if ra is None or rb is None:
        return None
    return _BASE_MS + 2 * _great_circle_km(ra, rb) * _ROUTE_FACTOR / _FIBRE_KM_PER_MS
