"""``meshfed controller serve``, ``meshfed cluster join|list|remove|token``,
``meshfed get clusters|exports|imports|policies`` and ``meshfed dashboard``: the federation
controller and its API."""

from __future__ import annotations

import json
import time
import webbrowser
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from federation.cli.kube_commands import controller_install_cmd
from federation.cli.params import (
    DURATION,
    PATH,
    InputError,
    admin_token_option,
    controller_option,
    emit,
    output_option,
    print_table,
)
from federation.client import call, controller_target, split_urls
from federation.cluster_join import join_request, next_step
from federation.durations import format_duration
from federation.local.description import load
from federation.paths import meshfed_home
from federation.selection import get, listing_table
from providers.factory import CLOUDS, cluster_from, discovered, for_cloud


def controller_call(
    controller: str | None, token: str | None, method: str, path: str, body: str | None = None
) -> Any:
    """Call the controller found from flags or config.yaml (errors as :func:`call`)."""
    url, tok = controller_target(controller, token)
    return call(method, url, path, token=tok, body=body)


@click.group("controller", commands=[controller_install_cmd])
def controller() -> None:
    """Run the federation controller (membership, exports/imports, sync, root of trust)."""


@controller.command("serve")
@click.option(
    "--listen",
    default="127.0.0.1:15080",
    show_default=True,
    help="REST API (HTTPS) address.",
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
    "--store",
    "store_dsn",
    default=None,
    envvar="MESHFED_CONTROLLER_STORE",
    metavar="POSTGRESQL_URL",
    help="Keep the state in PostgreSQL instead of --state: a libpq connection string such"
    " as postgresql://meshfed@db.internal:5432/meshfed (password from ~/.pgpass or"
    " PGPASSWORD; also $MESHFED_CONTROLLER_STORE). Schema migrations are applied at start."
    " Several replicas may share one database: each serves the API and sync, one leader"
    " (by lease) re-signs intermediates and plans; give them the same --trust-dir and"
    " --token-file (docs/controller-ha.md).",
)
@click.option(
    "--advertise-sync",
    default=None,
    metavar="HOST:PORT",
    help="The sync address control planes are told to dial (join answer, and every"
    " replica's address in each update).  [default: --sync-listen]",
)
@click.option(
    "--replica-name",
    default=None,
    help="This replica's name among those sharing --store (unique; shown as the leader)."
    "  [default: <hostname>:<API port>]",
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
@click.option(
    "--authz-default",
    type=click.Choice(["allow", "deny"]),
    default="allow",
    show_default=True,
    help="Mesh-wide default for workloads no ALLOW AuthorizationPolicy selects: allow (as"
    " Istio) or deny (adds meshfed-system/mesh-default-deny, an ALLOW policy without rules).",
)
@click.option(
    "--intermediate-ttl",
    type=DURATION,
    default="7d",
    show_default=True,
    help="Lifetime of the intermediate CAs signed for joining clusters; re-signed over the"
    " sync channel at half life, and at once after 'meshfed trust rotate-root'.",
)
@click.option(
    "--clusterset-ip-range",
    default="240.241.0.0/16",
    show_default=True,
    metavar="CIDR",
    help="IPv4 range of the ClusterSetIPs given to exported services (MCS ServiceImport"
    " spec.ips); an address once given is kept.",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Serve the REST API in plain HTTP (refused unless --listen is a loopback address).",
)
@click.option("--bundle-refresh-hint", type=DURATION, default="5m", show_default=True,
              help="spiffe_refresh_hint of the SPIFFE bundle endpoint (GET /v1/spiffe-bundle on"
              " the API, profile https_spiffe): how often federated meshes poll it.")  # fmt: skip
@click.option("--bundle-endpoint-listen", default=None, metavar="HOST:PORT",
              help="Also serve the bundle (GET /, and nothing else) on this address.")  # fmt: skip
@click.option("--bundle-endpoint-cert", type=PATH, default=None, metavar="PEM",
              help="Its certificate chain (profile https_web; re-read when renewed)."
              "  [default: the controller's SVID, profile https_spiffe]")  # fmt: skip
@click.option("--bundle-endpoint-key", type=PATH, default=None, metavar="PEM",
              help="The key of --bundle-endpoint-cert.")  # fmt: skip
def serve_cmd(**flags: Any) -> None:
    """Serve the REST API (HTTPS) and the sync service (mTLS) until SIGTERM/SIGINT.

    The API's certificate comes from the root of trust (DNS name controller.meshfed.internal).
    Writes $MESHFED_HOME/config.yaml (URL, token file, CA file) so that other meshfed commands
    find and verify it.
    """
    from federation.controller.config import serve_config
    from federation.controller.server import serve

    def started(ctl: Any) -> None:
        click.echo(f"controller: API {ctl.api_url}, sync {ctl.sync_address}", err=True)

    serve(serve_config(**flags), started)


@controller.command("replicas")
@controller_option
@admin_token_option
@output_option()
def replicas_cmd(controller: str | None, token: str | None, output: str) -> None:
    """Show the controller replicas sharing one PostgreSQL database, and the leader.

    The leader holds the lease (5 s, renewed every second) and alone re-signs intermediates
    and plans cost mode optimize; every replica serves the API and sync streams. A single
    controller on SQLite shows itself as the leader."""
    data = controller_call(controller, token, "GET", "/v1/replicas")

    def table() -> None:
        leader = data.get("leader")
        print_table(
            ["NAME", "API", "SYNC", "ROLE"],
            [
                [
                    r["name"],
                    r.get("apiUrl", ""),
                    r["syncAddress"],
                    "leader" if r["name"] == leader else "follower",
                ]
                for r in data["replicas"]
            ],
        )
        if leader is None:
            click.echo("no leader: the lease is free (a takeover is under way)")

    emit(data, output, table)


@controller.command("migrate")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="POSTGRESQL_URL",
    help="The PostgreSQL database to copy the state into (its schema is created or migrated).",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The SQLite state file to copy.  [default: $MESHFED_HOME/controller.db]",
)
@output_option(("table", "json", "yaml"))
def migrate_cmd(target: str, state: Path | None, output: str) -> None:
    """Copy a controller's SQLite state into PostgreSQL, in one transaction, and verify it.

    The database then holds exactly the file's members, join tokens, exports, reports and
    applied documents (running it again changes nothing). Prints, per table, the rows and
    SHA-256 of both sides; exits 1 when they differ. Stop the controller first. The root of
    trust is not in the state: replicas mount the same trust directory, or use Vault or
    AWS Private CA (docs/architecture.md, "Controller state").
    """
    from federation.controller.migrate import migrate

    source_path = state or meshfed_home() / "controller.db"
    where, rows = migrate(source_path, target)
    if output != "table":
        emit({"from": str(source_path), "to": where, "tables": rows}, output, lambda: None)
    else:
        click.echo(f"copied {source_path} -> {where}")
        for r in rows:
            verdict = "ok" if r["match"] else "DIFFERS"
            sha = r["targetSha256"][:16]
            click.echo(f"  {r['table']:<12} {r['rows']:>6} rows  sha256 {sha}  {verdict}")
    if not all(r["match"] for r in rows):
        raise click.exceptions.Exit(1)


@click.group("cluster")
def cluster() -> None:
    """Member clusters of the federation."""


@cluster.command("discover")
@click.option("--provider", type=click.Choice(CLOUDS), required=True)
@click.option("--region", default=None, help="AWS region (--provider aws).")
@click.option("--profile", default=None, help="AWS profile.  [default: the usual chain]")
@click.option("--project", default=None, help="Google Cloud project (--provider gcp).")
@click.option("--location", default="-", show_default=True, help="GKE region or zone; - for all.")
@click.option(
    "-f",
    "--filename",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="LocalFederation file (--provider local).  [default: the built-in demo]",
)
@output_option()
def discover_cmd(
    provider: str,
    region: str | None,
    profile: str | None,
    project: str | None,
    location: str,
    filename: Path | None,
    output: str,
) -> None:
    """List the EKS, GKE or local (meshfed up) clusters you can join, with locality and network.

    Credentials come from the SDKs' usual chains (AWS profiles and environment, Google
    Application Default Credentials); nothing secret is printed.
    """
    clusters = load(filename).cluster_infos() if provider == "local" else ()
    found = for_cloud(
        provider,
        region=region,
        profile=profile,
        project=project,
        location=location,
        clusters=clusters,
    ).list_clusters()
    data = [discovered(c, project, location) for c in found]
    columns = ["NAME", "LOCALITY", "ZONES", "NETWORK", "STATUS", "JOIN WITH --from"]
    rows = [[d["name"], d["locality"], ",".join(d["zones"]), d["network"], d["status"], d["from"]]
            for d in data]  # fmt: skip
    emit(data, output, lambda: print_table(columns, rows))


@cluster.command("join")
@click.argument("name")
@click.option("--locality", default=None, help="e.g. aws/us-east-1/us-east-1a.")
@click.option("--network", default=None, help="Network name.  [default: default]")
@click.option(
    "--gateway",
    default=None,
    metavar="HOST:PORT",
    help="East-west gateway address.  [default: none: the cluster's control plane reports it"
    " (the LoadBalancer Service of meshfed install); its exports are Pending until then]",
)
@click.option("--provider", type=click.Choice(CLOUDS), default=None, help="[default: local]")
@click.option(
    "--from",
    "from_",
    default=None,
    metavar="aws:eks/REGION/CLUSTER|gcp:gke/PROJECT/LOCATION/CLUSTER",
    help="Fill locality, network and provider from the cloud (EKS or GKE).",
)
@click.option("--profile", default=None, help="AWS profile for --from.")
@click.option(
    "--token-ttl", type=DURATION, default="1h", show_default=True, help="Join token lifetime."
)
@controller_option
@admin_token_option
@output_option()
def join_cmd(
    name: str,
    locality: str | None,
    network: str | None,
    gateway: str | None,
    provider: str | None,
    from_: str | None,
    profile: str | None,
    token_ttl: timedelta,
    controller: str | None,
    token: str | None,
    output: str,
) -> None:
    """Register cluster NAME and print its one-time join token.

    Start the cluster's control plane with --controller and --join-token to complete the join.
    With --from the cloud fills in locality, network and provider (flags still win).
    """
    if from_:
        info = cluster_from(from_, profile=profile)
        locality = locality or info.locality
        network = network or info.network
        provider = provider or info.cloud
    body = join_request(name, locality, network, gateway, provider, token_ttl.total_seconds())
    url, tok = controller_target(controller, token)
    result = call("POST", url, "/v1/clusters", token=tok, body=json.dumps(body))
    if output != "table":
        return emit(result, output, lambda: None)
    ttl = format_duration(token_ttl)
    click.echo(f"cluster {name} registered; join token (single use, valid {ttl}):")
    click.echo(result["token"])
    click.echo(f"\n{next_step(body, url)}", err=True)


@cluster.command("token")
@click.argument("name")
@click.option(
    "--token-ttl", type=DURATION, default="1h", show_default=True, help="Join token lifetime."
)
@controller_option
@admin_token_option
def token_cmd(name: str, token_ttl: timedelta, controller: str | None, token: str | None) -> None:
    """Print a new one-time join token for member NAME (to re-join after losing its state)."""
    body = json.dumps({"tokenTtlSeconds": token_ttl.total_seconds()})
    result = controller_call(controller, token, "POST", f"/v1/clusters/{name}/tokens", body)
    click.echo(result["token"])


@cluster.command("list")
@controller_option
@admin_token_option
@output_option()
def list_cmd(controller: str | None, token: str | None, output: str) -> None:
    """Members with locality, network, gateway, state (Pending/Ready/Unreachable), heartbeat."""
    clusters = controller_call(controller, token, "GET", "/v1/clusters")["clusters"]
    emit(clusters, output, lambda: print_table(*listing_table("clusters", clusters, time.time())))


@cluster.command("remove")
@click.argument("name")
@controller_option
@admin_token_option
def remove_cmd(name: str, controller: str | None, token: str | None) -> None:
    """Withdraw cluster NAME: its endpoints disappear from every other cluster."""
    controller_call(controller, token, "DELETE", f"/v1/clusters/{name}")
    click.echo(f"cluster {name} removed")


@click.command("dashboard")
@controller_option
@admin_token_option
@click.option("--open", "open_browser", is_flag=True, help="Also open it in the default browser.")
def dashboard_cmd(controller: str | None, token: str | None, open_browser: bool) -> None:
    """Print the link to the controller's dashboard: the clusters, their gateways and exports,
    which cluster serves whom, and per edge requests/s, p99, error share and egress $/hour,
    updated every 2 s (read-only).

    The link carries the admin token after '#': browsers never send that part to a server,
    and the page moves it into the tab's session storage and off the address bar at once.
    The controller's certificate is issued by the federation's root and names the API's
    address: trust the bundle in the browser (docs/metrics.md), or accept it once."""
    url, tok = controller_target(controller, token)
    if not tok:
        raise InputError("no admin token: pass --token, set MESHFED_TOKEN or run meshfed up")
    link = f"{split_urls(url)[0]}/dashboard#token={tok}"
    click.echo(link)
    if open_browser:
        webbrowser.open(link)


@click.command("get")
@click.argument("kind", metavar="KIND")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="Only this namespace.  [default: all]")
@controller_option
@admin_token_option
@output_option(("table", "wide", "json", "yaml"))
def get_cmd(
    kind: str, name: str | None, namespace: str | None, controller: str | None,
    token: str | None, output: str,
) -> None:  # fmt: skip
    """Show clusters, exports (with MCS conditions), imports per cluster or policies, all or
    NAME (KIND: cluster, export, import, policy or a policy's kind; singular or plural)."""
    what, data = get(kind, name, namespace, lambda p: controller_call(controller, token, "GET", p))
    wide = output == "wide"
    emit(data, output, lambda: print_table(*listing_table(what, data, time.time(), wide=wide)))


@click.command("describe")
@click.argument("kind", metavar="KIND")
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="Only this namespace.  [default: all]")
@controller_option
@admin_token_option
@output_option()
def describe_cmd(
    kind: str, name: str, namespace: str | None, controller: str | None,
    token: str | None, output: str,
) -> None:  # fmt: skip
    """Show everything the controller knows about one cluster, service (KIND export or
    import) or policy: state, conditions, who imports it from where, the documents that
    route and authorize it, its traffic over the last 10 s."""
    from federation.describe import describe, render

    found = describe(
        kind, name, namespace, lambda p: controller_call(controller, token, "GET", p), time.time()
    )
    emit([d.data for d in found] if len(found) > 1 else found[0].data, output,
         lambda: click.echo("\n\n".join(render(d) for d in found)))  # fmt: skip


@click.command("check")
@controller_option
@admin_token_option
@output_option(("table", "json", "yaml"))
def check_cmd(controller: str | None, token: str | None, output: str) -> None:
    """Check the federation end to end, with what to do about each failure: the controller,
    clocks, members Ready, every proxy in sync (naming those that are not), certificates'
    remaining life, gateways reachable from here. Exit code 1 when a check fails."""
    from federation.checks import CHECK_COLUMNS, row, worst
    from federation.local.check import run_checks

    checks = run_checks(*controller_target(controller, token), meshfed_home())
    table = [row(c) for c in checks]
    emit([c.to_json() for c in checks], output, lambda: print_table(CHECK_COLUMNS, table))
    if worst(checks) == "fail":
        raise SystemExit(1)
