"""``echo`` over plain TCP: answers every line with who it is.

Run: ``python -m federation.demo.echo_tcp --name db-1 --cluster east --port 9000``. For each
line received the answer is ``<name> <cluster> <line>`` and a newline; the connection stays
open until the client closes it. Used to show TCP services routed across clusters (the
sidecars originate and terminate mTLS; the app speaks plain TCP).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal


async def serve(name: str, cluster: str, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(f"{name} {cluster} ".encode() + line.rstrip(b"\n") + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    logging.info("echo-tcp %s listening on %s:%d", name, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


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
