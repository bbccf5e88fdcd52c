"""Golden transcripts of what the CLI says to a user's wrong input (issue 41), without a
federation: ``tests/golden/cli/errors-offline.txt``. Each case is a user's real input or
its kind; the federation's own answers are in ``tests/e2e/test_up.py``
(``errors-federation.txt``). The help text's golden file is ``docs/cli.md``
(``tests/unit/cli/test_cli_reference.py`` compares it with every command's ``--help``).

``make golden`` rewrites the file after a change meant to alter it; review the diff.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from click.testing import CliRunner

from federation.cli.main import cli
from tests.golden_files import Case, check_golden, transcript

POLICY_HEAD = """apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata:
  name: echo
  namespace: demo
spec:
  host: echo.demo.svc.clusterset.local
"""

CASES = [
    Case(
        "a YAML syntax error names FILE:LINE:COLUMN (was: PyYAML's placeholder for a string)",
        ("apply", "-f", "unclosed.yaml", "--dry-run=client"),
        {"unclosed.yaml": POLICY_HEAD + "  split: [\n"},
    ),
    Case(
        'an unknown field is named as kubectl does (was: "Extra inputs are not permitted")',
        ("apply", "-f", "typo.yaml", "--dry-run=client"),
        {"typo.yaml": POLICY_HEAD + "  retires: 3\n"},
    ),
    Case(
        "a field meshfed knows but does not support says so and what to do instead",
        ("apply", "-f", "custom.yaml", "--dry-run=client"),
        {
            "custom.yaml": "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            "metadata: {name: ext, namespace: demo}\nspec:\n  action: CUSTOM\n"
            "  provider: {name: opa}\n"
        },
    ),
    Case("a file that is not there", ("apply", "-f", "nope.yaml")),
    Case(
        "every problem of a document on a line of its own, all of them",
        ("apply", "-f", "two.yaml", "--dry-run=client"),
        {
            "two.yaml": "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
            "metadata: {name: echo, namespace: demo}\nspec:\n  host: echo\n  x: 1\n"
        },
    ),
    Case("a kind kubectl users type that meshfed has not", ("get", "pods")),
    Case("no federation here yet: where to start", ("get", "clusters")),
    Case("status with no federation under MESHFED_HOME", ("status",)),
    Case("demo kill with no federation", ("demo", "kill", "aws-us-east-1/echo")),
    Case(
        "an unreachable controller: the system's reason, no aiohttp internals "
        "(was: the repr of an SSL context object and its address)",
        ("get", "clusters", "--controller", "https://127.0.0.1:1", "--token", "t"),
    ),
    Case("proxy-status with no control plane on this host", ("proxy-status",)),
    Case("describe needs a name, as kubectl's", ("describe", "cluster")),
    Case("cluster discover on GCP needs a project", ("cluster", "discover", "--provider", "gcp")),
    Case(
        "a join source of a cloud meshfed has no provider for",
        ("cluster", "join", "x", "--from", "azure:aks/a/b"),
    ),
    Case("an unknown output format", ("get", "clusters", "-o", "xml")),
    Case("shift needs a target", ("shift", "echo.demo")),
]


def _run(home: Path) -> object:
    def run(args: Sequence[str], workdir: Path) -> tuple[int, str, str]:
        result = CliRunner().invoke(
            cli, list(args), env={"MESHFED_HOME": str(home), "COLUMNS": "100"}, prog_name="meshfed"
        )
        return result.exit_code, result.stdout, result.stderr

    return run


def test_what_the_cli_says_to_wrong_input(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    text = transcript(CASES, _run(home), tmp_path, {str(home): "$MESHFED_HOME"})  # type: ignore[arg-type]
    check_golden("cli/errors-offline.txt", text)
    # every error is one line that starts with Error: (usage errors: click's three lines)
    assert "Traceback" not in text and "0x7f" not in text and "<unicode string>" not in text
