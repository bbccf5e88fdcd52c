"""grpcio's own xDS client (``xds:///``) against ``meshfed controlplane serve``: round robin
over two local gRPC servers, then failover to the next locality when the local one has no
healthy endpoint. Real processes: the control plane, three gRPC servers, one gRPC client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.integration.harness import (
    ControlPlaneHandle,
    free_port,
    run_meshfed,
    wait_until,
    workload_yaml,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ZONE_A = "aws/us-east-1/us-east-1a"
ZONE_B = "aws/us-east-1/us-east-1b"


def _read_lines(proc: subprocess.Popen[str], n: int, timeout_s: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while len(lines) < n and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.split()[1])
    return lines


def test_grpc_xds_round_robin_then_locality_failover(procs, mesh_home, tmp_path) -> None:
    cp = ControlPlaneHandle(procs, mesh_home, "east", ZONE_A)
    cp.start()
    servers = {}
    docs = []
    for name, locality in (("grpc-1", ZONE_A), ("grpc-2", ZONE_A), ("grpc-3", ZONE_B)):
        port = free_port()
        servers[name] = procs.spawn(
            f"app-{name}",
            [
                sys.executable,
                "-m",
                "federation.demo.echo_grpc",
                "serve",
                "--name",
                name,
                "--port",
                str(port),
            ],
        )
        docs.append(
            workload_yaml(
                name,
                service="echo",
                address="127.0.0.1",
                locality=locality,
                port=9090,
                target_port=port,
                tls_mode="disabled",
                protocol="grpc",
            )
        )
    cp.apply("---\n".join(docs))
    run_meshfed(  # the client's SVID, for the xDS channel's mutual TLS
        mesh_home,
        "workload",
        "identity",
        "--once",
        "--controlplane",
        cp.api_url,
        "-n",
        "demo",
        "--service-account",
        "frontend",
        "--workload-token",
        cp.mint("demo", "frontend"),
    )
    bootstrap = run_meshfed(
        mesh_home,
        "bootstrap",
        "grpc",
        "--controlplane",
        f"127.0.0.1:{cp.xds_port}",
        "--node-id",
        "grpc-client",
        "--service",
        "frontend",
        "-n",
        "demo",
        "--locality",
        ZONE_A,
    ).stdout
    path = tmp_path / "grpc-bootstrap.json"
    path.write_text(bootstrap)
    env = dict(os.environ, GRPC_XDS_BOOTSTRAP=str(path))
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "federation.demo.echo_grpc",
            "call",
            "--target",
            "xds:///echo.demo.svc.clusterset.local",
            "--count",
            "2000",
            "--interval",
            "0.01",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        first = _read_lines(client, 100, 30)
        counts = Counter(first)
        assert len(first) == 100, f"client stalled: {first[-5:]}"
        assert set(counts) == {"grpc-1", "grpc-2"}, counts  # local zone only
        assert min(counts.values()) >= 35, counts  # round robin
        servers["grpc-1"].kill()
        servers["grpc-2"].kill()
        seen: list[str] = []

        def moved() -> bool:
            seen.extend(_read_lines(client, 10, 5))
            return len(seen) >= 40 and set(seen[-40:]) == {"grpc-3"}

        wait_until(moved, 30, "the gRPC client to fail over to us-east-1b")
    finally:
        client.kill()
        client.wait(5)
        assert client.stdout is not None
        client.stdout.close()
