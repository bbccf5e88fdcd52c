"""``meshfed proxy sidecar``: register a workload, run its Envoy sidecar, deregister and drain
on SIGTERM.

:func:`prepare_sidecar` does everything short of running (pure but for reading the control
plane's ``/v1/bootstrap`` and the token and bundle files): it checks the config, builds the
WorkloadEntry the sidecar registers, the node it connects as, its identity and its settings.
:func:`run_sidecar` then runs them (:func:`federation.agent.run.run_agent`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import yaml

from federation.agent.config import SidecarConfig, host_port
from federation.agent.controlplane_api import Registration, api_url, fetch_bootstrap
from federation.agent.prepare import (
    agent_settings,
    locality,
    source_labels,
    traffic_tap,
    workdir,
    workload_identity,
)
from federation.agent.run import AgentParts, run_agent
from federation.errors import ConfigError
from federation.model.locality import Locality
from federation.model.workload import (
    ServicePort,
    WorkloadEntry,
    k8s_workload_name,
    parse_port_spec,
    sidecar_workload,
)
from federation.sync.node import ProxyDescription, Upstream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SidecarPlan:
    """What a sidecar will be: its WorkloadEntry, its node and the parts that run it."""

    entry: WorkloadEntry
    description: ProxyDescription
    parts: AgentParts


def sidecar_entry(config: SidecarConfig, loc: Locality) -> WorkloadEntry:
    """The WorkloadEntry the sidecar registers (with ``kubernetes``, named as the control
    plane names the pod's EndpointSlice endpoint).

    Raises:
        ConfigError: a port, protocol, label or name the model refuses.
    """
    name = config.name
    if config.kubernetes:
        name = name or k8s_workload_name(config.service, config.address)
    try:
        return sidecar_workload(
            service=config.service,
            namespace=config.namespace,
            address=config.address,
            locality=str(loc),
            inbound_port=config.inbound_port,
            service_account=config.service_account,
            name=name,
            labels=dict(config.labels),
            capacity_rps=config.capacity_rps,
            ports=[
                ServicePort(
                    name=config.protocol,
                    port=config.service_port or config.app_port,
                    targetPort=config.app_port,
                    protocol=config.protocol,  # type: ignore[arg-type]
                ),
                *(parse_port_spec(p) for p in config.extra_ports),
            ],
        )
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"--service/--app-port/--extra-port/...: {err}") from err


def sidecar_description(
    config: SidecarConfig, entry: WorkloadEntry, loc: Locality
) -> ProxyDescription:
    """The node the sidecar connects as (:mod:`federation.sync.node`).

    Raises:
        ConfigError: an ``--upstream`` is not ``SERVICE.NAMESPACE:PORT=LOCAL_PORT``.
    """
    try:
        upstreams = tuple(Upstream.parse(u) for u in config.upstreams)
    except ValueError as err:
        raise ConfigError(f"--upstream {err}") from err
    node_id = f"sidecar~{config.namespace}~{entry.metadata.name}"
    return ProxyDescription(
        node_id=node_id,
        role="sidecar",
        namespace=config.namespace,
        workload=entry.metadata.name,
        service_account=config.service_account or config.service,
        locality=loc,
        outbound_port=config.outbound_port,
        identity_dir=str(workdir(node_id) / "identity"),
        traffic_log=str((workdir(node_id) / "traffic.fifo").absolute()),
        working_dir=str(workdir(node_id)),
        upstreams=upstreams,
        capture=config.capture,
        outbound_traffic_policy=config.outbound_traffic_policy,  # type: ignore[arg-type]
    )


def prepare_sidecar(config: SidecarConfig) -> SidecarPlan:
    """Check ``config``, read the control plane's ``/v1/bootstrap`` and build the sidecar.

    Raises:
        ConfigError: a setting is invalid (named by its flag); nothing was registered.
        federation.errors.ApiError / UnreachableError: the control plane's API.
    """
    agent = config.agent
    xds_host, _ = agent.xds()
    url = api_url(agent.cluster, xds_host, agent.api)
    info, api_tls = fetch_bootstrap(url, agent.cluster, agent.token, agent.identity)
    loc = locality(agent.locality, info)
    entry = sidecar_entry(config, loc)
    desc = sidecar_description(config, entry, loc)
    identity = workload_identity(
        agent.identity,
        desc.expected_spiffe_id(str(info["trust_domain"])),
        workdir(desc.node_id) / "identity",
        info,
        agent.controlplane,
    )
    registration = Registration(
        url,
        agent.token,
        api_tls,
        yaml.safe_dump(entry.model_dump(by_alias=True, mode="json")),
        f"{config.namespace}/{entry.metadata.name}",
        enabled=not config.kubernetes,  # the pod's EndpointSlice is its registration
    )
    settings = agent_settings(
        desc, agent, info, register=registration.register, deregister=registration.deregister
    )
    parts = AgentParts(
        settings,
        identity,
        traffic_tap(settings, workdir(desc.node_id) / "traffic.fifo"),
        metrics_listen=agent.metrics_listen,
        labels=source_labels(desc, agent.cluster),
        dns_listen=host_port(config.dns_listen, "--dns-listen") if config.capture else None,
    )
    return SidecarPlan(entry, desc, parts)


def run_sidecar(config: SidecarConfig) -> None:
    """Prepare (:func:`prepare_sidecar`) and run the sidecar until SIGTERM/SIGINT."""
    run_agent(prepare_sidecar(config).parts)
