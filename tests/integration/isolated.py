"""A federation on the isolated bed (``meshfed up --isolate``) for integration tests and
benchmarks: every cluster and the controller in a network namespace of its own, joined by the
link emulator with a round-trip matrix the test chooses; plus a load generator that runs
inside a cluster's namespace and records, per request, when it was sent and answered, its
status and the cluster that served it (``x-meshfed-served-by``).

Use :func:`isolated_federation` (a context manager; the ``isolated`` fixture of
``tests/integration/conftest.py`` wraps it). It skips, naming the reason, only where the
machine cannot build namespaces (not root, no iproute2, no /dev/net/tun); CI runs as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from federation.local.description import load
from federation.local.emulator import request as emulator_request
from federation.local.netns import (
    IsolationUnavailableError,
    call_in,
    claim_path,
    leftovers,
    preflight,
    run,
)
from federation.local.netplan import NetworkPlan, home_key, pod_commands, pod_netns
from federation.local.placement import release_network
from federation.local.processes import Record, unrecorded
from federation.local.runner import LocalFederationRunner
from federation.sync.node import PROXY_GID
from tests.integration.harness import wait_until

MESHFED = str(Path(sys.executable).with_name("meshfed"))
SERVED_BY = "x-meshfed-served-by"

A, B, C = "aws-us-east-1", "aws-eu-west-1", "gcp-europe-west1"
#: Round trips (ms) of the test bed, chosen unlike the built-in figures (68 / 85 / 20 ms) and
#: the distance estimates, so a measured value cannot be mistaken for either.
RTT_MS = {(A, B): 40.0, (A, C): 80.0, (B, C): 30.0}
REGIONS = {A: "aws/us-east-1", B: "aws/eu-west-1", C: "gcp/europe-west1"}


def federation_file(lease_s: float = 10, replicas: int = 1, rps: float = 10) -> dict[str, Any]:
    """The LocalFederation of the bed: three clusters, echo exported by each. The lease
    (``lease_s``, s; reports every third of it) must outlast proof 3's 5 s partition with a
    report interval to spare: with 6 s, whether the controller withdrew B before the heal
    depended on where the partition fell between two reports, and when it did, B came back
    only after re-import and a first health check (over 5 s in one CI run)."""
    zones = {A: ["us-east-1a", "us-east-1b"], B: ["eu-west-1a"], C: ["europe-west1-b"]}
    providers = {A: "aws", B: "aws", C: "gcp"}
    return {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "LocalFederation",
        "metadata": {"name": "isolated"},
        "spec": {
            "controller": {"leaseSeconds": lease_s},
            "clusters": [
                {
                    "name": name,
                    "provider": providers[name],
                    "region": REGIONS[name],
                    "zones": zones[name],
                    "addressRange": f"127.0.{i + 1}.0/24",
                }
                for i, name in enumerate((A, B, C))
            ],
            "echo": {"namespace": "demo", "replicasPerCluster": replicas},
            "frontend": {"cluster": A, "rps": rps},
            "latency": {
                f"{REGIONS[x]} -> {REGIONS[y]}": f"{ms:g}ms" for (x, y), ms in RTT_MS.items()
            },
        },
    }


@dataclass
class Result:
    """One request of :meth:`IsolatedFederation.drive` (times in s since the drive began;
    ``served_by``: the serving cluster, from ``x-meshfed-served-by: <cluster>/<zone>``;
    ``zone``: the zone it names)."""

    sent: float
    done: float
    status: int
    served_by: str
    zone: str = ""


class IsolatedFederation:
    """Handle on a running isolated federation (see the module docstring)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = dict(os.environ, MESHFED_HOME=str(home))

    def meshfed(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        """Run the CLI; returns stdout (fails the test on a non-zero exit when ``check``)."""
        done = subprocess.run(
            [MESHFED, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"meshfed {' '.join(args)}: {done.stderr}"
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.meshfed(*args, "-o", "json"))

    @property
    def record(self) -> Record:
        record = Record.load(self.home)
        assert record is not None
        return record

    @property
    def plan(self) -> NetworkPlan:
        return NetworkPlan.from_json(Path(self.record.info["network"]["plan"]).read_text())

    def netns(self, cluster: str) -> str:
        ns = self.plan.node(cluster).netns
        assert ns is not None
        return ns

    def where(self, process: str) -> str | None:
        """The network namespace a recorded process runs in (its pod's, for a workload), or
        of a node ``<cluster>/<pod>``."""
        node = process
        if "/" not in process:
            node = next(p.node or p.cluster for p in self.record.processes if p.name == process)
        cluster, _, pod = node.partition("/")
        return pod_netns(self.plan.key, cluster, pod) if pod else self.netns(cluster)

    def in_pod(self, process: str, argv: list[str], timeout_s: float = 30) -> tuple[int, str]:
        """Run ``argv`` as root in the pod of recorded process ``process`` (or node
        ``<cluster>/<pod>``) -- an unchanged program, captured like the pod's app where the
        pod captures; ``(exit code, stdout + stderr)``."""
        netns = self.where(process)
        assert netns is not None
        done = subprocess.run(
            ["ip", "netns", "exec", netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def runner(self) -> LocalFederationRunner:
        """The runner of this federation (as ``meshfed demo revive`` makes it), to add pods."""
        desc = load(Path(self.record.info["file"]))
        runner = LocalFederationRunner(desc, self.home, lambda _: None, isolate=True)
        runner.record = self.record
        return runner

    def add_pod(
        self,
        cluster: str,
        name: str,
        host: int,
        *,
        sidecar: list[str] | None = None,
        captured: bool = True,
        service: str | None = None,
        app: list[str] | None = None,
    ) -> str:
        """A pod ``name`` at ``.host`` of ``cluster``: with ``captured``, its capture rules,
        the ``app`` argv (if any) and a sidecar (of ``service``, default ``name``, in
        namespace demo; app port 8080; more flags, which win, ``sidecar``), started and
        recorded (``meshfed down`` stops them); without, a bare pod. Returns its node."""
        runner = self.runner()
        c = runner.desc.cluster(cluster)
        if not captured:
            node = f"{cluster}/{name}"
            run(pod_commands(self.plan, cluster, name, host))
            return node
        node = runner.net.pod(c, name, host)
        address = runner.net.address(c, host)
        if app:
            runner.spawn(f"app-{name}", app, "client-app", node)
        argv = runner.sidecar_argv(
            c, service=service or name, namespace="demo", name=f"{cluster}-{name}", app_port=8080,
            service_port=8080, address=address, outbound=15001, locality=str(c.locality(0)),
        )  # fmt: skip
        record = runner.spawn(
            f"sidecar-{name}", [*argv, *(sidecar or [])], "client-sidecar", node, group=PROXY_GID
        )
        runner.wait_ready(record, lambda: call_in(self.where(record.name), lambda: _up(address)))
        return node

    def outbound(self, process: str) -> int:
        """The outbound listener port of a recorded sidecar (``sidecar-frontend``, ...)."""
        argv = next(p.argv for p in self.record.processes if p.name == process)
        return int(argv[argv.index("--outbound-port") + 1])

    def leftovers(self) -> list[str]:
        return leftovers(self.record.info["network"]["key"])

    def envoy_hosts(self, process: str, envoy_cluster: str) -> list[str]:
        """The lines of Envoy cluster ``envoy_cluster`` in the admin ``/clusters`` of sidecar
        ``process`` of ``cluster`` that say where each host is and how healthy (for failure
        messages)."""
        argv = next(p.argv for p in self.record.processes if p.name == process)
        admin = int(argv[argv.index("--admin-port") + 1])
        pattern = "^" + re.escape(envoy_cluster) + "$"

        def get() -> str:
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
            try:
                conn.request("GET", "/clusters?filter=" + urllib.parse.quote(pattern))
                return conn.getresponse().read().decode()
            finally:
                conn.close()

        text = call_in(self.where(process), get)
        keep = ("::health_flags::", "::priority::", "::region::", "::zone::")
        return [line for line in text.splitlines() if any(k in line for k in keep)]

    def drive(
        self,
        via: str,
        *,
        rps: float,
        duration_s: float,
        host: str = "echo.demo.svc.clusterset.local",
        events: list[tuple[float, str, str]] | None = None,
        path: str = "/",
        by_name: bool = False,
        stop: threading.Event | None = None,
    ) -> tuple[list[Result], dict[str, float]]:
        """Send ``rps`` GETs per second for ``duration_s`` (or until ``stop`` is set, if
        sooner) from the pod of sidecar process
        ``via`` (``sidecar-frontend``) through its outbound port (``by_name``: as an unchanged
        client, to ``http://<host>:8080``, resolved by the pod's DNS and captured); at each ``(offset s, op, node)`` of ``events`` ask the link
        emulator to ``partition`` or ``heal`` ``node`` (what ``meshfed demo partition|heal``
        sends); each GET asks for ``path`` (with its query). Returns every request and, per
        ``"<op> <node>"``, when the emulator applied it (the middle of the request to its
        control socket, which takes about 1 ms)."""
        outbound = self.outbound(via)
        return call_in(
            self.where(via),
            lambda: asyncio.run(
                self._drive(outbound, host, rps, duration_s, events or [], path, by_name, stop)
            ),
        )

    async def _drive(
        self,
        outbound: int,
        host: str,
        rps: float,
        duration_s: float,
        events: list[tuple[float, str, str]],
        path: str = "/",
        by_name: bool = False,
        stop: threading.Event | None = None,
    ) -> tuple[list[Result], dict[str, float]]:
        results: list[Result] = []
        happened: dict[str, float] = {}
        begin = time.monotonic()
        url = f"http://{host}:8080{path}" if by_name else f"http://127.0.0.1:{outbound}{path}"
        headers = None if by_name else {"Host": host}

        async def one(session: aiohttp.ClientSession) -> None:
            sent = time.monotonic() - begin
            status, served, zone = 0, "", ""
            try:
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
                    served, _, zone = resp.headers.get(SERVED_BY, "").partition("/")
            except (aiohttp.ClientError, TimeoutError):
                status = -1
            results.append(Result(sent, time.monotonic() - begin, status, served, zone))

        control = Path(self.record.info["network"]["control"])

        async def event(offset: float, op: str, node: str) -> None:
            await asyncio.sleep(offset)
            before = time.monotonic()
            answer = await asyncio.to_thread(emulator_request, control, {"op": op, "node": node})
            assert answer["ok"], answer
            happened[f"{op} {node}"] = (before + time.monotonic()) / 2 - begin

        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            pending = [asyncio.create_task(event(*e)) for e in events]
            count = int(rps * duration_s)
            for i in range(count):  # bounded: rps * duration requests
                if stop is not None and stop.is_set():
                    break
                delay = begin + i / rps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(one(session)))
            await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
        return sorted(results, key=lambda r: r.sent), happened


def _up(address: str) -> bool:
    try:
        with socket.create_connection((address, 15006), timeout=1):
            return True
    except OSError:
        return False


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """:func:`tests.integration.harness.wait_until`, polling every 0.25 s."""
    return wait_until(predicate, timeout_s, what, interval_s=0.25)


def require_isolation() -> None:
    """Skip, naming the reason, where the machine cannot build the bed (CI runs as root)."""
    try:
        preflight()
    except IsolationUnavailableError as err:
        pytest.skip(f"the isolated bed cannot be built here: {err}")


@contextlib.contextmanager
def isolated_federation(
    base: Path, spec: dict[str, Any] | None = None
) -> Iterator[IsolatedFederation]:
    """``meshfed up --isolate --detach`` with :func:`federation_file` (or ``spec``) in a new
    home under ``base``; ``meshfed down`` afterwards, even when the test failed, and no
    namespace or device may be left."""
    require_isolation()
    home = base / "home"
    home.mkdir(parents=True)
    path = base / "federation.yaml"
    path.write_text(yaml.safe_dump(spec or federation_file()))
    fed = IsolatedFederation(home)
    try:
        fed.meshfed("up", "--isolate", "--detach", "-f", str(path), timeout=300)
        yield fed
    finally:
        down_or_force(home, fed.env)


def down_or_force(home: Path, env: dict[str, str]) -> None:
    """``meshfed down`` for ``home``; should it fail, hang (120 s) or leave anything, kill
    what is left and remove the network anyway (:func:`force_down`) -- the bed modules share
    private ranges, so one federation left behind would refuse every later one on the
    worker -- and then fail, naming what ``down`` left or how it failed.

    Raises:
        AssertionError: ``down`` failed, timed out or left something behind.
    """
    try:
        done = subprocess.run(
            [MESHFED, "down"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        how = f"exit {done.returncode}: {done.stderr.strip()}" if done.returncode else ""
    except subprocess.TimeoutExpired as err:
        how = f"no answer in 120 s: {err.stderr!r}"
    left = leftovers_of(home) + processes_of(home)
    if left or how:
        force_down(home)
    assert not left and not how, f"meshfed down: {how or 'left behind ' + str(left)}"


def force_down(home: Path) -> None:
    """SIGKILL every process started for ``home`` (found by its environment) and remove its
    network and key claim, without ``meshfed down``: a test's last resort after ``down``
    failed."""
    for p in unrecorded(home, []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
    release_network({"key": home_key(str(home.resolve()))}, home)


def processes_of(home: Path) -> list[str]:
    """Processes still running that ``meshfed up`` started for ``home`` (every one carries
    its home in its environment, :data:`~federation.local.processes.OWNER_ENV`: agents
    with their DNS resolvers, Envoys, apps), as ``process <pid>``."""
    return [f"process {p.pid}" for p in unrecorded(home, [])]


def leftovers_of(home: Path) -> list[str]:
    """Namespaces and devices of ``home``'s isolated network that still exist, and its claim
    on its key in the exchange directory (:func:`~federation.local.netns.claim_key`)."""
    key = home_key(str(home.resolve()))
    claim = claim_path(key)
    return leftovers(key) + ([f"claim {claim}"] if claim.exists() else [])
