"""``frontend``: the demo caller. Sends GETs to a service at a steady rate and counts every
answer by the cluster that served it.

Run: ``python -m federation.demo.frontend --via 127.0.0.1:15001
--target echo.demo.svc.clusterset.local --rps 20 --port 18000`` (through the sidecar's
outbound port, the service's name as Host), or without ``--via`` as an unchanged client in a
captured pod: ``--target echo.demo.svc.clusterset.local:8080`` is then resolved by DNS and
dialled, and the pod's capture rules hand the connection to the sidecar.

``GET /stats`` (on ``127.0.0.1:<port>``) answers JSON::

    {"windowS": 10, "requests": 200, "errors": 0, "rps": 20.0,
     "byCluster": {"aws-us-east-1": {"requests": 200, "share": 1.0, "p50Ms": 2.1,
                                     "p99Ms": 4.0, "bytesPerS": 5120.0}},
     "total": {"requests": 5000, "errors": 0, "byCluster": {"aws-us-east-1": 5000}}}

``window`` (query, seconds, default 10) sets the window of the per-cluster figures; ``total``
counts since start. A failed request (no answer, or a status other than 200) is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass

import aiohttp
from aiohttp import web

MAX_IN_FLIGHT = 100
KEEP_S = 120.0


@dataclass(frozen=True, slots=True)
class Result:
    """One request: when it finished (monotonic s), who served it, status, latency, bytes."""

    at: float
    cluster: str
    status: int
    latency_ms: float
    size: int


class Stats:
    """Results of the last two minutes, and totals since start."""

    def __init__(self) -> None:
        self.recent: deque[Result] = deque()
        self.total = Counter[str]()
        self.errors = 0

    def add(self, r: Result) -> None:
        self.recent.append(r)
        if r.status == 200:
            self.total[r.cluster] += 1
        else:
            self.errors += 1
        while self.recent and self.recent[0].at < r.at - KEEP_S:
            self.recent.popleft()

    def snapshot(self, window_s: float) -> dict[str, object]:
        now = time.monotonic()
        window = [r for r in self.recent if r.at >= now - window_s]
        ok = [r for r in window if r.status == 200]
        by: dict[str, dict[str, float]] = {}
        for cluster in sorted({r.cluster for r in ok}):
            mine = sorted(r.latency_ms for r in ok if r.cluster == cluster)
            by[cluster] = {
                "requests": len(mine),
                "share": len(mine) / len(ok),
                "p50Ms": round(mine[len(mine) // 2], 2),
                "p99Ms": round(mine[min(len(mine) - 1, int(len(mine) * 0.99))], 2),
                "bytesPerS": sum(r.size for r in ok if r.cluster == cluster) / window_s,
            }
        return {
            "windowS": window_s,
            "requests": len(window),
            "errors": len(window) - len(ok),
            "rps": round(len(window) / window_s, 2),
            "byCluster": by,
            "total": {
                "requests": sum(self.total.values()) + self.errors,
                "errors": self.errors,
                "byCluster": dict(self.total),
            },
        }


async def _one(session: aiohttp.ClientSession, url: str, host: str | None, stats: Stats) -> None:
    started = time.monotonic()
    cluster, status, size = "", 0, 0
    try:
        async with session.get(url, headers={"Host": host} if host else None) as resp:
            body = await resp.read()
            status, size = resp.status, len(body)
            if status == 200:
                cluster = str((await resp.json(content_type=None)).get("cluster", ""))
            else:
                logging.warning(
                    "answer %d (%s): %s",
                    status,
                    resp.headers.get("x-envoy-upstream-service-time", "local reply"),
                    body[:200].decode(errors="replace"),
                )
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        logging.warning("request failed: %s", err)
    stats.add(Result(time.monotonic(), cluster, status, (time.monotonic() - started) * 1000, size))


async def drive(via: str, target: str, rps: float, stats: Stats, stop: asyncio.Event) -> None:
    """Send GETs at ``rps`` until ``stop`` is set (at most 100 in flight): to ``via`` with
    ``target`` as Host, or without ``via`` to ``http://<target>/``."""
    url = f"http://{via or target}/"
    host = target if via else None
    period = 1.0 / rps
    in_flight: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        next_at = time.monotonic()
        while not stop.is_set():
            if len(in_flight) < MAX_IN_FLIGHT:
                task = asyncio.create_task(_one(session, url, host, stats))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            next_at += period
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
            except TimeoutError:
                pass
        if in_flight:
            await asyncio.wait(in_flight, timeout=10)


async def serve(via: str, target: str, rps: float, port: int, host: str = "127.0.0.1") -> None:
    """Drive traffic and serve ``/stats`` on ``host:port`` until SIGTERM/SIGINT."""
    stats = Stats()
    stop = asyncio.Event()

    async def stats_handler(request: web.Request) -> web.Response:
        window = min(KEEP_S, max(1.0, float(request.query.get("window", "10"))))
        return web.json_response(stats.snapshot(window))

    app = web.Application()
    app.router.add_get("/stats", stats_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.info("frontend: %s rps to %s via %s; stats on %s:%d", rps, target, via, host, port)
    await drive(via, target, rps, stats, stop)
    await runner.cleanup()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--via",
        default="",
        help="HOST:PORT of the sidecar's outbound listener (none: dial"
        " --target itself, resolved by DNS)",
    )
    parser.add_argument(
        "--target",
        required=True,
        help="Host header or HOST[:PORT] to dial without --via,"
        " e.g. echo.demo.svc.clusterset.local",
    )
    parser.add_argument("--rps", type=float, default=20)
    parser.add_argument("--port", type=int, required=True, help="stats port")
    parser.add_argument("--host", default="127.0.0.1", help="stats address (default 127.0.0.1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args.via, args.target, args.rps, args.port, args.host))


if __name__ == "__main__":
    main()
