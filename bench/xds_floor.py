"""The wire's floor for ``bench/xds_scale.py``: how long the same bytes take to reach the same
clients when a server does nothing but send them.

``capture`` opens one Envoy-like ADS stream (SotW or delta) to a running control plane and
keeps the first response of each type as the bytes on the wire (CDS and LDS wildcard, EDS of
every cluster, RDS ``outbound``). ``serve`` is a gRPC server (``grpc.aio``, as the control
plane's; mutual TLS with a server certificate for the control plane's name, issued by the
same cluster CA) that answers each stream's first request of a type with those bytes and
reads everything else (ACKs) without parsing it: no registry, no snapshot, no state machine,
no per-stream work besides gRPC, HTTP/2 and TLS. What ``xds_scale.py --floor`` measures
against it, with the same clients on the same 2 cores, is a lower bound for any control plane
on this stack pushing that estate: the time and CPU that moving the bytes costs.

Not modelled: the server sends each type once (no version bookkeeping, no updates), and
a request's contents are not looked at (every stream is assumed to want what the first
one wanted: true of the bench's one proxy class).

    python bench/xds_floor.py serve --responses FILE --home HOME --listen PORT
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from bench._common import client_channel_options, client_credentials
from federation.ca.names import control_plane_server_name
from federation.controlplane import resource
from trust.authority import issue_svid
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
METHODS = {"sotw": "StreamAggregatedResources", "delta": "DeltaAggregatedResources"}
#: The field numbers of ``type_url`` and ``response_nonce`` in DiscoveryRequest and in
#: DeltaDiscoveryRequest.
REQUEST_FIELDS = {"sotw": (4, 5), "delta": (2, 6)}


async def capture(
    xds: int,
    home: Path,
    kind: str,
    request: Callable[..., object],
    light: type,
    names_of: Callable[[object], list[str]],
) -> dict[str, bytes]:
    """The first response of each of the four types, as bytes, that a new stream of the
    bench's proxy class gets from the control plane at ``127.0.0.1:xds``. ``request(type_url,
    names, first)``: the bench client's request maker (``first`` carries its node);
    ``light``: its light response type (to read type URLs); ``names_of``: a CDS response's
    cluster names."""
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def requests() -> AsyncIterator[object]:
        while True:
            yield await queue.get()

    creds = client_credentials(home, "east", "demo", "bench")
    options = [*client_channel_options("east"), ("grpc.max_receive_message_length", 1 << 28)]
    got: dict[str, bytes] = {}
    async with grpc.aio.secure_channel(f"127.0.0.1:{xds}", creds, options) as channel:
        call = channel.stream_stream(
            ADS + METHODS[kind], request_serializer=lambda m: m.SerializeToString()
        )(requests())
        queue.put_nowait(request(resource.CLUSTER, [], True))
        queue.put_nowait(request(resource.LISTENER, []))
        async for raw in call:
            resp = light.FromString(raw)
            if resp.type_url in got:
                continue
            got[resp.type_url] = raw
            if resp.type_url == resource.CLUSTER:
                queue.put_nowait(request(resource.ENDPOINT, names_of(resp)))
            elif resp.type_url == resource.LISTENER:
                queue.put_nowait(request(resource.ROUTE, ["outbound"]))
            if len(got) == 4:
                call.cancel()
                break
    return got


def _wants(raw: bytes, kind: str) -> tuple[str, bool]:
    """``(type_url, is an ACK or NACK)`` of a request, from its two fields alone (protobuf
    wire format: the other fields are skipped, not parsed)."""
    type_field, nonce_field = REQUEST_FIELDS[kind]
    type_url, nonce, i = "", False, 0
    while i < len(raw):
        key, i = _varint(raw, i)
        number, wire = key >> 3, key & 7
        if wire == 2:
            size, i = _varint(raw, i)
            if number == type_field:
                type_url = raw[i : i + size].decode()
            elif number == nonce_field:
                nonce = size > 0
            i += size
        elif wire == 0:
            _, i = _varint(raw, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return type_url, nonce


def _varint(raw: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


async def serve(responses: dict[str, dict[str, bytes]], home: Path, port: int) -> None:
    """Answer ADS streams of both kinds from ``responses`` (kind -> type URL -> bytes)."""
    trust = TrustDirectory(home / "trust")
    domain = TrustDomain("example.org")
    svid = issue_svid(
        trust.cluster_authority("east"),
        domain.workload_id("meshfed-system", "bench-floor"),
        dns_names=[control_plane_server_name("east")],
    )
    creds = grpc.ssl_server_credentials(
        [(svid.private_key_pem(), svid.chain_pem())],
        root_certificates=trust.bundle().to_pem(),
        require_client_auth=True,
    )

    def handler(kind: str):  # type: ignore[no-untyped-def]
        answers = responses[kind]

        async def stream(requests, context):  # type: ignore[no-untyped-def]
            sent: set[str] = set()
            async for raw in requests:
                type_url, ack = _wants(raw, kind)
                if not ack and type_url not in sent and type_url in answers:
                    sent.add(type_url)
                    yield answers[type_url]

        return grpc.stream_stream_rpc_method_handler(stream)  # bytes in, bytes out

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "envoy.service.discovery.v3.AggregatedDiscoveryService",
                {METHODS[kind]: handler(kind) for kind in responses},
            )
        ]
    )
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    await server.start()
    await server.wait_for_termination()


def start(responses: dict[str, dict[str, bytes]], home: Path, port: int) -> subprocess.Popen[bytes]:
    """``serve`` in a process of its own (its CPU and RSS measured apart from the clients')."""
    path = home / "floor-responses.pickle"
    path.write_bytes(pickle.dumps(responses))
    log = (home / "floor.log").open("ab")
    return subprocess.Popen(
        [sys.executable, __file__, "serve", "--responses", str(path), "--home", str(home),
         "--listen", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_listening(port: int, timeout_s: float) -> None:
    """Until something accepts TCP connections on ``127.0.0.1:port`` (bounded by
    ``timeout_s``; raises TimeoutError)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--responses", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--listen", type=int, required=True)
    args = parser.parse_args()
    responses = pickle.loads(args.responses.read_bytes())  # written by start() above
    asyncio.run(serve(responses, args.home, args.listen))


if __name__ == "__main__":
    main()
