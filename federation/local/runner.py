"""Starting and stopping a local federation: the processes ``meshfed up`` runs, and their
record in ``$MESHFED_HOME/up.json`` that ``meshfed down`` and ``meshfed demo`` use.

Every process runs in its own session (so ``--detach`` outlives the CLI) with its output in
``$MESHFED_HOME/logs/<name>.log`` (each Envoy's own log in ``logs/envoy-<name>.log``),
listens on loopback only (with ``--isolate``: inside its cluster's network namespace, see
:mod:`federation.local.placement`), and is recorded with its pid
and its start time (``/proc/<pid>/stat`` field 22) the moment it starts; ``down`` signals a
pid only while that start time still matches, so it never stops anything else.

Address plan per cluster (its ``addressRange`` 127.0.N.0/24): ``.1:15443`` east-west gateway,
``.2:15010`` xDS and ``.2:15014`` API of the control plane, ``.10+i`` echo replica ``i``'s
sidecar (inbound 15006); frontend sidecar ``.9``. Apps, Envoy admin and outbound listeners use
free ports on 127.0.0.1. With ``--isolate`` the same host numbers in the cluster's private
range, and the gateway on its public address (:mod:`federation.local.netplan`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from federation.ca.names import GATEWAY_SERVICE_ACCOUNT, SYSTEM_NAMESPACE
from federation.client import call
from federation.errors import ApiError, FederationError
from federation.local.description import ClusterSpec, LocalFederation
from federation.local.emulator import request as emulator_request
from federation.local.placement import (
    CONTROLLER,
    IsolatedPlacement,
    Placement,
    release_network,
)
from federation.local.processes import (
    OWNER_ENV,
    ProcessRecord,
    Record,
    UpError,
    ensure_inotify_instances,
    http_ok,
    meshfed_argv,
    process_alive,
    process_start_time,
    stop_processes,
    tcp_ok,
)
from federation.netaddr import free_port
from federation.sync.node import PROXY_GID
from trust.files import KEY_FILE_MODE, write_atomic

log = logging.getLogger(__name__)

XDS_PORT = 15010
CA_PORT = 15012
API_PORT = 15014
INBOUND_PORT = 15006
ECHO_SERVICE_PORT = 8080
ECHO_GRPC_PORT = 9090
OUTBOUND_PORT = 15001


Progress = Callable[[str], None]
#: A step of ``up``: its progress label and what it does.
Step = tuple[str, Callable[[], None]]


class LocalFederationRunner:
    """Brings a :class:`LocalFederation` up (see the module docstring).

    Args:
        progress: called with a line per step (the CLI shows it).
    """

    def __init__(
        self,
        desc: LocalFederation,
        home: Path,
        progress: Progress,
        source: Path | None = None,
        *,
        isolate: bool = False,
    ) -> None:
        self.desc = desc
        self.source = source
        self.home = home.resolve()
        self.logs = self.home / "logs"
        self.progress = progress
        self.record = Record(self.home)
        self._record_lock = threading.Lock()  # steps of a stage spawn from threads
        self._stopping = threading.Event()  # a step failed or Ctrl-C: the others stop too
        # the Popen objects, held so that none is collected on a step's thread while its
        # process runs (``down`` stops them by pid and start time, not through these)
        self._children: list[subprocess.Popen[bytes]] = []
        self.env = dict(os.environ, MESHFED_HOME=str(self.home), **{OWNER_ENV: str(self.home)})
        self.env.pop("MESHFED_TOKEN", None)
        self.env.pop("MESHFED_CONTROLLER", None)
        self.net: Placement = (
            IsolatedPlacement(desc, self.home, _running_block(Record.load(self.home))) if isolate
            else Placement(desc)
        )  # fmt: skip

    # -- processes ---------------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        argv: list[str],
        role: str,
        node: str = "",
        *,
        group: int | None = None,
        **meta: Any,
    ) -> ProcessRecord:
        """Start one process (own session, output to its log) and record it at once; ``node``
        (a cluster, ``controller`` or ``<cluster>/<pod>``) says whose network it runs in
        (``--isolate``); ``group``: its group id (a captured pod's sidecar runs as
        :data:`~federation.sync.node.PROXY_GID`, which the capture rules exempt). The
        record keeps ``argv`` as given (``demo revive`` starts it again the same way).

        Raises:
            UpError: a process of that name is recorded and still running (its record would
                be replaced, and ``down`` would never stop it).
        """
        with self._record_lock:  # recorded the moment it starts, or not started at all
            if self._stopping.is_set():
                raise UpError(f"{name} not started: meshfed up is stopping")
            running = [p for p in self.record.processes if p.name == name and process_alive(p)]
            if running:
                raise UpError(f"{name} is already running (pid {running[0].pid})")
            self.logs.mkdir(parents=True, exist_ok=True)
            log_path = self.logs / f"{name}.log"
            with log_path.open("ab") as out:
                proc = subprocess.Popen(  # noqa: S603 - argv built here, no shell
                    self.net.argv(node, argv) if node else argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    start_new_session=True,
                    group=group,
                )
            self._children.append(proc)
            meta.setdefault("cluster", node.partition("/")[0] if node != CONTROLLER else "")
            record = ProcessRecord(
                name,
                argv,
                proc.pid,
                process_start_time(proc.pid) or 0,
                str(log_path),
                role,
                node=node,
                **meta,
            )
            self.record.processes = [p for p in self.record.processes if p.name != name]
            self.record.processes.append(record)
            self.record.save()
        return record

    def wait_ready(
        self, record: ProcessRecord, check: Callable[[], bool], timeout_s: float = 30
    ) -> None:
        """Wait for ``check``; fail naming the process and its log if it exits or times out.

        Raises:
            UpError: the process exited or did not become ready in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                raise UpError(f"{record.name}: meshfed up is stopping")
            if not process_alive(record):
                raise UpError(f"{record.name} exited during start-up; see {record.log}")
            if check():
                return
            time.sleep(0.1)
        raise UpError(f"{record.name} not ready after {timeout_s:.0f} s; see {record.log}")

    # -- steps -------------------------------------------------------------------------------

    @property
    def controller_url(self) -> str:
        return f"https://{self.net.controller_listen}"

    def _controller_ok(self) -> bool:
        """The controller answers /healthz over HTTPS verified with the CA it wrote into
        config.yaml (not ready before it wrote it)."""
        try:
            answer = call("GET", self.controller_url, "/healthz", home=self.home)
        except FederationError:
            return False
        return bool(answer.get("status") == "ok")

    def _token(self) -> str:
        return (self.home / "controller-token").read_text().strip()

    def _controller_get(self, path: str) -> Any:
        """GET the controller's ``path`` (HTTPS, verified with config.yaml)."""
        return call("GET", self.controller_url, path, token=self._token(), home=self.home)

    def _controller(self, path: str, body: str) -> Any:
        """POST ``body`` to the controller's ``path`` (HTTPS, verified with config.yaml)."""
        return call(
            "POST", self.controller_url, path, token=self._token(), body=body, home=self.home
        )

    def _from(self, node: str, check: Callable[[], bool]) -> Callable[[], bool]:
        """``check`` run from inside ``node``'s network (a cluster or ``<cluster>/<pod>``)."""
        return lambda: self.net.check(node, check)

    def start_network(self) -> None:
        """``--isolate``: namespaces and devices, then the link emulator."""
        assert isinstance(self.net, IsolatedPlacement)
        net = self.net
        net.build()
        rec = self.spawn("link-emulator", net.emulator_argv(), "emulator")

        def attached() -> bool:
            try:
                return bool(emulator_request(net.control, {"op": "status"}, 1)["ok"])
            except (OSError, ValueError):
                return False

        self.wait_ready(rec, attached)

    def start_controller(self) -> None:
        spec = self.desc.spec
        rec = self.spawn(
            "controller",
            [
                *meshfed_argv(),
                "--log-level",
                "info",
                "controller",
                "serve",
                "--listen",
                self.net.controller_listen,
                "--sync-listen",
                self.net.controller_sync_listen,
                "--trust-domain",
                spec.trust_domain,
                "--lease",
                f"{spec.controller.lease_seconds:g}s",
            ],
            "controller",
            CONTROLLER,
        )
        self.wait_ready(rec, self._controller_ok)
        self.record.info["controller"] = self.controller_url
        stored = self._controller_get("/v1/policies").get("policies", [])
        if stored:  # kept in the controller's store from an earlier run of this home
            names = ", ".join(
                f"{p.get('kind', '?')} {p['metadata'].get('namespace', '')}/{p['metadata']['name']}"
                for p in stored
            )
            self.progress(
                f"! {len(stored)} policies of an earlier run of {self.home} are in force:"
                f" {names} ('meshfed get policies' shows them, 'meshfed delete -f FILE' removes"
                " one; a new MESHFED_HOME starts without)"
            )

    def _join_token(self, c: ClusterSpec, body: str) -> str | None:
        """A join token for ``c``; None when its control plane joined in an earlier ``up``
        (its state is kept in ``$MESHFED_HOME/controlplanes/<name>``)."""
        try:
            answer = self._controller("/v1/clusters", body)
            return str(answer["token"])
        except ApiError as err:
            if err.status != 409:
                raise
        if (self.home / "controlplanes" / c.name / "federation.json").exists():
            return None
        answer = self._controller(f"/v1/clusters/{c.name}/tokens", "{}")
        return str(answer["token"])

    def start_cluster(self, c: ClusterSpec) -> None:
        gateway = self.net.gateway(c)
        cp_address = self.net.address(c, 2)
        network = c.network or c.name
        body = json.dumps(
            {
                "name": c.name,
                "locality": f"{c.region}/{c.zones[0]}",
                "network": network,
                "gateway": gateway,
                "provider": c.provider,
                "tokenTtlSeconds": 300,
            }
        )
        token = self._join_token(c, body)
        cp = self.spawn(
            f"controlplane-{c.name}",
            [
                *meshfed_argv(),
                "--log-level",
                "info",
                "controlplane",
                "serve",
                "--cluster",
                c.name,
                "--locality",
                f"{c.region}/{c.zones[0]}",
                "--network",
                network,
                "--xds-listen",
                f"{cp_address}:{XDS_PORT}",
                "--ca-listen",
                f"{cp_address}:{CA_PORT}",
                "--api-listen",
                f"{cp_address}:{API_PORT}",
                "--controller",
                self.net.controller_listen,
                *(["--join-token", token] if token else []),
                "--gateway",
                gateway,
                *(
                    flag
                    for zone, address in self.net.zone_gateways(c).items()
                    for flag in ("--zone-gateway", f"{zone}={address}")
                ),
                *(
                    ["--otlp-collector", self.desc.spec.otlp_collector]
                    if self.desc.spec.otlp_collector
                    else []
                ),
            ],
            "controlplane",
            c.name,
        )
        self.wait_ready(cp, lambda: http_ok(f"https://{cp_address}:{API_PORT}/healthz"))

    def workload_token(self, c: ClusterSpec, namespace: str, account: str, name: str) -> Path:
        """Mint a single-use workload token for ``namespace``/``account`` in ``c`` and write it
        0600 to ``$MESHFED_HOME/tokens/<name>`` (argv would show it in ``ps``). A restarted
        agent (``demo revive``) does not need it again: it renews the SVID it kept."""
        minted = call(
            "POST",
            f"https://{self.net.address(c, 2)}:{API_PORT}",
            "/v1/workload-tokens",
            body=json.dumps({"namespace": namespace, "serviceAccount": account}),
            home=self.home,
        )
        path = self.home / "tokens" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        write_atomic(path, str(minted["token"]).encode(), KEY_FILE_MODE)
        return path

    def start_gateway(self, c: ClusterSpec) -> None:
        """The cluster's east-west gateway, and with ``zoneGateways`` one per zone (after the
        exports: a gateway listens only for exported services)."""
        self._start_one_gateway(c, f"gateway-{c.name}", self.net.gateway(c), [])
        for zone, address in self.net.zone_gateways(c).items():
            local = ["--zone-local", "--locality", f"{c.region}/{zone}"]
            self._start_one_gateway(c, f"gateway-{c.name}-{zone}", address, local)

    def _start_one_gateway(self, c: ClusterSpec, name: str, gateway: str, extra: list[str]) -> None:
        token = self.workload_token(c, SYSTEM_NAMESPACE, GATEWAY_SERVICE_ACCOUNT, name)
        gw = self.spawn(
            name,
            [
                *meshfed_argv(),
                "--log-level",
                "info",
                "proxy",
                "gateway",
                "--cluster",
                c.name,
                "--controlplane",
                f"{self.net.address(c, 2)}:{XDS_PORT}",
                "--listen",
                gateway,
                "--admin-port",
                str(free_port()),
                "--workload-token-file",
                str(token),
                "--envoy-log",
                str(self.logs / f"envoy-{name}.log"),
                *extra,
            ],
            "gateway",
            c.name,
        )
        host, port = gateway.rsplit(":", 1)
        self.wait_ready(gw, self._from(c.name, lambda: tcp_ok(host, int(port))), timeout_s=30)

    def sidecar_argv(
        self,
        c: ClusterSpec,
        *,
        service: str,
        namespace: str,
        name: str,
        app_port: int,
        service_port: int,
        address: str,
        outbound: int,
        locality: str,
    ) -> list[str]:
        """``meshfed proxy sidecar`` for one workload of cluster ``c`` (service account: the
        service's name), with a workload token minted for it. Its admin port is picked here,
        not by the agent: it is also Envoy's ``--base-id`` (shared memory, one namespace for
        the whole host), and agents in different network namespaces (``--isolate``) would
        each find the same port free."""
        token = self.workload_token(c, namespace, service, name)
        return [
            *meshfed_argv(), "--log-level", "info", "proxy", "sidecar",
            "--cluster", c.name, "--controlplane", f"{self.net.address(c, 2)}:{XDS_PORT}",
            "--workload-token-file", str(token),
            "--service", service, "-n", namespace, "--name", name,
            "--app-port", str(app_port), "--service-port", str(service_port),
            "--address", address, "--inbound-port", str(INBOUND_PORT),
            "--outbound-port", str(outbound), "--locality", locality,
            "--admin-port", str(free_port()),
            "--envoy-log", str(self.logs / f"envoy-{name}.log"),
            *(["--capture"] if self.net.captured else []),
        ]  # fmt: skip

    def echo_argv(self, c: ClusterSpec, i: int) -> dict[str, list[str]]:
        """argv of echo replica ``i`` in ``c`` by role: ``echo-app`` (HTTP),
        ``echo-grpc-app`` (gRPC) and ``echo-sidecar`` (one sidecar, ports http 8080 and
        grpc 9090)."""
        # in a pod of its own, an app listens where a container would; on loopback, anywhere
        ports = (ECHO_SERVICE_PORT, ECHO_GRPC_PORT) if self.net.captured else None
        http_port, grpc_port = ports or (free_port(), free_port())
        name = f"{c.name}-echo-{i + 1}"
        demo = [sys.executable, "-m"]
        sidecar = self.sidecar_argv(
            c,
            service="echo",
            namespace=self.desc.spec.echo.namespace,
            name=name,
            app_port=http_port,
            service_port=ECHO_SERVICE_PORT,
            address=self.net.address(c, 10 + i),
            outbound=OUTBOUND_PORT if self.net.captured else free_port(),
            locality=str(c.locality(i)),
        )
        capacity = self.desc.spec.echo.capacity_rps
        limit = ["--max-rps", f"{capacity:g}"] if capacity else []
        return {
            "echo-app": [
                *demo, "federation.demo.echo_http", "--name", name, "--cluster", c.name,
                "--port", str(http_port), *limit,
            ],
            "echo-grpc-app": [
                *demo, "federation.demo.echo_grpc", "serve", "--name", name,
                "--cluster", c.name, "--port", str(grpc_port),
            ],
            "echo-sidecar": [
                *sidecar, "--extra-port", f"grpc={ECHO_GRPC_PORT}:{grpc_port}/grpc",
                *(["--capacity-rps", f"{capacity:g}"] if capacity else []),
            ],
        }  # fmt: skip

    def start_echo(self, c: ClusterSpec, i: int, argvs: dict[str, list[str]] | None = None) -> None:
        """Start echo replica ``i`` (both apps, then its sidecar); ``argvs`` from an earlier
        start (``demo revive``) or new."""
        argvs = argvs or self.echo_argv(c, i)
        name = f"{c.name}-echo-{i + 1}"
        node = self.net.pod(c, f"echo-{i + 1}", 10 + i)
        http = argvs["echo-app"]
        app = self.spawn(f"app-{name}", http, "echo-app", node, replica=i)
        http_port = int(http[http.index("--port") + 1])
        self.wait_ready(
            app, self._from(node, lambda: http_ok(f"http://127.0.0.1:{http_port}/healthz"))
        )
        grpc_argv = argvs["echo-grpc-app"]
        grpc_app = self.spawn(f"app-grpc-{name}", grpc_argv, "echo-grpc-app", node, replica=i)
        grpc_port = int(grpc_argv[grpc_argv.index("--port") + 1])
        self.wait_ready(grpc_app, self._from(node, lambda: tcp_ok("127.0.0.1", grpc_port)))
        agent = self.spawn(
            f"sidecar-{name}",
            argvs["echo-sidecar"],
            "echo-sidecar",
            node,
            group=PROXY_GID if self.net.captured else None,
            replica=i,
        )
        inbound = self.net.address(c, 10 + i)
        self.wait_ready(agent, self._from(node, lambda: tcp_ok(inbound, INBOUND_PORT)))

    def start_echoes(self, c: ClusterSpec) -> None:
        for i in range(self.desc.spec.echo.replicas_per_cluster):
            self.start_echo(c, i)

    def revive_echoes(self, cluster: str, procs: list[ProcessRecord]) -> int:
        """Start again, with the argv they had, the echo replicas of ``cluster`` among
        ``procs`` (:func:`federation.local.teardown.echo_processes`) whose app is not
        running; returns how many started.

        Raises:
            UpError: a replica did not come up (names its log).
        """
        c = self.desc.cluster(cluster)
        started = 0
        for app in sorted((p for p in procs if p.role == "echo-app"), key=lambda p: p.replica):
            if any(r.pid == app.pid for r in self.record.alive()):
                continue
            self.start_echo(
                c, app.replica, {p.role: p.argv for p in procs if p.replica == app.replica}
            )
            started += 1
        return started

    def export_echo(self) -> None:
        ns = self.desc.spec.echo.namespace
        docs = "---\n".join(
            "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
            f"metadata: {{name: echo, namespace: {ns}}}\nspec: {{cluster: {c.name}}}\n"
            for c in self.desc.spec.clusters
        )
        self._controller("/v1/apply", docs)

    def start_frontend(self) -> None:
        """The frontend's sidecar, then -- once a request through it is answered -- the
        frontend app, so that its counters start with a configured data plane."""
        f = self.desc.spec.frontend
        c = self.desc.cluster(f.cluster)
        captured = self.net.captured
        stats_port, outbound = free_port(), OUTBOUND_PORT if captured else free_port()
        # its stats stay plain text for the CLI: not captured inbound
        node = self.net.pod(
            c, "frontend", 9, (f"traffic.meshfed.io/excludeInboundPorts={stats_port}",)
        )
        agent = self.spawn(
            "sidecar-frontend",
            self.sidecar_argv(
                c,
                service="frontend",
                namespace=f.namespace,
                name="frontend",
                app_port=stats_port,
                service_port=8080,
                address=self.net.address(c, 9),
                outbound=outbound,
                locality=str(c.locality(0)),
            ),
            "frontend-sidecar",
            node,
            group=PROXY_GID if captured else None,
        )

        def routed() -> bool:
            request = urllib.request.Request(
                f"http://127.0.0.1:{outbound}/", headers={"Host": f.target}
            )
            try:
                with urllib.request.urlopen(request, timeout=1) as resp:  # noqa: S310
                    return int(resp.status) == 200
            except OSError:
                return False

        self.wait_ready(agent, self._from(node, routed), timeout_s=60)
        stats_host = self.net.frontend_stats_host(c)
        # captured: an unchanged client, which resolves the name and dials it
        via = [] if captured else ["--via", f"127.0.0.1:{outbound}"]
        app = self.spawn(
            "app-frontend",
            [
                sys.executable,
                "-m",
                "federation.demo.frontend",
                *via,
                "--target",
                f"{f.target}:{ECHO_SERVICE_PORT}" if captured else f.target,
                "--rps",
                str(f.rps),
                "--port",
                str(stats_port),
                "--host",
                stats_host,
            ],
            "frontend-app",
            node,
        )
        stats = f"http://{stats_host}:{stats_port}/stats"

        def answered() -> bool:
            try:
                with urllib.request.urlopen(stats + "?window=2", timeout=1) as resp:  # noqa: S310
                    data = json.loads(resp.read())
            except OSError:
                return False
            return bool(data.get("byCluster"))

        self.wait_ready(app, answered, timeout_s=30)
        self.record.info["frontendStats"] = stats
        self.record.info["frontendCluster"] = c.name

    def up(self) -> None:
        """Run every step; on failure stop everything started and raise.

        Raises:
            UpError: a step failed (names the process and its log); nothing is left running.
        """
        started = time.monotonic()
        self.record.info = {
            "startedAt": time.time(),
            "federation": self.desc.metadata.name,
            "file": str(self.source.resolve()) if self.source else "",
        }
        spec = self.desc.spec
        envoys = len(spec.clusters) * (spec.echo.replicas_per_cluster + 1) + 1
        try:
            raised = ensure_inotify_instances(envoys)
        except UpError as err:
            self.progress(f"✗ {err}")
            raise
        if raised:
            self.progress(f"! {raised}")
        try:
            for stage in self._stages():
                self._run_stage(stage)
        except (UpError, FederationError, OSError) as err:
            self.progress(f"✗ {err}")
            stopped = self._abandon()
            raise UpError(f"meshfed up failed: {err} (stopped {stopped} processes)") from err
        except KeyboardInterrupt:  # Ctrl-C while starting: nothing is left behind either
            self.progress(f"✗ interrupted: stopped {self._abandon()} processes")
            raise
        self.record.info["upSeconds"] = round(time.monotonic() - started, 1)
        self.record.save()

    def _stages(self) -> list[list[Step]]:
        """``up``'s steps, in stages whose steps do not wait on each other: the network, the
        controller, every control plane, every echo replica, the exports, every gateway
        (which listen only for exported services), the frontend."""
        spec, net = self.desc.spec, self.net
        stages: list[list[Step]] = []
        if isinstance(net, IsolatedPlacement):
            plan = net.plan
            self.record.info["network"] = net.info()
            self.record.save()  # before anything is made: `down` removes it after a crash
            rtts = ", ".join(f"{k.replace('|', ' - ')} {v:g} ms" for k, v in plan.rtt_ms.items())
            label = f"isolated network: {len(plan.namespaces)} namespaces, link emulator ({rtts})"
            stages.append([(label, self.start_network)])
        stages.append(
            [
                (
                    f"controller on {net.controller_listen} (root of trust for"
                    f" {spec.trust_domain})",
                    self.start_controller,
                )
            ]
        )
        stages.append(
            [
                (
                    f"cluster {c.name}: joined, control plane on {net.address(c, 2)}",
                    functools.partial(self.start_cluster, c),
                )
                for c in spec.clusters
            ]
        )
        stages.append(
            [
                (f"{c.name}: echo replica {i + 1} with its sidecar",
                 functools.partial(self.start_echo, c, i))
                for c in spec.clusters
                for i in range(spec.echo.replicas_per_cluster)
            ]
        )  # fmt: skip
        stages.append([("export echo from every cluster", self.export_echo)])
        stages.append(
            [
                (
                    f"{c.name}: east-west gateway on {net.gateway(c)}",
                    functools.partial(self.start_gateway, c),
                )
                for c in spec.clusters
            ]
        )
        stages.append([(f"frontend in {spec.frontend.cluster}", self.start_frontend)])
        return stages

    def _run_stage(self, stage: list[Step]) -> None:
        """Run a stage's steps at once, each on a thread (they wait on their own processes),
        printing each as it ends. The first failure, or Ctrl-C, stops the others (their
        waits and spawns raise) and is raised once every step has ended.

        Raises:
            UpError, FederationError, OSError: a step failed.
        """

        def timed(step: Callable[[], None]) -> float:
            t0 = time.monotonic()
            step()
            return time.monotonic() - t0

        pool = ThreadPoolExecutor(max_workers=len(stage), thread_name_prefix="up")
        failed: list[BaseException] = []
        try:
            futures = {pool.submit(timed, step): label for label, step in stage}
            for future in as_completed(futures):
                try:
                    seconds = future.result()
                except (UpError, FederationError, OSError) as err:
                    self._stopping.set()
                    failed.append(err)
                    continue
                self.progress(f"✓ {futures[future]} ({seconds:.1f} s)")
        except BaseException:
            self._stopping.set()
            raise
        finally:
            pool.shutdown(wait=True)
        if failed:
            raise failed[0]

    def reap(self) -> None:
        """Collect the exit status of every child that has ended (no zombie is left while
        this process lives on)."""
        for proc in self._children:
            proc.poll()

    def _abandon(self) -> int:
        """Stop every process started so far, remove the isolated network and the record;
        how many processes were stopped."""
        stopped = stop_processes(self.record.processes)
        self.reap()
        release_network(self.record.info.get("network", {}), self.home)
        self.record.path.unlink(missing_ok=True)
        return len(stopped)


def _running_block(record: Record | None) -> str | None:
    """The internet block of the isolated federation ``record`` describes, while it runs
    (``demo revive`` and tests adding pods join it); None for a new one."""
    if record is None:
        return None
    network = record.info.get("network") or {}
    return network.get("block") if record.processes and record.alive() else None
