"""``meshfed proxy sidecar`` and ``meshfed proxy gateway``: run the proxy agent.

Before Envoy starts, the agent obtains the proxy's SVID from the control plane's certificate
service with a workload token (:mod:`federation.ca.client`; the key is generated here and
never sent), and keeps it and the trust bundle fresh in ``<workdir>/identity`` for as long
as it runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from eastwest_gateway.agent import GATEWAY_PORT, AgentSettings, ProxyAgent
from eastwest_gateway.bootstrap import BootstrapParams, envoy_bootstrap
from federation.ca.client import CaEndpoints, WorkloadIdentity
from federation.ca.files import IdentityDirectory
from federation.ca.names import control_plane_server_name, control_plane_spiffe_id
from federation.cli.params import InputError
from federation.client import (
    CA_FILE_ENV,
    ClientTls,
    call,
    local_control_plane,
    request_json,
    tls_context,
    unverified_tls,
)
from federation.controlplane.proxy import ProxyDescription, Upstream
from federation.model.locality import Locality
from federation.model.workload import ServicePort, parse_port_spec, sidecar_workload
from federation.netaddr import free_port, is_loopback, parse_host_port
from federation.paths import meshfed_home
from federation.serving import start_http, stop_on_signals
from federation.sync import proxy_metrics
from federation.sync.tap import TrafficTap
from trust.files import CERT_FILE_MODE, write_atomic
from trust.spiffe import SpiffeId

log = logging.getLogger(__name__)


def _api_url(cluster: str, xds_host: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    endpoint = meshfed_home() / "controlplanes" / cluster / "endpoint.json"
    if endpoint.exists():
        return str(json.loads(endpoint.read_text())["api"])
    return f"https://{xds_host}:15014"


def _bootstrap(
    api_url: str, cluster: str, token: str | None, trust_bundle: Path | None
) -> tuple[dict[str, Any], ClientTls | None]:
    """The control plane's public ``/v1/bootstrap`` and how to verify its API from then on.

    The API is HTTPS with a certificate for ``controlplane.<cluster>.cluster.meshfed.
    internal`` from the cluster's CA. A control plane on this host is verified as its
    ``endpoint.json`` says; else against ``--trust-bundle`` (or ``$MESHFED_CA_FILE``) by that
    name; with neither, the public bootstrap is read without verification (it holds only
    public facts, as the controller's ``/v1/bundle`` for a join) and every later call --
    those carrying the API token -- is verified against the bundle it returned."""
    if not api_url.startswith("https://") or local_control_plane(api_url, None) is not None:
        return call("GET", api_url, "/v1/bootstrap", token=token), None
    name = control_plane_server_name(cluster)
    if trust_bundle is not None or os.environ.get(CA_FILE_ENV):
        try:
            bundle = trust_bundle.read_bytes() if trust_bundle is not None else None
        except OSError as err:
            raise InputError(f"--trust-bundle: {err.strerror}") from err
        ca_file = None if trust_bundle is not None else os.environ[CA_FILE_ENV]
        tls = ClientTls(tls_context(bundle, ca_file), name)
        return call("GET", api_url, "/v1/bootstrap", token=token, tls=tls), tls
    # no token on an unverified connection, not even $MESHFED_TOKEN (call() would add it)
    info = asyncio.run(request_json("GET", api_url + "/v1/bootstrap", None, tls=unverified_tls()))
    return info, ClientTls(tls_context(str(info["trustBundle"]).encode()), name)


def _host_port(value: str, flag: str) -> tuple[str, int]:
    try:
        return parse_host_port(value, what=flag)
    except ValueError as err:
        raise InputError(str(err)) from err


def _locality(value: str | None, info: dict[str, Any]) -> Locality:
    text = value or str(info["locality"])
    try:
        return Locality.parse(text)
    except ValueError as err:
        raise InputError(f"--locality: {err}") from err


def _workdir(node_id: str) -> Path:
    return (meshfed_home() / "proxies" / node_id.replace("~", "_")).resolve()


@dataclass(frozen=True)
class IdentityOptions:
    """The ``--workload-token*``, ``--ca`` and ``--trust-bundle`` options."""

    token: str | None
    token_file: Path | None
    ca: str | None
    trust_bundle: Path | None

    def token_text(self) -> str | None:
        """The workload token (from the file if given)."""
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as err:
                raise InputError(f"--workload-token-file: {err.strerror}") from err
        return self.token

    def identity(
        self, spiffe_id: str, directory: Path, info: dict[str, Any], xds: str
    ) -> WorkloadIdentity:
        """A :class:`WorkloadIdentity` for ``spiffe_id``; unset options come from the control
        plane's ``/v1/bootstrap``."""
        if self.trust_bundle is not None:
            try:
                bundle = self.trust_bundle.read_bytes()
            except OSError as err:
                raise InputError(f"--trust-bundle: {err.strerror}") from err
        else:
            bundle = str(info["trustBundle"]).encode()
        ca = self.ca or str(info["caAddress"])
        _host_port(ca, "--ca")
        return WorkloadIdentity(
            SpiffeId.parse(spiffe_id),
            IdentityDirectory(directory),
            CaEndpoints(ca=ca, xds=xds, server_name=str(info["serverName"])),
            bundle,
            self.token_text(),
        )


def _agent_settings(
    desc: ProxyDescription,
    cluster: str,
    xds: tuple[str, int],
    admin: int,
    info: dict[str, Any],
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
            identity_dir=desc.identity_dir,
            xds_server_id=control_plane_spiffe_id(str(info["trust_domain"]), cluster),
            xds_server_name=str(info["serverName"]),
        )
    )
    return AgentSettings(bootstrap, _workdir(desc.node_id), admin, log_level=log_level, **hooks)


def _traffic_tap(settings: AgentSettings, fifo: Path) -> TrafficTap:
    """The sidecar's traffic counter, reading ``fifo`` and reporting as the bootstrap's node."""
    node = json_format.ParseDict(settings.bootstrap["node"], base_pb2.Node())
    return TrafficTap(fifo, node.SerializeToString())


def _source_labels(desc: ProxyDescription, cluster: str) -> dict[str, str]:
    """The labels the agent's endpoint adds to every sample
    (:mod:`federation.sync.proxy_metrics`)."""
    return {
        "source_cluster": cluster,
        "source_locality": str(desc.locality or ""),
        "source_workload": f"{desc.namespace}/{desc.workload}" if desc.workload else desc.node_id,
    }


def _run(
    settings: AgentSettings,
    identity: WorkloadIdentity,
    tap: TrafficTap | None = None,
    *,
    metrics_listen: str = "",
    labels: dict[str, str] | None = None,
) -> None:
    async def main() -> None:
        stop = stop_on_signals()
        await identity.ensure()
        agent = ProxyAgent(settings)
        runner = None
        if metrics_listen:
            app = proxy_metrics.make_app(
                lambda: agent.envoy.admin("/stats/prometheus", timeout_s=2.0), labels or {}, tap
            )
            runner, port = await start_http(app, metrics_listen, "--metrics-listen")
            host = metrics_listen.rsplit(":", 1)[0]
            log.info("metrics on http://%s:%d/metrics", host, port)
            write_atomic(
                settings.workdir / "agent.json",
                json.dumps({"metrics": f"http://{host}:{port}/metrics"}).encode(),
                CERT_FILE_MODE,
            )
        tasks = [asyncio.create_task(identity.run(), name="identity")]
        if tap is not None:
            tap.open()  # before Envoy opens its end
            tasks.append(asyncio.create_task(tap.read_forever(), name="traffic-tap"))
            tasks.append(
                asyncio.create_task(tap.report_forever(identity.xds_channel), name="traffic")
            )
        try:
            await agent.run(stop)
        finally:
            for task in tasks:
                task.cancel()
            if tap is not None:
                tap.close()
            if runner is not None:
                await runner.cleanup()

    asyncio.run(main())


#: ``--workload-token``, ``--workload-token-file``, ``--ca``, ``--trust-bundle``.
IDENTITY_OPTIONS = [
    click.option(
        "--workload-token",
        envvar="MESHFED_WORKLOAD_TOKEN",
        default=None,
        help="Workload token for the first certificate ('meshfed workload token').",
    ),
    click.option(
        "--workload-token-file",
        envvar="MESHFED_WORKLOAD_TOKEN_FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Read the token from this file (also $MESHFED_WORKLOAD_TOKEN_FILE): a workload"
        " token, or on Kubernetes the pod's projected service account token (audience"
        " meshfed).",
    ),
    click.option(
        "--ca",
        default=None,
        metavar="HOST:PORT",
        help="The control plane's certificate service.  [default: from its /v1/bootstrap]",
    ),
    click.option(
        "--trust-bundle",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="PEM roots to verify the control plane with on first contact."
        "  [default: from its /v1/bootstrap]",
    ),
]


def identity_options(f: Any) -> Any:
    """Add :data:`IDENTITY_OPTIONS` to a command."""
    for option in reversed(IDENTITY_OPTIONS):
        f = option(f)
    return f


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
    click.option(
        "--metrics-listen",
        default="127.0.0.1:0",
        show_default=True,
        metavar="HOST:PORT",
        help="Prometheus endpoint (GET /metrics): Envoy's statistics with this proxy's"
        " source_cluster/source_locality/source_workload added, and a sidecar's traffic by"
        " destination; port 0 picks one (written to agent.json beside envoy.log); '' turns"
        " it off.",
    ),
    click.option("--envoy-log-level", default="warning", show_default=True),
    click.option(
        "--envoy-log",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Envoy's log file.  [default: $MESHFED_HOME/proxies/NODE/envoy.log]",
    ),
]


def _common(f: Any) -> Any:
    f = identity_options(f)
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
    "--protocol",
    type=click.Choice(["http", "http2", "grpc", "tcp"], case_sensitive=False),
    default="http",
    show_default=True,
    help="Istio's names in capitals (HTTP, GRPC, TCP) work too. tcp: served inbound (mTLS,"
    " AuthorizationPolicy as network RBAC); the sidecar does not route TCP outbound yet.",
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
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="A label of the WorkloadEntry, e.g. version=v2 (repeatable); app=SERVICE is always set"
    " unless given here.",
)
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="SERVICE.NAMESPACE:PORT=LOCAL_PORT",
    help="A TCP service port the app reaches on 127.0.0.1:LOCAL_PORT, e.g."
    " db.shop:5432=15432 (repeatable); the sidecar originates mTLS and routes it by the"
    " service's TrafficPolicy tcp routes.",
)
@click.option(
    "--capacity-rps",
    type=click.FloatRange(min=0, min_open=True, max=1e7),
    default=None,
    help="Requests/s this workload can serve (WorkloadEntry spec.capacity.rps): the"
    " controller plans by it in cost mode optimize.  [default: undeclared]",
)
@click.option(
    "--kubernetes",
    is_flag=True,
    help="A Kubernetes pod (as injected): its EndpointSlice registers it, so no WorkloadEntry"
    " is applied, and its name is the control plane's k8s-SERVICE-ADDRESS.",
)
def sidecar_cmd(
    cluster: str,
    controlplane: str,
    api: str | None,
    token: str | None,
    workload_token: str | None,
    workload_token_file: Path | None,
    ca: str | None,
    trust_bundle: Path | None,
    admin_port: int,
    locality: str | None,
    delta: bool,
    metrics_listen: str,
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
    labels: tuple[str, ...],
    upstreams: tuple[str, ...],
    capacity_rps: float | None,
    kubernetes: bool,
) -> None:
    """Register this workload, run its Envoy sidecar, deregister and drain on SIGTERM.

    Inbound: mTLS STRICT on ADDRESS:INBOUND_PORT, forwarded to 127.0.0.1:APP_PORT.
    Outbound: HTTP/1.1 or HTTP/2 on 127.0.0.1:OUTBOUND_PORT, routed by Host
    <svc>.<ns>.svc.clusterset.local; each --upstream's TCP port on 127.0.0.1:LOCAL_PORT.

    Identity: the first start needs a workload token for NAMESPACE/SERVICE_ACCOUNT
    ('meshfed workload token'); the agent generates the key, obtains the SVID with a CSR
    and keeps it in $MESHFED_HOME/proxies/NODE/identity, where Envoy reads it (file-based
    SDS). Later starts renew the SVID kept there.
    """
    xds_host, xds_port = _host_port(controlplane, "--controlplane")
    api_url = _api_url(cluster, xds_host, api)
    info, api_tls = _bootstrap(api_url, cluster, token, trust_bundle)
    loc = _locality(locality, info)
    label_map: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--label {item!r}: use KEY=VALUE")
        label_map[key] = value
    try:
        upstream_list = tuple(Upstream.parse(u) for u in upstreams)
    except ValueError as err:
        raise InputError(f"--upstream {err}") from err
    if kubernetes:
        from federation.controlplane.kube.translate import workload_name

        name = name or workload_name(service, address)
    try:
        entry = sidecar_workload(
            service=service,
            namespace=namespace,
            address=address,
            locality=str(loc),
            inbound_port=inbound_port,
            service_account=service_account,
            name=name,
            labels=label_map,
            capacity_rps=capacity_rps,
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
    node_id = f"sidecar~{namespace}~{workload}"
    account = service_account or service
    identity_dir = _workdir(node_id) / "identity"
    fifo = (_workdir(node_id) / "traffic.fifo").absolute()
    desc = ProxyDescription(
        node_id=node_id,
        role="sidecar",
        namespace=namespace,
        workload=workload,
        service_account=account,
        locality=loc,
        outbound_port=outbound_port,
        identity_dir=str(identity_dir),
        traffic_log=str(fifo),
        upstreams=upstream_list,
    )
    identity = IdentityOptions(workload_token, workload_token_file, ca, trust_bundle).identity(
        desc.expected_spiffe_id(str(info["trust_domain"])), identity_dir, info, controlplane
    )

    async def register() -> None:
        if kubernetes:  # the pod's EndpointSlice is its registration
            return
        await asyncio.to_thread(
            call, "POST", api_url, "/v1/apply", token=token, body=body, tls=api_tls
        )
        log.info("registered workload %s/%s with %s", namespace, workload, api_url)

    async def deregister() -> None:
        if kubernetes:
            return
        await asyncio.to_thread(
            call, "POST", api_url, "/v1/delete", token=token, body=body, tls=api_tls
        )
        log.info("deregistered workload %s/%s", namespace, workload)

    settings = _agent_settings(
        desc,
        cluster,
        (xds_host, xds_port),
        admin,
        info,
        delta=delta,
        log_level=envoy_log_level,
        log_file=envoy_log,
        register=register,
        deregister=deregister,
    )
    _run(
        settings,
        identity,
        _traffic_tap(settings, fifo),
        metrics_listen=metrics_listen,
        labels=_source_labels(desc, cluster),
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
    workload_token: str | None,
    workload_token_file: Path | None,
    ca: str | None,
    trust_bundle: Path | None,
    admin_port: int,
    locality: str | None,
    delta: bool,
    metrics_listen: str,
    envoy_log_level: str,
    envoy_log: Path | None,
    listen: str,
    advertise: str | None,
) -> None:
    """Run the east-west gateway: SNI passthrough to exported services only.

    Its identity is meshfed-system/eastwest-gateway: the first start needs a token from
    'meshfed workload token --gateway'.
    """
    xds_host, xds_port = _host_port(controlplane, "--controlplane")
    host, port = _host_port(listen, "--listen")
    if advertise:
        _host_port(advertise, "--advertise")
    api_url = _api_url(cluster, xds_host, api)
    info, _ = _bootstrap(api_url, cluster, token, trust_bundle)
    loc = _locality(locality, info)
    if not is_loopback(host):
        log.warning("gateway listens on %s, beyond loopback", host)
    admin = admin_port or free_port()
    node_id = f"gateway~{cluster}"
    identity_dir = _workdir(node_id) / "identity"
    desc = ProxyDescription(
        node_id=node_id,
        role="gateway",
        locality=loc,
        listen=f"{host}:{port}",
        identity_dir=str(identity_dir),
    )
    identity = IdentityOptions(workload_token, workload_token_file, ca, trust_bundle).identity(
        desc.expected_spiffe_id(str(info["trust_domain"])), identity_dir, info, controlplane
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
            info,
            delta=delta,
            log_level=envoy_log_level,
            log_file=envoy_log,
            propagation_s=0.0,
        ),
        identity,
        metrics_listen=metrics_listen,
        labels=_source_labels(desc, cluster),
    )
