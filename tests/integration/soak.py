"""A soak of the isolated bed (issue #35), shared by ``tests/e2e/test_soak.py`` (3 minutes, CI)
and ``bench/soak.py`` (20 minutes).

Setup: the three clusters of :mod:`tests.integration.isolated` (round trips A-B 40 ms, A-C
80 ms, B-C 30 ms), two echo replicas in each, and a TrafficPolicy splitting echo 34/33/33
over A, B and C, so that every cluster, gateway and link carries the load all the time.
:data:`RPS` GETs per second go from A through the frontend's sidecar for the whole run.

Meanwhile a chaos thread does, one after another in a random order (every kind once before
any twice; seeded), with 5-12 s between two (:data:`GAP_S`; the CI run takes 3-6 s):

- ``kill-controlplane <c>``: SIGKILL c's control plane, start it again 3 s later;
- ``kill-gateway <c>``: SIGKILL c's east-west gateway agent (its Envoy dies with it), start
  it again 3 s later (it renews the SVID it kept);
- ``kill-echo <c>/<i>``: SIGKILL echo replica i of c -- its sidecar agent, its Envoy and both
  apps, as a crashed pod -- and start it again 3 s later;
- ``partition <c>``: cut c off from every other node for 8 s, then heal;
- ``rotate-root``: ``meshfed trust rotate-root``, then ``--retire-old`` as soon as it is
  accepted (every cluster re-signed under the new root at least 40 s before);
- ``policy``: apply (or delete, alternately) an AuthorizationPolicy and another split
  (50/25/25, then back to 34/33/33);
- ``restart-controller``: SIGTERM the controller and start it again at once.

A sampler reads every process's RSS and open file descriptors (a proxy agent with its Envoy)
every 5 s. At the end: every recorded process runs, every cluster is Ready with every proxy
in sync, each cluster imports echo from the other two, every control plane holds the
controller's trust bundle, and the last 15 s of load all succeeded, served by all three.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.client import call
from federation.local.description import load
from federation.local.emulator import request as emulator_request
from federation.local.netns import call_in
from federation.local.processes import (
    ProcessRecord,
    Record,
    http_ok,
    process_start_time,
    tcp_ok,
)
from federation.local.runner import API_PORT, LocalFederationRunner
from tests.integration.isolated import A, B, C, IsolatedFederation, Result, federation_file

RPS = 200.0
KINDS = (
    "kill-controlplane",
    "kill-gateway",
    "kill-echo",
    "partition",
    "rotate-root",
    "policy",
    "restart-controller",
)
#: How long a killed process stays down, and a partition lasts (s).
DOWN_S = 3.0
PARTITION_S = 8.0
#: Gap between two chaos events (s), and the quiet time before the first and after the last.
GAP_S = (5.0, 12.0)
QUIET_S = 10.0
SETTLE_S = 25.0
SAMPLE_EVERY_S = 5.0

SPLIT = """\
apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata: {{name: echo, namespace: demo}}
spec:
  host: echo.demo.svc.clusterset.local
  split: {{{a}: {x}, {b}: {y}, {c}: {z}}}
"""
DENY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: soak-deny, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/soak-denied"]}}]}]
"""


def soak_spec() -> dict[str, Any]:
    """The LocalFederation of the soak: :func:`federation_file`, two echo replicas each, a
    frontend app at 1 request/s (the soak's own load generator carries the load)."""
    return federation_file(lease_s=10, replicas=2, rps=1)


def split_yaml(x: int, y: int, z: int) -> str:
    return SPLIT.format(a=A, b=B, c=C, x=x, y=y, z=z)


@dataclass
class Event:
    """One chaos action: its kind and target, and when it began and ended (s since the load
    began); ``note`` says what happened (or what failed)."""

    kind: str
    target: str
    start: float = 0.0
    end: float = 0.0
    note: str = ""


@dataclass
class Sample:
    """A process's resident memory (bytes) and open file descriptors at ``t`` (s since the
    load began), with its proxy's Envoy when it has one."""

    t: float
    name: str
    pid: int
    rss: int
    fds: int


#: About how long each kind of event takes (s): one is started only if it can end before
#: the last :data:`SETTLE_S` of the run.
LENGTH_S = {
    "kill-controlplane": 7.0,
    "kill-gateway": 7.0,
    "kill-echo": 8.0,
    "partition": PARTITION_S + 1,
    "rotate-root": 50.0,
    "policy": 4.0,
    "restart-controller": 5.0,
}


def schedule(rng: random.Random, gap_s: tuple[float, float]) -> Iterator[tuple[str, str, float]]:
    """Endless ``(kind, target, gap s after it)``: kinds in shuffled rounds (each once
    before any twice), targets and gaps at random."""
    while True:
        round_ = list(KINDS)
        rng.shuffle(round_)
        for kind in round_:
            cluster = rng.choice((A, B, C))
            target = {
                "kill-echo": f"{cluster}/{rng.randrange(2)}",
                "rotate-root": "",
                "policy": "",
                "restart-controller": "",
            }.get(kind, cluster)
            yield kind, target, rng.uniform(*gap_s)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _kill(record: ProcessRecord, sig: int = signal.SIGKILL, timeout_s: float = 20) -> None:
    """Signal a recorded process and wait until it is gone (reaped if it is our child)."""
    if process_start_time(record.pid) != record.start_time:
        return
    os.kill(record.pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(record.pid)
        if process_start_time(record.pid) != record.start_time:
            return
        time.sleep(0.05)
    raise AssertionError(f"{record.name} (pid {record.pid}) still runs {timeout_s:g} s after {sig}")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a proxy agent's Envoy)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        entry = proc.name
        if not entry.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _usage(pid: int) -> tuple[int, int] | None:
    """``(RSS bytes, open fds)`` of ``pid``; None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None
    rss = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
    )
    return rss * 1024, fds


@dataclass
class Soak:
    """One soak run on ``fed`` (see the module docstring)."""

    fed: IsolatedFederation
    seed: int
    duration_s: float
    rps: float = RPS
    gap_s: tuple[float, float] = GAP_S
    events: list[Event] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    #: ``(t s, downstream, upstream)`` connections of the frontend's Envoy, every 5 s
    connections: list[tuple[float, int, int]] = field(default_factory=list)
    progress: Callable[[str], None] = lambda line: None
    _policy_on: bool = False

    # -- the run ----------------------------------------------------------------------------

    def run(self, progress: Callable[[str], None] = lambda line: None) -> None:
        """Apply the split, then drive the load while the chaos and the sampler run."""
        self._apply(split_yaml(34, 33, 33))
        self.progress = progress
        stop = threading.Event()
        begin = time.monotonic() + 2.0  # the drive's own clock starts about now
        chaos = threading.Thread(target=self._chaos, args=(begin, stop))
        sampler = threading.Thread(target=self._sample, args=(begin, stop), daemon=True)
        chaos.start()
        sampler.start()
        try:
            delay = begin - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.results, _ = self.fed.drive(
                "sidecar-frontend", rps=self.rps, duration_s=self.duration_s
            )
        finally:
            stop.set()
            chaos.join(timeout=300)
            sampler.join(timeout=30)

    def _apply(self, text: str, delete: bool = False) -> None:
        path = self.fed.home / "soak-policy.yaml"
        path.write_text(text)
        self.fed.meshfed("delete" if delete else "apply", "-f", str(path))

    def _runner(self) -> LocalFederationRunner:
        record = self.fed.record
        desc = load(Path(record.info["file"]))
        runner = LocalFederationRunner(desc, self.fed.home, lambda line: None, isolate=True)
        runner.record = record
        return runner

    def _proc(self, name: str) -> ProcessRecord:
        return next(p for p in self.fed.record.processes if p.name == name)

    def _chaos(self, begin: float, stop: threading.Event) -> None:
        """Run :func:`schedule`'s events one after another from :data:`QUIET_S` on, each
        once the previous one has ended and its gap passed, while it can end before the
        last :data:`SETTLE_S` of the run."""
        at = QUIET_S
        for kind, target, gap in schedule(random.Random(self.seed), self.gap_s):
            if stop.wait(max(0.0, begin + at - time.monotonic())):
                return
            now = time.monotonic() - begin
            if now + LENGTH_S[kind] > self.duration_s - SETTLE_S:
                return
            event = Event(kind, target, start=now)
            try:
                event.note = getattr(self, "_" + kind.replace("-", "_"))(target)
            except Exception as err:  # recorded; the checks at the end fail on it
                event.note = f"FAILED: {type(err).__name__}: {err}"
            event.end = time.monotonic() - begin
            self.events.append(event)
            self.progress(f"{event.start:7.1f} s  {kind} {target}: {event.note}")
            at = event.end + gap

    # -- chaos actions (each returns a note) ---------------------------------------------------

    def _restart(
        self,
        name: str,
        sig: int,
        down_s: float,
        ready: Callable[[], bool],
        runner: LocalFederationRunner | None = None,
    ) -> str:
        old = self._proc(name)
        _kill(old, sig)
        time.sleep(down_s)
        runner = runner or self._runner()
        new = runner.spawn(
            old.name,
            old.argv,
            old.role,
            old.node or old.cluster or "controller",
            replica=old.replica,
        )
        started = time.monotonic()
        runner.wait_ready(new, ready, timeout_s=60)
        return f"pid {old.pid} -> {new.pid}, ready {time.monotonic() - started:.1f} s after start"

    def _kill_controlplane(self, cluster: str) -> str:
        runner = self._runner()
        api = f"https://{self.fed.plan.address(cluster, 2)}:{API_PORT}/healthz"
        c = runner.desc.cluster(cluster)
        return self._restart(
            f"controlplane-{cluster}",
            signal.SIGKILL,
            DOWN_S,
            runner._from(c.name, lambda: http_ok(api)),
            runner,
        )

    def _kill_gateway(self, cluster: str) -> str:
        runner = self._runner()
        c = runner.desc.cluster(cluster)
        host, port = runner.net.gateway(c).rsplit(":", 1)
        return self._restart(
            f"gateway-{cluster}",
            signal.SIGKILL,
            DOWN_S,
            runner._from(c.name, lambda: tcp_ok(host, int(port))),
            runner,
        )

    def _kill_echo(self, target: str) -> str:
        cluster, _, replica = target.partition("/")
        i = int(replica)
        procs = [
            p
            for p in self.fed.record.processes
            if p.cluster == cluster and p.replica == i and p.role.startswith("echo-")
        ]
        argvs = {p.role: p.argv for p in procs}
        for p in sorted(procs, key=lambda p: p.role != "echo-sidecar"):
            _kill(p)
        time.sleep(DOWN_S)
        runner = self._runner()
        started = time.monotonic()
        runner.start_echo(runner.desc.cluster(cluster), i, argvs)
        return f"{len(procs)} processes killed; back {time.monotonic() - started:.1f} s after start"

    def _partition(self, cluster: str) -> str:
        control = Path(self.fed.record.info["network"]["control"])
        answer = emulator_request(control, {"op": "partition", "node": cluster})
        assert answer["ok"], answer
        time.sleep(PARTITION_S)
        answer = emulator_request(control, {"op": "heal", "node": cluster})
        assert answer["ok"], answer
        return f"cut off for {PARTITION_S:g} s"

    def _rotate_root(self, _: str) -> str:
        out = json.loads(self.fed.meshfed("trust", "rotate-root", "-o", "json"))
        started = time.monotonic()
        deadline = started + 120
        while True:
            done = self.fed.meshfed(
                "trust", "rotate-root", "--retire-old", "-o", "json", check=False
            )
            if done:
                return f"new root {out['active_root']}; old retired {time.monotonic() - started:.1f} s later"
            if time.monotonic() > deadline:
                raise AssertionError("--retire-old still refused after 120 s")
            time.sleep(2)

    def _policy(self, _: str) -> str:
        if self._policy_on:
            self._apply(DENY, delete=True)
            self._apply(split_yaml(34, 33, 33))
        else:
            self._apply(DENY)
            self._apply(split_yaml(50, 25, 25))
        self._policy_on = not self._policy_on
        return (
            "DENY /soak-denied, split 50/25/25"
            if self._policy_on
            else "deny deleted, split 34/33/33"
        )

    def _restart_controller(self, _: str) -> str:
        url = self.fed.record.info["controller"]

        def healthy() -> bool:
            try:
                return call("GET", url, "/healthz", home=self.fed.home)["status"] == "ok"
            except Exception:
                return False

        return self._restart("controller", signal.SIGTERM, 0.0, healthy)

    # -- measurements --------------------------------------------------------------------------

    def _sample(self, begin: float, stop: threading.Event) -> None:
        while not stop.wait(SAMPLE_EVERY_S):
            now = time.monotonic() - begin
            try:
                self.connections.append((now, *self._frontend_connections()))
            except (OSError, ValueError):
                pass  # the admin endpoint is busy or restarting: the next sample
            record = Record.load(self.fed.home)
            for p in record.processes if record else []:
                if process_start_time(p.pid) != p.start_time:
                    continue
                total = [0, 0]
                for pid in (p.pid, *_descendants(p.pid)):
                    usage = _usage(pid)
                    if usage:
                        total[0] += usage[0]
                        total[1] += usage[1]
                self.samples.append(Sample(now, p.name, p.pid, total[0], total[1]))

    def _frontend_connections(self) -> tuple[int, int]:
        """``(downstream, upstream)`` connections the frontend's Envoy holds open now (its
        admin ``/stats``: ``http.*.downstream_cx_active`` and every cluster's
        ``upstream_cx_active``) -- where its descriptors go."""
        argv = self._proc("sidecar-frontend").argv
        admin = int(argv[argv.index("--admin-port") + 1])

        def get() -> str:
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
            try:
                conn.request("GET", "/stats?filter=cx_active")
                return conn.getresponse().read().decode()
            finally:
                conn.close()

        down = up = 0
        for line in call_in(self.fed.where("sidecar-frontend"), get).splitlines():
            name, _, value = line.partition(": ")
            if name.startswith("http.") and name.endswith(".downstream_cx_active"):
                down += int(value)
            elif name.startswith("cluster.") and name.endswith(".upstream_cx_active"):
                up += int(value)
        return down, up


# -- what the run shows ---------------------------------------------------------------------


def failed(results: list[Result]) -> list[Result]:
    """Requests not answered 200."""
    return [r for r in results if r.status != 200]


def during(result: Result, events: list[Event], grace_s: float = 5.0) -> Event | None:
    """The chaos event ``result`` was sent during (or up to ``grace_s`` after), if any."""
    return next((e for e in events if e.start <= result.sent <= e.end + grace_s), None)


@dataclass
class Slope:
    """How one process's memory and descriptors moved over a stretch it ran unrestarted."""

    name: str
    samples: int
    span_s: float
    rss_mib: float
    rss_mib_per_hour: float
    fds: int
    fds_per_hour: float


def slopes(samples: list[Sample], min_span_s: float, warmup_s: float = 30.0) -> list[Slope]:
    """Least-squares slopes of RSS (MiB/hour) and fds (per hour) of every process that ran
    unrestarted for at least ``min_span_s`` after ``warmup_s`` (scipy.stats.linregress)."""
    from scipy.stats import linregress

    series: dict[tuple[str, int], list[Sample]] = {}
    for s in samples:
        if s.t >= warmup_s:
            series.setdefault((s.name, s.pid), []).append(s)
    out = []
    for (name, _), points in sorted(series.items()):
        span = points[-1].t - points[0].t
        if len(points) < 3 or span < min_span_s:
            continue
        ts = [p.t for p in points]
        rss = linregress(ts, [p.rss / 2**20 for p in points]).slope * 3600
        fds = linregress(ts, [p.fds for p in points]).slope * 3600
        out.append(Slope(name, len(points), span, points[-1].rss / 2**20, rss, points[-1].fds, fds))
    return out


def consistency_problems(fed: IsolatedFederation, proxies: dict[str, int]) -> list[str]:
    """What is not back and consistent: a recorded process not running, a cluster not Ready
    or with fewer than ``proxies[cluster]`` proxies in sync, echo not imported from both
    other clusters, a control plane whose trust bundle is not the controller's."""
    problems = []
    record = fed.record
    alive = {p.name for p in record.alive()}
    problems += [f"{p.name} is not running" for p in record.processes if p.name not in alive]
    status = fed.json("status")
    for c in status["clusters"]:
        if c["state"] != "Ready":
            problems.append(f"cluster {c['name']} is {c['state']}")
        if c.get("synced", 0) < proxies.get(c["name"], 0) or c.get("synced") != c.get("proxies"):
            problems.append(
                f"cluster {c['name']}: {c.get('synced')} of {c.get('proxies')} proxies in sync, {proxies.get(c['name'])} expected"
            )
    for cluster in (A, B, C):
        sources = sorted(
            src
            for i in status["imports"]
            if i["cluster"] == cluster and i["service"] == "echo.demo"
            for src in i["from"]
        )
        expected = sorted({A, B, C} - {cluster})
        if sources != expected:
            problems.append(f"{cluster} imports echo from {sources}, not {expected}")
    bundle = call("GET", record.info["controller"], "/v1/bundle", home=fed.home)
    controller_bundle = bundle["trustBundle"]
    for cluster in (A, B, C):
        endpoint = json.loads((fed.home / "controlplanes" / cluster / "endpoint.json").read_text())
        boot = call("GET", endpoint["api"], "/v1/bootstrap", home=fed.home)
        if boot.get("trustBundle") != controller_bundle:
            problems.append(f"{cluster}'s trust bundle is not the controller's")
    return problems


def final_problems(results: list[Result], duration_s: float, last_s: float = 15.0) -> list[str]:
    """What the last ``last_s`` of load shows wrong: a request that failed, or a cluster of
    the split that served none."""
    tail = [r for r in results if r.sent >= duration_s - last_s]
    problems = (
        [f"{len(failed(tail))} of the last {len(tail)} requests failed"] if failed(tail) else []
    )
    served = {r.served_by for r in tail if r.status == 200}
    problems += [f"{c} served none of the last {last_s:g} s" for c in (A, B, C) if c not in served]
    return problems
