"""The proxy agent's Prometheus endpoint: ``GET /metrics`` on ``--metrics-listen``.

It serves, in the Prometheus text format:

- **its Envoy's statistics** (admin ``/stats/prometheus``, read at each scrape) with the
  proxy's ``source_cluster``, ``source_locality`` and ``source_workload`` added to every
  sample (:func:`relabel`): Envoy's request, connection, byte and latency families of the
  sidecar or gateway, attributable to the proxy when many are scraped together;
- **for a sidecar, its traffic by destination** as its agent counted it from the traffic
  log (:mod:`federation.agent.tap`): ``meshfed_proxy_requests_total``,
  ``meshfed_proxy_request_bytes_total``, ``meshfed_proxy_response_bytes_total`` and the
  histogram ``meshfed_proxy_request_duration_seconds``, labelled with the source labels
  above plus ``destination_service``, ``destination_cluster``, ``destination_zone`` (from
  ``x-meshfed-served-by``; ``unknown`` when no sidecar answered) and
  ``response_code_class``. The destination's locality, the path class and the dollars are
  added where the price tables are: the control plane's and the controller's
  ``meshfed_requests_total`` and ``meshfed_egress_*`` (docs/metrics.md).

Plain HTTP, read-only, no token (as Envoy's own ``/stats/prometheus`` and Istio's 15020):
the default listen address is loopback.
"""

from __future__ import annotations

import asyncio
import re
import urllib.error
from collections.abc import Callable, Iterable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from federation.agent.tap import TrafficTap
from federation.metrics import CONTENT_TYPE
from federation.traffic import code_class

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?(\s.*)$")
_GLOBAL_SUFFIX = ".svc.clusterset.local"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def relabel(text: str, labels: Mapping[str, str]) -> str:
    """Add ``labels`` to every sample of a Prometheus text exposition (comments and blank
    lines unchanged; a sample that already has one of the labels keeps its own value).

    >>> relabel('a_total{x="1"} 3\\nb 2\\n', {"source_cluster": "east"})
    'a_total{source_cluster="east",x="1"} 3\\nb{source_cluster="east"} 2\\n'
    """
    out = []
    for raw in text.splitlines(keepends=True):
        line = raw.rstrip("\r\n")
        end = raw[len(line) :]
        match = _SAMPLE.match(line) if line and not line.startswith("#") else None
        if match is None:
            out.append(raw)
            continue
        name, existing, rest = match.groups()
        inner = existing[1:-1] if existing else ""
        added = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items() if f"{k}=" not in inner)
        merged = ",".join(p for p in (added, inner) if p)
        out.append((f"{name}{{{merged}}}{rest}" if merged else line) + end)
    return "".join(out)


def _service(upstream_cluster: str) -> str:
    host = upstream_cluster.rsplit("|", 1)[-1]
    return host.removesuffix(_GLOBAL_SUFFIX)


class TapCollector(Collector):
    """``meshfed_proxy_*`` families of a :class:`TrafficTap` (see the module docstring)."""

    LABELS = (
        "destination_service",
        "destination_cluster",
        "destination_zone",
        "response_code_class",
    )

    def __init__(self, tap: TrafficTap, source: Mapping[str, str]) -> None:
        self._tap = tap
        self._source = dict(source)

    def collect(self) -> Iterable[Metric]:
        names = (*self._source, *self.LABELS)
        requests = CounterMetricFamily(
            "meshfed_proxy_requests", "Outbound requests by where they were served", labels=names
        )
        sent = CounterMetricFamily(
            "meshfed_proxy_request_bytes", "Upstream wire bytes sent", labels=names
        )
        received = CounterMetricFamily(
            "meshfed_proxy_response_bytes", "Upstream wire bytes received", labels=names
        )
        duration = HistogramMetricFamily(
            "meshfed_proxy_request_duration_seconds", "Envoy's request duration", labels=names
        )
        retries = CounterMetricFamily(
            "meshfed_proxy_request_retries",
            "Upstream attempts beyond each request's first (failed attempts retried)",
            labels=names,
        )
        with self._tap.lock:
            counts = {k: c.copy() for k, c in self._tap.counts.items()}
        for (upstream, served_by, code), c in sorted(counts.items()):
            cluster, _, zone = served_by.partition("/")
            values = [
                *self._source.values(),
                _service(upstream),
                cluster or "unknown",
                zone or "unknown",
                code_class(code),
            ]
            requests.add_metric(values, c.requests)
            sent.add_metric(values, c.request_bytes)
            received.add_metric(values, c.response_bytes)
            duration.add_metric(values, c.histogram(), c.duration_ms_sum / 1000)
            retries.add_metric(values, c.retries)
        yield from (requests, sent, received, duration, retries)


def make_app(
    envoy_stats: Callable[[], str],
    source: Mapping[str, str],
    tap: TrafficTap | None,
    envoy_ready: Callable[[], str] | None = None,
) -> web.Application:
    """The endpoint: ``envoy_stats()`` returns Envoy's ``/stats/prometheus`` (blocking; run
    in a thread; raises OSError while Envoy is down, then only the agent's families are
    served). With ``envoy_ready`` (Envoy's admin ``/ready``, blocking), also
    ``GET /healthz/ready``: 200 ``LIVE`` when Envoy says LIVE, else 503 with Envoy's state --
    a kubelet's readiness probe, as Istio's pilot-agent serves on 15021 (Envoy's own admin
    listens on loopback only)."""
    registry = CollectorRegistry(auto_describe=True)
    if tap is not None and tap.per_request:  # a gateway's tap counts connections
        registry.register(TapCollector(tap, source))

    async def metrics(_request: web.Request) -> web.Response:
        try:
            envoy = relabel(await asyncio.to_thread(envoy_stats), source)
        except OSError:
            envoy = ""
        body = generate_latest(registry).decode() + envoy
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def ready(_request: web.Request) -> web.Response:
        assert envoy_ready is not None
        try:
            state = (await asyncio.to_thread(envoy_ready)).strip()
        except urllib.error.HTTPError as err:  # Envoy answers 503 with its state
            state = err.read().decode(errors="replace").strip() or f"HTTP {err.code}"
        except OSError as err:
            state = f"envoy unreachable ({err.strerror or err})"
        return web.Response(text=state + "\n", status=200 if state == "LIVE" else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    if envoy_ready is not None:
        app.router.add_get("/healthz/ready", ready)
    return app
