"""``meshfed apply -f DIR [-R] [--dry-run]`` (issue 41: kubectl's habits): a directory's
manifests are read in path order, each checked under its own name before anything is sent;
a client dry run sends nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from federation.cli.main import cli
from federation.errors import ConfigError, InvalidDocumentError
from federation.model.documents import read_documents

WORKLOAD = """\
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: demo}}
spec: {{service: echo, address: 127.0.0.1, locality: aws/us-east-1/us-east-1a,
       ports: [{{name: http, port: 80}}]}}
"""


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    (tmp_path / "b.yaml").write_text(WORKLOAD.format(name="echo-b"))
    (tmp_path / "a.yml").write_text(WORKLOAD.format(name="echo-a"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "c.yaml").write_text(WORKLOAD.format(name="echo-c"))
    return tmp_path


def test_a_directory_is_read_in_path_order_and_r_reads_its_subdirectories(manifests) -> None:
    _text, models = read_documents(str(manifests))
    assert [m.metadata.name for m in models] == ["echo-a", "echo-b"]  # type: ignore[attr-defined]
    text, models = read_documents(str(manifests), recursive=True)
    assert [m.metadata.name for m in models] == ["echo-a", "echo-b", "echo-c"]  # type: ignore[attr-defined]
    assert text.count("kind: WorkloadEntry") == 3


def test_a_bad_file_is_named_with_its_line_and_an_empty_directory_says_so(
    manifests, tmp_path_factory
) -> None:
    (manifests / "more" / "c.yaml").write_text(WORKLOAD.format(name="echo-c") + "  oops: [\n")
    with pytest.raises(InvalidDocumentError, match=r"more/c\.yaml:\d+:\d+"):
        read_documents(str(manifests), recursive=True)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(ConfigError, match=r"no \.yaml, \.yml or \.json file in it \(-R reads"):
        read_documents(str(empty))


def test_a_client_dry_run_validates_every_file_and_sends_nothing(manifests, monkeypatch) -> None:
    monkeypatch.setenv("MESHFED_CONTROLLER", "https://127.0.0.1:9")  # nothing listens
    out = CliRunner().invoke(cli, ["apply", "-f", str(manifests), "-R", "--dry-run=client"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines() == [
        f"workloadentry/demo/echo-{n} valid (client dry run)" for n in "abc"
    ]
