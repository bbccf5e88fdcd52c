"""Waiting on a condition inside a test's event loop (never on a fixed sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], object], what: str, timeout_s: float = 5) -> None:
    """Return once ``predicate()`` is truthy (polled every 10 ms); AssertionError naming
    ``what`` after ``timeout_s`` seconds."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
