"""docs/cli.md must match the commands' --help (regenerate with `make docs`)."""

from __future__ import annotations

from pathlib import Path

from federation.cli.main import HELP_INDEX
from tests.cli_reference import help_index, render

DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), "docs/cli.md is stale: run `make docs`"


def test_the_help_index_is_current_and_lists_commands_as_they_would_themselves() -> None:
    """``meshfed --help`` imports no command module (issue 41: it took 1-2 s, now ~0.1 s):
    it lists them from the help index, which must say what the commands say."""
    import subprocess
    import sys

    assert HELP_INDEX.read_text() == help_index(), "help_index.json is stale: run `make docs`"
    probe = (
        "import sys, click; from federation.cli.main import cli\n"
        "ctx = click.Context(cli, info_name='meshfed', terminal_width=100)\n"
        "lazy = cli.get_help(ctx)\n"
        "loaded = sorted(m for m in sys.modules if m.endswith('_commands'))\n"
        "cli.load_all(); print(loaded, lazy == cli.get_help(ctx))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True", out.stdout + out.stderr


def test_every_command_that_prints_json_prints_yaml_too() -> None:
    """kubectl's habit (issue 41): ``-o json`` and ``-o yaml`` go together on every command
    that has an ``--output``."""
    import click

    from federation.cli.main import cli

    def commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
        out = []
        for name, cmd in group.commands.items():
            out.append((f"{path} {name}", cmd))
            if isinstance(cmd, click.Group):
                out += commands(cmd, f"{path} {name}")
        return out

    missing = []
    for name, cmd in commands(cli.load_all(), "meshfed"):
        for param in cmd.params:
            if param.name == "output" and isinstance(param.type, click.Choice):
                choices = set(param.type.choices)
                if "json" in choices and "yaml" not in choices:
                    missing.append(name)
    assert not missing, missing


def test_yaml_says_what_json_says(tmp_path) -> None:
    import json

    import yaml
    from click.testing import CliRunner

    from federation.cli.main import cli

    outs = {}
    for fmt in ("json", "yaml"):
        env = {"MESHFED_HOME": str(tmp_path / fmt)}
        args = ["trust", "init", "--trust-domain", "example.org", "-o", fmt]
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
        outs[fmt] = json.loads(result.output) if fmt == "json" else yaml.safe_load(result.output)
    assert (
        outs["json"].keys() == outs["yaml"].keys()
        and outs["json"]["trust_domain"] == (outs["yaml"]["trust_domain"])
    )
