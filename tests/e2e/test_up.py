"""``meshfed up --detach`` with the built-in federation (3 clusters, 2 clouds, real Envoys,
certificates, controller and control planes on loopback), the demo scenarios, then
``meshfed down`` -- and nothing of the federation is left running."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from federation.client import call
from federation.local.processes import Record
from tests.golden_files import Case, check_golden, transcript

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MESHFED = str(Path(sys.executable).with_name("meshfed"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _meshfed(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [MESHFED, *args],
        env=dict(os.environ, MESHFED_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"meshfed {' '.join(args)}: {result.stderr}"
    return result


def _stats(home: Path, window: float) -> dict[str, Any]:
    record = Record.load(home)
    assert record is not None
    url = record.info["frontendStats"] + f"?window={window:g}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def _status(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_meshfed(home, "status", "-o", "json").stdout)
    return data


def _wait(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s}s: {what}")


def _total_requests(home: Path) -> int:
    """Requests the frontend has sent since it started."""
    return int(_stats(home, 1)["total"]["requests"])


def _assert_no_key_leaks(home: Path) -> None:
    """Attack 8 of issue #15: every log of the run (controller, control planes, agents,
    Envoys), every answer of the controller's and the control planes' APIs, and every xDS
    snapshot of every proxy (what its xDS responses carry) holds no private key; every key
    and token file is owner-only."""
    logs = [p for p in home.rglob("*.log") if p.is_file()]
    assert len(logs) > 20, logs
    for path in logs:
        assert "PRIVATE KEY" not in path.read_text(errors="replace"), path
    for what in ("clusters", "exports", "imports", "policies"):
        assert "PRIVATE KEY" not in _meshfed(home, "get", what, "-o", "json").stdout, what
    record = Record.load(home)
    assert record is not None
    bundle = call("GET", record.info["controller"], "/v1/bundle", home=home)
    assert "BEGIN CERTIFICATE" in bundle["trustBundle"] and "PRIVATE" not in json.dumps(bundle)
    snapshots = 0
    for endpoint in home.glob("controlplanes/*/endpoint.json"):
        api = json.loads(endpoint.read_text())["api"]
        for path in ("/v1/info", "/v1/workloads", "/v1/proxy-status"):
            assert "PRIVATE KEY" not in json.dumps(call("GET", api, path, home=home)), path
        for proxy in call("GET", api, "/v1/proxy-status", home=home)["proxies"]:
            dump = call("GET", api, f"/v1/config_dump?node={proxy['node_id']}", home=home)
            assert "PRIVATE KEY" not in json.dumps(dump), proxy["node_id"]
            assert dump.get("SDS", []) == [], proxy["node_id"]
            snapshots += 1
    assert snapshots >= 10, snapshots
    keys = [p for p in home.rglob("*.pem") if "key" in p.name]
    keys += [p for p in home.rglob("*token*") if p.is_file()]
    keys += list((home / "tokens").iterdir())
    assert len(keys) >= 20, keys
    for path in keys:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"


def _grpc_cluster(home: Path) -> str:
    """One gRPC call to echo (port 9090) through the frontend's sidecar: the serving cluster."""
    record = Record.load(home)
    assert record is not None
    argv = next(p.argv for p in record.processes if p.name == "sidecar-frontend")
    outbound = argv[argv.index("--outbound-port") + 1]
    authority = "echo.demo.svc.clusterset.local:9090"
    with grpc.insecure_channel(
        f"127.0.0.1:{outbound}", options=[("grpc.default_authority", authority)]
    ) as channel:
        reply = channel.unary_unary("/meshfed.demo.Echo/Echo")(b"hi", timeout=5)
    return str(json.loads(reply)["cluster"])


def _left_running(home: Path, pids: list[int]) -> list[str]:
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (int(proc.name) in pids or str(home) in cmdline):
            left.append(f"{proc.name}: {cmdline[:120]}")
    return left


def _listening(pids: list[int]) -> set[tuple[str, int]]:
    """The TCP addresses the processes ``pids`` listen on (their socket inodes matched with
    the LISTEN rows of /proc/net/tcp)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = str(fd.readlink())
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            ip_hex, port_hex = fields[1].split(":")
            ip = socket.inet_ntoa(struct.pack("<I", int(ip_hex, 16)))
            out.add((ip, int(port_hex, 16)))
    return out


def _accepting(addresses: set[tuple[str, int]]) -> list[tuple[str, int]]:
    """Those of ``addresses`` that still accept a TCP connection -- but for random ports on
    127.0.0.1 (Envoy admin and metrics ports), which a test on the other worker may have
    bound since they were freed: that their processes are gone is :func:`_left_running`'s
    to say."""
    still = []
    fixed = {15080, 15090}  # the controller's (up's own), and every cluster's 127.0.N.x
    for address in sorted(a for a in addresses if a[0] != "127.0.0.1" or a[1] in fixed):
        try:
            socket.create_connection(address, timeout=1).close()
            still.append(address)
        except OSError:
            continue
    return still


def test_up_routes_by_locality_fails_over_shifts_and_down_leaves_nothing(home) -> None:
    started = time.monotonic()
    up = _meshfed(home, "up", "--detach")
    assert time.monotonic() - started < 60, up.stderr
    assert "✓ frontend in aws-us-east-1" in up.stderr
    record = Record.load(home)
    assert record is not None
    pids = [p.pid for p in record.processes]
    # controller, 3 control planes, 3 gateways, 6 echo replicas (HTTP app, gRPC app, sidecar),
    # frontend app and sidecar
    assert len(pids) == 27

    # 1. traffic stays in aws-us-east-1
    def settled() -> dict[str, Any] | None:
        status = _status(home)
        ready = all(
            c["state"] == "Ready" and c["synced"] == c["proxies"] > 0 for c in status["clusters"]
        )
        flowing = status["traffic"]["destinations"] and _stats(home, 5)["total"]["requests"] >= 40
        return status if ready and flowing else None

    status = _wait(settled, 20, "every cluster Ready and traffic flowing")
    assert {c["name"]: c["state"] for c in status["clusters"]} == {
        "aws-eu-west-1": "Ready",
        "aws-us-east-1": "Ready",
        "gcp-europe-west1": "Ready",
    }
    assert all(c["synced"] == c["proxies"] > 0 for c in status["clusters"]), status["clusters"]
    assert [d["cluster"] for d in status["traffic"]["destinations"]] == ["aws-us-east-1"]
    assert _stats(home, 5)["byCluster"].keys() == {"aws-us-east-1"}
    assert _grpc_cluster(home) == "aws-us-east-1"  # gRPC through the same sidecar
    # meshfed check: controller, clocks, members, proxies, certificates, gateways all fine
    checks = _check(home)
    assert {c["status"] for c in checks} == {"ok"}, [c for c in checks if c["status"] != "ok"]
    assert {c["check"] for c in checks} == {
        "controller", "clock", "member", "proxies", "certificate", "gateway",
    }  # fmt: skip
    assert sum(c["check"] == "gateway" for c in checks) == 3

    # describe (kubectl's habit), proxy-status of every local control plane, and what the
    # federation answers to wrong input: a golden transcript (issue 41)
    _check_describe_and_proxy_status(home)
    _check_errors_golden(home)

    # 2. kill aws-us-east-1/echo: to aws-eu-west-1 (same cloud, cheaper), no failed request
    _meshfed(home, "demo", "kill", "aws-us-east-1/echo")
    _wait(lambda: _stats(home, 3)["byCluster"].keys() == {"aws-eu-west-1"}, 20, "moved to eu")
    moved = _total_requests(home)
    _wait(lambda: _total_requests(home) - moved >= 60, 20, "3 s more of traffic")  # 20 rps
    assert _stats(home, 3)["byCluster"].keys() == {"aws-eu-west-1"}  # and it stayed there
    assert _stats(home, 60)["total"]["errors"] == 0
    assert _grpc_cluster(home) == "aws-eu-west-1"  # gRPC crosses the gateway too
    dest = {d["cluster"]: d for d in _status(home)["traffic"]["destinations"]}
    assert dest["aws-eu-west-1"]["usdPerGB"] == 0.02  # AWS inter-region, cheaper than GCP's 0.12
    assert _explained(home) == {"aws-eu-west-1": 1.0}  # what explain prints is what happens
    # check names the killed replicas' sidecars (disconnected), and nothing fails
    proxies = {c["subject"]: c for c in _check(home) if c["check"] == "proxies"}
    assert proxies["aws-us-east-1"]["status"] == "warn", proxies["aws-us-east-1"]
    detail = proxies["aws-us-east-1"]["detail"]
    assert "disconnected: sidecar~demo~" in detail and "echo" in detail, detail

    # 3. revive, then shift 20 % to GCP
    _meshfed(home, "demo", "revive", "aws-us-east-1/echo")
    _wait(lambda: _stats(home, 3)["byCluster"].keys() == {"aws-us-east-1"}, 30, "back in us-east-1")
    _meshfed(home, "apply", "-f", str(EXAMPLES / "shift-20-to-gcp.yaml"))
    _wait(lambda: "gcp-europe-west1" in _stats(home, 2)["byCluster"], 20, "the split in force")
    before = _stats(home, 60)["total"]["byCluster"]
    _wait(
        lambda: sum(_stats(home, 60)["total"]["byCluster"].values()) - sum(before.values()) >= 250,
        30,
        "250 requests under the split",
    )
    after = _stats(home, 60)["total"]["byCluster"]
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(delta.values())
    assert total >= 200, delta
    gcp = delta.get("gcp-europe-west1", 0) / total
    assert 0.12 <= gcp <= 0.28, delta
    assert _explained(home) == {"aws-us-east-1": 0.8, "gcp-europe-west1": 0.2}
    before_shift = _stats(home, 60)["total"]["byCluster"]
    # in a 100-column terminal: lines fit, nothing cut off (cells fold), HTTP and gRPC in one
    table = _in_terminal(home, 100, "explain", "echo.demo", "--from", "aws-us-east-1")
    assert max(len(line) for line in table.splitlines()) <= 100, table  # were ~170
    assert "…" not in table and table.count("PRIORITY") == 1, table
    text = " ".join(table.split())
    assert (
        "ports 8080 (http), 9090 (grpc) -- every request: 80% cluster aws-us-east-1, 20%"
        " cluster gcp-europe-west1" in text
    ), table
    assert _stats(home, 120)["total"]["errors"] == 0

    # 3b. a completed shift: explain gives what the sidecars count (was: "split 0%" above
    # rows giving the target 100 %); a shift takes over a policy without a split
    _meshfed(home, "delete", "-f", str(EXAMPLES / "shift-20-to-gcp.yaml"))
    _meshfed(home, "shift", "echo.demo", "--to", "aws-eu-west-1", "--steps", "50,100",
             "--interval", "3s", timeout=90)  # fmt: skip
    assert _explained(home) == {"aws-eu-west-1": 1.0}
    _wait(lambda: _stats(home, 3)["byCluster"].keys() == {"aws-eu-west-1"}, 20, "the shift done")
    assert sum(_stats(home, 60)["total"]["byCluster"].values()) > sum(before_shift.values())
    assert _stats(home, 120)["total"]["errors"] == 0

    # 4. no private key in any log or controller API answer; every key file 0600
    _assert_no_key_leaks(home)

    # 5. down: every process gone (those revive started too), every port closed, and
    # nothing else touched
    record = Record.load(home)
    assert record is not None
    pids = sorted({*pids, *(p.pid for p in record.processes)})
    ports = _listening(pids)
    assert ("127.0.0.1", 15080) in ports and len(ports) > 20, ports
    _meshfed(home, "down")
    assert Record.load(home) is None
    _wait(lambda: not _left_running(home, pids), 10, "every process of the federation to exit")
    assert _accepting(ports) == []


def _check_describe_and_proxy_status(home: Path) -> None:
    cluster = json.loads(
        _meshfed(home, "describe", "cluster", "aws-us-east-1", "-o", "json").stdout
    )
    assert cluster["cluster"]["state"] == "Ready" and cluster["exports"], cluster
    assert {i["metadata"]["name"] for i in cluster["imports"]} == {"echo"}, cluster
    text = _meshfed(home, "describe", "svc", "echo", "-n", "demo").stdout
    assert "Exported by:   aws-eu-west-1, aws-us-east-1, gcp-europe-west1" in text, text
    assert "aws-us-east-1  echo.demo  aws-us-east-1" in text, text  # its traffic
    proxies = json.loads(_meshfed(home, "proxy-status", "-o", "json").stdout)
    assert {p["cluster"] for p in proxies} == {
        "aws-eu-west-1", "aws-us-east-1", "gcp-europe-west1",
    }  # fmt: skip


_SPLIT_TO_A_STRANGER = """apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata: {name: echo, namespace: demo}
spec:
  host: echo.demo.svc.clusterset.local
  split: {aws-us-east-1: 80, aws-us-east-2: 20}
"""
_PARTNER = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: partner, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - from:
    - source: {principals: [partner.example/ns/shop/sa/web]}
"""
_GONE = """apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata: {name: gone, namespace: demo}
spec:
  host: echo.demo.svc.clusterset.local
"""

#: What a user typed against the demo federation, and what it answers (issue 41).
FEDERATION_CASES = [
    Case("explain of a service no cluster has (was: the internal API URL)",
         ("explain", "nope.demo", "--from", "aws-us-east-1")),
    Case("explain from a cluster that is not here", ("explain", "echo.demo", "--from", "us-east")),
    Case("describe of a cluster that is not a member", ("describe", "cluster", "aws-us-east-2")),
    Case("describe of a service nobody exports", ("describe", "svc", "nope", "-n", "demo")),
    Case("get of a document that is not there", ("get", "vs", "nope")),
    Case("delete of a document that is not there (was: nothing, exit 0)",
         ("delete", "-f", "gone.yaml"), {"gone.yaml": _GONE}),
    Case("remove of a cluster that is not a member", ("cluster", "remove", "nope")),
    Case("a split to a cluster that is not a member, checked by the server",
         ("apply", "--dry-run=server", "-f", "split.yaml"), {"split.yaml": _SPLIT_TO_A_STRANGER}),
    Case("a principal of another trust domain: applied, with a warning that says what to write",
         ("apply", "--dry-run=server", "-f", "partner.yaml"), {"partner.yaml": _PARTNER}),
    Case("shift to a cluster that is not a member", ("shift", "echo.demo", "--to", "aws-us-east-2")),
    Case("demo kill of a service the demo does not run", ("demo", "kill", "aws-us-east-1/nope")),
    Case("demo revive of a cluster that is not there", ("demo", "revive", "nope/echo")),
]  # fmt: skip


def _check_errors_golden(home: Path) -> None:
    workdir = home / "golden-cases"
    workdir.mkdir(exist_ok=True)

    def run(args: Sequence[str], cwd: Path) -> tuple[int, str, str]:
        result = subprocess.run(
            [MESHFED, *args],
            env=dict(os.environ, MESHFED_HOME=str(home), COLUMNS="100"),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.returncode, result.stdout, result.stderr

    text = transcript(FEDERATION_CASES, run, workdir, {str(home): "$MESHFED_HOME"})
    check_golden("cli/errors-federation.txt", text)
    assert "Traceback" not in text and "/v1/" not in text


def _check(home: Path) -> list[dict[str, Any]]:
    """``meshfed check -o json``; its exit code is 1 exactly when a check failed."""
    done = subprocess.run(
        [MESHFED, "check", "-o", "json"], env=dict(os.environ, MESHFED_HOME=str(home)),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    checks: list[dict[str, Any]] = json.loads(done.stdout)
    assert done.returncode == int(any(c["status"] == "fail" for c in checks)), done
    return checks


def _in_terminal(home: Path, columns: int, *args: str) -> str:
    """What ``meshfed ARGS`` prints in a terminal ``columns`` wide (a pseudo-terminal whose
    window size says so, as a user's would), escape sequences and CRs dropped."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    with subprocess.Popen(
        [MESHFED, *args], stdin=terminal, stdout=terminal, stderr=subprocess.PIPE,
        env=dict(env, MESHFED_HOME=str(home)),
    ) as proc:  # fmt: skip
        os.close(terminal)
        out = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the program closed its end
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    os.close(controller)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode().replace("\r", ""))


def _explained(home: Path) -> dict[str, float]:
    """explain's shares of every request from aws-us-east-1, per cluster (none left out)."""
    out = _meshfed(home, "explain", "echo.demo", "--from", "aws-us-east-1", "-o", "json").stdout
    shares: dict[str, float] = {}
    for row in json.loads(out)["ports"][0]["rows"]:
        shares[row["cluster"]] = shares.get(row["cluster"], 0) + row["share"]
    return {c: round(s, 4) for c, s in shares.items() if s}


def test_ctrl_c_of_up_stops_what_demo_revive_started_too(tmp_path) -> None:
    """Issue #41: ``meshfed up`` in the foreground without ``MESHFED_HOME`` (so in
    ``~/.meshfed``), ``meshfed status`` from another directory, ``demo kill`` and ``demo
    revive`` of a cluster's echo, then Ctrl-C (SIGINT): nothing of the federation is left
    running -- the revived processes included, which only the record file knew (the
    foreground ``up`` stopped what it had started itself, and deleted the file). A policy
    applied meanwhile stays stored: the next ``up`` says it is in force."""
    user = tmp_path / "user"
    elsewhere = tmp_path / "elsewhere"
    for d in (user, elsewhere):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MESHFED_HOME"}
    env["HOME"] = str(user)
    home = user / ".meshfed"

    def meshfed(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MESHFED, *args], env=env, cwd=elsewhere, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"meshfed {' '.join(args)}: {done.stderr}"
        return done

    up = subprocess.Popen(
        [MESHFED, "up"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pids: list[int] = []
    ports: set[tuple[str, int]] = set()
    try:
        _wait(lambda: (r := Record.load(home)) is not None and "upSeconds" in r.info, 180, "up")
        status = json.loads(meshfed("status", "-o", "json").stdout)
        assert len(status["clusters"]) == 3, status
        meshfed("demo", "kill", "aws-us-east-1/echo")
        meshfed("demo", "revive", "aws-us-east-1/echo")
        policy = tmp_path / "policy.yaml"
        policy.write_text(
            "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
            "metadata: {name: echo, namespace: demo}\n"
            "spec: {host: echo.demo.svc.clusterset.local, timeoutMs: 5000}\n"
        )
        meshfed("apply", "-f", str(policy))
        record = Record.load(home)
        assert record is not None
        pids = [p.pid for p in record.processes]
        assert [p for p in record.processes if p.cluster == "aws-us-east-1" and p.replica >= 0]
        ports = _listening(pids)
        assert ("127.0.0.1", 15080) in ports and len(ports) > 20, ports
        up.send_signal(signal.SIGINT)
        up.wait(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=30)
            meshfed("down")
    assert _left_running(home, pids) == []
    assert _accepting(ports) == []
    assert Record.load(home) is None
    # the policy applied before stays in the controller's store: the next up says so as soon
    # as its controller answers (then Ctrl-C: it need not start the whole federation again)
    said: list[str] = []
    with subprocess.Popen(
        [MESHFED, "up"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    ) as again:  # fmt: skip
        try:
            assert again.stderr is not None
            for line in again.stderr:  # bounded: up ends when interrupted, or on an error
                said.append(line)
                if "policies of an earlier run" in line:
                    again.send_signal(signal.SIGINT)
            again.wait(timeout=120)
        finally:
            if again.poll() is None:
                again.kill()
                again.wait(timeout=30)
                meshfed("down")
    text = "".join(said)
    assert "1 policies of an earlier run" in text and "TrafficPolicy demo/echo" in text, text
    # Ctrl-C while starting stopped what it had started: no record, no process
    assert "interrupted: stopped" in text and Record.load(home) is None, text
    assert again.returncode != 0 and _left_running(home, []) == [], text
