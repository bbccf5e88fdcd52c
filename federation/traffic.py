"""Request traffic counted per edge: who called which service, where it was served, what it
cost. Pure values and arithmetic; no I/O.

An **edge** (:class:`Edge`) is one (source cluster, source locality, destination service,
destination cluster, destination locality, path class, response code class). Its
:class:`Counters` are cumulative from :attr:`TrafficTable.started_at` (the start of the
control plane that counts them): requests; request and response bytes as the caller's Envoy
counted them on its upstream connection (headers and body, HTTP/2 framing included, TLS
records and TCP/IP headers not: Envoy's ``upstream_wire_bytes_sent|received``); egress US$
(request bytes at the price of the path caller -> server plus response bytes at the price of
server -> caller, each at the price table in force when the request ended); and a histogram
of Envoy's request duration (ms, :data:`DURATION_BUCKETS_MS`).

A **gateway hop** (:class:`GatewayHop`) is the leg inside a serving cluster from its east-west
gateway to the sidecar it forwarded a connection to: the caller's edge prices caller ->
server, but when the gateway sits in another zone than that sidecar the bytes cross zones a
second time, billed on their own. Its :class:`Counters` come from the gateway's Envoy
(``tcp_proxy`` upstream wire bytes per connection, :mod:`federation.agent.tap`):
``requests`` counts connections, ``request_bytes`` the bytes forwarded to the sidecar,
``response_bytes`` those it answered (TLS records included: the gateway never opens them),
``egress_usd`` their price on the path gateway <-> sidecar; no durations.

Control planes count (:mod:`federation.controlplane.telemetry`) and send their table with
their sync reports; the controller keeps a short history per cluster. Both expose the same
Prometheus families (:class:`TrafficCollector`) and the controller turns two snapshots into
rates (:func:`edge_rates`) for ``meshfed status`` and the dashboard.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from providers.pricing import PriceTable

#: Upper bounds (ms) of the request-duration histogram's buckets (an implicit +Inf follows).
#: Fine below 100 ms (same-region paths), coarser up to 10 s.
DURATION_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400,
    500, 750, 1000, 2500, 5000, 10000,
)  # fmt: skip

#: Response code classes; ``none`` is a request that got no response code (the caller went
#: away, or the stream was reset before any answer).
CODE_CLASSES = ("2xx", "3xx", "4xx", "5xx", "1xx", "none")
#: The classes counted as errors (``errorShare``): the server failed or nothing answered.
ERROR_CLASSES = frozenset({"5xx", "none"})


def code_class(code: int) -> str:
    """``503 -> "5xx"``; 0 (no response) -> ``"none"``."""
    return f"{code // 100}xx" if 100 <= code < 600 else "none"


@dataclass(frozen=True, slots=True, order=True)
class Edge:
    """Who called what, served where (labels of every traffic metric, in this order).

    Attributes:
        source_cluster / source_locality: the caller's member cluster and
            ``<cloud>/<region>/<zone>``.
        destination_service: ``<name>.<namespace>`` of the service called.
        destination_cluster / destination_locality: where the answer came from (the
            ``x-meshfed-served-by`` header the serving sidecar adds); ``unknown`` when no
            sidecar answered (e.g. Envoy's own 503 with no healthy upstream).
        path_class: ``same-zone`` ... ``cross-cloud`` (:mod:`providers.pricing`), ``unknown``
            with the destination.
        response_code_class: one of :data:`CODE_CLASSES`.
    """

    source_cluster: str
    source_locality: str
    destination_service: str
    destination_cluster: str
    destination_locality: str
    path_class: str
    response_code_class: str

    def values(self) -> list[str]:
        """The label values, in :data:`EDGE_LABELS` order."""
        return [getattr(self, name) for name in EDGE_LABELS]


EDGE_LABELS: tuple[str, ...] = tuple(f.name for f in fields(Edge))
#: Labels of the egress families: the path, not the service or the answer.
EGRESS_LABELS = (
    "source_cluster",
    "source_locality",
    "destination_cluster",
    "destination_locality",
    "path_class",
)


@dataclass(frozen=True, slots=True, order=True)
class GatewayHop:
    """The leg from a cluster's east-west gateway to the sidecar it forwarded to (labels of
    the ``meshfed_gateway_hop_*`` families, in this order).

    Attributes:
        cluster: the serving cluster (the gateway's and the sidecar's).
        gateway_locality: the gateway's ``<cloud>/<region>/<zone>`` (a zone-local gateway's
            zone; the main gateway's own locality).
        destination_service: ``<name>.<namespace>``.
        destination_locality: the sidecar's locality; ``unknown`` for an address that is no
            workload of the cluster's registry (one removed since).
        path_class: ``same-zone`` when the hop stays in the gateway's zone, ``cross-zone``
            when it is billed (:mod:`providers.pricing`), ``unknown`` with the destination.
    """

    cluster: str
    gateway_locality: str
    destination_service: str
    destination_locality: str
    path_class: str

    def values(self) -> list[str]:
        """The label values, in :data:`HOP_LABELS` order."""
        return [getattr(self, name) for name in HOP_LABELS]


HOP_LABELS: tuple[str, ...] = tuple(f.name for f in fields(GatewayHop))


def _buckets() -> list[int]:
    return [0] * (len(DURATION_BUCKETS_MS) + 1)


@dataclass(slots=True)
class Counters:
    """Cumulative counters of one edge.

    Attributes:
        requests: requests ended.
        request_bytes / response_bytes: bytes sent to / received from the server (see the
            module docstring for what is counted).
        egress_usd: US$ of those bytes at their paths' prices.
        duration_ms_sum: sum of request durations (ms).
        buckets: request count per duration bucket (not cumulative; the last is +Inf).
        retries: attempts beyond each request's first (Envoy's
            ``%UPSTREAM_REQUEST_ATTEMPT_COUNT%`` - 1): each one an attempt that failed and
            was retried, which the caller did not see.
    """

    requests: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    egress_usd: float = 0.0
    duration_ms_sum: float = 0.0
    buckets: list[int] = field(default_factory=_buckets)
    retries: int = 0

    def add(
        self,
        request_bytes: int,
        response_bytes: int,
        duration_ms: float,
        usd: float,
        retries: int = 0,
    ) -> None:
        """Count one request (``retries``: its attempts beyond the first)."""
        self.requests += 1
        self.retries += retries
        self.request_bytes += request_bytes
        self.response_bytes += response_bytes
        self.egress_usd += usd
        self.duration_ms_sum += duration_ms
        self.buckets[bisect.bisect_left(DURATION_BUCKETS_MS, duration_ms)] += 1

    def merge(self, other: Counters, sign: int = 1) -> None:
        """Add (``sign`` 1) or subtract (-1) ``other``'s counts."""
        self.requests += sign * other.requests
        self.retries += sign * other.retries
        self.request_bytes += sign * other.request_bytes
        self.response_bytes += sign * other.response_bytes
        self.egress_usd += sign * other.egress_usd
        self.duration_ms_sum += sign * other.duration_ms_sum
        for i, n in enumerate(other.buckets):
            self.buckets[i] += sign * n

    def copy(self) -> Counters:
        """An independent copy."""
        return replace(self, buckets=list(self.buckets))

    def histogram(self) -> list[tuple[str, int]]:
        """The duration histogram as Prometheus buckets: ``(le in seconds, cumulative
        count)``, ``+Inf`` last."""
        out, running = [], 0
        for bound, n in zip((*DURATION_BUCKETS_MS, float("inf")), self.buckets, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound / 1000), running))
        return out


@dataclass(slots=True)
class TrafficTable:
    """One control plane's counters: edge -> :class:`Counters` and gateway hop ->
    :class:`Counters` (``requests``: connections), cumulative since ``started_at`` (Unix s;
    a new value means the counters restarted from zero); ``taken_at``: Unix s its control
    plane read them to send (its own clock; 0 when unknown), which rates are computed from
    (:meth:`federation.controller.traffic.TrafficHistory.rates`)."""

    started_at: float
    edges: dict[Edge, Counters] = field(default_factory=dict)
    hops: dict[GatewayHop, Counters] = field(default_factory=dict)
    taken_at: float = 0.0

    def record(
        self, edge: Edge, request_bytes: int, response_bytes: int, duration_ms: float, usd: float
    ) -> None:
        """Count one request on ``edge``."""
        counters = self.edges.get(edge)
        if counters is None:
            counters = self.edges[edge] = Counters()
        counters.add(request_bytes, response_bytes, duration_ms, usd)

    def copy(self, taken_at: float | None = None) -> TrafficTable:
        """An independent copy (a snapshot to send or keep), read at ``taken_at`` (Unix s;
        None keeps this table's)."""
        return TrafficTable(
            self.started_at,
            {e: c.copy() for e, c in self.edges.items()},
            {h: c.copy() for h, c in self.hops.items()},
            self.taken_at if taken_at is None else taken_at,
        )


def quantile_ms(q: float, buckets: Sequence[int]) -> float | None:
    """The ``q`` quantile (0-1) of a duration histogram (per-bucket counts), interpolated
    linearly inside its bucket as Prometheus' ``histogram_quantile`` does; the last finite
    bound when it falls in +Inf; None for an empty histogram."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n > 0 and seen + n >= rank:
            if i == len(DURATION_BUCKETS_MS):
                return DURATION_BUCKETS_MS[-1]
            low = DURATION_BUCKETS_MS[i - 1] if i else 0.0
            high = DURATION_BUCKETS_MS[i]
            return low + (high - low) * (rank - seen) / n
        seen += n
    return DURATION_BUCKETS_MS[-1]


#: What :func:`edge_rates` groups by unless told otherwise.
DEFAULT_GROUP = ("source_cluster", "destination_service", "destination_cluster")


def edge_rates(
    old: TrafficTable | None,
    new: TrafficTable,
    seconds: float,
    by: Sequence[str] = DEFAULT_GROUP,
) -> list[dict[str, Any]]:
    """Rates between two snapshots of one cluster's table, grouped by the labels ``by``.

    Args:
        old: the earlier snapshot (None, or another ``started_at``: counted from zero).
        new: the later snapshot.
        seconds: time between them (s, > 0).
        by: labels of :class:`Edge` to group by (the others are summed).

    Returns:
        Per group, sorted by its labels: the labels, and ``requests`` (in the window), ``rps``,
        ``share`` (of the requests of the same source cluster and service; 0-1),
        ``errorShare`` (5xx and no-response, 0-1), ``retries`` (failed attempts retried
        unseen by the caller, in the window), ``p50Ms`` / ``p99Ms`` (None without
        requests), ``requestBytesPerS``, ``responseBytesPerS``, ``usdPerHour``.
    """
    base = old.edges if old is not None and old.started_at == new.started_at else {}
    groups: dict[tuple[str, ...], Counters] = {}
    errors: dict[tuple[str, ...], int] = {}
    paths: dict[tuple[str, ...], set[str]] = {}
    for edge, counters in new.edges.items():
        delta = counters.copy()
        if edge in base:
            delta.merge(base[edge], -1)
        if delta.requests <= 0:
            continue
        key = tuple(getattr(edge, name) for name in by)
        groups.setdefault(key, Counters()).merge(delta)
        paths.setdefault(key, set()).add(edge.path_class)
        if edge.response_code_class in ERROR_CLASSES:
            errors[key] = errors.get(key, 0) + delta.requests
    totals: dict[tuple[str, str], int] = {}
    for key, c in groups.items():
        labels = dict(zip(by, key, strict=True))
        caller = (labels.get("source_cluster", ""), labels.get("destination_service", ""))
        totals[caller] = totals.get(caller, 0) + c.requests
    rows = []
    per_s = 1.0 / max(seconds, 1e-9)
    for key in sorted(groups):
        c = groups[key]
        labels = dict(zip(by, key, strict=True))
        caller = (labels.get("source_cluster", ""), labels.get("destination_service", ""))
        rows.append(
            {
                **labels,
                "requests": c.requests,
                "rps": c.requests * per_s,
                "share": c.requests / totals[caller],
                "errorShare": errors.get(key, 0) / c.requests,
                "retries": c.retries,
                "p50Ms": quantile_ms(0.5, c.buckets),
                "p99Ms": quantile_ms(0.99, c.buckets),
                "requestBytesPerS": c.request_bytes * per_s,
                "responseBytesPerS": c.response_bytes * per_s,
                "usdPerHour": c.egress_usd * per_s * 3600,
                "pathClasses": sorted(paths[key]),
            }
        )
    return rows


def hop_rates(old: TrafficTable | None, new: TrafficTable, seconds: float) -> list[dict[str, Any]]:
    """Gateway-hop rates between two snapshots of one cluster's table (as
    :func:`edge_rates`), one row per :class:`GatewayHop` that carried bytes in the window,
    sorted: its labels (camelCase), ``connections`` (opened in the window),
    ``bytesToEndpoint`` / ``bytesFromEndpoint`` (in the window), their rates
    ``bytesToEndpointPerS`` / ``bytesFromEndpointPerS`` and ``usdPerHour``."""
    base = old.hops if old is not None and old.started_at == new.started_at else {}
    per_s = 1.0 / max(seconds, 1e-9)
    rows = []
    for hop in sorted(new.hops):
        delta = new.hops[hop].copy()
        if hop in base:
            delta.merge(base[hop], -1)
        if delta.request_bytes + delta.response_bytes <= 0 and delta.requests <= 0:
            continue
        rows.append(
            {
                "cluster": hop.cluster,
                "gatewayLocality": hop.gateway_locality,
                "destinationService": hop.destination_service,
                "destinationLocality": hop.destination_locality,
                "pathClass": hop.path_class,
                "connections": delta.requests,
                "bytesToEndpoint": delta.request_bytes,
                "bytesFromEndpoint": delta.response_bytes,
                "bytesToEndpointPerS": delta.request_bytes * per_s,
                "bytesFromEndpointPerS": delta.response_bytes * per_s,
                "usdPerHour": delta.egress_usd * per_s * 3600,
            }
        )
    return rows


class TrafficCollector(Collector):
    """Prometheus families of the tables ``tables()`` returns at each scrape:

    - ``meshfed_requests_total``, ``meshfed_request_bytes_total``,
      ``meshfed_response_bytes_total`` and the histogram ``meshfed_request_duration_seconds``,
      labelled with :data:`EDGE_LABELS`;
    - ``meshfed_egress_bytes_total`` (request plus response bytes) and
      ``meshfed_egress_usd_total``, labelled with :data:`EGRESS_LABELS`;
    - ``meshfed_price_table_info{cloud, source, read_on}`` (1) for each price table in force
      that ``prices()`` returns: where the dollars' rates come from and when it was read;
    - ``meshfed_gateway_hop_connections_total``, ``meshfed_gateway_hop_bytes_total`` (with
      ``direction``: ``to_endpoint`` / ``from_endpoint``) and
      ``meshfed_gateway_hop_egress_usd_total``, labelled with :data:`HOP_LABELS`
      (:class:`GatewayHop`).
    """

    def __init__(
        self,
        tables: Callable[[], Iterable[TrafficTable]],
        prices: Callable[[], Mapping[str, PriceTable]] = dict,
    ) -> None:
        self._tables = tables
        self._prices = prices

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "meshfed_requests",
            "Requests by caller and by where they were served",
            labels=EDGE_LABELS,
        )
        sent = CounterMetricFamily(
            "meshfed_request_bytes",
            "Bytes sent to the serving sidecar (upstream wire bytes, headers and body)",
            labels=EDGE_LABELS,
        )
        received = CounterMetricFamily(
            "meshfed_response_bytes",
            "Bytes received from the serving sidecar (upstream wire bytes, headers and body)",
            labels=EDGE_LABELS,
        )
        duration = HistogramMetricFamily(
            "meshfed_request_duration_seconds",
            "Request duration at the caller's sidecar (Envoy's DURATION)",
            labels=EDGE_LABELS,
        )
        egress: dict[tuple[str, ...], list[float]] = {}
        for table in self._tables():
            for edge in sorted(table.edges):
                c = table.edges[edge]
                values = edge.values()
                requests.add_metric(values, c.requests)
                sent.add_metric(values, c.request_bytes)
                received.add_metric(values, c.response_bytes)
                duration.add_metric(values, c.histogram(), c.duration_ms_sum / 1000)
                path = tuple(getattr(edge, name) for name in EGRESS_LABELS)
                total = egress.setdefault(path, [0.0, 0.0])
                total[0] += c.request_bytes + c.response_bytes
                total[1] += c.egress_usd
        egress_bytes = CounterMetricFamily(
            "meshfed_egress_bytes",
            "Bytes carried between the caller's and the server's locality, both directions",
            labels=EGRESS_LABELS,
        )
        egress_usd = CounterMetricFamily(
            "meshfed_egress_usd",
            "US$ those bytes cost at the price tables in force (meshfed_price_table_info)",
            labels=EGRESS_LABELS,
        )
        for path in sorted(egress):
            egress_bytes.add_metric(list(path), egress[path][0])
            egress_usd.add_metric(list(path), egress[path][1])
        info = GaugeMetricFamily(
            "meshfed_price_table_info",
            "The price tables egress dollars are computed with: source page and date read",
            labels=("cloud", "source", "read_on"),
        )
        for cloud, rates in sorted(self._prices().items()):
            info.add_metric([cloud, rates.source, rates.read_on], 1)
        yield from (requests, sent, received, duration, egress_bytes, egress_usd, info)
        yield from _hop_families(self._tables())


def _hop_families(tables: Iterable[TrafficTable]) -> Iterable[Metric]:
    """The ``meshfed_gateway_hop_*`` families of :class:`TrafficCollector`."""
    connections = CounterMetricFamily(
        "meshfed_gateway_hop_connections",
        "Connections an east-west gateway forwarded, by gateway and sidecar locality",
        labels=HOP_LABELS,
    )
    carried = CounterMetricFamily(
        "meshfed_gateway_hop_bytes",
        "Bytes between an east-west gateway and the sidecar it forwarded to (TLS records)",
        labels=(*HOP_LABELS, "direction"),
    )
    usd = CounterMetricFamily(
        "meshfed_gateway_hop_egress_usd",
        "US$ the gateway hop's bytes cost at the price tables in force",
        labels=HOP_LABELS,
    )
    for table in tables:
        for hop in sorted(table.hops):
            c, values = table.hops[hop], hop.values()
            connections.add_metric(values, c.requests)
            carried.add_metric([*values, "to_endpoint"], c.request_bytes)
            carried.add_metric([*values, "from_endpoint"], c.response_bytes)
            usd.add_metric(values, c.egress_usd)
    yield from (connections, carried, usd)


def format_usd(value: float) -> str:
    """US$ with the digits that matter: ``$0``, ``$0.00042``, ``$0.000001``, ``$1.25`` (two
    significant digits below a cent, never an exponent)."""
    if value <= 0:
        return "$0"
    if value >= 0.01:
        return f"${value:.2f}"
    digits = -math.floor(math.log10(value)) + 1
    return "$" + f"{value:.{digits}f}".rstrip("0")
