"""Turns registry state into published snapshots, per connected proxy.

Implements the ADS server's :class:`~federation.controlplane.ads.StreamCallbacks`: a proxy's
first request makes it known and builds its snapshot; any registry change or SVID renewal marks
every known proxy for rebuild, coalesced by one worker so a burst of changes costs one build.
"""

from __future__ import annotations

import asyncio
import logging
import time

from envoy.config.core.v3 import base_pb2

from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.identities import IdentityManager
from federation.controlplane.proxy import ProxyDescription
from federation.controlplane.registry import ServiceRegistry
from federation.controlplane.snapshot import Snapshot, SnapshotCache
from federation.errors import InconsistentSnapshotError

log = logging.getLogger(__name__)


class SnapshotBuilder:
    """Builds snapshots for proxies (see the module docstring)."""

    def __init__(
        self,
        mesh: MeshContext,
        registry: ServiceRegistry,
        identities: IdentityManager,
        cache: SnapshotCache,
    ) -> None:
        self.mesh = mesh
        self._registry = registry
        self._identities = identities
        self._cache = cache
        self._proxies: dict[str, ProxyDescription] = {}
        self._dirty = asyncio.Event()
        self.ready = asyncio.Event()
        self.builds = 0
        self.last_build_ms = 0.0
        registry.subscribe(lambda _state: self.request_rebuild())

    def proxies(self) -> dict[str, ProxyDescription]:
        """Known proxies by node id."""
        return dict(self._proxies)

    async def on_stream_open(self, node: base_pb2.Node) -> str:
        """Register the proxy and publish its first snapshot (waits until state is loaded)."""
        proxy = ProxyDescription.from_node(node)
        await self.ready.wait()
        self._proxies[proxy.node_id] = proxy
        await self._build(proxy)
        return proxy.node_id

    def on_stream_closed(self, node_id: str) -> None:
        """Keep the description: a reconnecting proxy gets its snapshot at once."""

    def request_rebuild(self) -> None:
        """Mark every proxy's snapshot stale; the worker rebuilds soon."""
        self._dirty.set()

    async def _build(self, proxy: ProxyDescription) -> None:
        identity = None
        if proxy.role in ("sidecar", "gateway"):
            identity = await self._identities.material(proxy.namespace, proxy.service_account)
        resources = generate(self.mesh, self._registry.state, proxy, identity)
        try:
            await self._cache.set_snapshot(proxy.node_id, Snapshot.build(resources))
        except InconsistentSnapshotError as err:
            log.error("not publishing: %s", err)

    async def rebuild_all(self) -> None:
        """Rebuild every known proxy's snapshot now."""
        started = time.perf_counter()
        for proxy in list(self._proxies.values()):
            await self._build(proxy)
        self.builds += 1
        self.last_build_ms = (time.perf_counter() - started) * 1000

    async def run(self) -> None:
        """The rebuild worker; runs until cancelled."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.rebuild_all()
