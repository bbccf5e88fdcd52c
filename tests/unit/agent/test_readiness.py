"""``GET /healthz/ready`` of the agent's metrics endpoint: Envoy's ``/ready`` for a kubelet."""

from __future__ import annotations

import io
import urllib.error

from aiohttp.test_utils import TestClient, TestServer

from federation.agent.metrics import make_app


async def _get(envoy_ready) -> tuple[int, str]:
    app = make_app(lambda: "", {}, None, envoy_ready=envoy_ready)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/healthz/ready")
        return resp.status, (await resp.text()).strip()


async def test_ready_when_envoy_says_live() -> None:
    assert await _get(lambda: "LIVE\n") == (200, "LIVE")


async def test_not_ready_while_envoy_initializes_or_is_down() -> None:
    def initializing() -> str:
        body = io.BytesIO(b"PRE_INITIALIZING\n")
        raise urllib.error.HTTPError("http://127.0.0.1/ready", 503, "x", {}, body)  # type: ignore[arg-type]

    def down() -> str:
        raise ConnectionRefusedError(111, "Connection refused")

    assert await _get(initializing) == (503, "PRE_INITIALIZING")
    status, text = await _get(down)
    assert status == 503 and "Connection refused" in text


async def test_no_readiness_route_without_envoy_ready() -> None:
    app = make_app(lambda: "", {}, None)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz/ready")).status == 404
