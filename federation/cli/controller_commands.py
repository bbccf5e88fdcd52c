"""``meshfed controller serve``, ``meshfed cluster join|list|remove|token`` and
``meshfed get clusters|exports|imports|policies``: the federation controller and its API."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import yaml

from federation.cli.params import DURATION, InputError, format_duration
from federation.client import call, cli_config_path, controller_target
from federation.model.locality import Locality
from federation.netaddr import parse_host_port
from federation.paths import default_trust_dir, meshfed_home

controller_option = click.option(
    "--controller",
    envvar="MESHFED_CONTROLLER",
    default=None,
    metavar="URL",
    help="Controller API, e.g. http://127.0.0.1:15080.  [default: from $MESHFED_HOME/config.yaml]",
)
token_option = click.option(
    "--token",
    envvar="MESHFED_TOKEN",
    default=None,
    help="Admin bearer token.  [default: the tokenFile in $MESHFED_HOME/config.yaml]",
)
output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
    help="Output format.",
)


def controller_call(
    controller: str | None, token: str | None, method: str, path: str, body: str | None = None
) -> Any:
    """Call the controller found from flags or config.yaml (errors as :func:`call`)."""
    url, tok = controller_target(controller, token)
    return call(method, url, path, token=tok, body=body)


@click.group("controller")
def controller() -> None:
    """Run the federation controller (membership, exports/imports, sync, root of trust)."""


@controller.command("serve")
@click.option(
    "--listen", default="127.0.0.1:15080", show_default=True, help="REST API address (HOST:PORT)."
)
@click.option(
    "--sync-listen",
    default="127.0.0.1:15090",
    show_default=True,
    help="gRPC sync address for control planes (mTLS).",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite state file.  [default: $MESHFED_HOME/controller.db]",
)
@click.option(
    "--trust-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Root of trust (created if missing).  [default: $MESHFED_HOME/trust]",
)
@click.option(
    "--trust-domain",
    default="meshfed.local",
    show_default=True,
    help="Trust domain of a root created here (ignored when --trust-dir has one).",
)
@click.option(
    "--lease",
    type=DURATION,
    default="30s",
    show_default=True,
    help="A cluster silent for this long is Unreachable and its endpoints are withdrawn.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Admin bearer token, created 0600 at first start."
    "  [default: $MESHFED_HOME/controller-token]",
)
def serve_cmd(
    listen: str,
    sync_listen: str,
    state: Path | None,
    trust_dir: Path | None,
    trust_domain: str,
    lease: timedelta,
    token_file: Path | None,
) -> None:
    """Serve the REST API and the sync service until SIGTERM/SIGINT.

    Writes $MESHFED_HOME/config.yaml so that other meshfed commands find it.
    """
    from federation.controller.server import Controller, ControllerConfig

    for flag, value in (("--listen", listen), ("--sync-listen", sync_listen)):
        try:
            parse_host_port(value, what=flag)
        except ValueError as err:
            raise InputError(str(err)) from err
    home = meshfed_home()
    config = ControllerConfig(
        listen=listen,
        sync_listen=sync_listen,
        state_path=state or home / "controller.db",
        trust_dir=trust_dir or default_trust_dir(),
        token_path=token_file or home / "controller-token",
        config_path=cli_config_path(home),
        trust_domain=trust_domain,
        lease_s=lease.total_seconds(),
    )

    async def run() -> None:
        ctl = Controller(config)
        await ctl.start()
        click.echo(f"controller: API {ctl.api_url}, sync {ctl.sync_address}", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await ctl.stop()

    asyncio.run(run())


def _print_table(headers: Sequence[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


def _emit(data: Any, output: str, table: Callable[[], None]) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
    else:
        table()


def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    seconds = max(0.0, time.time() - ts)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


@click.group("cluster")
def cluster() -> None:
    """Member clusters of the federation."""


@cluster.command("join")
@click.argument("name")
@click.option("--locality", required=True, help="e.g. aws/us-east-1/us-east-1a.")
@click.option("--network", default="default", show_default=True, help="Network name.")
@click.option("--gateway", required=True, metavar="HOST:PORT", help="East-west gateway address.")
@click.option(
    "--provider", type=click.Choice(["aws", "gcp", "local"]), default="local", show_default=True
)
@click.option(
    "--token-ttl", type=DURATION, default="1h", show_default=True, help="Join token lifetime."
)
@controller_option
@token_option
@output_option
def join_cmd(
    name: str,
    locality: str,
    network: str,
    gateway: str,
    provider: str,
    token_ttl: timedelta,
    controller: str | None,
    token: str | None,
    output: str,
) -> None:
    """Register cluster NAME and print its one-time join token.

    Start the cluster's control plane with --controller and --join-token to complete the join.
    """
    try:
        Locality.parse(locality)
        parse_host_port(gateway, what="--gateway")
    except ValueError as err:
        raise InputError(str(err)) from err
    body = {
        "name": name,
        "locality": locality,
        "network": network,
        "gateway": gateway,
        "provider": provider,
        "tokenTtlSeconds": token_ttl.total_seconds(),
    }
    url, tok = controller_target(controller, token)
    result = call("POST", url, "/v1/clusters", token=tok, body=json.dumps(body))
    if output != "table":
        _emit(result, output, lambda: None)
        return
    host = url.split("://", 1)[-1]
    click.echo(
        f"cluster {name} registered; join token (single use, valid {format_duration(token_ttl)}):"
    )
    click.echo(result["token"])
    click.echo(
        f"\nstart its control plane with:\n  meshfed controlplane serve --cluster {name}"
        f" --locality {locality} --network {network} --gateway {gateway}"
        f" --controller {host} --join-token <token>",
        err=True,
    )


@cluster.command("token")
@click.argument("name")
@click.option(
    "--token-ttl", type=DURATION, default="1h", show_default=True, help="Join token lifetime."
)
@controller_option
@token_option
def token_cmd(name: str, token_ttl: timedelta, controller: str | None, token: str | None) -> None:
    """Print a new one-time join token for member NAME (to re-join after losing its state)."""
    body = json.dumps({"tokenTtlSeconds": token_ttl.total_seconds()})
    result = controller_call(controller, token, "POST", f"/v1/clusters/{name}/tokens", body)
    click.echo(result["token"])


def _clusters_table(clusters: list[dict[str, Any]]) -> None:
    _print_table(
        [
            "NAME",
            "STATE",
            "LOCALITY",
            "NETWORK",
            "GATEWAY",
            "PROVIDER",
            "LAST HEARTBEAT",
            "EXPORTS",
        ],
        [
            [
                c["name"],
                c["state"],
                c["locality"],
                c["network"],
                c["gateway"],
                c["provider"],
                _ago(c["lastHeartbeat"]),
                ",".join(c["exports"]) or "-",
            ]
            for c in clusters
        ],
    )


@cluster.command("list")
@controller_option
@token_option
@output_option
def list_cmd(controller: str | None, token: str | None, output: str) -> None:
    """Members with locality, network, gateway, state (Pending/Ready/Unreachable), heartbeat."""
    clusters = controller_call(controller, token, "GET", "/v1/clusters")["clusters"]
    _emit(clusters, output, lambda: _clusters_table(clusters))


@cluster.command("remove")
@click.argument("name")
@controller_option
@token_option
def remove_cmd(name: str, controller: str | None, token: str | None) -> None:
    """Withdraw cluster NAME: its endpoints disappear from every other cluster."""
    controller_call(controller, token, "DELETE", f"/v1/clusters/{name}")
    click.echo(f"cluster {name} removed")


@click.command("get")
@click.argument("what", type=click.Choice(["clusters", "exports", "imports", "policies"]))
@controller_option
@token_option
@output_option
def get_cmd(what: str, controller: str | None, token: str | None, output: str) -> None:
    """Show clusters, exports (with MCS conditions), imports per cluster, or policies."""
    data = controller_call(controller, token, "GET", f"/v1/{what}")[what]

    def table() -> None:
        if what == "clusters":
            _clusters_table(data)
        elif what == "exports":
            _print_table(
                ["CLUSTER", "NAMESPACE", "SERVICE", "CONDITION", "MESSAGE"],
                [
                    [e["cluster"], e["namespace"], e["service"], e["condition"], e["message"]]
                    for e in data
                ],
            )
        elif what == "imports":
            _print_table(
                ["CLUSTER", "SERVICE", "PORTS", "FROM (cluster: gateway, endpoints)"],
                [
                    [
                        i["cluster"],
                        f"{i['metadata']['name']}.{i['metadata']['namespace']}",
                        ",".join(f"{p['port']}/{p['protocol']}" for p in i["spec"]["ports"]),
                        "; ".join(
                            f"{c['cluster']}: {c['gateway']}, {c['endpoints']}"
                            for c in i["spec"]["clusters"]
                        ),
                    ]
                    for i in data
                ],
            )
        else:
            _print_table(
                ["KIND", "NAMESPACE", "NAME"],
                [[p["kind"], p["metadata"]["namespace"], p["metadata"]["name"]] for p in data],
            )

    _emit(data, output, table)
