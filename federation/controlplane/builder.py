"""Turns registry state into published snapshots, per connected proxy.

Implements the ADS server's :class:`~federation.controlplane.ads.StreamCallbacks`: a proxy's
first request is checked against its client certificate
(:func:`~federation.controlplane.proxy.identity_problem`), makes it known and builds its
snapshot; any registry change marks every known proxy for rebuild, coalesced by one worker so
a burst of changes costs one build.
"""

from __future__ import annotations

import asyncio
import logging
import time

from envoy.config.core.v3 import base_pb2

from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.proxy import ProxyDescription, identity_problem
from federation.controlplane.registry import ServiceRegistry
from federation.controlplane.snapshot import Snapshot, SnapshotCache
from federation.errors import InconsistentSnapshotError

log = logging.getLogger(__name__)


def proxy_class(proxy: ProxyDescription) -> tuple[object, ...]:
    """Everything of a proxy that its generated resources depend on (not its node id)."""
    return (
        proxy.role,
        proxy.namespace,
        proxy.workload,
        proxy.service_account,
        proxy.locality,
        proxy.outbound_port,
        proxy.listen,
        proxy.identity_dir,
    )


class SnapshotBuilder:
    """Builds snapshots for proxies (see the module docstring)."""

    def __init__(
        self,
        mesh: MeshContext,
        registry: ServiceRegistry,
        cache: SnapshotCache,
    ) -> None:
        self.mesh = mesh
        self._registry = registry
        self._cache = cache
        self._proxies: dict[str, ProxyDescription] = {}
        # proxies of one class (same role, namespace, workload, identity, locality, ports) get
        # identical resources: build once per class per registry version and share the
        # immutable snapshot.
        self._memo: dict[tuple[object, ...], tuple[int, Snapshot]] = {}
        self._dirty = asyncio.Event()
        self.ready = asyncio.Event()
        self.builds = 0
        self.last_build_ms = 0.0
        registry.subscribe(lambda _state: self.request_rebuild())

    def proxies(self) -> dict[str, ProxyDescription]:
        """Known proxies by node id."""
        return dict(self._proxies)

    async def on_stream_open(self, node: base_pb2.Node, peer: str | None) -> str:
        """Check the proxy's identity, register it and publish its first snapshot (waits
        until state is loaded).

        Raises:
            ValueError: the node's metadata is unusable.
            PermissionError: the node claims another identity than its certificate's.
        """
        proxy = ProxyDescription.from_node(node)
        problem = identity_problem(proxy, peer, self.mesh.trust_domain)
        if problem is not None:
            raise PermissionError(problem)
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
        state = self._registry.state
        key = proxy_class(proxy)
        hit = self._memo.get(key)
        if hit is not None and hit[0] == state.version:
            snapshot = hit[1]
        else:
            snapshot = Snapshot.build(generate(self.mesh, state, proxy))
            self._memo[key] = (state.version, snapshot)
        try:
            await self._cache.set_snapshot(proxy.node_id, snapshot)
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
