"""``echo`` over gRPC, without generated code: method ``/meshfed.demo.Echo/Echo`` takes any
bytes and answers JSON ``{"name": ..., "cluster": ...}``.

Server: ``python -m federation.demo.echo_grpc serve --name grpc-1 --port 9090``.
Client: ``python -m federation.demo.echo_grpc call --target xds:///echo.demo.svc.clusterset.local
--count 100`` prints one line per call, ``<seconds since start> <name or ERROR:code> <the
caller's SPIFFE ID the server saw over mTLS, or ->``; with an
``xds:///`` target set ``GRPC_XDS_BOOTSTRAP`` (``meshfed bootstrap grpc``); the client then
uses xDS credentials, so it speaks mTLS to workloads behind sidecars.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
import grpc.experimental

SERVICE = "meshfed.demo.Echo"
METHOD = f"/{SERVICE}/Echo"


def make_server(name: str, cluster: str, address: str, *, xds: bool = False) -> grpc.Server:
    """A started-able gRPC server answering :data:`METHOD` on ``address``. ``xds``: an
    xDS-enabled server (gRFC A36; ``GRPC_XDS_BOOTSTRAP`` from ``meshfed bootstrap grpc
    --workload``) with xDS server credentials: it serves what the control plane's Listener
    says (mutual TLS, RBAC), and nothing until that Listener arrives."""

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        sans: object = context.auth_context().get("x509_subject_alternative_name", [])
        peers = [
            v.decode()
            for v in (sans if isinstance(sans, list) else [])
            if isinstance(v, bytes) and v.startswith(b"spiffe://")
        ]
        body = {"name": name, "cluster": cluster, "bytes": len(request), "peer": "".join(peers)}
        return json.dumps(body).encode()

    # no SO_REUSEPORT (gRPC sets it by default): an address in use fails to bind instead of
    # being shared with whoever listens there
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), xds=xds, options=[("grpc.so_reuseport", 0)]
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    if xds:
        fallback = grpc.insecure_server_credentials()
        server.add_secure_port(address, grpc.xds_server_credentials(fallback))
    else:
        server.add_insecure_port(address)
    return server


def serve(name: str, cluster: str, address: str, *, xds: bool = False) -> None:
    """Serve until SIGTERM/SIGINT."""
    server = make_server(name, cluster, address, xds=xds)
    server.start()
    logging.info("grpc echo %s listening on %s", name, address)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(1).wait()


def _channel(target: str) -> grpc.Channel:
    """``xds:`` targets get xDS channel credentials (gRFC A29: mTLS as the control plane's
    CDS says, from the bootstrap's certificate provider; plain text where it says nothing);
    other targets plain text."""
    if target.startswith("xds:"):
        fallback = grpc.experimental.insecure_channel_credentials()  # type: ignore[no-untyped-call]
        creds = grpc.xds_channel_credentials(fallback)
        return grpc.secure_channel(target, creds)
    return grpc.insecure_channel(target)


def call(
    target: str,
    count: int,
    interval_s: float,
    timeout_s: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> None:
    """Make ``count`` unary calls (with ``metadata``, e.g. a canary header), printing one
    line each (flushed)."""
    started = time.monotonic()
    with _channel(target) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        for _ in range(count):
            try:
                answer = json.loads(
                    stub(b"ping", timeout=timeout_s, wait_for_ready=True, metadata=metadata)
                )
                name = f"{answer['name']} {answer.get('peer') or '-'}"
            except grpc.RpcError as err:
                name = f"ERROR:{err.code().name} -"
            sys.stdout.write(f"{time.monotonic() - started:.3f} {name}\n")
            sys.stdout.flush()
            time.sleep(interval_s)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--cluster", default="")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--xds", action="store_true", help="an xDS-enabled server (mTLS, RBAC)")
    c = sub.add_parser("call")
    c.add_argument("--target", required=True)
    c.add_argument("--count", type=int, default=100)
    c.add_argument("--interval", type=float, default=0.02)
    c.add_argument("--timeout", type=float, default=2.0)
    c.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.mode == "serve":
        serve(args.name, args.cluster, f"{args.host}:{args.port}", xds=args.xds)
    else:
        metadata = tuple(tuple(m.split("=", 1)) for m in args.metadata)
        call(args.target, args.count, args.interval, args.timeout, metadata)


if __name__ == "__main__":
    main()
