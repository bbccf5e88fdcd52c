"""``echo`` over HTTP: answers every request with who it is and who called it.

Run: ``python -m federation.demo.echo_http --name echo-1 --cluster east --port 8080``.
The JSON body holds ``name``, ``cluster``, ``path``, ``method`` and the caller identity the
sidecar forwarded (``x-forwarded-client-cert``), and the W3C ``traceparent`` it received (a
traced mesh sets it), and ``bodyBytes``, the size of the request body it read. ``/healthz``
answers 200. ``?delay_ms=N`` holds the answer N ms (at most 30 s), to test draining;
``?size=N`` adds ``pad``, N bytes of ``x`` (at most 1 MiB), to test byte counts.
``?headers=1`` adds ``headers``: the ``x-*`` request headers it was sent.

``--fail-file PATH`` answers 500 to every request while that file exists (a chaos switch for
tests of rollbacks). ``--access-log`` logs every request with its ``Host`` (mirrored
requests end in ``-shadow``).

``--max-rps N`` makes the replica's capacity real: a token bucket of N requests/s (burst:
N x ``BURST_S``) admits requests; beyond it the answer is 503 with ``x-echo-overloaded: 1``
at once, as a server shedding load would (``/healthz`` is never limited). ``--busy-ms MS``
(with ``--max-rps``) makes latency rise with load as a queue's does: each answer waits
:func:`busy_delay_ms` of the rate of the last :data:`BUSY_WINDOW_S` seconds against N.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

#: Largest ``?size=`` answered (bytes).
MAX_PAD = 1 << 20
#: Seconds of ``--max-rps`` the token bucket holds (the burst it admits). One second, as a
#: server's accept queue would absorb: with 0.25 s a replica planned at 80 % of its capacity
#: shed 12 % of its requests whenever a loaded machine paused it for a few hundred ms (a CI
#: run of tests/integration/test_cost_optimizer.py), while its sustained rate stayed in bounds.
BURST_S = 1.0


class TokenBucket:
    """``rate`` tokens/s, at most ``rate x burst_s`` (at least 1) saved; ``clock`` in s."""

    def __init__(self, rate: float, burst_s: float, clock: Callable[[], float]) -> None:
        self.rate, self.size, self.clock = rate, max(1.0, rate * burst_s), clock
        self.tokens, self.at = self.size, clock()

    def take(self) -> bool:
        """Take one token; False when none is left (the request is shed)."""
        now = self.clock()
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


#: Utilisation beyond which :func:`busy_delay_ms` stops growing (a queue near its limit).
BUSY_CAP = 0.95


def busy_delay_ms(busy_ms: float, utilisation: float) -> float:
    """Service time (ms) at ``utilisation`` (0-1: requests/s over capacity) of a server
    whose time at half load is ``busy_ms``: ``busy_ms x u / (1 - u)``, the waiting time of
    an M/M/1 queue in units of its service time, ``u`` capped at :data:`BUSY_CAP`
    (e.g. 5 ms at 50 %, 20 ms at 80 %, 45 ms at 90 %)."""
    u = min(max(utilisation, 0.0), BUSY_CAP)
    return busy_ms * u / (1 - u)


#: The window (s) :func:`busy_delay_ms`'s utilisation is measured over: a queue fills with
#: sustained load, and over one second a client's catch-up burst (a thread that stalled and
#: sends what it owes) read as 90 % of capacity at 30 % load, and its p99 as a full queue's.
BUSY_WINDOW_S = 5.0


class RateMeter:
    """Requests per second over the last ``window_s`` seconds (``clock`` in s)."""

    def __init__(self, clock: Callable[[], float], window_s: float = 1.0) -> None:
        self.clock, self.window_s = clock, window_s
        self.times: deque[float] = deque()

    def hit(self) -> float:
        """Count one request; the rate (requests/s) over the last window, it included."""
        now = self.clock()
        self.times.append(now)
        while self.times and self.times[0] <= now - self.window_s:
            self.times.popleft()
        return len(self.times) / self.window_s


def make_app(
    name: str,
    cluster: str,
    max_rps: float | None = None,
    fail_file: str | None = None,
    busy_ms: float = 0.0,
) -> web.Application:
    """The echo application (``max_rps``: shed requests beyond it with 503; ``fail_file``:
    answer 500 while that file exists; ``busy_ms``: :func:`busy_delay_ms` of the load)."""
    bucket = TokenBucket(max_rps, BURST_S, time.monotonic) if max_rps else None
    meter = RateMeter(time.monotonic, BUSY_WINDOW_S) if max_rps and busy_ms > 0 else None
    failing = Path(fail_file) if fail_file else None

    async def echo(request: web.Request) -> web.Response:
        if failing is not None and failing.exists():
            return web.Response(status=500, text=f"{name} failing\n")
        if bucket is not None and not bucket.take():
            return web.Response(status=503, text="overloaded\n", headers={"x-echo-overloaded": "1"})
        if meter is not None and max_rps:
            await asyncio.sleep(busy_delay_ms(busy_ms, meter.hit() / max_rps) / 1000)
        delay_ms = int(request.query.get("delay_ms", "0") or 0)
        size = min(max(int(request.query.get("size", "0") or 0), 0), MAX_PAD)
        body = await request.read()
        if delay_ms > 0:
            await asyncio.sleep(min(delay_ms, 30_000) / 1000)
        return web.json_response(
            {
                "name": name,
                "cluster": cluster,
                "method": request.method,
                "path": request.path,
                "rawPath": request.raw_path,
                "host": request.host,
                "xfcc": request.headers.get("x-forwarded-client-cert", ""),
                "traceparent": request.headers.get("traceparent", ""),
                # ?headers=1: the x-* headers it was sent (what a route's header operations set)
                **(
                    {
                        "headers": {
                            k.lower(): v
                            for k, v in request.headers.items()
                            if k.lower().startswith("x-") and k.lower() != "x-forwarded-client-cert"
                        }
                    }
                    if request.query.get("headers")
                    else {}
                ),
                "bodyBytes": len(body),
                **({"pad": "x" * size} if size else {}),
            }
        )

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


#: ``--access-log``: one line per request on stderr, with the Host it was sent to (a
#: mirrored request's ends in ``-shadow``, as Envoy sends it).
ACCESS_LOG_FORMAT = 'access "%r" %s host=%{Host}i'


async def serve(
    name: str,
    cluster: str,
    host: str,
    port: int,
    max_rps: float | None = None,
    access_log: bool = False,
    fail_file: str | None = None,
    busy_ms: float = 0.0,
) -> None:
    """Serve until SIGTERM/SIGINT."""
    runner = web.AppRunner(
        make_app(name, cluster, max_rps, fail_file, busy_ms),
        access_log=logging.getLogger("echo.access") if access_log else None,
        access_log_format=ACCESS_LOG_FORMAT,
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    logging.info("echo %s listening on %s:%d", name, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--cluster", default="")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-rps", type=float, default=None, help="shed requests beyond it")
    parser.add_argument(
        "--busy-ms",
        type=float,
        default=0.0,
        help="with --max-rps: service time (ms) at half load, rising with load as a queue's",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (with its Host) to stderr"
    )
    parser.add_argument(
        "--fail-file", default=None, help="answer 500 while this file exists (chaos switch)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(
        serve(
            args.name,
            args.cluster,
            args.host,
            args.port,
            args.max_rps,
            args.access_log,
            args.fail_file,
            args.busy_ms,
        )
    )


if __name__ == "__main__":
    main()
