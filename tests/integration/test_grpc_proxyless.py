"""grpcio's own xDS client (``xds:///``) against ``meshfed controlplane serve``: round robin
over two local gRPC servers, then failover to the next locality when the local one has no
healthy endpoint. Real processes: the control plane, three gRPC servers, one gRPC client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from federation.demo.echo_grpc import METHOD
from tests.integration.harness import (
    MESHFED,
    ControllerHandle,
    ControlPlaneHandle,
    Processes,
    free_port,
    meshfed_env,
    run_meshfed,
    start_sidecar_agent,
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


AUTHZ_GRPC_FRONTEND_ONLY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-grpc-callers, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}   # the label the sidecar agent registers
  rules: [{from: [{source: {principals: ["example.org/ns/demo/sa/frontend"]}}]}]
"""


def _proxyless_client(
    home: Path, cp: ControlPlaneHandle, tmp_path: Path, account: str, workload: str = ""
) -> dict[str, str]:
    """An identity (SVID files, via a workload token) and a bootstrap for a proxyless gRPC
    client (or, with ``workload``, server) running as ``demo/<account>``; the environment to
    run it with."""
    identity = tmp_path / f"identity-{account}"
    run_meshfed(
        home, "workload", "identity", "--once", "--controlplane", cp.api_url, "-n", "demo",
        "--service-account", account, "--dir", str(identity),
        "--workload-token", cp.mint("demo", account),
    )  # fmt: skip
    bootstrap = run_meshfed(
        home, "bootstrap", "grpc", "--controlplane", f"127.0.0.1:{cp.xds_port}",
        "--node-id", f"grpc-{account}", "--service", account, "-n", "demo",
        "--locality", ZONE_A, "--identity-dir", str(identity),
        *(["--workload", workload] if workload else []),
    ).stdout  # fmt: skip
    path = tmp_path / f"bootstrap-{account}.json"
    path.write_text(bootstrap)
    return dict(os.environ, GRPC_XDS_BOOTSTRAP=str(path))


def _calls(env: dict[str, str], count: int) -> list[str]:
    """``count`` calls through grpcio's xDS client (bounded: 2 s per call): who answered."""
    return [line.split()[1] for line in _call_lines(env, count)]


def _peers(env: dict[str, str], count: int) -> list[str]:
    """The caller identities the server saw (``-`` without mTLS)."""
    return [line.split()[2] for line in _call_lines(env, count)]


def _call_lines(env: dict[str, str], count: int) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "federation.demo.echo_grpc", "call", "--target",
         "xds:///echo.demo.svc.clusterset.local", "--count", str(count), "--interval", "0.01",
         "--timeout", "2"],
        env=env, capture_output=True, text=True, timeout=20 + 3 * count, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()


def test_grpc_xds_client_speaks_mtls_to_a_sidecar_and_authz_holds(
    procs, mesh_home, tmp_path
) -> None:
    """A gRPC server behind a real Envoy sidecar (mTLS STRICT): grpcio's xDS client reaches
    it over mTLS with its own SVID (CDS carries the certificate provider settings, gRFC A29;
    the sidecar's authority chain serves callers without meshfed's SNI); an
    AuthorizationPolicy for ``frontend`` then lets ``frontend`` through and refuses
    ``intruder`` (PERMISSION_DENIED); the sidecar logs the caller's SPIFFE ID."""
    controller = ControllerHandle(procs, mesh_home)
    controller.start()
    cp = controller.join("east", ZONE_A, f"127.0.4.2:{free_port('127.0.4.2')}")
    app_port = free_port()
    procs.spawn(
        "app-grpc-s",
        [sys.executable, "-m", "federation.demo.echo_grpc", "serve", "--name", "grpc-s",
         "--port", str(app_port)],
    )  # fmt: skip
    start_sidecar_agent(
        procs,
        mesh_home,
        cp,
        service="echo",
        address="127.0.4.1",
        app_port=app_port,
        service_port=9090,
        protocol="grpc",
    )
    frontend = _proxyless_client(mesh_home, cp, tmp_path, "frontend")
    intruder = _proxyless_client(mesh_home, cp, tmp_path, "intruder")
    wait_until(lambda: _calls(frontend, 1) == ["grpc-s"], 45, "frontend reaches echo")
    assert _calls(frontend, 20) == ["grpc-s"] * 20
    assert _calls(intruder, 5) == ["grpc-s"] * 5  # no policy yet: any SVID may call
    run_meshfed(mesh_home, "apply", "-f", "-", input_text=AUTHZ_GRPC_FRONTEND_ONLY)
    wait_until(
        lambda: _calls(intruder, 3) == ["ERROR:PERMISSION_DENIED"] * 3, 20, "intruder refused"
    )
    assert _calls(frontend, 20) == ["grpc-s"] * 20

    def logged(who: str) -> bool:
        logs = "".join(p.read_text() for p in mesh_home.rglob("envoy.log"))
        return f"peer=spiffe://example.org/ns/demo/sa/{who}" in logs

    wait_until(lambda: logged("frontend") and logged("intruder"), 10, "callers in the access log")


AUTHZ_GRPC_DENY_INTRUDER = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-intruder, namespace: demo}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["*/sa/intruder"]}}]}]
"""


def test_proxyless_grpc_server_serves_mtls_only_and_enforces_authz(
    procs, mesh_home, tmp_path
) -> None:
    """An xDS-enabled gRPC server (no sidecar, gRFC A36) gets its Listener from the control
    plane: mutual TLS with its own SVID, so proxyless clients call it with theirs (it sees
    their SPIFFE ID); a plain-text client and a TLS client without a certificate are refused;
    a DENY AuthorizationPolicy is enforced by gRPC's own RBAC filter (gRFC A41)."""
    controller = ControllerHandle(procs, mesh_home)
    controller.start()
    cp = controller.join("east", ZONE_A, f"127.0.4.2:{free_port('127.0.4.2')}")
    address, port = "127.0.4.5", free_port("127.0.4.5")
    cp.apply(
        workload_yaml(
            "grpc-x", service="echo", address=address, locality=ZONE_A, port=9090,
            target_port=port, protocol="grpc", tls_mode="mutual", inbound_port=port,
        )
    )  # fmt: skip
    server_env = _proxyless_client(mesh_home, cp, tmp_path, "echo", workload="grpc-x")
    procs.spawn(
        "app-grpc-x",
        [sys.executable, "-m", "federation.demo.echo_grpc", "serve", "--name", "grpc-x",
         "--host", address, "--port", str(port), "--xds"],
        env=server_env,
    )  # fmt: skip
    frontend = _proxyless_client(mesh_home, cp, tmp_path, "frontend")
    intruder = _proxyless_client(mesh_home, cp, tmp_path, "intruder")
    wait_until(lambda: _calls(frontend, 1) == ["grpc-x"], 45, "frontend reaches grpc-x")
    assert _calls(frontend, 10) == ["grpc-x"] * 10
    assert _peers(frontend, 1) == ["spiffe://example.org/ns/demo/sa/frontend"]  # mTLS
    # attacks: plain text, and TLS without a client certificate
    with grpc.insecure_channel(f"{address}:{port}") as channel:
        with pytest.raises(grpc.RpcError) as plain:
            channel.unary_unary(METHOD)(b"x", timeout=3)
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
    bundle = (tmp_path / "identity-frontend" / "bundle.pem").read_bytes()
    no_cert = grpc.ssl_channel_credentials(root_certificates=bundle)
    with grpc.secure_channel(
        f"{address}:{port}", no_cert, options=[("grpc.ssl_target_name_override", "x")]
    ) as channel:
        with pytest.raises(grpc.RpcError) as anonymous:
            channel.unary_unary(METHOD)(b"x", timeout=3)
    assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE
    # an Envoy sidecar's caller reaches it too (mTLS from the sidecar, its SVID seen)
    outbound = free_port()
    start_sidecar_agent(
        procs, mesh_home, cp, service="web", address="127.0.4.6", app_port=free_port(),
        service_port=8080, outbound_port=outbound,
    )  # fmt: skip

    def via_sidecar() -> str:
        with grpc.insecure_channel(
            f"127.0.0.1:{outbound}",
            options=[("grpc.default_authority", "echo.demo.svc.clusterset.local:9090")],
        ) as channel:
            return json.loads(channel.unary_unary(METHOD)(b"x", timeout=3))["peer"]

    assert wait_until(via_sidecar, 45, "web's sidecar reaches grpc-x") == (
        "spiffe://example.org/ns/demo/sa/web"
    )
    assert _calls(intruder, 3) == ["grpc-x"] * 3
    run_meshfed(mesh_home, "apply", "-f", "-", input_text=AUTHZ_GRPC_DENY_INTRUDER)
    wait_until(
        lambda: _calls(intruder, 3) == ["ERROR:PERMISSION_DENIED"] * 3, 20, "intruder refused"
    )
    assert _calls(frontend, 10) == ["grpc-x"] * 10


def _call_as(identity: Path, address: str, port: int, server_cluster: str) -> str:
    """One call to the gRPC server at ``address:port`` with the SVID in ``identity``
    (``ok`` or the status code's name); the server is verified by its cluster claim."""
    return grpc_call(
        address, port, identity / "bundle.pem", (identity / "cert.pem", identity / "key.pem"),
        server_cluster,
    )  # fmt: skip


def grpc_call(
    address: str, port: int, server_bundle: Path, cert: tuple[Path, Path], server_cluster: str
) -> str:
    """One echo call to the gRPC server at ``address:port`` with the client SVID ``cert``
    (chain, key), the server verified with ``server_bundle`` and its cluster claim: ``ok``
    or the status code's name (``UNAVAILABLE`` when the handshake is refused)."""
    creds = grpc.ssl_channel_credentials(
        server_bundle.read_bytes(), cert[1].read_bytes(), cert[0].read_bytes()
    )
    name = f"{server_cluster}.cluster.meshfed.internal"
    with grpc.secure_channel(
        f"{address}:{port}", creds, options=[("grpc.ssl_target_name_override", name)]
    ) as channel:
        try:
            channel.unary_unary(METHOD)(b"x", timeout=3)
        except grpc.RpcError as err:
            return str(err.code().name)
    return "ok"


def xds_server_identity(
    procs: Processes, home: Path, cp: ControlPlaneHandle, tmp_path: Path
) -> tuple[str, int, Path]:
    """``echo``'s WorkloadEntry ``grpc-x`` in ``cp`` (mutual TLS on its own port) and its
    identity kept fresh by ``meshfed workload identity``: ``(address, port, identity dir)``."""
    address, port = "127.0.4.5", free_port("127.0.4.5")
    cp.apply(
        workload_yaml(
            "grpc-x", service="echo", address=address, locality=ZONE_A, port=9090,
            target_port=port, protocol="grpc", tls_mode="mutual", inbound_port=port,
        )
    )  # fmt: skip
    identity = tmp_path / "identity-echo"
    procs.spawn(
        "identity-echo",
        [MESHFED, "workload", "identity", "--controlplane", cp.api_url, "-n", "demo",
         "--service-account", "echo", "--dir", str(identity),
         "--workload-token", cp.mint("demo", "echo")],
        env=meshfed_env(home),
    )  # fmt: skip
    return address, port, identity


def start_xds_server(
    procs: Processes, home: Path, cp: ControlPlaneHandle, tmp_path: Path, address: str,
    port: int, identity: Path, **env: str,
) -> None:  # fmt: skip
    """The xDS-enabled echo gRPC server ``grpc-x`` at ``address:port`` with the SVID in
    ``identity`` (its bootstrap from ``meshfed bootstrap grpc``), with ``env`` added."""
    bootstrap = run_meshfed(
        home, "bootstrap", "grpc", "--controlplane", f"127.0.0.1:{cp.xds_port}",
        "--node-id", "grpc-echo", "--service", "echo", "-n", "demo", "--locality", ZONE_A,
        "--identity-dir", str(identity), "--workload", "grpc-x",
    ).stdout  # fmt: skip
    (tmp_path / "bootstrap-echo.json").write_text(bootstrap)
    procs.spawn(
        "app-grpc-x",
        [sys.executable, "-m", "federation.demo.echo_grpc", "serve", "--name", "grpc-x",
         "--host", address, "--port", str(port), "--xds"],
        env=dict(os.environ, GRPC_XDS_BOOTSTRAP=str(tmp_path / "bootstrap-echo.json"), **env),
    )  # fmt: skip


def test_a_removed_clusters_svids_are_refused_by_a_proxyless_grpc_server(
    procs, mesh_home, tmp_path
) -> None:
    """Issue #35 (5): gRPC checks no CRL, so an xDS-enabled gRPC server trusted every SVID
    chaining to the root -- a removed cluster's included -- until they expired. Now its
    trust anchors (``members.pem``, kept by ``meshfed workload identity``) are the member
    clusters' CAs: after ``meshfed cluster remove west``, west's SVID is refused by the
    server in east, while east's own callers keep working."""
    controller = ControllerHandle(procs, mesh_home)
    controller.start()
    east = controller.join("east", ZONE_A, f"127.0.4.2:{free_port('127.0.4.2')}")
    west = controller.join("west", ZONE_B, f"127.0.5.2:{free_port('127.0.5.2')}")
    address, port, identity = xds_server_identity(procs, mesh_home, east, tmp_path)

    def anchors() -> int:
        members = identity / "members.pem"
        return members.read_text().count("BEGIN CERTIFICATE") if members.exists() else 0

    wait_until(lambda: anchors() == 2, 30, "members.pem with east's and west's CAs")
    start_xds_server(procs, mesh_home, east, tmp_path, address, port, identity)
    callers = {}
    for name, plane in (("east", east), ("west", west)):
        callers[name] = tmp_path / f"identity-caller-{name}"
        run_meshfed(
            mesh_home, "workload", "identity", "--once", "--controlplane", plane.api_url,
            "-n", "demo", "--service-account", "frontend", "--dir", str(callers[name]),
            "--workload-token", plane.mint("demo", "frontend"),
        )  # fmt: skip
    wait_until(
        lambda: (
            [_call_as(callers[c], address, port, "east") for c in ("east", "west")] == ["ok", "ok"]
        ),
        45,
        "east's and west's callers served while both are members",
    )
    run_meshfed(mesh_home, "cluster", "remove", "west")
    removed = time.monotonic()
    wait_until(
        lambda: all(_call_as(callers["west"], address, port, "east") != "ok" for _ in range(3)),
        45,
        "west's SVID refused by the gRPC server after west's removal",
    )
    took = time.monotonic() - removed
    assert anchors() == 1
    assert [_call_as(callers["east"], address, port, "east") for _ in range(5)] == ["ok"] * 5
    print(f"west refused by the proxyless gRPC server {took:.1f} s after its removal")
