"""The LocalFederation file (refused whole, naming the field) and the process record."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from federation.cli.main import cli
from federation.errors import InvalidDocumentError
from federation.local.description import default_text, load
from federation.local.processes import (
    OWNER_ENV,
    ProcessRecord,
    Record,
    process_start_time,
    stop_processes,
    unrecorded,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "federation.yaml"


def test_default_federation_is_valid_and_shipped_in_examples() -> None:
    desc = load(None)
    assert [c.name for c in desc.spec.clusters] == [
        "aws-us-east-1",
        "aws-eu-west-1",
        "gcp-europe-west1",
    ]
    assert desc.cluster("aws-us-east-1").address(1) == "127.0.1.1"
    assert str(desc.cluster("aws-us-east-1").locality(1)) == "aws/us-east-1/us-east-1b"
    assert EXAMPLE.read_text() == default_text()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("127.0.1.0/24", "10.0.1.0/24"), "spec.clusters.0.addressRange"),
        (("127.0.0.1:15080", "0.0.0.0:15080"), "spec.controller.listen"),
        (
            ("region: aws/us-east-1\n", "region: aws/us-east-1/us-east-1a\n"),
            "spec.clusters.0.region",
        ),
        (
            ("cluster: aws-us-east-1\n", "cluster: nowhere\n"),
            "frontend.cluster: 'nowhere' is not in clusters",
        ),
        (("rps: 20", "rps: -1"), "spec.frontend.rps"),
        (("127.0.2.0/24", "127.0.1.0/24"), "addressRange must differ"),
        (("spec:\n", "spec:\n  otlpCollector: nonsense\n"), "spec.otlpCollector"),
    ],
)
def test_a_bad_file_is_refused_naming_the_field(tmp_path, change, field) -> None:
    path = tmp_path / "f.yaml"
    text = default_text()
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(InvalidDocumentError) as err:
        load(path)
    assert any(field in p for p in err.value.problems), err.value.problems
    # the CLI refuses it before starting anything: exit 2, nothing recorded
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["up", "-f", str(path)], env={"MESHFED_HOME": str(home)})
    assert result.exit_code == 2 and field in result.output
    assert not (home / "up.json").exists()


def test_a_key_another_home_holds_exits_2_and_starts_nothing(tmp_path, monkeypatch) -> None:
    """``up --isolate`` whose network key another home's live network carries is refused
    like any other input it cannot act on: exit 2, the other home named, nothing recorded
    (the collision itself: tests/unit/local/test_isolated_network.py)."""
    from federation.cli import up_commands
    from federation.local import placement
    from federation.local.netns import IsolationUnavailableError

    def taken(key: str, home: str) -> None:
        raise IsolationUnavailableError(
            f"netns meshfed-{key}-controller (key {key}) belongs to the isolated federation"
            " of home /homes/other; run `MESHFED_HOME=/homes/other meshfed down` first"
        )

    monkeypatch.setattr(up_commands, "preflight", lambda: None)
    monkeypatch.setattr(placement, "claim_key", taken)
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["up", "--isolate"], env={"MESHFED_HOME": str(home)})
    assert result.exit_code == 2, result.output
    assert "/homes/other" in result.output
    assert not (home / "up.json").exists()


def test_record_round_trip_and_stop_only_our_process(tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        start = process_start_time(proc.pid)
        assert start is not None
        record = Record(tmp_path)
        ours = ProcessRecord("sleeper", [], proc.pid, start, "log", "test")
        stranger = ProcessRecord("stranger", [], os.getpid(), start + 1, "log", "test")
        record.processes = [ours, stranger]
        record.save()
        loaded = Record.load(tmp_path)
        assert loaded is not None and [p.name for p in loaded.alive()] == ["sleeper"]
        # a pid whose start time differs is someone else's: never signalled
        assert stop_processes(loaded.processes, timeout_s=5) == ["sleeper"]
        assert proc.wait(5) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stop_also_stops_what_a_dead_process_left_in_its_group(tmp_path) -> None:
    """An agent that died and left its Envoy running: ``down`` must stop the Envoy too
    (found after bench runs on the isolated bed left marker sidecars' Envoys behind)."""
    leader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c',"
            " 'import time; time.sleep(60)']); print(p.pid, flush=True)",
        ],
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    try:
        start = process_start_time(leader.pid)
        assert start is not None or leader.poll() is not None
        leader.wait(10)  # the leader is gone; its child lives on in the group
        assert process_start_time(child) is not None
        record = ProcessRecord("agent", [], leader.pid, start or 0, "log", "test")
        assert stop_processes([record], timeout_s=5) == ["agent"]
        assert process_start_time(child) is None
    finally:
        leader.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_a_stopped_process_its_parent_has_not_reaped_counts_as_stopped(tmp_path) -> None:
    """``meshfed demo kill`` stops processes a foreground ``meshfed up`` started: each exits
    at once but stays a zombie until ``up`` reaps it, and its group still answers
    ``killpg(pgid, 0)``. It counted as running: every kill waited its whole timeout, then
    reported the apps "not stopped in 15 s, killed"."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c',"
            " 'import time; time.sleep(60)'], start_new_session=True); print(p.pid, flush=True);"
            " time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    said: list[str] = []
    try:
        start = process_start_time(child)
        assert start is not None
        record = ProcessRecord("app", [], child, start, "log", "test")
        assert stop_processes([record], timeout_s=30, progress=said.append) == ["app"]
        assert not [line for line in said if "killed" in line or "waiting" in line], said
        assert Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


def test_extra_ports_and_the_workload_of_the_sidecar_command() -> None:
    from federation.model.workload import ServicePort, parse_port_spec, sidecar_workload

    grpc = parse_port_spec("grpc=9090:19090/grpc")
    assert grpc.model_dump(by_alias=True) == {
        "name": "grpc",
        "port": 9090,
        "targetPort": 19090,
        "protocol": "grpc",
    }
    assert parse_port_spec("db=5432:15432/TCP").protocol == "tcp"  # Istio's capitals
    for bad in ("grpc=9090/grpc", "Grpc=1:2/grpc", "x=1:2/udp"):
        with pytest.raises(ValueError, match="NAME=SERVICE_PORT:APP_PORT/PROTOCOL"):
            parse_port_spec(bad)
    entry = sidecar_workload(
        service="echo",
        namespace="demo",
        address="127.0.1.11",
        locality="aws/us-east-1/us-east-1a",
        ports=[ServicePort(name="http", port=8080, targetPort=18080), grpc],
    )
    assert entry.metadata.name == "echo-127-0-1-11-15006"
    assert entry.spec.service_account == "echo" and entry.spec.tls_mode == "mutual"
    assert entry.metadata.labels == {"app": "echo"}  # what AuthorizationPolicy selectors match
    with pytest.raises(ValueError, match="locality"):
        sidecar_workload(
            service="echo", namespace="demo", address="127.0.1.11", locality="A B", ports=[grpc]
        )


def test_inotify_limit_raised_for_many_envoys(tmp_path):
    """Each Envoy holds 4 inotify instances; 52 Envoys do not fit the default 128 (issue
    #16's bench): the limit is raised, or a clear error names the sysctl."""
    from federation.local.processes import UpError, ensure_inotify_instances

    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    assert ensure_inotify_instances(10, limit) is None  # 104 needed
    assert ensure_inotify_instances(52, limit) == (
        "raised fs.inotify.max_user_instances from 128 to 272 for 52 Envoys"
    )
    assert limit.read_text() == "272"
    with pytest.raises(UpError, match=r"sysctl -w fs\.inotify\.max_user_instances=272"):
        ensure_inotify_instances(52, _Unwritable(128))  # type: ignore[arg-type]


class _Unwritable:
    """A sysctl file that reads a value and refuses writes (as for a non-root user)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def read_text(self) -> str:
        return str(self.value)

    def write_text(self, _text: str) -> int:
        raise PermissionError(13, "Permission denied")


# spawn leaves its children to ``down`` (stop_processes reaps them by pid); Python 3.11
# warns about any Popen collected before it polled it, even a child reaped meanwhile
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_spawn_refuses_a_name_that_is_still_running(tmp_path) -> None:
    """Two processes under one name: the second record would replace the first, and
    ``down`` would never stop the first (found when a benchmark started two markers
    named alike). Once the first is gone, the name is free again (``demo revive``)."""
    from federation.local.processes import UpError
    from federation.local.runner import LocalFederationRunner

    runner = LocalFederationRunner(load(None), tmp_path, print)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    first = runner.spawn("sleeper", sleeper, "test")
    try:
        with pytest.raises(UpError, match=rf"sleeper is already running \(pid {first.pid}\)"):
            runner.spawn("sleeper", sleeper, "test")
        assert [p.pid for p in runner.record.processes] == [first.pid]
        assert stop_processes(runner.record.processes, timeout_s=5) == ["sleeper"]
        second = runner.spawn("sleeper", sleeper, "test")
        assert stop_processes([second], timeout_s=5) == ["sleeper"]
    finally:
        stop_processes(runner.record.processes, timeout_s=5)


def test_a_failed_step_stops_the_steps_started_beside_it(tmp_path) -> None:
    """``up`` starts independent steps together (the control planes, the echo replicas, the
    gateways): when one fails, the others stop waiting at once rather than at their
    timeouts, start nothing more, and the first failure is what is raised -- so ``up`` can
    stop everything started and say why."""
    import time

    from federation.local.processes import UpError
    from federation.local.runner import LocalFederationRunner

    lines: list[str] = []
    runner = LocalFederationRunner(load(None), tmp_path, lines.append)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]

    def waits_for_ever() -> None:
        rec = runner.spawn("slow", sleeper, "test")
        runner.wait_ready(rec, lambda: False, timeout_s=60)

    def fails() -> None:
        raise UpError("controlplane-b exited during start-up; see b.log")

    def quick() -> None:
        pass

    t0 = time.monotonic()
    try:
        with pytest.raises(UpError, match="controlplane-b exited"):
            runner._run_stage([("slow", waits_for_ever), ("b", fails), ("quick", quick)])
        assert time.monotonic() - t0 < 10  # not the slow step's 60 s
        assert any(line.startswith("✓ quick") for line in lines), lines
        assert not any("slow" in line or "✓ b" in line for line in lines), lines
        with pytest.raises(UpError, match="stopping"):
            runner.spawn("late", sleeper, "test")
        assert [p.name for p in runner.record.processes] == ["slow"]
    finally:
        stop_processes(runner.record.processes, timeout_s=5)
        runner.reap()


def test_down_finds_a_process_of_the_home_that_no_record_names(tmp_path) -> None:
    """A ``meshfed up`` killed between starting a process and recording it leaves that
    process unrecorded; its environment names the home (``MESHFED_UP_HOME``), so ``down``
    finds and stops it -- and nothing of another home."""
    home, other = tmp_path / "home", tmp_path / "other"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(sleep, env={**os.environ, OWNER_ENV: str(home)}, start_new_session=True)
    theirs = subprocess.Popen(
        sleep, env={**os.environ, OWNER_ENV: str(other)}, start_new_session=True
    )
    try:
        found = unrecorded(home, [])
        assert [p.pid for p in found] == [ours.pid]
        assert unrecorded(home, found) == []  # a recorded one is not found again
        assert stop_processes(found, timeout_s=5) == [f"unrecorded-{ours.pid}"]
        assert ours.wait(timeout=5) is not None and theirs.poll() is None
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait(timeout=5)
