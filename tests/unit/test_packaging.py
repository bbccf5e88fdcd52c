"""What ships in the wheel (the image: tests/unit/test_image_rules.py and
tests/integration/test_image.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from federation.controller.pgstore import migrations

ROOT = Path(__file__).resolve().parents[2]


def test_the_postgresql_migrations_ship_in_the_wheel() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "migrations/postgresql/*.sql" in data["package-data"]["federation.controller"]
    assert [v for v, _, _ in migrations()] == [1, 2, 3, 4, 5]


def test_the_official_istio_and_gateway_api_crds_ship_in_the_wheel() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "crds/*.yaml.gz" in data["package-data"]["federation.install"]
    assert sorted(p.name for p in (ROOT / "federation/install/crds").iterdir()) == [
        "gateway-api-v1.6.1.yaml.gz",
        "istio-86c9f01.yaml.gz",
    ]
