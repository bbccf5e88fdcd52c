"""federation.serving: how a listen address that cannot be bound is reported."""

from __future__ import annotations

import errno
import socket

import pytest

from federation.errors import ListenError
from federation.serving import _reason, listen_grpc


def test_a_bind_failure_is_the_kernel_s_reason_whatever_wrapped_it() -> None:
    wrapped = OSError(
        errno.EADDRNOTAVAIL,
        "error while attempting to bind on address ('10.255.255.1', 0): cannot assign"
        " requested address",
    )
    assert _reason(wrapped) == "cannot assign requested address"
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    assert _reason(in_use) == "address already in use (another process listens there)"
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert _reason(unknown) == "cannot resolve the host (name or service not known)"


def test_listen_grpc_names_the_flag_and_never_calls_grpc_for_an_address_in_use() -> None:
    class Server:  # gRPC is not reached: the plain bind says why first
        def add_secure_port(self, address, credentials):
            raise AssertionError("gRPC asked to bind an address in use")

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        address = f"127.0.0.1:{held.getsockname()[1]}"
        with pytest.raises(ListenError) as err:
            listen_grpc(Server(), address, "--xds-listen", None)  # type: ignore[arg-type]
    assert str(err.value) == (
        f"--xds-listen {address}: address already in use (another process listens there)"
    )
