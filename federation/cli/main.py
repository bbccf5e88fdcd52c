"""Entry point of the ``meshfed`` command.

Exit codes: 0 success; 1 a failure that may succeed on retry (I/O, unreachable backend);
2 bad input or a refused request (the message names the input and the reason).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from federation.cli.controller_commands import (
    check_cmd,
    cluster,
    controller,
    dashboard_cmd,
    describe_cmd,
    get_cmd,
)
from federation.cli.controlplane_commands import (
    apply_cmd,
    bootstrap,
    controlplane,
    delete_cmd,
    explain_cmd,
    proxy_status_cmd,
    trace_cmd,
)
from federation.cli.cost_commands import cost, prices
from federation.cli.kube_commands import (
    controller_install_cmd,
    inject_cmd,
    install_cmd,
    uninject_cmd,
    uninstall_cmd,
)
from federation.cli.params import emit, output_option
from federation.cli.proxy_commands import proxy
from federation.cli.shift_commands import shift_cmd
from federation.cli.trust_commands import trust
from federation.cli.up_commands import demo, down_cmd, status_cmd, up_cmd
from federation.cli.workload_commands import workload
from federation.errors import InvalidDocumentError
from federation.paths import HOME_ENV
from trust.errors import MeshfedError

EXIT_RETRYABLE = 1
EXIT_BAD_INPUT = 2


def one_line(err: BaseException | str) -> str:
    """The error's message on one line (a multi-line cause folded with ``; ``)."""
    return "; ".join(part.strip() for part in str(err).splitlines() if part.strip())


class MeshfedGroup(click.Group):
    """Turns meshfed's own errors (:class:`trust.errors.MeshfedError`, the tree drawn in
    :mod:`federation.errors`) into one ``Error: ...`` line per problem and the right exit
    code; never a traceback."""

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
        except OSError as err:  # an address in use, a file that cannot be written, ...
            click.echo(f"Error: {one_line(err)}", err=True)
            ctx.exit(EXIT_RETRYABLE)


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


@click.command("version")
@output_option(("table", "json", "yaml"))
def version_cmd(output: str) -> None:
    """Show the versions of meshfed, its Python and the Envoy it runs."""
    from federation.agent.envoy_process import versions

    data = versions()
    emit(data, output, lambda: click.echo("\n".join(f"{k}: {v}" for k, v in data.items())))


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script (click's): source <(meshfed completion bash), or
    meshfed completion zsh > "${fpath[1]}/_meshfed"."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # every choice has a class
    click.echo(complete(cli, {}, "meshfed", "_MESHFED_COMPLETE").source())


for command in (
    check_cmd,
    trust,
    controller,
    cluster,
    controlplane,
    apply_cmd,
    delete_cmd,
    get_cmd,
    describe_cmd,
    dashboard_cmd,
    explain_cmd,
    proxy_status_cmd,
    trace_cmd,
    bootstrap,
    proxy,
    workload,
    up_cmd,
    down_cmd,
    status_cmd,
    demo,
    install_cmd,
    uninstall_cmd,
    inject_cmd,
    uninject_cmd,
    shift_cmd,
    cost,
    prices,
    version_cmd,
    completion_cmd,
):
    cli.add_command(command)
controller.add_command(controller_install_cmd)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="meshfed")


if __name__ == "__main__":
    main()
