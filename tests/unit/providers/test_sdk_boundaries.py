"""Cloud SDKs stay behind their modules: only providers/aws* (and trust/aws_pca, the AWS
Private CA root of trust) imports boto3/botocore
and only providers/gcp* imports google.cloud, google.api_core or google.auth (the first is
also an import-linter contract; the google namespace cannot be split there, because
google.protobuf is used everywhere)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ["federation", "eastwest_gateway", "trust", "providers"]
RULES = {
    ("boto3", "botocore"): ("providers/aws", "trust/aws_pca"),
    ("google.cloud", "google.api_core", "google.auth"): ("providers/gcp",),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_provider_modules_import_their_sdk() -> None:
    offenders = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            for prefixes, owners in RULES.items():
                if rel.startswith(owners):
                    continue
                for name in _imports(path):
                    if any(name == p or name.startswith(p + ".") for p in prefixes):
                        offenders.append(f"{rel} imports {name}")
    assert offenders == []


def test_the_rule_would_catch_an_offender(tmp_path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from google.cloud import container_v1\nimport botocore.session\n")
    assert _imports(bad) == {"google.cloud", "botocore.session"}
