"""docs/architecture.md cannot drift from the code (issue #36): its module index and its
exception tree are generated from the code and must be current ('make docs' rewrites them),
every module the doc names must exist, and the structural limits hold (no product function
over 100 lines; the CLI under 3,000 lines)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.architecture_doc import (
    BLOCK,
    DOC,
    PACKAGES,
    PROGRAMS,
    ROOT,
    import_edges,
    product_modules,
    render,
)

#: A module or package the doc names: ``name.py`` or ``dir/`` (in backticks or code blocks).
_NAMED = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.py|(?:[\w-]+/)+)(?![\w-])")
#: ``### `federation/controller/` (...)``: the package whose modules a section names.
_SECTION = re.compile(r"^#{2,4} .*?`((?:[\w-]+/)+)`", re.M)
#: Files that are not modules but that the doc rightly names.
_OTHER = {"docs/", "tests/", "bench/", "examples/", "terraform/", "migrations/postgresql/"}


def _named(text: str) -> list[tuple[str, str]]:
    """``(section package, name)`` for every module or package name the doc uses outside
    its generated blocks."""
    text = BLOCK.sub("", text)
    out: list[tuple[str, str]] = []
    base = ""
    for line in text.splitlines():
        heading = _SECTION.match(line)
        if heading:
            base = heading.group(1)
            continue
        if line.startswith("## "):
            base = ""
        row = re.match(r"\| `((?:[\w-]+/)+)` \|", line)  # a table row about one package
        line_base = row.group(1) if row else base
        spans = re.findall(r"`([^`]+)`", line)
        if line.startswith((" ", "\t")) or (not line.startswith(("|", "#")) and "`" not in line):
            spans = [line]  # code-block lines and prose: every token counts
        for span in spans:
            out += [(line_base, m) for m in _NAMED.findall(span)]
    return out


def _exists(base: str, name: str) -> bool:
    if name in _OTHER or name.startswith(("http", "tests/", "bench/", "docs/", "terraform/")):
        return True
    candidates = [ROOT / name, ROOT / base / name]
    if "/" in name.rstrip("/"):  # a path below one of the packages, e.g. controller/store.py
        candidates += [ROOT / p / name for p in PACKAGES] + [
            ROOT / "federation" / p / name for p in ("controlplane", "controller")
        ]
    return any(c.exists() for c in candidates)


def test_the_generated_blocks_are_current() -> None:
    text = DOC.read_text()
    assert {m.group(2) for m in BLOCK.finditer(text)} == {"modules", "errors", "imports"}
    assert render(text) == text, "docs/architecture.md is stale: run 'make docs'"


def test_the_index_names_every_module_and_the_doc_no_module_that_does_not_exist() -> None:
    text = DOC.read_text()
    for path in product_modules():
        assert f"`{path}`" in text
    missing = sorted({f"{base}{name}" for base, name in _named(text) if not _exists(base, name)})
    assert missing == [], f"docs/architecture.md names what does not exist: {missing}"


def test_the_three_programs_never_import_each_other() -> None:
    edges = import_edges()
    assert {(a, b) for a in PROGRAMS for b in edges.get(a, set()) if b in PROGRAMS} == set()


def _functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    return [
        (node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")  # type: ignore[operator]
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def test_no_product_function_is_over_100_lines() -> None:
    long = [
        where
        for path in product_modules()
        for lines, where in _functions(ROOT / path)
        if lines > 100
    ]
    assert long == []


def test_the_cli_only_parses_flags_and_renders_in_at_most_3000_lines() -> None:
    lines = sum(len(p.read_text().splitlines()) for p in (ROOT / "federation/cli").glob("*.py"))
    assert lines <= 3000, f"federation/cli is {lines} lines"
