"""From the agent's config and its control plane's ``/v1/bootstrap`` to what runs: the
workload identity, the Envoy bootstrap and the supervisor's settings, the traffic tap and the
metrics labels. Files go to ``$MESHFED_HOME/proxies/<node>`` (:func:`workdir`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from federation.agent.bootstrap import BootstrapParams, envoy_bootstrap
from federation.agent.config import AgentConfig, IdentityOptions, host_port
from federation.agent.supervisor import AgentSettings
from federation.agent.tap import TrafficTap
from federation.ca.client import CaEndpoints, WorkloadIdentity
from federation.ca.files import IdentityDirectory
from federation.ca.names import control_plane_spiffe_id
from federation.errors import ConfigError
from federation.model.locality import Locality
from federation.netaddr import free_port
from federation.paths import meshfed_home
from federation.sync.node import ProxyDescription
from trust.spiffe import SpiffeId


def workdir(node_id: str) -> Path:
    """``$MESHFED_HOME/proxies/<node id with ~ as _>``, absolute: the bootstrap, Envoy's log,
    ``agent.json``, the traffic FIFO and the ``identity`` directory."""
    return (meshfed_home() / "proxies" / node_id.replace("~", "_")).resolve()


def locality(value: str | None, info: dict[str, Any]) -> Locality:
    """``--locality``, else the control plane's cluster locality from ``info``.

    Raises:
        ConfigError: not ``provider/region/zone[/sub_zone]``-shaped.
    """
    try:
        return Locality.parse(value or str(info["locality"]))
    except ValueError as err:
        raise ConfigError(f"--locality: {err}") from err


def workload_identity(
    options: IdentityOptions, spiffe_id: str, directory: Path, info: dict[str, Any], xds: str
) -> WorkloadIdentity:
    """A :class:`WorkloadIdentity` for ``spiffe_id`` kept in ``directory``; unset options come
    from the control plane's ``/v1/bootstrap`` (``info``).

    Raises:
        ConfigError: ``--ca`` is not ``HOST:PORT``, or a file cannot be read.
    """
    bundle = options.trust_bundle_pem() or str(info["trustBundle"]).encode()
    ca = options.ca or str(info["caAddress"])
    host_port(ca, "--ca")
    return WorkloadIdentity(
        SpiffeId.parse(spiffe_id),
        IdentityDirectory(directory),
        CaEndpoints(ca=ca, xds=xds, server_name=str(info["serverName"])),
        bundle,
        options.token_text(),
    )


def agent_settings(
    desc: ProxyDescription, config: AgentConfig, info: dict[str, Any], **hooks: Any
) -> AgentSettings:
    """The Envoy bootstrap for ``desc`` (ADS to ``config.controlplane`` over mTLS, the control
    plane verified by its SPIFFE ID) and the supervisor's settings; ``hooks`` are
    :class:`AgentSettings` fields (``register``, ``deregister``, ``propagation_s``)."""
    xds_host, xds_port = config.xds()
    admin = config.admin_port or free_port()
    loc = desc.locality or Locality("")
    bootstrap = envoy_bootstrap(
        BootstrapParams(
            desc.node_id,
            config.cluster,
            xds_host,
            xds_port,
            admin,
            (loc.region, loc.zone, loc.sub_zone),
            desc.metadata(),
            config.delta,
            identity_dir=desc.envoy_path(desc.identity_dir),
            xds_server_id=control_plane_spiffe_id(str(info["trust_domain"]), config.cluster),
            xds_server_name=str(info["serverName"]),
        )
    )
    return AgentSettings(
        bootstrap,
        workdir(desc.node_id),
        admin,
        log_level=config.envoy_log_level,
        log_file=config.envoy_log,
        **hooks,
    )


def traffic_tap(
    settings: AgentSettings, fifo: Path, kind: type[TrafficTap] = TrafficTap
) -> TrafficTap:
    """The proxy's traffic counter (a sidecar's :class:`TrafficTap`, a gateway's
    :class:`~federation.agent.tap.GatewayTap`), reading ``fifo`` and reporting as the
    bootstrap's node."""
    node = json_format.ParseDict(settings.bootstrap["node"], base_pb2.Node())
    return kind(fifo, node.SerializeToString())


def source_labels(desc: ProxyDescription, cluster: str) -> dict[str, str]:
    """The labels the agent's metrics endpoint adds to every sample
    (:mod:`federation.agent.metrics`)."""
    return {
        "source_cluster": cluster,
        "source_locality": str(desc.locality or ""),
        "source_workload": f"{desc.namespace}/{desc.workload}" if desc.workload else desc.node_id,
    }
