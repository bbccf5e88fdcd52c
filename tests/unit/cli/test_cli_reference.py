"""docs/cli.md must match the commands' --help (regenerate with `make docs`)."""

from __future__ import annotations

from pathlib import Path

from federation.cli.reference import render

DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), "docs/cli.md is stale: run `make docs`"
