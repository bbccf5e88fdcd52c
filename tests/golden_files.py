"""Golden files (as Istio's and Kuma's generator tests): text users and Envoy read, compared
with reviewed files in ``tests/golden/``. ``make golden`` (``MESHFED_UPDATE_GOLDEN=1``)
rewrites them; review the diff in the commit."""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("MESHFED_UPDATE_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with ``tests/golden/<name>`` (or write it, with
    ``MESHFED_UPDATE_GOLDEN=1``); the failure shows a unified diff."""
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: run 'make golden' and review it"
    want = path.read_text()
    if want != text:
        diff = difflib.unified_diff(
            want.splitlines(keepends=True), text.splitlines(keepends=True), str(path), "now"
        )
        pytest.fail(
            f"{name} differs from its golden file ('make golden' if meant):\n" + "".join(diff)
        )


@dataclass(frozen=True)
class Case:
    """One command a user ran: its arguments, the files it read (name -> text, written into
    the working directory first) and where it comes from."""

    why: str
    args: tuple[str, ...]
    files: Mapping[str, str] = field(default_factory=dict)


#: Runs ``meshfed ARGS`` in a directory: (exit code, stdout, stderr).
Runner = Callable[[Sequence[str], Path], tuple[int, str, str]]


def transcript(cases: Sequence[Case], run: Runner, workdir: Path, paths: Mapping[str, str]) -> str:
    """What a user sees for each case, as a terminal shows it (the files, the command, its
    stdout then stderr, its exit code); each path in ``paths`` replaced by its name."""
    out = []
    for case in cases:
        for name, text in case.files.items():
            (workdir / name).write_text(text)
        code, stdout, stderr = run(case.args, workdir)
        shown = [f"# {case.why}"]
        for name, text in case.files.items():
            shown += [f"$ cat {name}", text.rstrip("\n")]
        shown += [
            f"$ meshfed {shlex.join(case.args)}",
            (stdout + stderr).rstrip("\n"),
            f"[exit {code}]",
        ]
        text = "\n".join(line for line in shown if line)
        for path, name in paths.items():
            text = text.replace(path, name)
        out.append(text + "\n")
    return "\n".join(out)
