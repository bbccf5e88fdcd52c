"""A controller with three clusters on loopback for traffic-policy tests and benchmarks.

- ``a``: aws/us-east-1/us-east-1a (127.0.1.0/24): two ``echo`` replicas and the caller (a
  sidecar whose requests are counted);
- ``b``: aws/us-west-2/us-west-2a (127.0.2.0/24): same cloud and continent as ``a``;
  estimated RTT from ``a`` about 54 ms, $0.02/GB (AWS inter-region);
- ``c``: gcp/us-east4/us-east4-a (127.0.3.0/24): another cloud; estimated RTT about 1 ms,
  $0.12/GB (GCP Premium Tier internet egress).

Each of ``b`` and ``c`` runs an east-west gateway and one ``echo`` behind a sidecar; every
cluster exports ``echo`` (applied to the controller). Every process belongs to a
:class:`~tests.integration.harness.Processes` owner that stops it.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from federation.client import call
from federation.controller.server import write_cli_config
from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    Processes,
    free_port,
    get,
    run_meshfed,
    start_all,
    start_echo,
    start_gateway,
    start_sidecar_agent,
    wait_until,
)

HOST = "echo.demo.svc.clusterset.local"
LOCALITY = {
    "a": "aws/us-east-1/us-east-1a",
    "b": "aws/us-west-2/us-west-2a",
    "c": "gcp/us-east4/us-east4-a",
}
NET = {"a": 1, "b": 2, "c": 3}
EXPORT = (
    "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
    "metadata: {{name: echo, namespace: demo}}\nspec: {{cluster: {cluster}}}\n"
)


def burst(port: int, path: str, n: int = 12) -> list[tuple[int, dict[str, str]]]:
    """``n`` concurrent GETs of ``path`` through the caller's sidecar on ``port``: each
    one's status and headers (what a circuit-breaking test counts)."""
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: get(port, HOST, path, timeout_s=10), range(n)))
    return [(status, headers) for status, _, headers in results]


def policy_yaml(spec: str, name: str = "echo") -> str:
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
        f"metadata: {{name: {name}, namespace: demo}}\n"
        f"spec:\n  host: {HOST}\n{spec}"
    )


class ThreeClusters:
    """``controllers``: replicas sharing one database (each cluster joins through the next
    one, and the CLI in ``home`` must name them all); default one controller in ``home``.
    Each echo answers 500 while its :meth:`fail_file` exists. ``gateway_a``: ``a`` runs its
    east-west gateway too (other clusters' callers can reach a's echo replicas)."""

    def __init__(
        self,
        procs: Processes,
        home: Path,
        controllers: list[ControllerHandle] | None = None,
        *,
        echo_access_log: bool = False,
        gateway_a: bool = False,
    ) -> None:
        self.procs, self.home = procs, home
        self.gateway_a = gateway_a  # a's gateway too (by default only b and c run one)
        self.echo_access_log = echo_access_log
        self.controllers = controllers or [ControllerHandle(procs, home, lease_s=10)]
        self.controller = self.controllers[0]
        self.cps: dict[str, ControlPlaneHandle] = {}
        self.a_apps: list[dict[str, Any]] = []
        self.client_port = 0  # picked right before the frontend's sidecar binds it

    def meshfed(self, *args: str, **kw: Any):
        return run_meshfed(self.home, *args, **kw)

    def start(self) -> None:
        for ctl in self.controllers:
            if ctl.proc is None:
                ctl.start()
        gateways: dict[str, str] = {}
        for i, name in enumerate(("a", "b", "c")):
            via = self.controllers[i % len(self.controllers)]
            gateway = f"127.0.{NET[name]}.1:{free_port(f'127.0.{NET[name]}.1')}"
            out = self.meshfed(
                "cluster",
                "join",
                name,
                "--controller",
                via.url,
                "--locality",
                LOCALITY[name],
                "--network",
                f"net-{name}",
                "--gateway",
                gateway,
                "-o",
                "json",
            ).stdout
            cp = ControlPlaneHandle(
                self.procs,
                self.home,
                name,
                LOCALITY[name],
                extra_args=[
                    "--network",
                    f"net-{name}",
                    "--controller",
                    f"127.0.0.1:{via.api_port}",
                    "--join-token",
                    json.loads(out)["token"],
                    "--gateway",
                    gateway,
                ],
            )
            self.cps[name] = cp
            gateways[name] = gateway
        start_all(list(self.cps.values()))  # the control planes start together
        for name, cp in self.cps.items():
            if name != "a" or self.gateway_a:
                start_gateway(self.procs, self.home, cp, gateways[name])
            if name != "a":
                self.start_echo(name, 1)
        for i in (1, 2):
            self.a_apps.append(self.start_echo("a", i))
        self.meshfed(
            "apply", "-f", "-", input_text="---\n".join(EXPORT.format(cluster=c) for c in "abc")
        )
        self.client_port = free_port()
        start_sidecar_agent(
            self.procs,
            self.home,
            self.cps["a"],
            service="frontend",
            address="127.0.1.10",
            app_port=free_port(),
            service_port=8080,
            outbound_port=self.client_port,
        )
        wait_until(lambda: self.names(20) == {"a-echo-1", "a-echo-2"}, 45, "a's echo replicas")
        wait_until(
            lambda: all(
                len(i["spec"]["clusters"]) == 2
                for i in json.loads(self.meshfed("get", "imports", "-o", "json").stdout)
                if i["cluster"] == "a"
            ),
            15,
            "a imports echo from b and c",
        )

    def start_echo(
        self, cluster: str, i: int, labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        name = f"{cluster}-echo-{i}"
        app_port = free_port()
        app = start_echo(
            self.procs,
            name,
            app_port,
            cluster,
            access_log=self.echo_access_log,
            fail_file=self.fail_file(name),
        )
        agent, _ = start_sidecar_agent(
            self.procs,
            self.home,
            self.cps[cluster],
            service="echo",
            address=f"127.0.{NET[cluster]}.{10 + i}",
            app_port=app_port,
            service_port=8080,
            name=name,
            labels=labels,
        )
        return {"name": name, "app": app, "agent": agent, "i": i}

    def fail_file(self, name: str) -> Path:
        """Touch it to make echo ``name`` (e.g. ``c-echo-1``) answer 500; remove it to heal."""
        return self.home.parent / f"{name}.fail"

    def kill_a(self) -> None:
        for entry in self.a_apps:
            for proc in (entry["agent"], entry["app"]):
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)

    def revive_a(self) -> None:
        self.a_apps = [self.start_echo("a", entry["i"]) for entry in self.a_apps]

    def names(self, n: int) -> set[str]:
        return {str(get(self.client_port, HOST)[1].get("name")) for _ in range(n)}

    def clusters_of(self, n: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(n):
            status, data, _ = get(self.client_port, HOST)
            seen[str(data.get("cluster")) if status == 200 else f"status {status}"] += 1
        return seen

    def explain(self) -> dict[str, Any]:
        out = self.meshfed("explain", HOST, "--from", "a", "-o", "json").stdout
        return json.loads(out)  # type: ignore[no-any-return]


class Replicas:
    """``n`` controller replicas on ``dsn`` (each its own home; one trust directory and one
    admin token), and a CLI home whose config.yaml names them all."""

    def __init__(
        self, procs: Processes, base: Path, dsns: list[str], *, lease_s: float = 10
    ) -> None:
        self.base = base
        self.cli_home = base / "cli"
        self.trust_dir = base / "trust"
        self.token_file = base / "controller-token"
        self.controllers = [
            ControllerHandle(
                procs,
                base / f"r{i}",
                lease_s=lease_s,
                store=dsn,
                name=f"r{i}",
                extra_args=[
                    "--replica-name",
                    f"r{i}",
                    "--trust-dir",
                    str(self.trust_dir),
                    "--token-file",
                    str(self.token_file),
                ],
            )
            for i, dsn in enumerate(dsns)
        ]

    def start(self) -> None:
        for ctl in self.controllers:  # one after the other: the first creates the root
            ctl.start()
        write_cli_config(
            self.cli_home / "config.yaml",
            ",".join(c.url for c in self.controllers),
            self.token_file,
            self.trust_dir / "bundle.pem",
        )

    def api(self, i: int, method: str, path: str, body: str | None = None) -> Any:
        """One replica's API (no failover)."""
        ctl = self.controllers[i]
        return call(
            method, ctl.url, path, token=self.token_file.read_text().strip(), body=body,
            home=self.cli_home,
        )  # fmt: skip

    def meshfed(self, *args: str, **kw: Any):
        return run_meshfed(self.cli_home, *args, **kw)
