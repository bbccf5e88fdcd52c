"""``meshfed proxy gateway``: run the east-west gateway, SNI passthrough to exported services
only, until SIGTERM.

Its identity is ``meshfed-system/eastwest-gateway`` (the first start needs a token from
``meshfed workload token --gateway``). It registers nothing (the control plane reports the
``--gateway`` address to the controller) and stops without waiting for propagation
(``propagation_s`` 0). Requests are counted by the callers' sidecars; the gateway counts
its own hop -- connections and bytes to each sidecar it forwards to
(:class:`federation.agent.tap.GatewayTap`), which its control plane turns into gateway-hop
bytes and dollars by the sidecar's zone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from federation.agent.config import AgentConfig, host_port
from federation.agent.controlplane_api import api_url, fetch_bootstrap
from federation.agent.prepare import (
    agent_settings,
    locality,
    source_labels,
    traffic_tap,
    workdir,
    workload_identity,
)
from federation.agent.run import AgentParts, run_agent
from federation.agent.tap import GatewayTap
from federation.errors import ConfigError
from federation.netaddr import is_loopback
from federation.sync.node import GATEWAY_PORT, ProxyDescription

log = logging.getLogger(__name__)

#: ``--listen``'s default.
DEFAULT_LISTEN = f"127.0.0.1:{GATEWAY_PORT}"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """``meshfed proxy gateway``.

    Attributes:
        agent: the common agent settings.
        listen: the passthrough listener's ``HOST:PORT``.
        advertise: the address other clusters use (None: ``listen``).
        zone_local: the gateway of its zone only (its locality's zone, which it must
            have): node id ``gateway~<cluster>~<zone>``; it forwards to the zone's
            endpoints, others only when the zone has none left. The control plane reports
            it with ``--zone-gateway ZONE=HOST:PORT``.
    """

    agent: AgentConfig
    listen: str = DEFAULT_LISTEN
    advertise: str | None = None
    zone_local: bool = False


def prepare_gateway(config: GatewayConfig) -> AgentParts:
    """Check ``config``, read the control plane's ``/v1/bootstrap`` and build the gateway.

    Raises:
        federation.errors.ConfigError: a setting is invalid (named by its flag).
        federation.errors.ApiError / UnreachableError: the control plane's API.
    """
    agent = config.agent
    xds_host, _ = agent.xds()
    host, port = host_port(config.listen, "--listen")
    if config.advertise:
        host_port(config.advertise, "--advertise")
    url = api_url(agent.cluster, xds_host, agent.api)
    info, _ = fetch_bootstrap(url, agent.cluster, agent.token, agent.identity)
    loc = locality(agent.locality, info)
    if not is_loopback(host):
        log.warning("gateway listens on %s, beyond loopback", host)
    if config.zone_local and not loc.zone:
        raise ConfigError(
            f"--zone-local: the gateway's locality {loc} has no zone; give --locality"
            " <cloud>/<region>/<zone>"
        )
    node_id = f"gateway~{agent.cluster}" + (f"~{loc.zone}" if config.zone_local else "")
    desc = ProxyDescription(
        node_id=node_id,
        role="gateway",
        locality=loc,
        listen=f"{host}:{port}",
        identity_dir=str(workdir(node_id) / "identity"),
        traffic_log=str((workdir(node_id) / "traffic.fifo").absolute()),
        working_dir=str(workdir(node_id)),
        zone_local=config.zone_local,
    )
    identity = workload_identity(
        agent.identity,
        desc.expected_spiffe_id(str(info["trust_domain"])),
        workdir(node_id) / "identity",
        info,
        agent.controlplane,
    )
    log.info(
        "gateway for %s: listening on %s:%d, advertised as %s",
        agent.cluster,
        host,
        port,
        config.advertise or config.listen,
    )
    settings = agent_settings(desc, agent, info, propagation_s=0.0)
    return AgentParts(
        settings,
        identity,
        tap=traffic_tap(settings, workdir(node_id) / "traffic.fifo", GatewayTap),
        metrics_listen=agent.metrics_listen,
        labels=source_labels(desc, agent.cluster),
    )


def run_gateway(config: GatewayConfig) -> None:
    """Prepare (:func:`prepare_gateway`) and run the gateway until SIGTERM/SIGINT."""
    run_agent(prepare_gateway(config))
