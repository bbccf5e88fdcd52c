"""The proxy agent without Envoy: its preparation against an HTTP fake of the control plane's
API (``/v1/bootstrap``, ``/v1/apply``, ``/v1/delete``), and its supervisor's order of work
with a fake Envoy process.

The fake (``http.server`` on 127.0.0.1) answers the routes the agent calls with the shapes
the real control plane gives (``federation/controlplane/api.py``); it does not model TLS
(the agent is pointed at ``http://``, which it calls as it would a local control plane),
authentication (it records the bearer token instead) or any other route.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from eastwest_gateway.gateway import GatewayConfig, prepare_gateway
from federation.agent.config import AgentConfig, IdentityOptions, SidecarConfig
from federation.agent.errors import EnvoyExitedError
from federation.agent.sidecar import prepare_sidecar
from federation.agent.supervisor import AgentSettings, ProxyAgent, backoff_s
from federation.agent.tap import GatewayTap
from federation.errors import ConfigError
from federation.sync.node import META_PREFIX

BOOTSTRAP = {
    "cluster": "east",
    "trust_domain": "example.org",
    "locality": "aws/us-east-1/us-east-1a",
    "trustBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "caAddress": "127.0.0.1:15012",
    "serverName": "controlplane.east.cluster.meshfed.internal",
}


class FakeControlPlane:
    """The API routes the agent calls, recording every request ``(method, path, token,
    body)``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                token = self.headers.get("Authorization", "")
                fake.requests.append((method, self.path, token, body))
                if (method, self.path) == ("GET", "/v1/bootstrap"):
                    data: dict[str, Any] = BOOTSTRAP
                elif (method, self.path) in (("POST", "/v1/apply"), ("POST", "/v1/delete")):
                    data = {"applied": ["WorkloadEntry demo/x"]}
                else:
                    self.send_error(404)
                    return
                out = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def posts(self) -> list[tuple[str, str, str, str]]:
        return [r for r in self.requests if r[0] == "POST"]


@pytest.fixture
def cp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeControlPlane]:
    monkeypatch.setenv("MESHFED_HOME", str(tmp_path))
    monkeypatch.delenv("MESHFED_TOKEN", raising=False)
    fake = FakeControlPlane()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(timeout=5)


def _agent(cp: FakeControlPlane, **kw: Any) -> AgentConfig:
    values: dict[str, Any] = {
        "cluster": "east",
        "controlplane": "127.0.0.1:15010",
        "api": cp.url,
        "token": "api-token",
        "identity": IdentityOptions(token="mfw_x"),
        "admin_port": 15000,
    }
    return AgentConfig(**{**values, **kw})


def _sidecar(cp: FakeControlPlane, **kw: Any) -> SidecarConfig:
    return SidecarConfig(
        agent=kw.pop("agent", None) or _agent(cp),
        service="echo",
        namespace="demo",
        app_port=8080,
        **kw,
    )


def test_a_sidecar_registers_its_workload_entry_and_connects_as_its_node(cp) -> None:
    plan = prepare_sidecar(
        _sidecar(cp, labels=(("version", "v2"),), upstreams=("db.demo:5432=15432",))
    )
    assert [r[:2] for r in cp.requests] == [("GET", "/v1/bootstrap")]
    assert plan.entry.metadata.name == "echo-127-0-0-1-15006"
    assert plan.entry.metadata.labels == {"app": "echo", "version": "v2"}
    assert str(plan.description.locality) == "aws/us-east-1/us-east-1a"  # from /v1/bootstrap
    node = plan.parts.settings.bootstrap["node"]
    assert node["id"] == "sidecar~demo~echo-127-0-0-1-15006"
    assert node["metadata"][META_PREFIX + "upstreams"] == "db.demo:5432=15432"
    identity_dir = Path(node["metadata"][META_PREFIX + "identity_dir"])
    assert identity_dir.is_absolute() and identity_dir.name == "identity"
    assert str(plan.parts.identity.spiffe_id) == "spiffe://example.org/ns/demo/sa/echo"
    # registering and deregistering apply and delete the same entry, with the API token
    asyncio.run(plan.parts.settings.register())
    asyncio.run(plan.parts.settings.deregister())
    (apply, delete) = cp.posts()
    assert (apply[1], delete[1]) == ("/v1/apply", "/v1/delete")
    assert apply[2] == delete[2] == "Bearer api-token"
    assert apply[3] == delete[3]
    doc = yaml.safe_load(apply[3])
    assert (doc["kind"], doc["metadata"]["name"]) == ("WorkloadEntry", plan.entry.metadata.name)


def test_a_kubernetes_pod_registers_nothing_its_endpoint_slice_does(cp) -> None:
    plan = prepare_sidecar(_sidecar(cp, kubernetes=True, address="10.1.0.5"))
    assert plan.entry.metadata.name == "k8s-echo-10-1-0-5"
    asyncio.run(plan.parts.settings.register())
    asyncio.run(plan.parts.settings.deregister())
    assert cp.posts() == []


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"agent": "controlplane"}, "--controlplane"),
        ({"agent": "locality"}, "--locality"),
        ({"upstreams": ("db:5432",)}, "--upstream"),
        ({"extra_ports": ("nonsense",)}, "--extra-port"),
        ({"agent": "ca"}, "--ca"),
    ],
)
def test_a_bad_setting_names_its_flag_and_nothing_is_registered(cp, change, flag) -> None:
    bad = {
        "controlplane": {"controlplane": "no-port"},
        "locality": {"locality": "mars"},
        "ca": {"identity": IdentityOptions(token="t", ca="nowhere")},
    }
    kw = dict(change)
    if "agent" in kw:
        kw["agent"] = _agent(cp, **bad[kw["agent"]])
    with pytest.raises(ConfigError, match=flag):
        prepare_sidecar(_sidecar(cp, **kw))
    assert cp.posts() == []
    if flag == "--controlplane":  # refused before any request
        assert cp.requests == []


def test_an_unreadable_token_file_names_its_flag(cp, tmp_path: Path) -> None:
    agent = _agent(cp, identity=IdentityOptions(token_file=tmp_path / "missing"))
    with pytest.raises(ConfigError, match="--workload-token-file"):
        prepare_sidecar(_sidecar(cp, agent=agent))


def test_the_gateway_is_its_cluster_s_gateway_identity_and_registers_nothing(cp) -> None:
    parts = prepare_gateway(GatewayConfig(agent=_agent(cp), listen="127.0.0.1:15443"))
    node = parts.settings.bootstrap["node"]
    assert node["id"] == "gateway~east"
    assert node["metadata"][META_PREFIX + "listen"] == "127.0.0.1:15443"
    assert str(parts.identity.spiffe_id) == (
        "spiffe://example.org/ns/meshfed-system/sa/eastwest-gateway"
    )
    # it counts its hop: connections and bytes per sidecar, from its Envoy's log FIFO
    assert isinstance(parts.tap, GatewayTap) and parts.settings.propagation_s == 0.0
    assert node["metadata"][META_PREFIX + "traffic_log"] == str(parts.tap.path)
    with pytest.raises(ConfigError, match="--advertise"):
        prepare_gateway(GatewayConfig(agent=_agent(cp), advertise="nope"))


@pytest.mark.parametrize(
    ("flags", "api_type"), [([], "DELTA_GRPC"), (["--sotw"], "GRPC"), (["--delta"], "DELTA_GRPC")]
)
def test_sidecars_and_gateways_speak_delta_xds_unless_told_sotw(cp, flags, api_type) -> None:
    """The flag as ``meshfed proxy sidecar|gateway`` parse it, through to Envoy's ADS config."""
    from federation.cli.proxy_commands import sidecar_cmd

    args = ["--cluster", "east", "--controlplane", "127.0.0.1:15010", "--service", "echo"]
    args += ["--app-port", "8080", *flags]
    # with the help options meshfed's group gives it: click (>= 8.2) keeps a command's help
    # option from its first context, and docs/cli.md's renderer would get this one's
    values = dict(
        sidecar_cmd.make_context("sidecar", args, help_option_names=["-h", "--help"]).params
    )
    agent = AgentConfig.from_flags(values)
    assert agent.delta is (api_type == "DELTA_GRPC")
    for bootstrap in (
        prepare_sidecar(_sidecar(cp, agent=_agent(cp, delta=agent.delta))).parts.settings.bootstrap,
        prepare_gateway(GatewayConfig(agent=_agent(cp, delta=agent.delta))).settings.bootstrap,
    ):
        assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == api_type


class FakeProcess:
    def __init__(self) -> None:
        self.returncode: int | None = None
        self.pid = 4242

    def poll(self) -> int | None:
        return self.returncode


class FakeEnvoy:
    """What the supervisor calls of :class:`EnvoyProcess`, recording the order."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.process: FakeProcess | None = None
        self.log_path = Path("/dev/null")
        self.active = 2
        self.failing_starts = 0

    def start(self) -> None:
        self.calls.append("start")
        self.process = FakeProcess()

    def wait_ready(self, timeout_s: float) -> None:
        if self.failing_starts and self.process is not None:
            self.failing_starts -= 1
            self.process.returncode = 1
            raise EnvoyExitedError("envoy exited with 1; see /dev/null")
        self.calls.append("ready")

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def admin(self, path: str, *, method: str = "GET", timeout_s: float = 1.0) -> str:
        if path.startswith("/drain_listeners"):
            self.calls.append("drain")
            return ""
        self.active = max(0, self.active - 1)  # requests finish while draining
        return f"http.inbound_8080.downstream_rq_active: {self.active}\n"

    def stop(self, *, drain: bool = True) -> None:
        self.calls.append("stop")
        if self.process is not None:
            self.process.returncode = 0


async def _crash_once(
    agent: ProxyAgent, envoy: FakeEnvoy, calls: list[str], failing_starts: int = 0
) -> None:
    """Run the agent until Envoy is ready, kill it (the next ``failing_starts`` starts fail
    too), wait until a new Envoy is ready, then stop the agent."""
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(agent.ready.wait(), 5)
    envoy.failing_starts = failing_starts
    assert envoy.process is not None
    envoy.process.returncode = 1  # Envoy dies
    for _ in range(100):
        if calls.count("ready") == 2 and agent.ready.is_set():
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(run, 10)


def test_the_supervisor_registers_restarts_a_dead_envoy_then_deregisters_and_drains() -> None:
    calls: list[str] = []

    async def register() -> None:
        calls.append("register")

    async def deregister() -> None:
        calls.append("deregister")

    settings = AgentSettings(
        {}, Path("/nonexistent"), 15000, register=register, deregister=deregister,
        propagation_s=0.0, drain_timeout_s=5.0,
    )  # fmt: skip
    agent = ProxyAgent(settings)
    envoy = FakeEnvoy(calls)
    agent.envoy = envoy  # type: ignore[assignment]

    asyncio.run(_crash_once(agent, envoy, calls))  # restarted after backoff_s(0)
    assert calls == ["register", "start", "ready", "start", "ready", "deregister", "drain", "stop"]
    assert settings.restarts == 1 and envoy.active == 0


def test_a_restart_that_fails_to_start_is_retried_and_a_first_start_that_fails_is_raised() -> None:
    """A restarted Envoy that exits while starting (its admin port taken for a moment, say)
    is one more crash to back off from, not the end of the agent and its workload."""
    calls: list[str] = []
    settings = AgentSettings({}, Path("/nonexistent"), 15000, propagation_s=0.0)
    agent = ProxyAgent(settings)
    envoy = FakeEnvoy(calls)
    agent.envoy = envoy  # type: ignore[assignment]

    asyncio.run(_crash_once(agent, envoy, calls, failing_starts=2))
    assert calls.count("start") == 4 and calls.count("ready") == 2
    assert settings.restarts == 3

    first = ProxyAgent(AgentSettings({}, Path("/nonexistent"), 15000, propagation_s=0.0))
    broken = FakeEnvoy([])
    broken.failing_starts = 1
    first.envoy = broken  # type: ignore[assignment]
    with pytest.raises(EnvoyExitedError):
        asyncio.run(first.run(asyncio.Event()))


def test_backoff_doubles_from_a_quarter_second_to_ten() -> None:
    assert [backoff_s(i) for i in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
