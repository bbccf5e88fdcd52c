"""``echo`` over gRPC, without generated code: method ``/meshfed.demo.Echo/Echo`` takes any
bytes and answers JSON ``{"name": ..., "cluster": ...}``.

Server: ``python -m federation.demo.echo_grpc serve --name grpc-1 --port 9090``.
Client: ``python -m federation.demo.echo_grpc call --target xds:///echo.demo.svc.clusterset.local
--count 100`` prints one line per call, ``<seconds since start> <name or ERROR:code>``; with an
``xds:///`` target set ``GRPC_XDS_BOOTSTRAP`` (``meshfed bootstrap grpc``).
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

SERVICE = "meshfed.demo.Echo"
METHOD = f"/{SERVICE}/Echo"


def make_server(name: str, cluster: str, address: str) -> grpc.Server:
    """A started-able gRPC server answering :data:`METHOD` on ``address``."""

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return json.dumps({"name": name, "cluster": cluster, "bytes": len(request)}).encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(address)
    return server


def serve(name: str, cluster: str, address: str) -> None:
    """Serve until SIGTERM/SIGINT."""
    server = make_server(name, cluster, address)
    server.start()
    logging.info("grpc echo %s listening on %s", name, address)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(1).wait()


def call(target: str, count: int, interval_s: float, timeout_s: float) -> None:
    """Make ``count`` unary calls, printing one line each (flushed)."""
    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        for _ in range(count):
            try:
                reply = stub(b"ping", timeout=timeout_s, wait_for_ready=True)
                name = json.loads(reply)["name"]
            except grpc.RpcError as err:
                name = f"ERROR:{err.code().name}"
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
    c = sub.add_parser("call")
    c.add_argument("--target", required=True)
    c.add_argument("--count", type=int, default=100)
    c.add_argument("--interval", type=float, default=0.02)
    c.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.mode == "serve":
        serve(args.name, args.cluster, f"{args.host}:{args.port}")
    else:
        call(args.target, args.count, args.interval, args.timeout)


if __name__ == "__main__":
    main()
