"""Prometheus metrics plumbing shared by the controller and the control planes
(prometheus-client): a registry of one's own per server (tests run several servers in one
process), gauges read at scrape time, and the text exposition their APIs serve at
``GET /metrics``.

Names follow Prometheus' conventions: ``_total`` counters, ``_seconds`` durations,
``_timestamp_seconds`` Unix times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: Content type of :meth:`Metrics.exposition` (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Reading = Mapping[str, float] | float | None


class _Callbacks(Collector):
    """Gauges read at scrape time (labelled ones need a collector: prometheus-client's
    ``Gauge.set_function`` takes no labels)."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterable[GaugeMetricFamily]]] = []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for source in self.sources:
            yield from source()


class Metrics:
    """A registry of one's own; subclasses add their counters and histograms to
    :attr:`registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._callbacks = _Callbacks()
        self.registry.register(self._callbacks)

    def gauge(
        self, name: str, documentation: str, read: Callable[[], Reading], label: str = ""
    ) -> None:
        """A gauge read at each scrape: ``read`` returns its value, or its values by the
        value of ``label``, or None (the gauge is then absent from that scrape)."""

        def source() -> Iterable[GaugeMetricFamily]:
            value = read()
            if value is None:
                return
            if isinstance(value, Mapping):
                family = GaugeMetricFamily(name, documentation, labels=[label])
                for key, v in sorted(value.items()):
                    family.add_metric([key], v)
            else:
                family = GaugeMetricFamily(name, documentation, value=value)
            yield family

        self._callbacks.sources.append(source)

    def exposition(self) -> bytes:
        """Every metric now, in the text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
