"""What a path costs and how far it is: the one place that prices and times a path. Pure.

A *path* runs from the serving locality (where the response bytes leave) to the caller's.
Its price is the serving cloud's egress rate for the path class (US$/GB,
:mod:`providers.pricing`, built-in tables with their source page and date, overridden by
``PriceTable`` documents); its round trip is the control plane's measurement to the serving
cluster's gateway when one exists, else an estimate from the regions' coordinates
(:func:`providers.pricing.estimate_rtt_ms`), else unknown.

Used by the EDS generator (through :func:`path_facts`), by ``meshfed status`` (through
:func:`egress_usd_per_hour`) and by the RTT prober (:func:`rtts_for_decisions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from federation.model.locality import Locality
from federation.model.policy import PriceTable as PriceTableDocument
from federation.netaddr import is_loopback
from providers.pricing import (
    PriceTable,
    Site,
    builtin_tables,
    estimate_rtt_ms,
    free_table,
    path_price,
    with_rates,
)

RttSource = Literal["measured", "estimated", "unknown"]
#: Bytes in the GB that egress is billed by (10^9; GCP bills per GiB, which its table states).
BYTES_PER_GB = 1e9


@dataclass(frozen=True, slots=True)
class PathFacts:
    """Price and distance of one path.

    Attributes:
        usd_per_gb: egress price of the response bytes (US$/GB).
        path: path class (``same-zone`` ... ``cross-cloud``).
        price_source: where the rate comes from (price page URL, or ``PriceTable <name>``).
        rtt_ms: round trip (ms), None when unknown.
        rtt_source: ``measured``, ``estimated`` or ``unknown``.
    """

    usd_per_gb: float
    path: str
    price_source: str
    rtt_ms: float | None
    rtt_source: RttSource


def site(locality: Locality) -> Site:
    """The pricing site of a locality (``aws/us-east-1/us-east-1a`` -> aws, us-east-1, ...)."""
    return Site(locality.cloud, locality.region.split("/", 1)[-1], locality.zone)


def price_tables(documents: Iterable[PriceTableDocument]) -> dict[str, PriceTable]:
    """cloud -> table for the ``PriceTable`` documents in force (each overrides the rates and
    region pairs it names of its cloud's built-in table, or of a free table for a cloud
    without one, and sets its discount)."""
    out: dict[str, PriceTable] = {}
    for doc in documents:
        cloud, spec = doc.spec.cloud, doc.spec
        base = out.get(cloud) or builtin_tables().get(cloud) or free_table(cloud)
        rates = {str(k): v for k, v in spec.usd_per_gb.items()}
        table = with_rates(base, rates, f"PriceTable {doc.metadata.name}")
        out[cloud] = replace(
            table,
            read_on=spec.read_on or table.read_on,
            pairs={
                **table.pairs,
                **{(r.from_region, r.to): r.usd_per_gb for r in spec.region_pairs},
            },
            discount=spec.discount,
        )
    return out


def tables_in_force(documents: Iterable[PriceTableDocument]) -> dict[str, PriceTable]:
    """cloud -> the table in force: the built-in tables, with the ``PriceTable`` documents'
    rates over them (:func:`price_tables`)."""
    return {**builtin_tables(), **price_tables(documents)}


def path_facts(
    caller: Locality,
    server: Locality,
    *,
    measured_rtt_ms: float | None = None,
    prices: Mapping[str, PriceTable] | None = None,
) -> PathFacts:
    """Price and round trip of the path from ``server`` to ``caller``.

    Args:
        measured_rtt_ms: the control plane's measurement (ms) to the serving cluster, if any
            (never for the caller's own cluster); preferred over the estimate.
        prices: overriding tables by cloud (:func:`price_tables`); built-in otherwise.
    """
    here, there = site(caller), site(server)
    price = path_price(there, here, prices)
    rtt: float | None = measured_rtt_ms
    source: RttSource = "measured"
    if rtt is None:
        rtt = estimate_rtt_ms(here, there)
        source = "estimated" if rtt is not None else "unknown"
    return PathFacts(price.usd_per_gb, price.path, price.source, rtt, source)


def egress_usd_per_hour(bytes_per_s: float, usd_per_gb: float) -> float:
    """Egress dollars per hour of a steady ``bytes_per_s`` at ``usd_per_gb``."""
    return bytes_per_s * 3600 / BYTES_PER_GB * usd_per_gb


def rtts_for_decisions(
    current: Mapping[str, float], measured: Mapping[str, float], gateways: Mapping[str, str]
) -> dict[str, float]:
    """The RTTs (ms by cluster) load balancing should use, from the latest measurements.

    Gateways on loopback are left out: on one machine (``meshfed up``, tests) the probe
    measures the machine, not the path, and the estimate from the regions' distance is the
    better figure. A value changes only when it moves by more than 20 % and 1 ms (hysteresis:
    every change rebuilds the proxies' configuration).
    """
    out: dict[str, float] = {}
    for cluster, rtt in measured.items():
        host = gateways.get(cluster, "").rpartition(":")[0].strip("[]")
        if not host or is_loopback(host):
            continue
        old = current.get(cluster)
        if old is not None and abs(rtt - old) <= max(1.0, 0.2 * old):
            out[cluster] = old
        else:
            out[cluster] = round(rtt, 1)
    return out
