"""Two clusters on loopback: east (127.0.1.0/24) and west (127.0.2.0/24), each with its own
``meshfed controlplane serve``; in west an east-west gateway (``meshfed proxy gateway``) and
echo workloads behind ``meshfed proxy sidecar`` agents; in east a client sidecar. Export and
import are applied to the control planes directly (ServiceExport / ServiceImport) until the
federation controller does it. Everything is a real process; every TLS handshake is real."""

from __future__ import annotations

import json
import socket
import ssl
import sys
from pathlib import Path

import grpc
import pytest

from tests.integration.conftest import make_mesh_home, owned_processes
from tests.integration.harness import (
    ControlPlaneHandle,
    Processes,
    free_port,
    get,
    start_echo,
    start_gateway,
    start_sidecar_agent,
    wait_until,
)
from trust.spiffe import SpiffeId, TrustDomain
from trust.store import TrustDirectory

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EAST = "aws/us-east-1/us-east-1a"
WEST = "aws/eu-west-1/eu-west-1a"
HOST = "echo.demo.svc.clusterset.local"
GRPC_HOST = "echo-grpc.demo.svc.clusterset.local"


sidecar_agent = start_sidecar_agent


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """east + west control planes, west gateway, west echo (HTTP) and echo-grpc, east client.

    Started once for this module (about 20 s); every process is stopped at the end.
    """
    base = tmp_path_factory.mktemp("eastwest")
    with owned_processes(base) as procs:
        yield _start_federation(procs, make_mesh_home(base))


def _start_federation(procs: Processes, mesh_home: Path) -> dict:
    east = ControlPlaneHandle(procs, mesh_home, "east", EAST)
    west = ControlPlaneHandle(procs, mesh_home, "west", WEST)
    east.start()
    west.start()
    gw_port = free_port("127.0.2.1")
    start_gateway(procs, mesh_home, west, f"127.0.2.1:{gw_port}")
    http_app, grpc_app = free_port(), free_port()
    start_echo(procs, "west-echo-1", http_app, "west")
    procs.spawn(
        "app-grpc",
        [
            sys.executable,
            "-m",
            "federation.demo.echo_grpc",
            "serve",
            "--name",
            "west-grpc-1",
            "--cluster",
            "west",
            "--port",
            str(grpc_app),
        ],
    )
    _, echo_inbound = sidecar_agent(
        procs,
        mesh_home,
        west,
        service="echo",
        address="127.0.2.11",
        app_port=http_app,
        service_port=8080,
    )
    sidecar_agent(
        procs,
        mesh_home,
        west,
        service="echo-grpc",
        address="127.0.2.12",
        app_port=grpc_app,
        service_port=9090,
        protocol="grpc",
    )
    # a workload that is NOT exported: reachable inside west only
    secret_app = free_port()
    start_echo(procs, "west-secret-1", secret_app, "west")
    sidecar_agent(
        procs,
        mesh_home,
        west,
        service="secret",
        address="127.0.2.13",
        app_port=secret_app,
        service_port=8080,
    )
    west.apply(
        "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: echo, namespace: demo}\n"
        "---\napiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: echo-grpc, namespace: demo}\n"
    )
    imports = []
    for svc, port, proto in (("echo", 8080, "http"), ("echo-grpc", 9090, "grpc")):
        imports.append(
            "apiVersion: meshfed.io/v1alpha1\nkind: ServiceImport\n"
            f"metadata: {{name: {svc}, namespace: demo}}\n"
            f"spec:\n  ports: [{{name: {proto}, port: {port}, protocol: {proto}}}]\n"
            f"  serviceAccounts: [{svc}]\n"
            f"  clusters: [{{cluster: west, gateway: '127.0.2.1:{gw_port}', network: west, locality: {WEST}, endpoints: 1}}]\n"
        )
    east.apply("---\n".join(imports))
    client_port = free_port()
    sidecar_agent(
        procs,
        mesh_home,
        east,
        service="frontend",
        address="127.0.1.10",
        app_port=free_port(),
        service_port=8080,
        outbound_port=client_port,
    )
    wait_until(
        lambda: get(client_port, HOST)[0] == 200, 45, "east client -> west echo through the gateway"
    )
    return {
        "east": east,
        "west": west,
        "client_port": client_port,
        "gateway": ("127.0.2.1", gw_port),
        "echo_inbound": ("127.0.2.11", echo_inbound),
        "home": mesh_home,
        "http_app": http_app,
    }


def _grpc_call(port: int) -> str:
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.default_authority", GRPC_HOST)]
    ) as channel:
        reply = channel.unary_unary("/meshfed.demo.Echo/Echo")(b"hi", timeout=5)
    return str(json.loads(reply)["name"])


def test_http_and_grpc_cross_cluster_with_end_to_end_identity(federation) -> None:
    status, data, headers = get(federation["client_port"], HOST, "/hello")
    assert status == 200
    assert data["name"] == "west-echo-1" and data["cluster"] == "west"
    assert headers["x-meshfed-served-by"] == "west/eu-west-1a"
    # west's app sees east's caller identity: the mTLS session went end to end through the gateway
    assert "URI=spiffe://example.org/ns/demo/sa/frontend" in data["xfcc"]
    assert (
        wait_until(lambda: _grpc_call(federation["client_port"]), 10, "gRPC answer")
        == "west-grpc-1"
    )


def _exported_sni(port: int = 8080, service: str = "echo") -> str:
    return f"outbound_.{port}_._.{service}.demo.svc.clusterset.local"


def _tls_connect(address, sni, context) -> bytes:
    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _svid_context(home: Path, tmp_path: Path, spiffe_id: str) -> ssl.SSLContext:
    store = TrustDirectory(home / "trust")
    svid = store.issue_svid("east", SpiffeId.parse(spiffe_id))
    out = tmp_path / "client-svid"
    TrustDirectory.write_svid(svid, store.bundle(), out, force=True)
    ctx = ssl.create_default_context(cafile=str(out / "bundle.pem"))
    ctx.check_hostname = False  # the server's identity is a SPIFFE URI SAN, checked below
    ctx.load_cert_chain(out / "svid.pem", out / "svid-key.pem")
    return ctx


def test_gateway_passes_an_svid_holder_through_to_the_exported_service(
    federation, tmp_path
) -> None:
    ctx = _svid_context(federation["home"], tmp_path, "spiffe://example.org/ns/demo/sa/tester")
    body = _tls_connect(federation["gateway"], _exported_sni(), ctx)
    assert b"200 OK" in body and b"west-echo-1" in body


def test_gateway_refuses_plain_tcp(federation) -> None:
    with socket.create_connection(federation["gateway"], timeout=10) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        try:
            assert s.recv(1024) == b""  # closed without an answer
        except ConnectionResetError:
            pass


def test_gateway_refuses_tls_without_a_certificate_from_our_root(federation, tmp_path) -> None:
    no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    no_cert.check_hostname = False
    no_cert.verify_mode = ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        body = _tls_connect(federation["gateway"], _exported_sni(), no_cert)
        assert body == b""  # some stacks report the alert as EOF
        raise ssl.SSLError("closed")
    # a certificate from another root is refused too
    other = TrustDirectory(tmp_path / "other-trust")
    other.init(TrustDomain("example.org"))
    other.create_intermediate("east")
    svid = other.issue_svid("east", SpiffeId.parse("spiffe://example.org/ns/demo/sa/frontend"))
    TrustDirectory.write_svid(svid, other.bundle(), tmp_path / "other-svid")
    foreign = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    foreign.check_hostname = False
    foreign.verify_mode = ssl.CERT_NONE
    foreign.load_cert_chain(
        tmp_path / "other-svid" / "svid.pem", tmp_path / "other-svid" / "svid-key.pem"
    )
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        body = _tls_connect(federation["gateway"], _exported_sni(), foreign)
        assert body == b""
        raise ssl.SSLError("closed")


def test_gateway_refuses_an_sni_for_a_service_that_is_not_exported(federation, tmp_path) -> None:
    ctx = _svid_context(federation["home"], tmp_path, "spiffe://example.org/ns/demo/sa/tester")
    for sni in (_exported_sni(service="secret"), "example.com", None):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError)):
            body = (
                _tls_connect(federation["gateway"], sni, ctx)
                if sni
                else _tls_connect(federation["gateway"], None, ctx)
            )
            assert body == b""
            raise ssl.SSLError("closed")


def test_sidecar_inbound_refuses_plain_text_in_strict_mode(federation) -> None:
    with socket.create_connection(federation["echo_inbound"], timeout=10) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        try:
            assert s.recv(1024) == b""
        except ConnectionResetError:
            pass
