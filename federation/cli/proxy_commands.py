"""``meshfed proxy sidecar`` and ``meshfed proxy gateway``: parse flags, run the proxy agent
(:func:`federation.agent.sidecar.run_sidecar`, :func:`eastwest_gateway.gateway.run_gateway`).

Before Envoy starts, the agent obtains the proxy's SVID from the control plane's certificate
service with a workload token (:mod:`federation.ca.client`; the key is generated there and
never sent), and keeps it and the trust bundle fresh in ``<workdir>/identity`` for as long
as it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from eastwest_gateway.gateway import DEFAULT_LISTEN, GatewayConfig, run_gateway
from federation.agent.capture import init as capture_init
from federation.agent.config import AgentConfig, SidecarConfig, parse_labels
from federation.agent.sidecar import run_sidecar

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
    click.option(
        "--delta/--sotw",
        default=True,
        show_default=True,
        help="xDS flavour: incremental (delta) ADS, which sends a change's resources only, or"
        " state of the world, which resends every resource of a changed type.",
    ),
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
    " AuthorizationPolicy as network RBAC); callers reach it by --upstream or by capture.",
)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="The workload's address: callers dial it, and the inbound listener binds it (with"
    " --capture, 0.0.0.0 or :: in the pod).",
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
@click.option(
    "--capture",
    is_flag=True,
    help="The pod's traffic is captured ('meshfed proxy init'): outbound on 0.0.0.0:"
    "OUTBOUND_PORT by original destination, inbound on the wildcard address; the agent"
    " answers the pod's DNS on --dns-listen.",
)
@click.option(
    "--outbound-traffic-policy",
    type=click.Choice(["ALLOW_ANY", "REGISTRY_ONLY"]),
    default="ALLOW_ANY",
    show_default=True,
    help="With --capture: a connection to an address outside the mesh passes, or is closed.",
)
@click.option("--dns-listen", default="127.0.0.1:15053", show_default=True, metavar="HOST:PORT")
def sidecar_cmd(**values: Any) -> None:
    """Register this workload, run its Envoy sidecar, deregister and drain on SIGTERM.

    Inbound: mTLS STRICT on ADDRESS:INBOUND_PORT, forwarded to 127.0.0.1:APP_PORT.
    Outbound: HTTP/1.1 or HTTP/2 on 127.0.0.1:OUTBOUND_PORT, routed by Host
    <svc>.<ns>.svc.clusterset.local; each --upstream's TCP port on 127.0.0.1:LOCAL_PORT.
    With --capture (the pod ran 'meshfed proxy init'): whatever the app dials, by original
    destination, and the pod's DNS (run as UID/GID 1337, which the rules exempt).

    Identity: the first start needs a workload token for NAMESPACE/SERVICE_ACCOUNT
    ('meshfed workload token'); the agent generates the key, obtains the SVID with a CSR
    and keeps it in $MESHFED_HOME/proxies/NODE/identity, where Envoy reads it (file-based
    SDS). Later starts renew the SVID kept there.
    """
    agent = AgentConfig.from_flags(values)
    labels = parse_labels(values.pop("labels"))
    run_sidecar(SidecarConfig(agent=agent, labels=labels, **values))


@proxy.command("init")
@click.option("--proxy-uid", type=int, default=1337, show_default=True)
@click.option("--proxy-gid", type=int, default=1337, show_default=True)
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="A pod annotation traffic.meshfed.io/NAME or traffic.sidecar.istio.io/NAME, e.g."
    " traffic.meshfed.io/excludeOutboundPorts=5432 (repeatable).",
)
@click.option("--no-dns", is_flag=True, help="Leave DNS alone.")
@click.option("--dry-run", is_flag=True, help="Print the nftables rules; change nothing.")
@click.option("--remove", "undo", is_flag=True, help="Remove the rules (table inet meshfed).")
def init_cmd(no_dns: bool, **values: Any) -> None:
    """Capture this network namespace's TCP and DNS for its sidecar (nftables; needs
    CAP_NET_ADMIN; the Kubernetes init container). The sidecar's own UID/GID are exempt."""
    click.echo(capture_init(dns=not no_dns, **values), nl=False)


@proxy.command("gateway")
@_common
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="Passthrough listener.")
@click.option(
    "--advertise",
    default=None,
    metavar="HOST:PORT",
    help="Address other clusters use (IP or hostname, e.g. a load balancer).  [default: --listen]",
)
@click.option("--zone-local", is_flag=True, help="Its zone's gateway (--locality's): to that zone's"
              " endpoints only while it has any (controlplane serve --zone-gateway).")  # fmt: skip
def gateway_cmd(**values: Any) -> None:
    """Run the east-west gateway: SNI passthrough to exported services only.

    Its identity is meshfed-system/eastwest-gateway: the first start needs a token from
    'meshfed workload token --gateway'.
    """
    run_gateway(GatewayConfig(agent=AgentConfig.from_flags(values), **values))
