"""Shared click parameter types, options and output helpers of the ``meshfed`` CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from federation.durations import parse_duration

F = TypeVar("F", bound=Callable[..., Any])


class InputError(click.ClickException):
    """Bad input on the command line: prints ``Error: <message>`` and exits with code 2."""

    exit_code = 2


class Duration(click.ParamType[timedelta]):
    """A click parameter holding a :class:`~datetime.timedelta` (see :func:`parse_duration`)."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


DURATION = Duration()
#: A file path (need not exist yet).
PATH = click.Path(dir_okay=False, path_type=Path)


controller_option = click.option(
    "--controller",
    envvar="MESHFED_CONTROLLER",
    default=None,
    metavar="URL",
    help="Controller API, e.g. https://127.0.0.1:15080.  [default: from $MESHFED_HOME/config.yaml]",
)


def output_option(
    choices: tuple[str, ...] = ("table", "json", "yaml"), default: str = "table", help: str = ""
) -> Callable[[F], F]:
    """``-o/--output`` with ``choices`` (kubectl's and istioctl's flag)."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help=help or "Output format.",
    )


#: ``--token`` of controller commands: the admin bearer token.
admin_token_option = click.option(
    "--token",
    envvar="MESHFED_TOKEN",
    default=None,
    help="Admin bearer token.  [default: the tokenFile in $MESHFED_HOME/config.yaml]",
)
#: ``--token`` of control-plane commands: that control plane's API token.
controlplane_token_option = click.option(
    "--token",
    envvar="MESHFED_TOKEN",
    default=None,
    help="API bearer token.  [default: found in $MESHFED_HOME/controlplanes/*/endpoint.json]",
)
#: ``--controlplane URL`` (required).
controlplane_option = click.option(
    "--controlplane",
    "controlplane",
    required=True,
    metavar="URL",
    help="Control plane API, e.g. https://127.0.0.1:15014.",
)


def image_options(help: str) -> list[Callable[[F], F]]:
    """``--image REF`` and ``--allow-tag``, for
    :func:`federation.install.images.pinned_image`."""
    return [
        click.option("--image", default="", metavar="REPO@sha256:DIGEST", help=help),
        click.option("--allow-tag", is_flag=True, help="Accept --image by tag (it can move)."),
    ]


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A borderless table on stdout (rich), 200 columns wide at most."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


def emit(data: Any, output: str, table: Callable[[], None]) -> None:
    """Print ``data`` as JSON or YAML for ``-o json|yaml``, else call ``table()``."""
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    elif output == "yaml":
        from federation.model.documents import to_yaml

        click.echo(to_yaml(data), nl=False)
    else:
        table()
