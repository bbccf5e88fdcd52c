"""Headless Chromium (Debian's package) driven over the Chrome DevTools Protocol: load a page
in a viewport of a given size, wait for a condition, evaluate a script, take a screenshot.

The protocol is spoken over its WebSocket with aiohttp's client (the ``Page``, ``Runtime``
and ``Emulation`` domains, https://chromedevtools.github.io/devtools-protocol/). Chromium
listens on loopback only (``--remote-debugging-port=0`` picks a free port and writes it to
``DevToolsActivePort`` in the profile) and is stopped when :func:`open_page` exits, even
when the test fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

#: Longest wait for Chromium to start, a page to load or a condition to hold (s).
TIMEOUT_S = 30.0


class Page:
    """One tab: :meth:`evaluate` a JavaScript expression, :meth:`screenshot`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One CDP command; its ``result`` (events in between are skipped).

        Raises:
            RuntimeError: the command failed.
        """
        self._next += 1
        ident = self._next
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self._ws.receive_json(), TIMEOUT_S)
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg["result"])

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` (promises awaited).

        Raises:
            RuntimeError: it threw.
        """
        got = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in got:
            raise RuntimeError(f"{expression[:80]}: {got['exceptionDetails']}")
        return got["result"].get("value")

    async def wait_for(self, expression: str, what: str) -> Any:
        """Poll ``expression`` until it is truthy (at most :data:`TIMEOUT_S`)."""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    async def screenshot(self, path: Path) -> None:
        """A PNG of the viewport into ``path``."""
        got = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(got["data"]))


async def _debugger_url(profile: Path, proc: subprocess.Popen[bytes]) -> str:
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + TIMEOUT_S
    while not active.exists() or not active.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"chromium did not start (exit {proc.poll()})")
        await asyncio.sleep(0.05)
    port = active.read_text().split()[0]
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                pages = [t for t in await resp.json() if t["type"] == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            await asyncio.sleep(0.05)
    raise AssertionError("chromium opened no page")


@contextlib.asynccontextmanager
async def open_page(
    url: str,
    profile: Path,
    size: tuple[int, int],
    flags: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Page]:
    """Chromium showing ``url`` in a ``size`` (width, height) CSS-pixel viewport at scale 1,
    with extra command-line ``flags`` and environment ``env`` (None: this process's; on
    Linux its ``HOME`` holds the NSS database of trusted roots, ``~/.pki/nssdb``); stopped
    on exit."""
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "DevToolsActivePort").unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            "chromium",
            "--headless",
            "--no-sandbox",  # root in CI
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"--window-size={size[0]},{size[1]}",
            *flags,
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=None if env is None else dict(env),
    )
    try:
        ws_url = await _debugger_url(profile, proc)
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(ws_url, max_msg_size=64 << 20) as ws,
        ):
            page = Page(ws)
            await page.call(
                "Emulation.setDeviceMetricsOverride",
                width=size[0],
                height=size[1],
                deviceScaleFactor=1,
                mobile=False,
            )
            await page.call("Page.enable")
            await page.call("Page.navigate", url=url)
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dumps(value: Any) -> str:
    """``value`` as a JavaScript literal."""
    return json.dumps(value)
