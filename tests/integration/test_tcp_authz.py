"""Attack 6 of issue #15, TCP half, across clusters: an AuthorizationPolicy on a ``tcp``
port is enforced by Envoy's network RBAC filter on the destination sidecar in ``east``, for
callers in ``west`` whose mTLS passes east's east-west gateway unopened (SNI passthrough).
``frontend`` keeps its connection; ``intruder`` (a valid SVID of the same trust domain) has
its connection closed; ``clusters: [east]`` closes west's ``frontend`` too.

The callers originate mTLS themselves with SVIDs from ``meshfed workload identity`` (sidecars
do not route TCP yet: issue 21), sending the SNI a sidecar would send. Real processes:
controller, two control planes, Envoy sidecar and gateway; the TCP echo app runs in a thread.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    free_port,
    provision,
    run_meshfed,
    start_gateway,
    start_sidecar_agent,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ZONE = "aws/us-east-1/us-east-1a"
WEST = "aws/us-west-2/us-west-2a"
SNI = "outbound_.5432_._.db.demo.svc.clusterset.local"
ALLOW_FRONTEND = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-callers, namespace: demo}
spec:
  rules:
  - from: [{source: {principals: ["example.org/ns/demo/sa/frontend"]}}]
    to: [{operation: {ports: ["5432"]}}]
"""

ALLOW_FRONTEND_FROM_EAST = ALLOW_FRONTEND.replace(
    'frontend"]}}]', 'frontend"], clusters: ["east"]}}]'
)
EXPORT_DB = """
apiVersion: meshfed.io/v1alpha1
kind: ServiceExport
metadata: {name: db, namespace: demo}
spec: {cluster: east}
"""


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def tcp_echo() -> Iterator[int]:
    """A TCP echo server on loopback (the app behind the sidecar), stopped afterwards."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _identity(cp: ControlPlaneHandle, tmp_path: Path, account: str) -> Path:
    """An SVID of ``demo/<account>`` from ``cp``'s cluster, as its agent would keep it."""
    directory = tmp_path / f"identity-{cp.cluster}-{account}"
    provision(cp, "demo", account, directory)
    return directory


def _client_context(identity: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(identity / "cert.pem", identity / "key.pem")
    context.load_verify_locations(identity / "bundle.pem")
    context.check_hostname = False  # the server is checked by its SPIFFE ID
    return context


def _resumes(identity: Path, address: tuple[str, int]) -> bool:
    """Whether a second connection can resume the first one's TLS session (which would skip
    certificate validation: CRLs, and the validated bit the cluster claim needs)."""
    context = _client_context(identity)
    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SNI) as tls,
    ):
        tls.sendall(b"ping\n")
        assert tls.recv(64) == b"ping\n"
        session = tls.session
    assert session is not None
    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SNI, session=session) as tls,
    ):
        tls.sendall(b"ping\n")
        assert tls.recv(64) == b"ping\n"
        return tls.session_reused


def _exchange(identity: Path, address: tuple[str, int]) -> tuple[str, bytes]:
    """Open mTLS with ``identity``'s SVID (SNI of the db port), send a line, read the echo:
    ``(server SPIFFE ID, bytes read)``; ``b""`` when the sidecar closed the connection."""
    context = _client_context(identity)
    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SNI) as tls,
    ):
        sans = {k: v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"}
        try:
            tls.sendall(b"ping\n")
            data = tls.recv(64)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        return sans.get("URI", ""), data


def test_tcp_authorization_across_clusters_closes_the_intruders_connection(
    procs, mesh_home, tmp_path, tcp_echo
) -> None:
    controller = ControllerHandle(procs, mesh_home)
    controller.start()
    gateway = ("127.0.5.2", free_port("127.0.5.2"))
    east = controller.join("east", ZONE, f"{gateway[0]}:{gateway[1]}")
    west = controller.join("west", WEST, f"127.0.6.2:{free_port('127.0.6.2')}")
    start_sidecar_agent(
        procs, mesh_home, east, service="db", address="127.0.5.7", app_port=tcp_echo,
        service_port=5432, protocol="TCP",
    )  # fmt: skip
    start_gateway(procs, mesh_home, east, f"{gateway[0]}:{gateway[1]}")
    run_meshfed(mesh_home, "apply", "-f", "-", input_text=EXPORT_DB)
    frontend = _identity(west, tmp_path, "frontend")
    intruder = _identity(west, tmp_path, "intruder")
    server_id = "spiffe://example.org/ns/demo/sa/db"
    wait_until(
        lambda: _exchange(frontend, gateway) == (server_id, b"ping\n"), 60, "db via the gateway"
    )
    assert _exchange(intruder, gateway) == (server_id, b"ping\n")  # no policy: any SVID
    # no TLS session resumption: every connection's certificate is validated (CRLs, and the
    # cluster claim's matcher, which fails on resumed sessions: envoyproxy/envoy#42668)
    assert not _resumes(frontend, gateway)
    run_meshfed(mesh_home, "apply", "-f", "-", input_text=ALLOW_FRONTEND)
    wait_until(lambda: _exchange(intruder, gateway) == (server_id, b""), 20, "intruder closed")
    for _ in range(5):
        assert _exchange(frontend, gateway) == (server_id, b"ping\n")
    # the cluster claim works on TCP too: only east's frontend may call now
    run_meshfed(mesh_home, "apply", "-f", "-", input_text=ALLOW_FRONTEND_FROM_EAST)
    wait_until(lambda: _exchange(frontend, gateway) == (server_id, b""), 20, "west closed")
    for caller, decision in (("west/demo/frontend", "DENY"), ("east/demo/frontend", "ALLOW")):
        out = run_meshfed(
            mesh_home, "explain", "authz", "--from", caller, "--to", "db.demo", "--at", "east",
            "--port", "5432", "-o", "json",
        ).stdout  # fmt: skip
        [row] = json.loads(out)["rows"]
        assert row["decision"] == decision, row
    # without a client certificate there is no connection at all
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(frontend / "bundle.pem")
    anonymous.check_hostname = False
    with socket.create_connection(gateway, timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            with anonymous.wrap_socket(raw, server_hostname=SNI) as tls:
                tls.sendall(b"ping\n")
                assert tls.recv(64) == b""  # TLS 1.3: the refusal arrives on the first read
                raise ConnectionResetError("closed without an answer")
