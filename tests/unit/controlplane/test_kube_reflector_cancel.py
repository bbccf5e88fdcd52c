"""A reflector's loop ends when its task is cancelled even if the cancellation is swallowed
where it lands (a watch stream read that ends as if the server had closed it): CI once hung
300 s in a teardown waiting for it."""

from __future__ import annotations

import asyncio

from federation.controlplane.kube.source import Reflector


def test_a_cancel_swallowed_by_a_watch_still_ends_the_loop() -> None:
    async def scenario() -> bool:
        reflector = Reflector("services", lambda **_: None, lambda: None)  # type: ignore[arg-type,return-value]
        reflector.synced = True
        watching = asyncio.Event()
        swallowed: list[bool] = []

        async def watch() -> None:  # ends the first watch on cancel, as a closed stream would
            watching.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

        reflector.watch = watch  # type: ignore[method-assign]
        task = asyncio.create_task(reflector.run())
        await watching.wait()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done:  # the old loop watched again; this cancel reaches it
            task.cancel()
            await asyncio.wait({task}, timeout=2)
        return bool(done) and task.cancelled()

    assert asyncio.run(scenario())
