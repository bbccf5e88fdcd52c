"""Render the CLI reference (``docs/cli.md``) from the commands' own ``--help``.

Run ``python -m federation.cli.reference > docs/cli.md`` (``make docs``); a unit test checks
the committed file equals this output, so the docs cannot drift from ``--help``.
"""

from __future__ import annotations

import click

from federation.cli.main import cli


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
        "Generated from `--help` by `make docs` (`python -m federation.cli.reference`).",
        "Exit codes: 0 success, 1 failure that may succeed on retry,"
        " 2 bad input or refused request.\n",
    ]
    for path, command in _walk(cli, ["meshfed"]):
        with click.Context(
            command,
            info_name=" ".join(path),
            terminal_width=100,
            help_option_names=["-h", "--help"],
        ) as ctx:
            help_text = command.get_help(ctx)
        parts.append(f"## `{' '.join(path)}`\n\n```text\n{help_text}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    click.echo(render(), nl=False)
