"""Starting and stopping the servers of a meshfed process (the controller, a control plane):
an aiohttp API on a ``host:port`` (port 0 picks one), its bearer token, background tasks, a
gRPC server. Shared by both; imports neither."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import signal
import socket
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar

import grpc
from aiohttp import web

from federation.errors import ListenError
from federation.netaddr import parse_host_port
from trust.files import CERT_FILE_MODE, KEY_FILE_MODE, ensure_dir, write_atomic

log = logging.getLogger(__name__)


def load_or_create_token(path: Path) -> str:
    """The API bearer token in ``path`` (created 0600 with 256 random bits if missing).

    Raises:
        OSError: the file cannot be read or written.
    """
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    write_atomic(path, token.encode(), KEY_FILE_MODE)
    return token


def server_context() -> ssl.SSLContext:
    """An empty TLS server context (TLS 1.2 or later) for :func:`load_certificate`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def load_certificate(
    context: ssl.SSLContext, directory: Path, key_pem: bytes, chain_pem: bytes
) -> None:
    """Write ``key_pem`` (``key.pem``, 0600) and ``chain_pem`` (``chain.pem``) into
    ``directory`` and load them into ``context``, whose new handshakes then present them
    (:meth:`ssl.SSLContext.load_cert_chain` reads only files; the key never leaves the host).

    Raises:
        OSError: the files cannot be written.
        ssl.SSLError: the key does not match the chain.
    """
    ensure_dir(directory)
    key, chain = directory / "key.pem", directory / "chain.pem"
    write_atomic(key, key_pem, KEY_FILE_MODE)
    write_atomic(chain, chain_pem, CERT_FILE_MODE)
    context.load_cert_chain(chain, key)


async def reload_when_due(
    due: Callable[[], bool], load: Callable[[], object], what: str, check_s: float = 5.0
) -> None:
    """Every ``check_s`` seconds, call ``load`` (re-issue and load a server certificate,
    logged as ``what``) when ``due`` says so; until cancelled."""
    while True:
        await asyncio.sleep(check_s)
        if due():
            log.info("renewing %s", what)
            load()


async def start_http(
    app: web.Application, listen: str, what: str, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``listen`` (HTTPS with ``ssl_context``); returns the runner and the
    bound port. aiohttp does not set ``SO_REUSEPORT``: an address in use is refused.

    Raises:
        ValueError: ``listen`` is not HOST:PORT (the message names ``what``).
        federation.errors.ListenError: the address cannot be listened on (in use, not an
            address of this host); the runner is cleaned up.
    """
    host, port = parse_host_port(listen, what=what)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise ListenError(f"{what} {listen}: {_reason(err)}") from err
    server = site._server  # aiohttp exposes the bound port only here
    assert isinstance(server, asyncio.Server)
    return runner, int(server.sockets[0].getsockname()[1])


#: Channel arguments of every gRPC server meshfed starts. gRPC's C core sets ``SO_REUSEPORT``
#: on its listening sockets unless told not to (``grpc.so_reuseport``, on by default on
#: Linux), and Envoy does on its listeners (``Listener.enable_reuse_port``): a control plane
#: started on an address that a sidecar, another control plane or any process of the same
#: user already listens on would not fail but share it, the kernel handing each new
#: connection to one of them (a workload asking for its SVID could reach an Envoy listener
#: instead). Off, such an address is refused with a :class:`~federation.errors.ListenError`.
GRPC_SERVER_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.so_reuseport", 0),)


def make_grpc_server(*interceptors: grpc.aio.ServerInterceptor) -> grpc.aio.Server:
    """A ``grpc.aio`` server with :data:`GRPC_SERVER_OPTIONS` and ``interceptors``."""
    return grpc.aio.server(interceptors=list(interceptors) or None, options=GRPC_SERVER_OPTIONS)


def listen_grpc(
    server: grpc.aio.Server, listen: str, what: str, credentials: grpc.ServerCredentials
) -> int:
    """Add a TLS port on ``listen`` (HOST:PORT; port 0 picks one) to ``server``; the bound
    port. The address is tried with a plain ``bind`` first: gRPC says only "Failed to bind"
    (and logs it to stderr), the kernel says why.

    Raises:
        ValueError: ``listen`` is not HOST:PORT (the message names ``what``).
        federation.errors.ListenError: the address cannot be listened on.
    """
    host, port = parse_host_port(listen, what=what)
    failure = _bind_failure(host, port)
    if failure is None:
        try:
            return int(server.add_secure_port(f"{host}:{port}", credentials))
        except RuntimeError:  # taken between the two binds
            failure = _bind_failure(host, port) or "gRPC could not listen there"
    raise ListenError(f"{what} {listen}: {failure}")


def _bind_failure(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound, in the kernel's words; None when it can. With
    ``SO_REUSEADDR``, as gRPC binds: connections of a previous server in TIME_WAIT do not
    count, a listener does."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        return _reason(err)
    return None


def _reason(err: OSError) -> str:
    """``err`` as a reason, in the kernel's words whatever library wrapped it (aiohttp adds
    "error while attempting to bind on address ..."): ``address already in use (another
    process listens there)``, ``cannot assign requested address``, ``cannot resolve the host
    (name or service not known)``."""
    if err.errno == errno.EADDRINUSE:
        return "address already in use (another process listens there)"
    if isinstance(err, socket.gaierror):  # its errno is getaddrinfo's, not the kernel's
        return f"cannot resolve the host ({(err.strerror or str(err)).lower()})"
    if err.errno:
        return os.strerror(err.errno).lower()
    return str(err).lower()


async def stop_all(
    tasks: Iterable[asyncio.Task[None]],
    runner: web.AppRunner | None,
    grpc_server: grpc.aio.Server | None,
    grace_s: float,
) -> None:
    """Cancel and await ``tasks``, then stop the HTTP API and the gRPC server (in-flight RPCs
    get ``grace_s`` seconds)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
    if runner is not None:
        await runner.cleanup()
    if grpc_server is not None:
        await grpc_server.stop(grace_s)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


class Server(Protocol):
    """What :func:`serve_until_signalled` runs: the controller or a control plane."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


def serve_until_signalled(make: Callable[[], S], started: Callable[[S], None]) -> None:
    """Make the server (inside the event loop), start it, call ``started(server)``, serve
    until SIGTERM/SIGINT, stop it (blocks; owns the event loop)."""

    async def run() -> None:
        server = make()
        try:
            await server.start()
        except BaseException:
            try:
                await server.stop()  # what started before the failure (servers, tasks)
            except Exception:  # the start's error is the one to report
                log.exception("stopping after a failed start")
            raise
        started(server)
        await stop_on_signals().wait()
        await server.stop()

    asyncio.run(run())
