"""The generated parts of ``docs/architecture.md``: the module index (every module of the
product with the first sentence of its docstring), the exception tree (every subclass of
``trust.errors.MeshfedError``, from the classes themselves) and the import drawing (which
room imports which, from import-linter's graph). Each sits between
``<!-- generated:NAME -->`` and ``<!-- end:NAME -->``; ``make docs`` rewrites them
(``python -m tests.architecture_doc``) and ``tests/unit/test_architecture_doc.py`` fails when
they are stale or when the doc names a module that does not exist.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("trust", "federation", "eastwest_gateway", "providers")


def product_modules() -> list[str]:
    """Every module of the product as a path (``federation/agent/run.py``), sorted; the
    generated protocol code (``proto/``) and ``__init__.py`` files are left out."""
    paths = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if "/proto/" in rel or path.name == "__init__.py":
                continue
            paths.append(rel)
    return sorted(paths)


def _first_sentence(doc: str | None, limit: int = 150) -> str:
    """The first sentence of ``doc``'s first paragraph (ended by a full stop before a capital
    or the paragraph's end), at most ``limit`` characters (cut at a word, with ...)."""
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    match = re.match(r"(.+?)[.:](?=\s+[A-Z`(]|$)", text)
    sentence = (match.group(1) if match else text).rstrip(".:")
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + " ..."
    return sentence.replace("|", "\\|")


def _module_doc(path: str) -> str | None:
    name = path.removesuffix(".py").replace("/", ".")
    return inspect.getdoc(importlib.import_module(name))


def module_index() -> str:
    """The module index as a Markdown table."""
    rows = ["| module | what it is (its docstring's first sentence) |", "| --- | --- |"]
    rows += [f"| `{p}` | {_first_sentence(_module_doc(p))} |" for p in product_modules()]
    return "\n".join(rows)


def _import_all() -> None:
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            if ".proto" not in info.name and not info.name.endswith("__main__"):
                importlib.import_module(info.name)


def error_tree() -> str:
    """Every meshfed exception class under ``MeshfedError`` as a tree, with the file that
    defines it and the first sentence of its docstring."""
    _import_all()
    from trust.errors import MeshfedError

    lines: list[str] = []

    def where(cls: type) -> str:
        return sys.modules[cls.__module__].__file__.removeprefix(str(ROOT) + "/")  # type: ignore[union-attr]

    def walk(cls: type, prefix: str, last: bool, top: bool) -> None:
        label = cls.__name__ if top else prefix + ("└── " if last else "├── ") + cls.__name__
        what = _first_sentence(cls.__doc__, 100)
        retry = " (retryable)" if getattr(cls, "retryable", False) and "retry" not in what else ""
        lines.append(f"{label:<38} {where(cls)}: {what}{retry}")
        children = sorted(
            (
                c
                for c in cls.__subclasses__()
                if c.__module__.split(".")[0] in PACKAGES and not c.__name__.startswith("_")
            ),
            key=lambda c: (c.__module__, c.__name__),
        )
        inner = "" if top else prefix + ("    " if last else "│   ")
        for i, child in enumerate(children):
            walk(child, inner, i == len(children) - 1, False)

    walk(MeshfedError, "", True, True)
    return "```\n" + "\n".join(lines) + "\n```"


#: The three programs: none may import another.
PROGRAMS = ("federation.controller", "federation.controlplane", "federation.agent")


def _room(module: str) -> str:
    parts = module.split(".")
    return "federation." + parts[1] if parts[0] == "federation" and len(parts) > 1 else parts[0]


def import_edges() -> dict[str, set[str]]:
    """Room -> the rooms it imports directly (a room: a top-level package, or a package or
    module directly under ``federation``), from the code (grimp, import-linter's graph)."""
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = _room(module), _room(imported)
            if a != b:
                edges.setdefault(a, set()).add(b)
    return edges


def import_drawing() -> str:
    """The import drawing: each room and what it imports, the three programs marked."""
    edges = import_edges()
    lines = []
    for room in sorted(edges):
        mark = "*" if room in PROGRAMS else " "
        targets = ", ".join(r.removeprefix("federation.") for r in sorted(edges[room]))
        lines.append(f"{mark} {room.removeprefix('federation.'):<17} -> {targets}")
    return "```\n" + "\n".join(lines) + "\n```"


BLOCK = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?\n)?(<!-- end:\2 -->)", re.S)


def render(text: str) -> str:
    """``text`` with every generated block rewritten."""
    makers = {"modules": module_index, "errors": error_tree, "imports": import_drawing}
    return BLOCK.sub(lambda m: m.group(1) + makers[m.group(2)]() + "\n" + m.group(4), text)


def main() -> None:
    """Rewrite the generated blocks of ``docs/architecture.md``."""
    DOC.write_text(render(DOC.read_text()))


if __name__ == "__main__":
    main()
