"""``echo`` over HTTP: answers every request with who it is and who called it.

Run: ``python -m federation.demo.echo_http --name echo-1 --cluster east --port 8080``.
The JSON body holds ``name``, ``cluster``, ``path``, ``method`` and the caller identity the
sidecar forwarded (``x-forwarded-client-cert``), and the W3C ``traceparent`` it received (a
traced mesh sets it), and ``bodyBytes``, the size of the request body it read. ``/healthz``
answers 200. ``?delay_ms=N`` holds the answer N ms (at most 30 s), to test draining;
``?size=N`` adds ``pad``, N bytes of ``x`` (at most 1 MiB), to test byte counts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aiohttp import web

#: Largest ``?size=`` answered (bytes).
MAX_PAD = 1 << 20


def make_app(name: str, cluster: str) -> web.Application:
    """The echo application."""

    async def echo(request: web.Request) -> web.Response:
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
                "host": request.host,
                "xfcc": request.headers.get("x-forwarded-client-cert", ""),
                "traceparent": request.headers.get("traceparent", ""),
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


async def serve(name: str, cluster: str, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    runner = web.AppRunner(make_app(name, cluster), access_log=None)
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(serve(args.name, args.cluster, args.host, args.port))


if __name__ == "__main__":
    main()
