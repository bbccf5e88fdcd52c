"""Render the CLI reference (``docs/cli.md``) from the commands' own ``--help``, and the
help index ``meshfed --help`` lists commands from without importing them
(:data:`federation.cli.main.HELP_INDEX`).

Run ``python -m tests.cli_reference > docs/cli.md`` and ``python -m
tests.cli_reference --index > federation/cli/help_index.json`` (``make docs``); unit
tests check the committed files equal this output, so neither can drift from ``--help``.
"""

from __future__ import annotations

import inspect
import json
import sys

import click

from federation.cli.main import COMMANDS, cli


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found.extend(_walk(command.commands[name], [*path, name]))
    return found


def render() -> str:
    """The Markdown reference: one section per command with its ``--help`` text."""
    parts = [
        "# meshfed CLI reference\n",
        "Generated from `--help` by `make docs` (`python -m tests.cli_reference`).",
        "Exit codes: 0 success, 1 failure that may succeed on retry,"
        " 2 bad input or refused request.\n",
    ]
    for path, command in _walk(cli.load_all(), ["meshfed"]):
        with click.Context(
            command,
            info_name=" ".join(path),
            terminal_width=100,
            help_option_names=["-h", "--help"],
        ) as ctx:
            help_text = command.get_help(ctx)
        parts.append(f"## `{' '.join(path)}`\n\n```text\n{help_text}\n```\n")
    return "\n".join(parts)


def help_index() -> str:
    """``help_index.json``: each lazily imported command's help, up to its first blank line
    (all click's one-line listing reads), as JSON."""
    cli.load_all()
    index = {
        name: inspect.cleandoc(cli.commands[name].help or "").split("\n\n")[0]
        for name in sorted(COMMANDS)
    }
    return json.dumps(index, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    click.echo(help_index() if sys.argv[1:] == ["--index"] else render(), nl=False)
