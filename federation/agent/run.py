"""One agent's life, from its first SVID to Envoy's drain: :func:`run_agent`.

In order: obtain (or renew) the SVID (:class:`federation.ca.client.WorkloadIdentity`); start
the metrics endpoint (:mod:`federation.agent.metrics`) if asked, writing its URL to
``<workdir>/agent.json``; open the traffic FIFO before Envoy opens its end and start reading
and reporting it (:mod:`federation.agent.tap`); for a captured sidecar, watch the name table
and answer the pod's DNS (:mod:`federation.agent.names`, :mod:`federation.agent.dns`); run
the supervisor (:class:`federation.agent.supervisor.ProxyAgent`) until SIGTERM/SIGINT; then
stop all of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from federation.agent import dns, metrics
from federation.agent.names import NameWatch
from federation.agent.supervisor import AgentSettings, ProxyAgent
from federation.agent.tap import TrafficTap
from federation.ca.client import WorkloadIdentity
from federation.serving import start_http, stop_on_signals
from trust.files import CERT_FILE_MODE, write_atomic
from trust.svid import X509Svid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentParts:
    """Everything :func:`run_agent` runs.

    Attributes:
        settings: the supervisor's settings (bootstrap, workdir, hooks).
        identity: the proxy's workload identity.
        tap: the proxy's traffic counter (None: none).
        metrics_listen: the Prometheus endpoint's ``HOST:PORT`` ('' for none).
        labels: the labels that endpoint adds to every sample.
        dns_listen: a captured sidecar's DNS resolver ``(host, port)``
            (:mod:`federation.agent.dns`), answering from the control plane's name table
            (:mod:`federation.agent.names`); None: no resolver.
    """

    settings: AgentSettings
    identity: WorkloadIdentity
    tap: TrafficTap | None = None
    metrics_listen: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    dns_listen: tuple[str, int] | None = None


async def _serve_metrics(parts: AgentParts, agent: ProxyAgent) -> web.AppRunner:
    """Start the metrics endpoint; its runner (to clean up) after writing ``agent.json``."""
    app = metrics.make_app(
        lambda: agent.envoy.admin("/stats/prometheus", timeout_s=2.0),
        parts.labels,
        parts.tap,
        envoy_ready=lambda: agent.envoy.admin("/ready", timeout_s=2.0),
    )
    runner, port = await start_http(app, parts.metrics_listen, "--metrics-listen")
    host = parts.metrics_listen.rsplit(":", 1)[0]
    log.info("metrics on http://%s:%d/metrics", host, port)
    write_atomic(
        parts.settings.workdir / "agent.json",
        json.dumps({"metrics": f"http://{host}:{port}/metrics"}).encode(),
        CERT_FILE_MODE,
    )
    return runner


async def run_agent_async(parts: AgentParts, stop: asyncio.Event) -> None:
    """Run the agent until ``stop`` is set (see the module docstring).

    Raises:
        federation.ca.client.IdentityError: no SVID could be obtained.
        federation.agent.errors.DataPlaneError: Envoy could not be started.
    """
    await parts.identity.ensure()
    agent = ProxyAgent(parts.settings)
    runner = await _serve_metrics(parts, agent) if parts.metrics_listen else None
    tasks = [asyncio.create_task(parts.identity.run(), name="identity")]
    tap = parts.tap
    if tap is not None:
        tap.open()  # before Envoy opens its end
        tasks.append(asyncio.create_task(tap.read_forever(), name="traffic-tap"))
        tasks.append(
            asyncio.create_task(tap.report_forever(parts.identity.xds_channel), name="traffic")
        )
    stop_dns = None
    if parts.dns_listen is not None:
        names = NameWatch(parts.identity.xds_channel, parts.settings.bootstrap["node"]["id"])
        tasks.append(asyncio.create_task(names.run(), name="names"))
        resolver = dns.Resolver(lambda: names.table, dns.upstream_resolver())
        stop_dns = await dns.serve(resolver, *parts.dns_listen)
        log.info("DNS on %s:%d (upstream %s)", *parts.dns_listen, resolver.upstream)
    try:
        await agent.run(stop)
    finally:
        if stop_dns is not None:
            stop_dns()
        for task in tasks:
            task.cancel()
        if tap is not None:
            tap.close()
        if runner is not None:
            await runner.cleanup()


def run_agent(parts: AgentParts) -> None:
    """Run the agent until SIGTERM/SIGINT (blocks; owns the event loop)."""

    async def main() -> None:
        await run_agent_async(parts, stop_on_signals())

    asyncio.run(main())


def keep_identity(
    identity: WorkloadIdentity, *, once: bool, ready: Callable[[X509Svid], None]
) -> None:
    """Obtain (or reuse) the SVID, call ``ready(svid)``, and unless ``once`` keep it and the
    trust bundle fresh until SIGTERM/SIGINT (``meshfed workload identity``: proxyless gRPC
    and apps that read their certificate from files; blocks).

    Raises:
        federation.ca.client.IdentityError: no SVID could be obtained.
    """

    async def main() -> None:
        ready(await identity.ensure())
        if once:
            return
        stop = stop_on_signals()
        refresh = asyncio.create_task(identity.run())
        await stop.wait()
        refresh.cancel()

    asyncio.run(main())
