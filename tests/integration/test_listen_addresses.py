"""A meshfed server given an address another process already listens on refuses to start,
with one line naming the flag, the address and the reason (exit code 1), and stops what it
had started -- also when that process set ``SO_REUSEPORT``, as every Envoy listener does.

gRPC's C core sets ``SO_REUSEPORT`` on its listening sockets by default: before this was
turned off, a control plane started on a sidecar's outbound port served on it *together*
with the Envoy, and a workload asking for its first SVID reached the Envoy's plain-text
listener one time in two (a CI run failed on exactly that: ``WRONG_VERSION_NUMBER``).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.integration.harness import MESHFED, meshfed_env

pytestmark = pytest.mark.integration

ANY = "127.0.0.1:0"
REASON = "address already in use (another process listens there)"


@contextmanager
def _occupied(*, reuse_port: bool) -> Iterator[int]:
    """A port on 127.0.0.1 that this test listens on (with ``SO_REUSEPORT`` if asked)."""
    with socket.socket() as held:
        if reuse_port:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


def _serve(home, *args: str) -> subprocess.CompletedProcess[str]:
    """``meshfed <args>``; a server that starts anyway is killed after 30 s (and fails)."""
    try:
        return subprocess.run(
            [MESHFED, *args],
            env=meshfed_env(home),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"meshfed {' '.join(args)} served on an address in use") from err


def _controlplane(flag: str, address: str) -> list[str]:
    listens = {"--xds-listen": ANY, "--ca-listen": ANY, "--api-listen": ANY} | {flag: address}
    return [
        "controlplane", "serve", "--cluster", "east", "--locality", "aws/us-east-1/us-east-1a",
        *(part for pair in listens.items() for part in pair),
    ]  # fmt: skip


def _controller(flag: str, address: str) -> list[str]:
    listens = {"--listen": ANY, "--sync-listen": ANY} | {flag: address}
    return [
        "controller", "serve", "--trust-domain", "example.org",
        *(part for pair in listens.items() for part in pair),
    ]  # fmt: skip


@pytest.mark.parametrize("reuse_port", [True, False], ids=["reuseport", "plain"])
@pytest.mark.parametrize(
    "command, flag",
    [
        ("controlplane", "--xds-listen"),
        ("controlplane", "--ca-listen"),
        ("controlplane", "--api-listen"),
        ("controller", "--sync-listen"),
        ("controller", "--listen"),
    ],
)
def test_a_server_refuses_an_address_another_process_listens_on(
    mesh_home, command, flag, reuse_port
) -> None:
    with _occupied(reuse_port=reuse_port) as port:
        address = f"127.0.0.1:{port}"
        make = _controlplane if command == "controlplane" else _controller
        result = _serve(mesh_home, *make(flag, address))
    assert result.returncode == 1, result.stderr
    # one line, no traceback, no warning of a server left running
    assert result.stderr == f"Error: {flag} {address}: {REASON}\n"
