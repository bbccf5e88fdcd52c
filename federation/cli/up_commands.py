"""``meshfed up``, ``down``, ``status`` and ``demo kill|revive``: a whole federation on this
machine (see :mod:`federation.local`)."""

from __future__ import annotations

import functools
import signal
import time
from pathlib import Path
from typing import Any

import click

from federation.cli.params import InputError, emit, output_option, print_table
from federation.local.description import load
from federation.local.emulator import request as emulator_request
from federation.local.netns import IsolationUnavailableError, preflight
from federation.local.placement import remove_network
from federation.local.processes import Record, UpError, stop_processes
from federation.local.runner import LocalFederationRunner
from federation.local.status import controller_traffic, status_data
from federation.local.teardown import echo_processes, tear_down
from federation.local_tables import live_table, print_status_traffic
from federation.paths import meshfed_home
from federation.selection import listing_table


def _record_or_fail(home: Path) -> Record:
    record = Record.load(home)
    if record is None or not record.alive():
        raise InputError(f"no local federation is running in {home} (start one: meshfed up)")
    return record


@click.command("up")
@click.option(
    "-f",
    "--filename",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A LocalFederation file.  [default: the built-in demo, examples/federation.yaml]",
)
@click.option("--detach", is_flag=True, help="Return once everything runs (stop: meshfed down).")
@click.option(
    "--isolate",
    is_flag=True,
    help="Put every cluster and the controller in a Linux network namespace of its own, joined"
    " by a link emulator with the file's latency/loss between regions: only east-west"
    " gateways and the controller are reachable across clusters (root and iproute2).",
)
def up_cmd(filename: Path | None, detach: bool, isolate: bool) -> None:
    """Start a whole federation on this machine: root of trust, controller, a control plane
    and east-west gateway per cluster, demo echo replicas with sidecars, a frontend; then
    show where its requests go (Ctrl-C stops everything)."""
    desc = load(filename)  # a bad file is refused before anything starts
    home = meshfed_home()
    existing = Record.load(home)
    if existing is not None and existing.alive():
        raise InputError(f"a local federation is already running in {home} (meshfed down first)")
    if existing is not None:  # a crashed `up`: remove what it left
        remove_network(existing.info.get("network", {}))
    if isolate:
        try:
            preflight()
        except IsolationUnavailableError as err:
            raise InputError(str(err)) from err
    click.echo(
        f"meshfed up: {desc.metadata.name}, {len(desc.spec.clusters)} clusters;"
        f" logs in {home / 'logs'}",
        err=True,
    )
    runner = LocalFederationRunner(
        desc, home, lambda line: click.echo("  " + line, err=True), source=filename, isolate=isolate
    )
    runner.up()
    info = runner.record.info
    click.echo(
        f"up in {info.get('upSeconds')} s. Try: meshfed status | meshfed dashboard |"
        f" meshfed demo kill {desc.spec.frontend.cluster}/echo | meshfed explain echo.demo"
        f" --from {desc.spec.frontend.cluster}",
        err=True,
    )
    if detach:
        return
    from rich.console import Console
    from rich.live import Live

    stop = {"flag": False}

    def on_signal(_sig: int, _frame: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with Live(console=Console(stderr=False), refresh_per_second=2) as live:
            while not stop["flag"]:
                live.update(live_table(desc, controller_traffic(home, info["controller"])))
                runner.reap()  # what `demo kill` stopped: no zombie kept until up ends
                time.sleep(1)
    finally:
        click.echo("stopping...", err=True)
        saved = Record.load(home)  # and what `demo revive` started, recorded only in the file
        done = tear_down(home, runner.record, saved.processes if saved else [])
        click.echo(f"stopped {len(done.stopped)} processes", err=True)
        if done.left:
            click.echo(f"could not remove: {', '.join(done.left)}", err=True)


def _waiting(message: str) -> None:
    """``stop_processes``'s progress on stderr, but its first line (every process's name):
    what is still awaited every few seconds, and what had to be killed."""
    if not message.startswith("stopping "):
        click.echo(message, err=True)


@click.command("down")
def down_cmd() -> None:
    """Stop every process meshfed up started here (by recorded pid and start time), and
    nothing else; after up --isolate also remove its network namespaces and devices (also
    when up crashed; running down twice is harmless)."""
    home = meshfed_home()
    record = Record.load(home)
    if record is None:
        click.echo(f"nothing to stop in {home}")
        return
    done = tear_down(home, record, progress=_waiting)
    if done.left:
        raise click.ClickException(
            f"stopped {len(done.stopped)} processes, but could not remove:"
            f" {', '.join(done.left)} (run meshfed down again as root)"
        )
    removed = f" and {len(done.namespaces)} network namespaces (pods included)"
    click.echo(
        f"stopped {len(done.stopped)} processes{removed if record.info.get('network') else ''}"
    )


@click.command("status")
@output_option(("table", "json", "yaml"))
def status_cmd(output: str) -> None:
    """The local federation: clusters, imports, proxies in sync, and the traffic every
    sidecar counted (any service): shares, rates, p50/p99, errors and egress dollars by
    caller and serving cluster, from the controller's GET /v1/traffic."""
    home = meshfed_home()
    data = status_data(home, _record_or_fail(home))
    if output != "table":
        return emit(data, output, lambda: None)
    print_table(
        ("CLUSTER", "STATE", "LOCALITY", "EXPORTS", "PROXIES SYNCED"),
        [
            (c["name"], c["state"], c["locality"], ",".join(c["exports"]) or "-",
             f"{c.get('synced', 0)}/{c.get('proxies', 0)}")
            for c in data["clusters"]
        ],
    )  # fmt: skip
    print_table(
        ("CLUSTER", "IMPORTS", "FROM"),
        [(i["cluster"], i["service"], ",".join(i["from"])) for i in data["imports"]],
    )
    if data["trustDomains"]:
        print_table(*listing_table("trustdomains", data["trustDomains"], time.time()))
    print_status_traffic(data)


@click.group("demo")
def demo() -> None:
    """Scenarios for the local federation."""


@demo.command("kill")
@click.argument("target", metavar="CLUSTER/echo")
def kill_cmd(target: str) -> None:
    """Stop a cluster's echo replicas (sidecars deregister and drain first)."""
    procs = echo_processes(_record_or_fail(meshfed_home()), target)
    say = functools.partial(click.echo, err=True)  # sidecars drain first: seconds
    stopped = stop_processes([p for p in procs if p.role == "echo-sidecar"], progress=say)
    stopped += stop_processes([p for p in procs if p.role.endswith("-app")], progress=say)
    click.echo(f"stopped {len(stopped)} processes of {target}")


@demo.command("revive")
@click.argument("target", metavar="CLUSTER/echo")
def revive_cmd(target: str) -> None:
    """Start a cluster's echo replicas again."""
    home = meshfed_home()
    record = _record_or_fail(home)
    procs = echo_processes(record, target)
    desc = load(Path(record.info["file"])) if record.info.get("file") else load(None)
    runner = LocalFederationRunner(
        desc, home, lambda line: None, isolate=bool(record.info.get("network"))
    )
    runner.record = record
    cluster = target.partition("/")[0]
    try:
        started = runner.revive_echoes(cluster, procs)
    except UpError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"started {started} echo replica(s) in {cluster}")


def _emulator(record: Record, body: dict[str, Any]) -> dict[str, Any]:
    network = record.info.get("network")
    if not network:
        raise InputError("this federation was not started with `meshfed up --isolate`")
    try:
        answer = emulator_request(Path(network["control"]), body)
    except OSError as err:
        raise click.ClickException(f"the link emulator does not answer: {err}") from err
    if not answer.get("ok"):
        raise InputError(str(answer.get("error")))
    return answer


@demo.command("partition")
@click.argument("cluster")
@click.option(
    "--from",
    "peers",
    multiple=True,
    metavar="PEER",
    help="Cut only the path to PEER (a cluster, or `controller`); repeatable."
    "  [default: every other cluster and the controller]",
)
def partition_cmd(cluster: str, peers: tuple[str, ...]) -> None:
    """Cut CLUSTER off the network (meshfed up --isolate only): packets to and from it are
    dropped, as when a region loses its links. Your own host keeps reaching it."""
    record = _record_or_fail(meshfed_home())
    answer = _emulator(record, {"op": "partition", "node": cluster, "peers": list(peers)})
    click.echo(f"partitioned {cluster} from {', '.join(answer['peers'])}")


@demo.command("heal")
@click.argument("cluster")
def heal_cmd(cluster: str) -> None:
    """Restore every path of CLUSTER cut by meshfed demo partition."""
    record = _record_or_fail(meshfed_home())
    _emulator(record, {"op": "heal", "node": cluster})
    click.echo(f"healed {cluster}")


@demo.command("network")
@output_option(("table", "json", "yaml"))
def network_cmd(output: str) -> None:
    """The isolated network (meshfed up --isolate): round trips between clusters, partitions
    and the link emulator's packet counters."""
    record = _record_or_fail(meshfed_home())
    answer = _emulator(record, {"op": "status"})
    answer.pop("ok", None)
    if output != "table":
        return emit(answer, output, lambda: None)
    click.echo(
        "round trips (ms): "
        + ", ".join(f"{k.replace('|', ' - ')} {v:g}" for k, v in answer["rttMs"].items())
    )
    cut = answer["partitions"]
    click.echo("partitions: " + (", ".join(" - ".join(p) for p in cut) if cut else "none"))
    click.echo("packets: " + ", ".join(f"{k} {v}" for k, v in sorted(answer["counters"].items())))
