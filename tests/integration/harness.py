"""Real processes for integration tests: control planes, demo apps, Envoy sidecars, load.

Every process is registered with a :class:`Processes` owned by a fixture that stops them all
at teardown, even when the test fails. Everything listens on 127.0.0.0/8. Load loops are
bounded in request count and time.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from federation.agent.bootstrap import BootstrapParams, envoy_bootstrap
from federation.agent.envoy_process import EnvoyProcess
from federation.ca.client import CaEndpoints, WorkloadIdentity
from federation.ca.files import IdentityDirectory
from federation.ca.names import control_plane_spiffe_id
from federation.client import call, tls_for, unverified_tls
from federation.errors import ApiError
from federation.model.locality import Locality
from federation.netaddr import free_port
from federation.sync.node import ProxyDescription
from trust.spiffe import SpiffeId
from trust.svid import X509Svid

MESHFED = str(Path(sys.executable).with_name("meshfed"))
T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:
            last_error = err
        time.sleep(interval_s)
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what} (last error: {last_error})"
    )


class Processes:
    """Owns every process a test starts; :meth:`stop_all` stops them (SIGTERM, then SIGKILL)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.popens: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.envoys: list[EnvoyProcess] = []

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.popens.append((name, proc))
        return proc

    def envoy(self, envoy: EnvoyProcess) -> EnvoyProcess:
        self.envoys.append(envoy)
        envoy.start()
        return envoy

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for envoy in self.envoys:
            try:
                envoy.stop(drain=False, timeout_s=5)
            except Exception:
                envoy.kill()
        for _, proc in self.popens:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.popens:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def meshfed_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MESHFED_HOME"] = str(home)
    return env


def run_meshfed(
    home: Path, *args: str, input_text: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [MESHFED, *args],
        env=meshfed_env(home),
        input=input_text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"meshfed {' '.join(args)} -> {result.returncode}: {result.stderr}")
    return result


@dataclass
class ControlPlaneHandle:
    """A ``meshfed controlplane serve`` subprocess."""

    procs: Processes
    home: Path
    cluster: str
    locality: str
    xds_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    ca_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_args: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        self.starts += 1
        self.proc = self.procs.spawn(
            f"controlplane-{self.cluster}-{self.starts}",
            [
                MESHFED,
                "--log-level",
                "info",
                "controlplane",
                "serve",
                "--cluster",
                self.cluster,
                "--locality",
                self.locality,
                "--xds-listen",
                f"127.0.0.1:{self.xds_port}",
                "--ca-listen",
                f"127.0.0.1:{self.ca_port}",
                "--api-listen",
                f"127.0.0.1:{self.api_port}",
                *self.extra_args,
            ],
            env=meshfed_env(self.home),
        )
        wait_until(self._healthy, 20, f"control plane {self.cluster} API")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"control plane exited: {self.procs.log(f'controlplane-{self.cluster}-{self.starts}')}"
            )
        conn = http.client.HTTPSConnection(  # liveness: the certificate is not checked here
            "127.0.0.1", self.api_port, timeout=1, context=unverified_tls().context
        )
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)

    def apply(self, yaml_text: str) -> str:
        return run_meshfed(
            self.home, "apply", "--controlplane", self.api_url, "-f", "-", input_text=yaml_text
        ).stdout

    def delete(self, yaml_text: str) -> str:
        return run_meshfed(
            self.home, "delete", "--controlplane", self.api_url, "-f", "-", input_text=yaml_text
        ).stdout

    def info(self) -> dict[str, Any]:
        """``GET /v1/info``."""
        return plane_info(self.api_url, self.home)

    def mint(self, namespace: str, service_account: str, **options: Any) -> str:
        """A workload token (see :func:`mint_token`)."""
        return mint_token(self.api_url, self.home, namespace, service_account, **options)

    def proxy_status(self) -> list[dict[str, Any]]:
        out = run_meshfed(
            self.home, "proxy-status", "--controlplane", self.api_url, "-o", "json"
        ).stdout
        result: list[dict[str, Any]] = json.loads(out)
        return result


def start_all(handles: Sequence[Any]) -> None:
    """``handle.start()`` of every handle at once (each spawns its process and waits for it
    to be healthy: a federation's control planes start together instead of one after the
    other); the first failure is raised once all have returned."""
    with ThreadPoolExecutor(max(1, len(handles))) as pool:
        for future in [pool.submit(h.start) for h in handles]:
            future.result()


def api_context(url: str, home: Path) -> ssl.SSLContext:
    """A client context for a control plane's HTTPS API under ``home``: its certificate is
    verified against the trust bundle its ``endpoint.json`` names; not its DNS name, which
    urllib and http.client cannot ask for (meshfed's own client checks it)."""
    tls = tls_for(url, home)
    assert tls is not None and tls.server_hostname, f"no endpoint.json for {url} in {home}"
    context = tls.context
    context.check_hostname = False
    return context


def plane_info(api_url: str, home: Path) -> dict[str, Any]:
    """A control plane's ``GET /v1/info``."""
    result: dict[str, Any] = call("GET", api_url, "/v1/info", home=home)
    return result


def mint_token(
    api_url: str,
    home: Path,
    namespace: str,
    service_account: str,
    *,
    ttl_s: int = 600,
    single_use: bool = True,
) -> str:
    """A workload token for ``namespace``/``service_account`` (``POST /v1/workload-tokens``)."""
    body = json.dumps(
        {
            "namespace": namespace,
            "serviceAccount": service_account,
            "ttlSeconds": ttl_s,
            "singleUse": single_use,
        }
    )
    answer = call("POST", api_url, "/v1/workload-tokens", body=body, home=home)
    return str(answer["token"])


class Plane(Protocol):
    """What sidecar helpers need of a control plane (a process or one in this test)."""

    cluster: str

    @property
    def xds_port(self) -> int: ...

    def info(self) -> dict[str, Any]: ...

    def mint(self, namespace: str, service_account: str, **options: Any) -> str: ...


@dataclass
class InProcessPlane:
    """A :class:`federation.controlplane.server.ControlPlane` started by the test itself;
    call its helpers from a thread (they use its HTTP API)."""

    plane: Any
    home: Path

    @property
    def cluster(self) -> str:
        return str(self.plane.config.cluster)

    @property
    def xds_port(self) -> int:
        return int(self.plane.xds_port)

    def info(self) -> dict[str, Any]:
        return plane_info(self.plane.api_url, self.home)

    def mint(self, namespace: str, service_account: str, **options: Any) -> str:
        return mint_token(self.plane.api_url, self.home, namespace, service_account, **options)


def provision(
    cp: Plane, namespace: str, service_account: str, directory: Path, token: str | None = None
) -> X509Svid:
    """Obtain an SVID for ``namespace``/``service_account`` into ``directory`` (an identity
    directory, as a proxy agent would), with ``token`` (default: a freshly minted one)."""
    info = cp.info()
    identity = WorkloadIdentity(
        SpiffeId.parse(f"spiffe://{info['trust_domain']}/ns/{namespace}/sa/{service_account}"),
        IdentityDirectory(directory),
        CaEndpoints(info["caAddress"], info["xdsAddress"], info["serverName"]),
        info["trustBundle"].encode(),
        token or cp.mint(namespace, service_account),
    )
    return asyncio.run(identity.ensure())


def workload_yaml(
    name: str,
    *,
    service: str,
    address: str,
    locality: str,
    port: int,
    target_port: int,
    inbound_port: int = 15006,
    namespace: str = "demo",
    service_account: str | None = None,
    tls_mode: str = "mutual",
    protocol: str = "http",
) -> str:
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  service: {service}\n  address: {address}\n"
        f"  serviceAccount: {service_account or service}\n  locality: {locality}\n"
        f"  tlsMode: {tls_mode}\n  inboundPort: {inbound_port}\n"
        f"  ports: [{{name: {protocol}, port: {port}, targetPort: {target_port}, protocol: {protocol}}}]\n"
        "  healthCheck: {intervalMs: 500, timeoutMs: 300}\n"
    )


def start_sidecar(
    procs: Processes,
    cp: Plane,
    *,
    name: str,
    namespace: str = "demo",
    workload: str = "",
    service_account: str = "default",
    locality: str,
    outbound_port: int | None = None,
    delta: bool = True,
) -> EnvoyProcess:
    """An Envoy sidecar of ``namespace``/``name`` for ``cp``, its outbound listener on
    127.0.0.1:``outbound_port`` (default: a free port; never a fixed one, which every sidecar
    of the suite would share: Envoy sets ``SO_REUSEPORT``)."""
    loc = Locality.parse(locality)
    admin = free_port()
    identity_dir = (procs.workdir / f"identity-{name}").resolve()
    provision(cp, namespace, service_account, identity_dir)
    info = cp.info()
    desc = ProxyDescription(
        node_id=f"sidecar~{namespace}~{name}",
        role="sidecar",
        namespace=namespace,
        workload=workload,
        service_account=service_account,
        outbound_port=outbound_port or free_port(),
        identity_dir=str(identity_dir),
    )
    bootstrap = envoy_bootstrap(
        BootstrapParams(
            node_id=desc.node_id,
            cluster=cp.cluster,
            xds_host="127.0.0.1",
            xds_port=cp.xds_port,
            admin_port=admin,
            locality=(loc.region, loc.zone, loc.sub_zone),
            metadata=desc.metadata(),
            delta=delta,
            identity_dir=str(identity_dir),
            xds_server_id=control_plane_spiffe_id(info["trust_domain"], cp.cluster),
            xds_server_name=info["serverName"],
        )
    )
    envoy = EnvoyProcess(
        bootstrap,
        procs.workdir / f"envoy-{name}",
        base_id=admin,
        admin_port=admin,
        log_level="info",
    )
    return procs.envoy(envoy)


class ControllerHandle:
    """``meshfed controller serve`` on fixed ports (a restart keeps them)."""

    def __init__(
        self,
        procs: Processes,
        home: Path,
        lease_s: float = 3.0,
        store: str | None = None,
        *,
        name: str = "controller",
        extra_args: list[str] | None = None,
    ) -> None:
        self.procs, self.home, self.lease_s, self.store = procs, home, lease_s, store
        self.name, self.extra_args = name, extra_args or []
        self.api_port, self.sync_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_name(self) -> str:
        return f"{self.name}-{self.starts}"

    @property
    def sync_address(self) -> str:
        return f"127.0.0.1:{self.sync_port}"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the federation's bundle (the API's certificate chains to it); its name is
        controller.meshfed.internal, which urllib cannot ask for, so the host is not checked
        here (meshfed's own client checks it)."""
        context = ssl.create_default_context(cafile=str(self.home / "trust" / "bundle.pem"))
        context.check_hostname = False
        return context

    def start(self) -> None:
        self.starts += 1
        self.proc = self.procs.spawn(
            self.log_name,
            [
                MESHFED,
                "--log-level",
                "info",
                "controller",
                "serve",
                "--listen",
                f"127.0.0.1:{self.api_port}",
                "--sync-listen",
                f"127.0.0.1:{self.sync_port}",
                "--trust-domain",
                "example.org",
                "--lease",
                f"{self.lease_s}s",
                *(["--store", self.store] if self.store else []),
                *self.extra_args,
            ],
            env=meshfed_env(self.home),
        )
        wait_until(self._healthy, 20, "controller API")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"controller exited: {self.procs.log(self.log_name)}")
        try:
            return call("GET", self.url, "/healthz", home=self.home)["status"] == "ok"
        except ApiError:  # before config.yaml names the CA
            return False

    def token(self) -> str:
        return (self.home / "controller-token").read_text().strip()

    def api(self, method: str, path: str, body: str | None = None) -> Any:
        return call(method, self.url, path, token=self.token(), body=body, home=self.home)

    def clusters(self) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in self.api("GET", "/v1/clusters")["clusters"]}

    def join(self, cluster: str, locality: str, gateway: str) -> ControlPlaneHandle:
        """Register ``cluster`` (its east-west gateway on ``gateway``, HOST:PORT) and start
        its control plane with the join token; policies then come from this controller."""
        out = run_meshfed(
            self.home, "cluster", "join", cluster, "--locality", locality, "--gateway", gateway,
            "-o", "json",
        ).stdout  # fmt: skip
        cp = ControlPlaneHandle(
            self.procs,
            self.home,
            cluster,
            locality,
            extra_args=[
                "--controller", f"127.0.0.1:{self.api_port}",
                "--join-token", json.loads(out)["token"],
            ],
        )  # fmt: skip
        cp.start()
        return cp


def start_sidecar_agent(
    procs: Processes,
    home: Path,
    cp: ControlPlaneHandle,
    *,
    service: str,
    address: str,
    app_port: int,
    service_port: int,
    protocol: str = "http",
    outbound_port: int | None = None,
    admin_port: int | None = None,
    name: str | None = None,
    namespace: str = "demo",
    service_account: str | None = None,
    workload_token: str | None = None,
    labels: dict[str, str] | None = None,
    upstreams: list[str] | None = None,
    locality: str | None = None,
    capacity_rps: float | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """``meshfed proxy sidecar`` for one workload (``labels``: its WorkloadEntry's, besides
    ``app``); returns the agent and its inbound port.

    A single-use workload token is minted for it unless ``workload_token`` is given."""
    inbound = free_port(address)
    account = service_account or service
    token = workload_token or cp.mint(namespace, account)
    argv = [
        MESHFED,
        "--log-level",
        "info",
        "proxy",
        "sidecar",
        "--cluster",
        cp.cluster,
        "--controlplane",
        f"127.0.0.1:{cp.xds_port}",
        "--service",
        service,
        "-n",
        namespace,
        "--app-port",
        str(app_port),
        "--service-port",
        str(service_port),
        "--protocol",
        protocol,
        "--address",
        address,
        "--inbound-port",
        str(inbound),
        "--outbound-port",
        str(outbound_port or free_port()),
        "--admin-port",
        str(admin_port or free_port()),
        "--service-account",
        account,
    ]
    if name:
        argv += ["--name", name]
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    for upstream in upstreams or []:
        argv += ["--upstream", upstream]
    if locality:
        argv += ["--locality", locality]
    if capacity_rps:
        argv += ["--capacity-rps", f"{capacity_rps:g}"]
    proc = procs.spawn(
        f"agent-{cp.cluster}-{name or service}-{inbound}",
        argv,
        env=dict(meshfed_env(home), MESHFED_WORKLOAD_TOKEN=token),
    )
    return proc, inbound


def start_gateway(
    procs: Processes,
    home: Path,
    cp: ControlPlaneHandle,
    listen: str,
    extra_args: Sequence[str] = (),
    name: str = "",
) -> subprocess.Popen[bytes]:
    """``meshfed proxy gateway`` (east-west gateway) of ``cp``'s cluster on ``listen``
    (``extra_args``: more flags, e.g. ``--zone-local``; ``name``: its process's, default
    ``gateway-<cluster>``)."""
    token = cp.mint("meshfed-system", "eastwest-gateway")
    return procs.spawn(
        name or f"gateway-{cp.cluster}",
        [
            MESHFED,
            "--log-level",
            "info",
            "proxy",
            "gateway",
            "--cluster",
            cp.cluster,
            "--controlplane",
            f"127.0.0.1:{cp.xds_port}",
            "--listen",
            listen,
            *extra_args,
        ],
        env=dict(meshfed_env(home), MESHFED_WORKLOAD_TOKEN=token),
    )


def start_echo(
    procs: Processes,
    name: str,
    port: int,
    cluster: str = "",
    access_log: bool = False,
    fail_file: Path | None = None,
    extra_args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``federation.demo.echo_http`` as ``app-<name>`` (its log: ``procs.log("app-<name>")``,
    one ``access "GET /path HTTP/1.1" 200 host=...`` line per request with ``access_log``;
    500 to everything while ``fail_file`` exists)."""
    return procs.spawn(
        f"app-{name}",
        [
            sys.executable,
            "-m",
            "federation.demo.echo_http",
            "--name",
            name,
            "--cluster",
            cluster,
            "--port",
            str(port),
            *(["--access-log"] if access_log else []),
            *(["--fail-file", str(fail_file)] if fail_file else []),
            *extra_args,
        ],
    )


def start_echo_tcp(procs: Processes, name: str, port: int, cluster: str) -> subprocess.Popen[bytes]:
    """``federation.demo.echo_tcp`` as ``app-<name>``: answers ``<name> <cluster> <line>``."""
    return procs.spawn(
        f"app-{name}",
        [sys.executable, "-m", "federation.demo.echo_tcp", "--name", name, "--cluster", cluster,
         "--port", str(port)],
    )  # fmt: skip


def tcp_line(port: int, line: str, timeout_s: float = 3.0) -> str:
    """Connect to ``127.0.0.1:port``, send ``line``, return the first line answered ("" if
    the connection closed first)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def get(
    port: int,
    host: str,
    path: str = "/",
    timeout_s: float = 3.0,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One HTTP/1.1 request (GET unless ``method``) through a sidecar's outbound listener."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        body = resp.read()
        try:
            data = json.loads(body)
        except ValueError:
            data = {"raw": body.decode(errors="replace")}
        return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


@dataclass
class Sample:
    at: float
    status: int
    name: str


class LoadLoop:
    """Sends GETs of ``path`` back to back (``interval_s`` apart) from a thread; bounded by
    count and time."""

    def __init__(
        self,
        port: int,
        host: str,
        *,
        interval_s: float = 0.01,
        max_requests: int = 5000,
        max_seconds: float = 60,
        path: str = "/",
    ) -> None:
        self.port, self.host, self.path = port, host, path
        self.interval_s, self.max_requests, self.max_seconds = interval_s, max_requests, max_seconds
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        started = time.monotonic()
        while (
            not self._stop.is_set()
            and len(self.samples) < self.max_requests
            and time.monotonic() - started < self.max_seconds
        ):
            try:
                status, data, _ = get(self.port, self.host, self.path)
                self.samples.append(Sample(time.monotonic(), status, str(data.get("name", ""))))
            except OSError as err:
                self.samples.append(Sample(time.monotonic(), 0, f"error: {err}"))
            time.sleep(self.interval_s)

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.status != 200]

    def tail_names(self, n: int) -> set[str]:
        return {s.name for s in self.samples[-n:]}

    def wait_tail(self, names: set[str], n: int, timeout_s: float) -> None:
        """Wait until the last ``n`` responses all came from ``names`` (and there are ``n``)."""
        mark = len(self.samples)
        wait_until(
            lambda: len(self.samples) >= mark + n and {s.name for s in self.samples[-n:]} <= names,
            timeout_s,
            f"last {n} responses only from {sorted(names)}",
        )


def envoy_pids_under(path: Path) -> list[int]:
    """PIDs of live processes whose command line mentions ``path`` and envoy."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().split()[2]
        except OSError:
            continue
        if "envoy" in cmdline and str(path) in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


class RateLoop(LoadLoop):
    """GETs at a steady rate (``rps``) from ``threads`` threads; bounded by count and time."""

    def __init__(
        self,
        port: int,
        host: str,
        *,
        rps: float = 200,
        threads: int = 4,
        max_requests: int = 20000,
        max_seconds: float = 60,
        path: str = "/",
    ) -> None:
        super().__init__(port, host, max_requests=max_requests, max_seconds=max_seconds, path=path)
        self.rps, self.n_threads = rps, threads
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(threads)]

    def __enter__(self) -> RateLoop:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _worker(self) -> None:
        period = self.n_threads / self.rps
        next_at = time.monotonic()
        while (
            not self._stop.is_set()
            and len(self.samples) < self.max_requests
            and time.monotonic() - self.started < self.max_seconds
        ):
            try:
                status, data, _ = get(self.port, self.host, self.path)
                sample = Sample(time.monotonic(), status, str(data.get("name", "")))
            except OSError as err:
                sample = Sample(time.monotonic(), 0, f"error: {err}")
            with self._lock:
                self.samples.append(sample)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))

    def rate(self) -> float:
        """Requests per second actually sent."""
        if len(self.samples) < 2:
            return 0.0
        return len(self.samples) / (self.samples[-1].at - self.started)


def join_cluster(procs: Processes, home: Path, ctl: ControllerHandle, name: str, locality: str,
          gateway: str, extra: list[str]) -> ControlPlaneHandle:  # fmt: skip
    """``meshfed cluster join`` ``name`` (on network ``net-<name>``, its gateway
    ``gateway``) with ``ctl`` and start its control plane with the token (``extra``: more
    flags)."""
    out = run_meshfed(
        home, "cluster", "join", name, "--controller", ctl.url, "--locality", locality,
        "--network", f"net-{name}", "--gateway", gateway, "-o", "json",
    ).stdout  # fmt: skip
    cp = ControlPlaneHandle(
        procs, home, name, locality,
        extra_args=[
            "--network", f"net-{name}", "--controller", f"127.0.0.1:{ctl.api_port}",
            "--join-token", json.loads(out)["token"], "--gateway", gateway, *extra,
        ],
    )  # fmt: skip
    cp.start()
    return cp
