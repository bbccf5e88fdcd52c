"""Reading a Prometheus text exposition in tests, with prometheus-client's own parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from federation.client import tls_for
from federation.local.processes import Record

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample by ``(name, sorted labels)``, e.g.
    ``("meshfed_xds_pushes_total", (("type", "CDS"),))``."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def controller_samples(home: Path) -> Samples:
    """The ``/metrics`` of the controller of ``meshfed up`` in ``home`` (admin token, its own
    CA), parsed by :func:`samples`."""
    record = Record.load(home)
    assert record is not None
    url = record.info["controller"]
    tls = tls_for(url, home)
    assert tls is not None
    token = (home / "controller-token").read_text().strip()

    async def get() -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{url}/metrics",
                headers={"Authorization": f"Bearer {token}"},
                ssl=tls.context,
                server_hostname=tls.server_hostname,
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp,
        ):
            assert resp.status == 200
            return await resp.text()

    return samples(asyncio.run(get()))
