"""Entry point of the ``meshfed`` command.

Exit codes: 0 success; 1 a failure that may succeed on retry (I/O, unreachable backend);
2 bad input or a refused request (the message names the input and the reason).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

import click

from federation.cli.params import emit, output_option
from federation.errors import InvalidDocumentError
from federation.paths import HOME_ENV
from trust.errors import MeshfedError

EXIT_RETRYABLE = 1
EXIT_BAD_INPUT = 2


def one_line(err: BaseException | str) -> str:
    """The error's message on one line (a multi-line cause folded with ``; ``)."""
    return "; ".join(part.strip() for part in str(err).splitlines() if part.strip())


#: Where each top-level command lives, imported only when it runs or is asked for help
#: (``meshfed --help`` lists them from :data:`HELP_INDEX`, without importing them).
COMMANDS = {
    "check": "controller_commands:check_cmd", "trust": "trust_commands:trust",
    "controller": "controller_commands:controller", "cluster": "controller_commands:cluster",
    "controlplane": "controlplane_commands:controlplane",
    "apply": "controlplane_commands:apply_cmd", "delete": "controlplane_commands:delete_cmd",
    "get": "controller_commands:get_cmd", "describe": "controller_commands:describe_cmd",
    "dashboard": "controller_commands:dashboard_cmd",
    "explain": "controlplane_commands:explain_cmd",
    "proxy-status": "controlplane_commands:proxy_status_cmd",
    "trace": "controlplane_commands:trace_cmd", "bootstrap": "controlplane_commands:bootstrap",
    "proxy": "proxy_commands:proxy", "workload": "workload_commands:workload",
    "up": "up_commands:up_cmd", "down": "up_commands:down_cmd",
    "status": "up_commands:status_cmd", "demo": "up_commands:demo",
    "install": "kube_commands:install_cmd", "uninstall": "kube_commands:uninstall_cmd",
    "inject": "kube_commands:inject_cmd", "uninject": "kube_commands:uninject_cmd",
    "shift": "shift_commands:shift_cmd", "cost": "cost_commands:cost",
    "prices": "cost_commands:prices",
}  # fmt: skip
#: Each lazy command's help, first paragraph (``make docs`` writes it; a unit test checks it).
HELP_INDEX = Path(__file__).with_name("help_index.json")


@cache
def help_index() -> dict[str, str]:
    """:data:`HELP_INDEX` read ({} when missing or unreadable: then commands are imported)."""
    try:
        return dict(json.loads(HELP_INDEX.read_text()))
    except (OSError, ValueError):
        return {}


class MeshfedGroup(click.Group):
    """Turns meshfed's own errors (:class:`trust.errors.MeshfedError`, the tree drawn in
    :mod:`federation.errors`) into one ``Error: ...`` line per problem and the right exit
    code; never a traceback. Its commands (:data:`COMMANDS`) are imported when used."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidDocumentError as err:
            for problem in err.problems:
                click.echo(f"Error: {one_line(problem)}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except MeshfedError as err:
            click.echo(f"Error: {one_line(err)}", err=True)
            ctx.exit(EXIT_RETRYABLE if err.retryable else EXIT_BAD_INPUT)
        except OSError as err:  # a file that cannot be written, ...
            click.echo(f"Error: {one_line(err)}", err=True)
            ctx.exit(EXIT_RETRYABLE)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attr = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(f"federation.cli.{module}"), attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def load_all(self) -> MeshfedGroup:
        """Import every command (for walks over :attr:`commands`: docs, tests)."""
        for name in COMMANDS:
            self.get_command(click.Context(self), name)
        return self

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with the help of commands not imported yet from the index."""
        index, rows = help_index(), []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is None and name in index:
                cmd = click.Command(name, help=index[name])
            cmd = cmd or self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in rows])


@click.group(cls=MeshfedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meshfed", prog_name="meshfed")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    envvar="MESHFED_LOG_LEVEL",
    help="Verbosity of log lines on stderr.",
)
@click.option("--home", default=None, metavar="DIR", help="The federation to work with (kubectl's"
              " --context): its directory.  [default: $MESHFED_HOME, else ~/.meshfed]")  # fmt: skip
def cli(log_level: str, home: str | None) -> None:
    """meshfed: federate service meshes across clusters and clouds.

    Files live under $MESHFED_HOME (default ~/.meshfed); --home DIR picks another.
    """
    if home:
        os.environ[HOME_ENV] = str(Path(home).resolve())
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@cli.command("version")
@output_option(("table", "json", "yaml"))
def version_cmd(output: str) -> None:
    """Show the versions of meshfed, its Python and the Envoy it runs."""
    from federation.agent.envoy_process import versions

    data = versions()
    emit(data, output, lambda: click.echo("\n".join(f"{k}: {v}" for k, v in data.items())))


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script (click's): source <(meshfed completion bash), or
    meshfed completion zsh > "${fpath[1]}/_meshfed"."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # every choice has a class
    click.echo(complete(cli, {}, "meshfed", "_MESHFED_COMPLETE").source())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="meshfed")


if __name__ == "__main__":
    main()
