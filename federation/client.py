"""A small client for meshfed's HTTP APIs (control plane now; controller later).

Finds the bearer token from ``--token``/``$MESHFED_TOKEN``, else from the ``endpoint.json``
files servers write under ``$MESHFED_HOME``. Errors are :mod:`federation.errors` exceptions.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp

from federation.errors import ApiError, InvalidDocumentError, UnreachableError
from federation.paths import meshfed_home

TOKEN_ENV = "MESHFED_TOKEN"


def find_token(url: str, explicit: str | None = None, home: Path | None = None) -> str | None:
    """The token for ``url``: ``explicit``, ``$MESHFED_TOKEN``, or a matching endpoint.json."""
    if explicit:
        return explicit
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    base = (home or meshfed_home()) / "controlplanes"
    for endpoint in sorted(base.glob("*/endpoint.json")) if base.is_dir() else []:
        try:
            data = json.loads(endpoint.read_text())
            if data.get("api", "").rstrip("/") == url.rstrip("/"):
                return Path(data["token_file"]).read_text().strip()
        except (OSError, ValueError, KeyError):
            continue
    return None


async def _request(method: str, url: str, token: str | None, body: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.request(method, url, data=body, headers=headers) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text else {}
                except ValueError:
                    data = {"error": text}
                if resp.status == 400 and "problems" in data:
                    raise InvalidDocumentError(data["error"], problems=data["problems"])
                if resp.status >= 400:
                    hint = " (pass --token or set MESHFED_TOKEN)" if resp.status == 401 else ""
                    raise ApiError(
                        f"{method} {url}: {resp.status} {data.get('error', text)}{hint}",
                        status=resp.status,
                    )
                return data
    except aiohttp.ClientConnectionError as err:
        raise UnreachableError(f"cannot reach {url}: {err}", status=0) from err


def call(
    method: str, base_url: str, path: str, *, token: str | None = None, body: str | None = None
) -> Any:
    """Synchronous request to ``base_url + path``; returns the decoded JSON.

    Raises:
        InvalidDocumentError: the server refused documents (400 with problems).
        ApiError: any other error status (401 names the missing token).
        UnreachableError: connection failed (retryable).
    """
    url = base_url.rstrip("/") + path
    return asyncio.run(_request(method, url, find_token(base_url, token), body))
