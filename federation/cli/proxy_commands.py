"""``meshfed proxy sidecar`` and ``meshfed proxy gateway``: run the proxy agent."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import click
import yaml

from eastwest_gateway.agent import GATEWAY_PORT, AgentSettings, ProxyAgent
from eastwest_gateway.bootstrap import BootstrapParams, envoy_bootstrap
from federation.cli.params import InputError
from federation.client import call
from federation.controlplane.proxy import ProxyDescription
from federation.model.locality import Locality
from federation.model.workload import ServicePort, parse_port_spec, sidecar_workload
from federation.netaddr import free_port, is_loopback, parse_host_port
from federation.paths import meshfed_home
from federation.serving import stop_on_signals

log = logging.getLogger(__name__)


def _api_url(cluster: str, xds_host: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    endpoint = meshfed_home() / "controlplanes" / cluster / "endpoint.json"
    if endpoint.exists():
        return str(json.loads(endpoint.read_text())["api"])
    return f"http://{xds_host}:15014"


def _host_port(value: str, flag: str) -> tuple[str, int]:
    try:
        return parse_host_port(value, what=flag)
    except ValueError as err:
        raise InputError(str(err)) from err


def _locality(value: str | None, api: str, token: str | None) -> Locality:
    text = value or str(call("GET", api, "/v1/info", token=token)["locality"])
    try:
        return Locality.parse(text)
    except ValueError as err:
        raise InputError(f"--locality: {err}") from err


def _agent_settings(
    desc: ProxyDescription,
    cluster: str,
    xds: tuple[str, int],
    admin: int,
    *,
    delta: bool,
    log_level: str,
    **hooks: Any,
) -> AgentSettings:
    """Bootstrap and settings for one proxy; its files go to $MESHFED_HOME/proxies/<node>."""
    loc = desc.locality or Locality("")
    bootstrap = envoy_bootstrap(
        BootstrapParams(
            desc.node_id,
            cluster,
            xds[0],
            xds[1],
            admin,
            (loc.region, loc.zone, loc.sub_zone),
            desc.metadata(),
            delta,
        )
    )
    workdir = meshfed_home() / "proxies" / desc.node_id.replace("~", "_")
    return AgentSettings(bootstrap, workdir, admin, log_level=log_level, **hooks)


def _run(settings: AgentSettings) -> None:
    async def main() -> None:
        stop = stop_on_signals()
        await ProxyAgent(settings).run(stop)

    asyncio.run(main())


common = [
    click.option("--cluster", required=True, help="Member cluster name."),
    click.option(
        "--controlplane",
        required=True,
        metavar="HOST:PORT",
        help="The control plane's xDS address.",
    ),
    click.option(
        "--api",
        default=None,
        metavar="URL",
        help="Control plane API."
        "  [default: from $MESHFED_HOME/controlplanes/CLUSTER/endpoint.json]",
    ),
    click.option("--token", envvar="MESHFED_TOKEN", default=None, help="API bearer token."),
    click.option(
        "--admin-port",
        type=int,
        default=0,
        show_default=True,
        help="Envoy admin port on 127.0.0.1 (0: pick a free one).",
    ),
    click.option(
        "--locality", default=None, help="[default: the control plane's cluster locality]"
    ),
    click.option("--delta", is_flag=True, help="Use incremental (delta) xDS."),
    click.option("--envoy-log-level", default="warning", show_default=True),
    click.option(
        "--envoy-log",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Envoy's log file.  [default: $MESHFED_HOME/proxies/NODE/envoy.log]",
    ),
]


def _common(f: Any) -> Any:
    for option in reversed(common):
        f = option(f)
    return f


@click.group("proxy")
def proxy() -> None:
    """Run Envoy as a sidecar or east-west gateway, supervised by the proxy agent."""


@proxy.command("sidecar")
@_common
@click.option("--service", required=True, help="The workload's service.")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--service-account", default=None, help="[default: the service name]")
@click.option("--app-port", type=int, required=True, help="The app's port on 127.0.0.1.")
@click.option(
    "--service-port", type=int, default=None, help="Port callers use.  [default: --app-port]"
)
@click.option(
    "--protocol", type=click.Choice(["http", "http2", "grpc"]), default="http", show_default=True
)
@click.option(
    "--address", default="127.0.0.1", show_default=True, help="Address of the inbound listener."
)
@click.option("--inbound-port", type=int, default=15006, show_default=True)
@click.option("--outbound-port", type=int, default=15001, show_default=True)
@click.option(
    "--name", default=None, help="WorkloadEntry name.  [default: SERVICE-ADDRESS-INBOUNDPORT]"
)
@click.option(
    "--extra-port",
    "extra_ports",
    multiple=True,
    metavar="NAME=SERVICE_PORT:APP_PORT/PROTOCOL",
    help="Another port of the workload, e.g. grpc=9090:19090/grpc (repeatable).",
)
def sidecar_cmd(
    cluster: str,
    controlplane: str,
    api: str | None,
    token: str | None,
    admin_port: int,
    locality: str | None,
    delta: bool,
    envoy_log_level: str,
    envoy_log: Path | None,
    service: str,
    namespace: str,
    service_account: str | None,
    app_port: int,
    service_port: int | None,
    protocol: str,
    address: str,
    inbound_port: int,
    outbound_port: int,
    name: str | None,
    extra_ports: tuple[str, ...],
) -> None:
    """Register this workload, run its Envoy sidecar, deregister and drain on SIGTERM.

    Inbound: mTLS STRICT on ADDRESS:INBOUND_PORT, forwarded to 127.0.0.1:APP_PORT.
    Outbound: HTTP/1.1 or HTTP/2 on 127.0.0.1:OUTBOUND_PORT, routed by Host
    <svc>.<ns>.svc.clusterset.local.
    """
    xds_host, xds_port = _host_port(controlplane, "--controlplane")
    api_url = _api_url(cluster, xds_host, api)
    loc = _locality(locality, api_url, token)
    try:
        entry = sidecar_workload(
            service=service,
            namespace=namespace,
            address=address,
            locality=str(loc),
            inbound_port=inbound_port,
            service_account=service_account,
            name=name,
            ports=[
                ServicePort(
                    name=protocol,
                    port=service_port or app_port,
                    targetPort=app_port,
                    protocol=protocol,  # type: ignore[arg-type]
                ),
                *(parse_port_spec(p) for p in extra_ports),
            ],
        )
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        raise InputError(f"--service/--app-port/--extra-port/...: {err}") from err
    workload = entry.metadata.name
    body = yaml.safe_dump(entry.model_dump(by_alias=True, mode="json"))
    admin = admin_port or free_port()
    desc = ProxyDescription(
        node_id=f"sidecar~{namespace}~{workload}",
        role="sidecar",
        namespace=namespace,
        workload=workload,
        service_account=service_account or service,
        locality=loc,
        outbound_port=outbound_port,
    )

    async def register() -> None:
        await asyncio.to_thread(call, "POST", api_url, "/v1/apply", token=token, body=body)
        log.info("registered workload %s/%s with %s", namespace, workload, api_url)

    async def deregister() -> None:
        await asyncio.to_thread(call, "POST", api_url, "/v1/delete", token=token, body=body)
        log.info("deregistered workload %s/%s", namespace, workload)

    _run(
        _agent_settings(
            desc,
            cluster,
            (xds_host, xds_port),
            admin,
            delta=delta,
            log_level=envoy_log_level,
            log_file=envoy_log,
            register=register,
            deregister=deregister,
        )
    )


@proxy.command("gateway")
@_common
@click.option(
    "--listen", default=f"127.0.0.1:{GATEWAY_PORT}", show_default=True, help="Passthrough listener."
)
@click.option(
    "--advertise",
    default=None,
    metavar="HOST:PORT",
    help="Address other clusters use (IP or hostname, e.g. a load balancer).  [default: --listen]",
)
def gateway_cmd(
    cluster: str,
    controlplane: str,
    api: str | None,
    token: str | None,
    admin_port: int,
    locality: str | None,
    delta: bool,
    envoy_log_level: str,
    envoy_log: Path | None,
    listen: str,
    advertise: str | None,
) -> None:
    """Run the east-west gateway: SNI passthrough to exported services only."""
    xds_host, xds_port = _host_port(controlplane, "--controlplane")
    host, port = _host_port(listen, "--listen")
    if advertise:
        _host_port(advertise, "--advertise")
    api_url = _api_url(cluster, xds_host, api)
    loc = _locality(locality, api_url, token)
    if not is_loopback(host):
        log.warning("gateway listens on %s, beyond loopback", host)
    admin = admin_port or free_port()
    desc = ProxyDescription(
        node_id=f"gateway~{cluster}", role="gateway", locality=loc, listen=f"{host}:{port}"
    )
    log.info(
        "gateway for %s: listening on %s:%d, advertised as %s",
        cluster,
        host,
        port,
        advertise or listen,
    )
    _run(
        _agent_settings(
            desc,
            cluster,
            (xds_host, xds_port),
            admin,
            delta=delta,
            log_level=envoy_log_level,
            log_file=envoy_log,
            propagation_s=0.0,
        )
    )
