"""The agent's DNS resolver for a captured pod: cluster-set names from the control plane, every
other name from the pod's own resolver.

The pod's capture rules (:mod:`federation.agent.capture`) send its DNS (UDP and TCP port 53)
to ``127.0.0.1:15053``, where this resolver answers:

- ``A`` / ``AAAA`` queries for a name of the table (``<svc>.<ns>.svc.clusterset.local`` ->
  its ClusterSetIPs, :mod:`federation.controlplane.names`) itself: the addresses of that
  family, TTL :data:`TTL_S`; no address of the family asked is an empty NOERROR answer
  (NODATA, RFC 2308 section 2.2), as a name with only the other family's addresses gets;
- everything else -- other names, other types, names the table does not have -- is
  forwarded unchanged to the pod's resolver (the first ``nameserver`` of its
  ``/etc/resolv.conf``), over UDP, retried over TCP when the answer is truncated; no
  answer within :data:`FORWARD_TIMEOUT_S` is SERVFAIL. The agent runs as the sidecar's
  group, so the capture rules let its forwarded queries out.

Wire format by dnslib. Istio's agent answers the same way (its "DNS proxying").
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

from dnslib import AAAA, QTYPE, RR, A, DNSError, DNSRecord

log = logging.getLogger(__name__)

#: TTL (s) of an answer from the table: short, so a removed service stops resolving soon.
TTL_S = 5
FORWARD_TIMEOUT_S = 2.0
#: Largest UDP answer sent without truncation (RFC 1035 section 4.2.1; no EDNS here).
MAX_UDP = 512

Table = Mapping[str, tuple[str, ...]]


def local_answer(query: DNSRecord, table: Table) -> DNSRecord | None:
    """The answer to ``query`` from ``table``, or None when it must be forwarded (not one
    question, not A/AAAA, or a name the table does not have)."""
    if len(query.questions) != 1:
        return None
    q = query.questions[0]
    name = str(q.qname).rstrip(".").lower()
    if q.qtype not in (QTYPE.A, QTYPE.AAAA) or name not in table:
        return None
    reply = query.reply()  # QR, AA and RD set as the query had it
    for ip in table[name]:
        version = ipaddress.ip_address(ip).version
        if q.qtype == QTYPE.A and version == 4:
            reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL_S))
        elif q.qtype == QTYPE.AAAA and version == 6:
            reply.add_answer(RR(q.qname, QTYPE.AAAA, rdata=AAAA(ip), ttl=TTL_S))
    return reply


def servfail(packet: bytes) -> bytes | None:
    """SERVFAIL for ``packet``, or None when it does not parse (dropped, as a resolver does)."""
    try:
        query = DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError, struct.error):
        return None
    reply = query.reply()
    reply.header.rcode = 2
    return bytes(reply.pack())


def upstream_resolver(resolv_conf: Path = Path("/etc/resolv.conf")) -> str | None:
    """The first ``nameserver`` of ``resolv_conf`` (None: none, or unreadable)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1]
    return None


class _Once(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def forward(packet: bytes, upstream: str, port: int = 53) -> bytes:
    """``packet`` sent to ``upstream`` over UDP (then TCP if the answer is truncated).

    Raises:
        OSError, TimeoutError: no answer within :data:`FORWARD_TIMEOUT_S`.
    """
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Once, remote_addr=(upstream, port))
    try:
        transport.sendto(packet)
        answer = await asyncio.wait_for(proto.answer, FORWARD_TIMEOUT_S)
    finally:
        transport.close()
    if len(answer) > 2 and answer[2] & 0x02:  # TC: ask again over TCP
        answer = await asyncio.wait_for(_forward_tcp(packet, upstream, port), FORWARD_TIMEOUT_S)
    return answer


async def _forward_tcp(packet: bytes, upstream: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(upstream, port)
    try:
        writer.write(struct.pack("!H", len(packet)) + packet)
        await writer.drain()
        (size,) = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(size)
    finally:
        writer.close()


class Resolver:
    """Answers DNS packets (see the module docstring).

    Args:
        table: returns the current name table (it changes while the resolver runs).
        upstream: the pod's resolver (None: forwarded queries get SERVFAIL).
    """

    def __init__(self, table: Callable[[], Table], upstream: str | None) -> None:
        self.table = table
        self.upstream = upstream
        self.answered = 0
        self.forwarded = 0

    async def resolve(self, packet: bytes, *, udp: bool) -> bytes | None:
        """The answer to ``packet`` (None: drop it -- it does not parse)."""
        try:
            query = DNSRecord.parse(packet)
        except (DNSError, ValueError, IndexError, struct.error):
            return None
        reply = local_answer(query, self.table())
        if reply is not None:
            self.answered += 1
            data = bytes(reply.pack())
            if udp and len(data) > MAX_UDP:
                reply = query.reply()
                reply.header.tc = 1
                data = bytes(reply.pack())
            return data
        if self.upstream is None:
            return servfail(packet)
        self.forwarded += 1
        try:
            return await forward(packet, self.upstream)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
            log.debug("forwarding to %s failed: %s", self.upstream, err)
            return servfail(packet)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = await self.resolver.resolve(data, udp=True)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


async def _serve_tcp(
    resolver: Resolver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            answer = await resolver.resolve(await reader.readexactly(size), udp=False)
            if answer is None:
                break
            writer.write(struct.pack("!H", len(answer)) + answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(resolver: Resolver, host: str, port: int) -> Callable[[], None]:
    """Serve ``resolver`` on UDP and TCP ``host:port``; returns the function that stops both.

    Raises:
        OSError: the address is taken.
    """
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(resolver), local_addr=(host, port)
    )
    server = await asyncio.start_server(
        lambda r, w: _serve_tcp(resolver, r, w), host, port, reuse_address=True
    )

    def stop() -> None:
        transport.close()
        server.close()

    return stop
