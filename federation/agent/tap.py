"""The proxy agent's traffic counter: reads its Envoy's traffic log, reports to the control
plane.

The control plane gives a sidecar's outbound listener a file access log to the FIFO the
agent named in its node metadata (``meshfed.io/traffic_log``;
:func:`federation.controlplane.generate.listeners.traffic_log`): one short line per request
-- Envoy cluster, ``x-meshfed-served-by``, response code, upstream wire bytes sent and
received, duration (ms), upstream attempts. :class:`TrafficTap` reads the FIFO (opened
before Envoy starts and kept across Envoy restarts, so Envoy never blocks on opening it) in
a thread at nice :data:`READER_NICE` and counts lines per
``(Envoy cluster, served-by, code)`` (:class:`~federation.traffic.Counters`). Every
:data:`REPORT_INTERVAL_S` while the counts changed, :meth:`TrafficTap.report_forever` sends
them, cumulative, to the control plane's ``meshfed.traffic.v1.TrafficService/Report`` on its
xDS port with the agent's SVID (mutual TLS; the control plane checks the node against the
certificate and classifies, prices and aggregates them,
:mod:`federation.controlplane.telemetry`). A failed report is retried with the next.

An east-west gateway's agent runs a :class:`GatewayTap` instead: the control plane gives the
gateway's ``tcp_proxy`` filters a file access log to its FIFO, flushed every
:data:`federation.controlplane.generate.gateway.HOP_LOG_FLUSH_S` while a connection is open
and once when it ends (:data:`~federation.controlplane.generate.gateway.HOP_LOG_FORMAT`):
connection id, Envoy cluster, upstream host, upstream wire bytes sent and received -- so
far on that connection -- and the record's type. It counts per
``(Envoy cluster, upstream host)`` the connections and the bytes each record added; the
control plane turns the host into the sidecar's locality (the gateway hop,
:class:`federation.traffic.GatewayHop`).

Not modelled: if the agent stops reading, Envoy's flush thread blocks on the full pipe and
lines queue in Envoy's memory -- the agent supervises that Envoy, so both stop together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from federation.sync.proto import traffic_pb2, traffic_pb2_grpc
from federation.traffic import DURATION_BUCKETS_MS, Counters

log = logging.getLogger(__name__)

#: How often the counts go to the control plane (s) while they change.
REPORT_INTERVAL_S = 2.0
#: Deadline of one report (s).
REPORT_TIMEOUT_S = 5.0
#: Niceness of the thread that reads and counts (Envoy and the rest of the agent run at 0).
READER_NICE = 10
#: ``(Envoy cluster, x-meshfed-served-by, response code)``.
Key = tuple[str, str, int]


def parse_line(line: bytes) -> tuple[Key, int, int, int, int] | None:
    """One traffic-log line as ``(key, bytes sent, bytes received, duration ms, retries)``;
    None for a line that is not one (Envoy writes ``-`` for a missing value, counted as 0 /
    ""). ``retries`` is the upstream attempt count less one (the seventh field; 0 in the six
    fields an Envoy configured by an older control plane writes).

    >>> parse_line(b"outbound|8080||echo.demo.svc.clusterset.local east/z1 200 52 310 3 2")
    (('outbound|8080||echo.demo.svc.clusterset.local', 'east/z1', 200), 52, 310, 3, 1)
    """
    parts = line.split()
    if len(parts) not in (6, 7):
        return None
    try:
        upstream, served_by = parts[0].decode(), parts[1].decode()
        code, sent, received, duration, *attempts = (0 if p == b"-" else int(p) for p in parts[2:])
    except (ValueError, UnicodeDecodeError):
        return None
    retries = max(0, attempts[0] - 1) if attempts else 0
    return (
        (upstream, "" if served_by == "-" else served_by, code),
        sent,
        received,
        duration,
        retries,
    )


class TrafficTap:
    """Counts the lines of one FIFO (see the module docstring).

    Attributes:
        per_request: True: its keys are requests (a sidecar's); False: connections through
            a gateway (:class:`GatewayTap`), which the agent's ``meshfed_proxy_*`` families
            leave out.

    Args:
        path: the FIFO (created, mode 0600, if missing).
        node: the proxy's serialized ``envoy.config.core.v3.Node`` (what its reports name).
    """

    per_request = True

    def __init__(self, path: Path, node: bytes) -> None:
        self.path = path
        self.node = node
        self.started_at = time.time()
        self.counts: dict[Key, Counters] = {}
        self.lines = 0
        self.bad_lines = 0
        self._rest = b""
        self._fd: int | None = None
        self._sent_lines = 0
        self.lock = threading.Lock()

    def open(self) -> None:
        """Create the FIFO if needed and open its read end (non-blocking); call before
        Envoy starts."""
        if self.path.exists() and not stat.S_ISFIFO(self.path.stat().st_mode):
            self.path.unlink()
        if not self.path.exists():
            os.mkfifo(self.path, 0o600)
        # O_RDWR: the FIFO stays open (no EOF) while Envoy restarts
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    def close(self) -> None:
        """Close the read end (the reading thread ends with its next read)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.write(fd, b"\n")  # wake a blocked read: it sees _fd is None and ends
            os.close(fd)

    def _complete_lines(self, data: bytes) -> list[bytes]:
        """The complete lines ``data`` ends (a partial last line waits for the rest),
        counted in :attr:`lines`."""
        *lines, self._rest = (self._rest + data).split(b"\n")
        self.lines += len(lines)
        return lines

    def feed(self, data: bytes) -> None:
        """Count the complete lines of ``data`` (a partial last line waits for the rest)."""
        counts = self.counts
        for line in self._complete_lines(data):
            parsed = parse_line(line)
            if parsed is None:
                self.bad_lines += bool(line.strip())
                continue
            key, sent, received, duration_ms, retries = parsed
            counters = counts.get(key)
            if counters is None:
                counters = counts[key] = Counters()
            counters.add(sent, received, duration_ms, 0.0, retries)

    def _read(self) -> None:
        """Read the FIFO until closed (a thread of its own, at a lower CPU priority than the
        agent's other work and than Envoy: counting yields to proxying under load)."""
        with contextlib.suppress(OSError):  # not Linux, or not permitted
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICE)
        fd = self._fd
        assert fd is not None
        os.set_blocking(fd, True)
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                return  # closed
            if not data or self._fd is None:
                return
            with self.lock:
                self.feed(data)

    async def read_forever(self) -> None:
        """Read the FIFO as Envoy writes it (in a thread), until cancelled."""
        if self._fd is None:
            self.open()
        await asyncio.to_thread(self._read)

    def message(self) -> traffic_pb2.ProxyTraffic:
        """The cumulative counts as a report."""
        with self.lock:
            return self._message()

    def _message(self) -> traffic_pb2.ProxyTraffic:
        return traffic_pb2.ProxyTraffic(
            node=self.node,
            started_at=self.started_at,
            duration_bounds_ms=DURATION_BUCKETS_MS,
            keys=[
                traffic_pb2.KeyTraffic(
                    upstream_cluster=key[0],
                    served_by=key[1],
                    response_code=key[2],
                    requests=c.requests,
                    request_bytes=c.request_bytes,
                    response_bytes=c.response_bytes,
                    duration_ms_sum=c.duration_ms_sum,
                    duration_buckets=c.buckets,
                    retries=c.retries,
                )
                for key, c in self.counts.items()
            ],
        )

    async def report_once(self, channel: grpc.aio.Channel) -> None:
        """Send the counts now.

        Raises:
            grpc.aio.AioRpcError: the control plane refused or did not answer.
        """
        stub = traffic_pb2_grpc.TrafficServiceStub(channel)  # type: ignore[no-untyped-call]
        lines = self.lines
        await stub.Report(self.message(), timeout=REPORT_TIMEOUT_S)
        self._sent_lines = lines

    async def report_forever(
        self, channel: Callable[[], grpc.aio.Channel], interval_s: float = REPORT_INTERVAL_S
    ) -> None:
        """Report every ``interval_s`` while lines arrived since the last report, on the
        channel ``channel()`` returns (called each time: it follows SVID renewals)."""
        while True:
            await asyncio.sleep(interval_s)
            if self.lines == self._sent_lines:
                continue
            try:
                await self.report_once(channel())
            except grpc.aio.AioRpcError as err:
                log.warning("traffic report failed (retrying): %s", err.details())


#: Access log types (Envoy's ``%ACCESS_LOG_TYPE%``) that end a connection's records.
_CONNECTION_END = frozenset({b"TcpConnectionEnd"})


def parse_hop_line(line: bytes) -> tuple[int, Key, int, int, bool] | None:
    """One gateway traffic-log line as ``(connection id, (Envoy cluster, upstream host, 0),
    bytes sent so far, bytes received so far, the connection ended)``; None for a line that
    is not one or names no upstream host (Envoy writes ``-``: it never connected).

    >>> parse_hop_line(b"7 gateway|8080||echo.demo 10.0.0.5:15006 900 4100 TcpPeriodic")
    (7, ('gateway|8080||echo.demo', '10.0.0.5:15006', 0), 900, 4100, False)
    """
    parts = line.split()
    if len(parts) != 6 or parts[2] == b"-":
        return None
    try:
        cid = int(parts[0])
        sent, received = (0 if p == b"-" else int(p) for p in parts[3:5])
        key = (parts[1].decode(), parts[2].decode(), 0)
    except (ValueError, UnicodeDecodeError):
        return None
    return cid, key, sent, received, parts[5] in _CONNECTION_END


class GatewayTap(TrafficTap):
    """A gateway's connections and bytes per ``(Envoy cluster, upstream host)``, from the
    cumulative per-connection records of its FIFO (see the module docstring): ``requests``
    counts connections, ``request_bytes`` / ``response_bytes`` the bytes sent to / received
    from the upstream host. A record whose counts fell below the connection's last (Envoy
    restarted and reused the id) starts a new connection."""

    per_request = False

    def __init__(self, path: Path, node: bytes) -> None:
        super().__init__(path, node)
        self._open: dict[int, tuple[Key, int, int]] = {}

    def feed(self, data: bytes) -> None:
        """Count the complete lines of ``data`` (a partial last line waits for the rest)."""
        for line in self._complete_lines(data):
            parsed = parse_hop_line(line)
            if parsed is None:
                self.bad_lines += bool(line.strip())
                continue
            cid, key, sent, received, ended = parsed
            last = self._open.pop(cid, None)
            new = last is None or last[0] != key or sent < last[1] or received < last[2]
            before_sent, before_received = (0, 0) if new or last is None else last[1:]
            counters = self.counts.get(key)
            if counters is None:
                counters = self.counts[key] = Counters()
            counters.requests += new
            counters.request_bytes += sent - before_sent
            counters.response_bytes += received - before_received
            if not ended:
                self._open[cid] = (key, sent, received)
