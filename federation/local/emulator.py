"""The link emulator of ``meshfed up --isolate``: the internet between the namespaces.

It attaches to every node's TUN device (:mod:`federation.local.netplan`), reads the IPv4
packets each node sends, and writes each to its destination's device after half the pair's
round trip, dropping what the plan forbids, what a partition cuts and the pair's loss. Each
pair keeps its own FIFO queue, so packets between two nodes never overtake each other.

Why in user space: netem (``tc qdisc ... netem``) is the usual tool, but kernels built without
``CONFIG_NET_SCH_NETEM`` (this project's CI machines among them) cannot load it. Packets are
whole IP datagrams of up to 65,000 bytes (the devices' MTU), so bulk transfers cost few
packets; one emulator forwards some 10^4-10^5 packets per second on one core.

The emulator runs at a raised CPU priority (nice :data:`NICE`, when the process may: it runs
as root): on a real network the wires do not wait for the hosts' CPUs, but here the
emulator shares the cores with every Envoy of the bed (52 on issue #16's 2-core bench), and
a starved emulator would add delay of its own to every emulated link.

The exchange: packets to another federation's block (``meshfed up --isolate`` run from
another home) are passed to that federation's emulator as datagrams on its Unix socket
(:func:`exchange_path` of the block, under :data:`~federation.local.netplan.EXCHANGE_DIR`,
mode 0600), which applies its own rules (:meth:`~federation.local.netplan.Router.route_exchanged`):
the internet between federations, with no delay of its own.

Control: a Unix socket (``control`` path, mode 0600) that takes one JSON object per line and
answers one: ``{"op": "status"}``, ``{"op": "partition", "node": NAME, "peers": [...]}``,
``{"op": "heal", "node": NAME}``. Status holds per-reason drop counters and forwarded
packet and byte counts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import random
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from federation.local.netns import exchange_alive, exchange_path, open_tun, reservation_path
from federation.local.netplan import EXCHANGE, EXCHANGE_DIR, NetworkPlan, Router

log = logging.getLogger(__name__)

#: The emulator's nice value (lower runs first; 0 is the default of every other process).
NICE = -10
READ_SIZE = 65536
#: Packets read from one device per wake-up before the loop serves the others.
READ_BATCH = 64


class LinkEmulator:
    """See the module docstring. ``run`` until cancelled or signalled."""

    def __init__(self, plan: NetworkPlan, control: Path, exchange_dir: str = EXCHANGE_DIR) -> None:
        self.router = Router(plan)
        self.control = control
        self.exchange_dir = exchange_dir
        self.exchange: socket.socket | None = None
        self.fds: list[int] = []
        self.queues: dict[tuple[int, int], collections.deque[tuple[float, bytes]]] = {}
        self.counters: collections.Counter[str] = collections.Counter()
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self) -> None:
        """Open every node's TUN device.

        Raises:
            OSError: a device is missing or taken.
        """
        self.fds = [open_tun(n.tun, n.netns) for n in self.router.nodes]

    def bind_exchange(self) -> None:
        """Bind this federation's exchange socket (0600), replacing a stale one.

        Raises:
            OSError: another emulator is bound to it, or the directory cannot be made.
        """
        path = exchange_path(self.router.plan.block, self.exchange_dir)
        if exchange_alive(path):
            raise OSError(f"{path}: another link emulator serves block {self.router.plan.block}")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        sock.setblocking(False)
        self.exchange = sock
        reservation_path(self.router.plan.block, self.exchange_dir).unlink(missing_ok=True)

    def _to_exchange(self, packet: bytes) -> None:
        """Pass a packet to the emulator of the block its destination is in."""
        assert self.exchange is not None
        block = f"{'.'.join(str(b) for b in packet[16:19])}.0/24"
        try:
            self.exchange.sendto(packet, str(exchange_path(block, self.exchange_dir)))
        except OSError:  # no federation there, or its queue is full
            self.counters["drop-exchange"] += 1
            return
        self.counters["exchanged-out"] += 1

    def _on_exchange(self) -> None:
        assert self.exchange is not None
        for _ in range(READ_BATCH):
            try:
                packet = self.exchange.recv(READ_SIZE)
            except BlockingIOError:
                return
            verdict = self.router.route_exchanged(packet)
            if isinstance(verdict, str):
                self.counters[f"drop-exchanged-{verdict}"] += 1
                continue
            self.counters["exchanged-in"] += 1
            self._write(verdict[0], packet)

    def _on_readable(self, src: int) -> None:
        fd = self.fds[src]
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for _ in range(READ_BATCH):
            try:
                packet = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as err:  # the device is gone (its namespace was deleted)
                self.counters["device-gone"] += 1
                log.warning("%s: %s; no longer read", self.router.nodes[src].tun, err)
                loop.remove_reader(fd)
                return
            verdict = self.router.route(src, packet)
            if isinstance(verdict, str):
                self.counters[f"drop-{verdict}"] += 1
                continue
            dst, delay = verdict
            if dst == EXCHANGE:
                self._to_exchange(packet)
                continue
            loss = self.router.loss[src][dst]
            if loss and random.random() < loss:  # noqa: S311 - loss emulation, not security
                self.counters["drop-loss"] += 1
                continue
            if delay <= 0:
                self._write(dst, packet)
                continue
            queue = self.queues.setdefault((src, dst), collections.deque())
            queue.append((now + delay, packet))
            if len(queue) == 1:
                loop.call_at(now + delay, self._drain, src, dst)

    def _drain(self, src: int, dst: int) -> None:
        loop = self._loop
        assert loop is not None
        queue = self.queues[(src, dst)]
        now = loop.time()
        while queue and queue[0][0] <= now:
            self._write(dst, queue.popleft()[1])
        if queue:
            loop.call_at(queue[0][0], self._drain, src, dst)

    def _write(self, dst: int, packet: bytes) -> None:
        try:
            os.write(self.fds[dst], packet)
        except OSError:  # the device's queue is full, or nobody reads it (a namespace went)
            self.counters["drop-full"] += 1
            return
        self.counters["packets"] += 1
        self.counters["bytes"] += len(packet)

    def status(self) -> dict[str, Any]:
        """Counters, partitions and the round-trip matrix (ms)."""
        return {
            "counters": dict(self.counters),
            "partitions": self.router.partitions(),
            "rttMs": self.router.plan.rtt_ms,
            "queued": sum(len(q) for q in self.queues.values()),
        }

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (see the module docstring)."""
        op = request.get("op")
        try:
            if op == "status":
                return {"ok": True, **self.status()}
            if op == "partition":
                peers = self.router.partition(str(request["node"]), request.get("peers") or None)
                log.info("partitioned %s from %s", request["node"], ", ".join(peers))
                return {"ok": True, "node": request["node"], "peers": peers}
            if op == "heal":
                self.router.heal(str(request["node"]))
                log.info("healed %s", request["node"])
                return {"ok": True, "node": request["node"]}
        except KeyError as err:
            return {"ok": False, "error": f"no such node (or not allowed): {err.args[0]}"}
        return {"ok": False, "error": f"unknown op {op!r}"}

    async def _serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = self.command(json.loads(line))
                except (ValueError, TypeError) as err:
                    answer = {"ok": False, "error": f"bad request: {err}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    async def run(self) -> None:
        """Forward packets and serve the control socket until cancelled."""
        self._loop = asyncio.get_running_loop()
        self.attach()
        self.bind_exchange()
        assert self.exchange is not None
        for i, fd in enumerate(self.fds):
            self._loop.add_reader(fd, self._on_readable, i)
        self._loop.add_reader(self.exchange.fileno(), self._on_exchange)
        self.control.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._serve_control, path=str(self.control))
        finally:
            os.umask(old)
        log.info("link emulator: %d nodes, control socket %s", len(self.router.nodes), self.control)
        stop = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, stop.set)
        try:
            async with server:
                await stop.wait()
        finally:
            for fd in self.fds:
                self._loop.remove_reader(fd)
                os.close(fd)
            self._loop.remove_reader(self.exchange.fileno())
            self.exchange.close()
            exchange_path(self.router.plan.block, self.exchange_dir).unlink(missing_ok=True)
            self.control.unlink(missing_ok=True)
            log.info("link emulator stopped: %s", dict(self.counters))


def request(control: Path, body: dict[str, Any], timeout_s: float = 5) -> dict[str, Any]:
    """Send one control request to a running emulator and return its answer.

    Raises:
        OSError: no emulator listens on ``control``.
    """
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(control))
        sock.sendall(json.dumps(body).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n") and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


def main() -> None:
    """``python -m federation.local.emulator --plan PLAN.json --control SOCKET``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path, required=True, help="the NetworkPlan (JSON)")
    parser.add_argument("--control", type=Path, required=True, help="control socket path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    except PermissionError:
        log.warning("running at normal CPU priority: raising it to nice %d needs root", NICE)
    plan = NetworkPlan.from_json(args.plan.read_text())
    asyncio.run(LinkEmulator(plan, args.control).run())


if __name__ == "__main__":
    main()
