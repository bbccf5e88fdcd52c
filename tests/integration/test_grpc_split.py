"""TrafficPolicy ``split`` and ``http`` routes for grpcio's own xDS client (``xds:///``),
across two clusters.

A controller and two clusters, ``x`` (aws/us-east-1) and ``y`` (aws/us-west-2), on one network
(``shared``): the controller passes each cluster the other's endpoints and the gRPC client
dials them directly (proxyless gRPC has no sidecar, so no gateway either). Each cluster runs one
plain-text gRPC echo server registered with its control plane; the client is bootstrapped
against ``x``'s control plane. Real processes throughout; every RPC is counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    free_port,
    run_meshfed,
    wait_until,
    workload_yaml,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LOCALITY = {"x": "aws/us-east-1/us-east-1a", "y": "aws/us-west-2/us-west-2a"}
TARGET = "xds:///echo.demo.svc.clusterset.local"


def _policy(split: str) -> str:
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
        "metadata: {name: echo, namespace: demo}\n"
        f"spec:\n  host: echo.demo.svc.clusterset.local\n  split: {split}\n"
    )


class Reader:
    """Drains the client's lines (``<time> <server name> ...``, one per RPC) from a thread,
    stamping each with the time it was read, so a stamp is within milliseconds of the RPC."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self._taken = 0
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) > 1:
                self.lines.append((time.monotonic(), parts[1]))

    def take(self, n: int, timeout_s: float = 30) -> list[tuple[float, str]]:
        """The next ``n`` answers (waits for them)."""
        deadline = time.monotonic() + timeout_s
        while len(self.lines) < self._taken + n and time.monotonic() < deadline:
            time.sleep(0.01)
        got = self.lines[self._taken : self._taken + n]
        self._taken += len(got)
        assert len(got) == n, f"client stalled after {len(got)} answers"
        return got

    def skip_to_now(self) -> None:
        """Forget answers read so far."""
        self._taken = len(self.lines)


def test_split_applies_to_grpc_xds_clients(procs, tmp_path) -> None:
    home = tmp_path / "home"
    controller = ControllerHandle(procs, home, lease_s=10)
    controller.start()
    cps = {}
    for name in ("x", "y"):
        out = run_meshfed(
            home,
            "cluster",
            "join",
            name,
            "--locality",
            LOCALITY[name],
            "--network",
            "shared",
            "--gateway",
            f"127.0.0.1:{free_port()}",
            "-o",
            "json",
        ).stdout
        cp = ControlPlaneHandle(
            procs,
            home,
            name,
            LOCALITY[name],
            extra_args=[
                "--network",
                "shared",
                "--controller",
                f"127.0.0.1:{controller.api_port}",
                "--join-token",
                json.loads(out)["token"],
            ],
        )
        cp.start()
        cps[name] = cp
        port = free_port()
        procs.spawn(
            f"app-{name}",
            [
                sys.executable,
                "-m",
                "federation.demo.echo_grpc",
                "serve",
                "--name",
                f"{name}-grpc",
                "--cluster",
                name,
                "--port",
                str(port),
            ],
        )
        cp.apply(
            workload_yaml(
                f"{name}-grpc",
                service="echo",
                address="127.0.0.1",
                locality=LOCALITY[name],
                port=9090,
                target_port=port,
                tls_mode="disabled",
                protocol="grpc",
            )
        )
    run_meshfed(
        home,
        "apply",
        "-f",
        "-",
        input_text="---\n".join(
            "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
            f"metadata: {{name: echo, namespace: demo}}\nspec: {{cluster: {c}}}\n"
            for c in ("x", "y")
        ),
    )
    run_meshfed(  # the client's SVID, for the xDS channel's mutual TLS
        home,
        "workload",
        "identity",
        "--once",
        "--controlplane",
        cps["x"].api_url,
        "-n",
        "demo",
        "--service-account",
        "frontend",
        "--workload-token",
        cps["x"].mint("demo", "frontend"),
    )
    bootstrap = run_meshfed(
        home,
        "bootstrap",
        "grpc",
        "--controlplane",
        f"127.0.0.1:{cps['x'].xds_port}",
        "--node-id",
        "grpc-client",
        "--service",
        "frontend",
        "-n",
        "demo",
        "--locality",
        LOCALITY["x"],
    ).stdout
    path = tmp_path / "bootstrap.json"
    path.write_text(bootstrap)
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "federation.demo.echo_grpc",
            "call",
            "--target",
            TARGET,
            "--count",
            "6000",
            "--interval",
            "0.002",
        ],
        env=dict(os.environ, GRPC_XDS_BOOTSTRAP=str(path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    reader = Reader(client)
    try:
        # without a policy: locality keeps every RPC in x
        wait_until(lambda: {n for _, n in reader.take(20)} == {"x-grpc"}, 30, "RPCs answered by x")
        # y is imported with its endpoint, dialled directly (same network)
        imports = json.loads(run_meshfed(home, "get", "imports", "-o", "json").stdout)
        [x_import] = [i for i in imports if i["cluster"] == "x"]
        assert x_import["spec"]["clusters"][0]["directEndpoints"][0]["tlsMode"] == "disabled"

        run_meshfed(home, "apply", "-f", "-", input_text=_policy("{x: 80, y: 20}"))
        wait_until(lambda: "y-grpc" in {n for _, n in reader.take(50)}, 15, "split in force")
        reader.skip_to_now()
        counts = Counter(n for _, n in reader.take(1000))
        assert 750 <= counts["x-grpc"] <= 850 and 150 <= counts["y-grpc"] <= 250, counts

        run_meshfed(home, "apply", "-f", "-", input_text=_policy("{x: 0, y: 100}"))
        applied = time.monotonic()
        reader.skip_to_now()
        answers = reader.take(600)
        late = [n for at, n in answers if at >= applied + 1.0]
        assert late and set(late) == {"y-grpc"}, Counter(late)

        # issue 21: http routes reach proxyless gRPC clients too (gRFC A28, A33): metadata
        # x-canary: 1 goes to y, x-chaos: 1 is aborted, everything else stays in x
        run_meshfed(home, "apply", "-f", "-", input_text=ROUTES)
        wait_until(lambda: {n for _, n in reader.take(20)} == {"x-grpc"}, 15, "routes in force")
        assert _calls(path, 50, "x-canary=1") == Counter({"y-grpc": 50})
        aborted = _calls(path, 20, "x-chaos=1")
        assert aborted == Counter({"ERROR:UNAVAILABLE": 20}), aborted
    finally:
        client.kill()
        client.wait(5)
        reader._thread.join(5)
        assert client.stdout is not None
        client.stdout.close()


ROUTES = (
    "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
    "metadata: {name: echo, namespace: demo}\n"
    "spec:\n  host: echo.demo.svc.clusterset.local\n  http:\n"
    "  - name: canary\n    match: [{headers: {x-canary: {exact: '1'}}}]\n"
    "    route: [{destination: {cluster: y}}]\n"
    "  - name: chaos\n    match: [{headers: {x-chaos: {exact: '1'}}}]\n"
    "    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n"
    "  - route: [{destination: {cluster: x}}]\n"
)


def _calls(bootstrap, count: int, metadata: str) -> Counter:
    """``count`` RPCs from a fresh gRPC client sending ``metadata``: who answered each."""
    out = subprocess.run(
        [sys.executable, "-m", "federation.demo.echo_grpc", "call", "--target", TARGET,
         "--count", str(count), "--interval", "0", "--metadata", metadata],
        env=dict(os.environ, GRPC_XDS_BOOTSTRAP=str(bootstrap)),
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return Counter(line.split()[1] for line in out.splitlines() if len(line.split()) > 1)
