"""Turns registry state into published snapshots, per connected proxy.

Implements the ADS server's :class:`~federation.controlplane.ads.StreamCallbacks`: a proxy's
first request is checked against its client certificate
(:func:`~federation.sync.node.identity_problem`), makes it known and builds its
snapshot. A registry change makes one :class:`PushContext` for the new version (shared by
every build of it; a service the change does not touch keeps its decisions and resources from
the previous version) and marks stale only the proxies whose view includes the change
(:func:`~federation.controlplane.changes.sees`): an AuthorizationPolicy rebuilds the sidecars
it selects, an export the gateways, an endpoint the sidecars, the gateways serving its
service and the gRPC clients of HTTP services. Every other proxy keeps its snapshot
untouched, and its streams are not woken. Rebuilds are coalesced by one worker so a burst of
changes costs one build. The worker publishes each proxy's snapshot as soon as it
is built (its stream sends it while the next proxy is built: with 17 sidecars a rebuild
takes 100-300 ms on a busy 2-core host, and nobody should wait for all of it), and when the
registry changes again mid-way it starts over with the new state, stalest proxies first, so
no proxy is kept waiting for a version that is already out of date and none starves.

East-west gateways are built first: a remote caller learns of a new endpoint through the
controller while this rebuild runs, and its Envoy's first health check through the gateway
fails (and is retried only a health-check interval later) if the gateway does not route to
the endpoint yet. On issue #16's bed (51 sidecars, 2 cores) the gateway came last, ~1.4 s
after the change, and every cross-cluster add waited a further second.

Generating and hashing a snapshot is CPU-bound Python (tens of ms per proxy under load); it
runs in a worker thread so the event loop keeps serving meanwhile: xDS streams send the
snapshots already built, the health checker's probes complete. Run on the loop, each build
held it for its whole duration, a probe needing several loop turns outlived its 500 ms
timeout, and on that bed every local workload was marked UNHEALTHY at once (and withdrawn
federation-wide) while the control plane was only busy. Builds never run concurrently with
each other (the worker is one task; a new stream's first build may overlap it, which is safe:
generation reads only immutable registry state and its own memo).

One proxy can never stop the others' configuration (issue #35): a node is validated whole
(:meth:`ProxyDescription.from_node`) and its first snapshot built *before* it is registered,
so a node whose build fails is refused and never enters the rebuild set; a registered proxy
whose build fails later keeps its last published snapshot (static stability), is logged and
counted (``meshfed_snapshot_build_failures_total``), and the rebuild goes on with the next
proxy; and the worker itself survives any error. Should it stop regardless,
:meth:`SnapshotBuilder.health_problem` says so, ``/healthz`` answers 503 and the gauge
``meshfed_snapshot_builder_up`` drops to 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from envoy.config.core.v3 import base_pb2

from federation.controlplane.changes import sees
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.context import PushContext
from federation.controlplane.generate.proxy_config import generate, own_workload_view
from federation.controlplane.metrics import ControlPlaneMetrics, push_latency_s
from federation.controlplane.registry import RegistryState, ServiceRegistry
from federation.controlplane.snapshot import Snapshot, SnapshotCache
from federation.controlplane.trace import PropagationTracker
from federation.errors import InconsistentSnapshotError, ProxyBuildError
from federation.sync.node import ProxyDescription, identity_problem

log = logging.getLogger(__name__)


def proxy_class(proxy: ProxyDescription, state: RegistryState) -> tuple[object, ...]:
    """Everything of a proxy that its resources generated from ``state`` depend on: not its
    node id, nor its WorkloadEntry's name (its content instead: :func:`own_workload_view`),
    nor its files' absolute paths when they are inside its Envoy's working directory
    (:meth:`ProxyDescription.envoy_path`). So the replicas of one workload -- same labels,
    ports, service account, locality, each with its own directory -- are one class, built
    once per change: 16 replicas cost one build, not 16. Pure."""
    return (
        proxy.role,
        proxy.namespace,
        own_workload_view(state, proxy),
        proxy.service_account,
        proxy.locality,
        proxy.outbound_port,
        proxy.listen,
        proxy.identity_dir.startswith("/"),
        proxy.envoy_path(proxy.identity_dir),
        proxy.traffic_log.startswith("/"),
        proxy.envoy_path(proxy.traffic_log),
        proxy.upstreams,
        proxy.capture,
        proxy.outbound_traffic_policy,
        proxy.zone_local,
    )


def _recent(
    memo: dict[tuple[object, ...], tuple[int, Snapshot]], version: int
) -> dict[tuple[object, ...], tuple[int, Snapshot]]:
    """``memo`` without the classes last built before ``version``: classes of proxies that
    left, or of a workload's old content. Dropping a live one costs nothing but its use as
    the ``previous`` of its next build, which the proxy's published snapshot also is. Pure."""
    return {key: hit for key, hit in memo.items() if hit[0] >= version}


#: Snapshots published to a gateway and not ACKed yet that are remembered (the oldest go).
GATEWAY_SERIALS_KEPT = 64


class SnapshotBuilder:
    """Builds snapshots for proxies (see the module docstring)."""

    def __init__(
        self,
        mesh: MeshContext,
        registry: ServiceRegistry,
        cache: SnapshotCache,
        metrics: ControlPlaneMetrics | None = None,
        tracker: PropagationTracker | None = None,
    ) -> None:
        self.mesh = mesh
        self.metrics = metrics or ControlPlaneMetrics()
        self.tracker = tracker
        self._registry = registry
        self._cache = cache
        self._proxies: dict[str, ProxyDescription] = {}
        # proxies of one class (proxy_class: same role, workload content, identity, locality,
        # ports) get identical resources: build once per class per registry version and
        # share the immutable snapshot.
        self._memo: dict[tuple[object, ...], tuple[int, Snapshot]] = {}
        # (class, version) -> the build of it under way
        self._inflight: dict[tuple[tuple[object, ...], int], asyncio.Task[Snapshot]] = {}
        # the push context of the newest state proxies were judged against (see _advance)
        self._context: PushContext | None = None
        # proxies whose view includes a change since their snapshot was built
        self._stale: set[str] = set()
        self.skipped = 0  # proxies a change did not concern: not rebuilt, not woken
        self._dirty = asyncio.Event()
        # node id -> registry version its current snapshot was built from
        self._built: dict[str, int] = {}
        # east-west gateways: the registry version each published snapshot (by serial) stands
        # for, the serial each holds (every type ACKed), and the newest version it holds
        self._gateway_serials: dict[str, dict[int, int]] = {}
        self._gateway_acked: dict[str, int] = {}
        self._gateway_holds: dict[str, int] = {}
        #: called when a gateway holds a new snapshot (the export gate waits for that)
        self.on_gateway_synced: Callable[[], None] = lambda: None
        # called when a proxy's stream opens (its first build and push follow): the paced
        # garbage collector's activity (federation.gc_pacing), so that a full collection does
        # not stop the event loop in the middle of proxies' initial pushes
        self.on_stream_opened: Callable[[], None] = lambda: None
        self.ready = asyncio.Event()
        self.builds = 0
        self.last_build_ms = 0.0
        # registry version -> time.monotonic() it appeared (push latency), oldest pruned
        self._changed_at: dict[int, float] = {}
        self._worker: asyncio.Task[None] | None = None
        # node id -> open streams (a proxy is forgotten when its last one closes)
        self._streams: dict[str, int] = {}
        self.failures = 0
        registry.subscribe(self._on_change)

    def proxies(self) -> dict[str, ProxyDescription]:
        """Known proxies by node id."""
        return dict(self._proxies)

    async def on_stream_open(self, node: base_pb2.Node, peer: str | None) -> str:
        """Check the proxy's identity, register it and publish its first snapshot (waits
        until state is loaded).

        The proxy is registered (rebuilt on every change) only once its first snapshot was
        built and published: a node that cannot be built is refused and leaves no trace.

        Raises:
            ValueError: the node's metadata is unusable (nothing registered).
            PermissionError: the node claims another identity than its certificate's.
            ProxyBuildError: its configuration could not be generated (nothing registered;
                logged with the cause).
        """
        proxy = ProxyDescription.from_node(node)
        problem = identity_problem(proxy, peer, self.mesh.trust_domain)
        if problem is not None:
            raise PermissionError(problem)
        self.on_stream_opened()
        await self.ready.wait()
        try:
            await self._build(proxy)
        except asyncio.CancelledError:  # the client left during its first build
            if proxy.node_id not in self._streams:
                self._built.pop(proxy.node_id, None)
                self._forget_gateway(proxy.node_id)
                self._cache.forget(proxy.node_id)
            raise
        except Exception as err:
            self._failed(proxy, err)
            raise ProxyBuildError(
                f"node {proxy.node_id}: its configuration could not be generated ({err})"
            ) from err
        self._proxies[proxy.node_id] = proxy
        self._streams[proxy.node_id] = self._streams.get(proxy.node_id, 0) + 1
        return proxy.node_id

    def _failed(self, proxy: ProxyDescription, err: Exception) -> None:
        self.failures += 1
        self.metrics.build_failures.inc()
        log.error(
            "snapshot build failed for %s (%s): %s; it keeps its last configuration",
            proxy.node_id,
            proxy.role,
            err,
            exc_info=not isinstance(err, ValueError),
        )

    def on_stream_closed(self, node_id: str) -> None:
        """Forget the proxy once its last stream has closed: a client can open streams under
        any number of node ids, and a proxy kept after it left would be rebuilt on every
        change forever. A proxy that reconnects is built again on its first request (cheap:
        proxies of one class share a memoised snapshot)."""
        left = self._streams.get(node_id, 0) - 1
        if left > 0:
            self._streams[node_id] = left
            return
        self._streams.pop(node_id, None)
        self._proxies.pop(node_id, None)
        self._built.pop(node_id, None)
        self._forget_gateway(node_id)
        self._stale.discard(node_id)
        self._cache.forget(node_id)

    def synced(self, node_id: str, serial: int) -> None:
        """``node_id``'s stream holds the snapshot ``serial`` (the ADS server's
        :data:`~federation.controlplane.ads.Synced`)."""
        serials = self._gateway_serials.get(node_id)
        if serials is None:
            return  # not a gateway
        self._gateway_acked[node_id] = serial
        version = serials.pop(serial, None)
        for older in [s for s in serials if s < serial]:
            del serials[older]
        if version is not None and version > self._gateway_holds.get(node_id, -1):
            self._gateway_holds[node_id] = version
        self.on_gateway_synced()

    def _gateway_at(self, node_id: str, snapshot: Snapshot, version: int) -> None:
        """A gateway's current snapshot stands for registry ``version`` (built from it, or
        carried forward to it unchanged): held already, the gateway holds ``version``;
        else it will once it ACKs that snapshot."""
        serials = self._gateway_serials.setdefault(node_id, {})
        if self._gateway_acked.get(node_id) == snapshot.serial:
            if version > self._gateway_holds.get(node_id, -1):
                self._gateway_holds[node_id] = version
        else:
            serials[snapshot.serial] = max(version, serials.get(snapshot.serial, -1))
            while len(serials) > GATEWAY_SERIALS_KEPT:  # a gateway that ACKs nothing
                del serials[min(serials)]

    def _forget_gateway(self, node_id: str) -> None:
        for gateways in (self._gateway_serials, self._gateway_acked, self._gateway_holds):
            gateways.pop(node_id, None)

    def gateways_hold(self, version: int) -> bool | None:
        """Whether every east-west gateway connected here holds (every type ACKed) a
        snapshot that stands for registry ``version`` or a later one -- whatever it has been
        sent since; None when none is connected
        (:mod:`federation.controlplane.link.export_gate`)."""
        gateways = [n for n, p in self._proxies.items() if p.role == "gateway"]
        if not gateways:
            return None
        return all(self._gateway_holds.get(n, -1) >= version for n in gateways)

    def _on_change(self, state: RegistryState) -> None:
        self._changed_at[state.version] = time.monotonic()
        # kept until every proxy built past it; with no proxy, none but this one is needed
        oldest = min(self._built.values()) if self._built else state.version - 1
        for version in [v for v in self._changed_at if v <= oldest]:
            del self._changed_at[version]
        self.request_rebuild()

    def mark_stale(self, node_ids: list[str] | None = None) -> None:
        """Rebuild these proxies (every known one when None) on the worker's next round and
        publish their snapshots again, whether or not the registry changed."""
        self._stale |= set(self._proxies if node_ids is None else node_ids) & set(self._proxies)
        self._dirty.set()

    def request_rebuild(self) -> None:
        """Wake the worker: it makes the new state's push context and rebuilds the proxies
        that see the change."""
        self._dirty.set()

    def _advance(self) -> PushContext:
        """The push context of the registry's current state, made if the state is new; a new
        one marks stale every known proxy that sees its change and carries the others'
        snapshots forward to the new version unbuilt."""
        state = self._registry.state
        context = self._context
        if context is not None and context.state is state:
            return context
        if context is not None and len(self._memo) > 2 * len(self._proxies) + 16:
            self._memo = _recent(self._memo, context.state.version)
        context = PushContext(self.mesh, state, previous=context)
        self._context = context
        for node_id, proxy in self._proxies.items():
            if node_id in self._stale:
                continue
            if sees(proxy, context.change, context.before, context.inputs):
                self._stale.add(node_id)
            else:
                self._built[node_id] = state.version
                self.skipped += 1
                held = self._cache.get_snapshot(node_id)
                if proxy.role == "gateway" and held is not None:
                    self._gateway_at(node_id, held, state.version)
        return context

    async def _build(self, proxy: ProxyDescription) -> None:
        context = self._advance()
        state = context.state
        snapshot = await self._class_snapshot(proxy, context)
        self._stale.discard(proxy.node_id)
        held = self._cache.get_snapshot(proxy.node_id)
        new = held is not None and held is not snapshot  # a change, not a first connect
        if proxy.role == "gateway":  # before it is published: its ACK may come at once
            self._gateway_at(proxy.node_id, snapshot, state.version)
        try:
            await self._cache.set_snapshot(proxy.node_id, snapshot)
        except InconsistentSnapshotError as err:
            log.error("not publishing: %s", err)
        else:
            if new and self.tracker is not None:
                self.tracker.published(proxy.node_id, proxy.role, state.version, snapshot.serial)
            before = self._built.get(proxy.node_id)
            if before is not None and before < state.version:
                latency = push_latency_s(self._changed_at, before, time.monotonic())
                if latency is not None:
                    self.metrics.push_latency.observe(latency)
        self._built[proxy.node_id] = state.version

    async def _class_snapshot(self, proxy: ProxyDescription, context: PushContext) -> Snapshot:
        """The snapshot of ``proxy``'s class at ``context``'s version: memoised, or being
        built for another proxy of the class (a thousand streams that open at once wait for
        one build, not a thousand), or built now. The build is a task of its own: a stream
        that leaves while waiting does not cancel it for the others."""
        key, version = proxy_class(proxy, context.state), context.state.version
        hit = self._memo.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        task = self._inflight.get((key, version))
        if task is None:
            previous = hit[1] if hit is not None else self._cache.get_snapshot(proxy.node_id)
            task = asyncio.ensure_future(self._build_class(key, proxy, context, previous))
            self._inflight[(key, version)] = task
            task.add_done_callback(lambda t: self._build_done(t, (key, version)))
        return await asyncio.shield(task)

    def _build_done(
        self, task: asyncio.Task[Snapshot], slot: tuple[tuple[object, ...], int]
    ) -> None:
        self._inflight.pop(slot, None)
        if not task.cancelled():
            task.exception()  # its waiters got it; with none left, it is not "never retrieved"

    async def _build_class(
        self,
        key: tuple[object, ...],
        proxy: ProxyDescription,
        context: PushContext,
        previous: Snapshot | None,
    ) -> Snapshot:
        computed = context.computed
        snapshot = await asyncio.to_thread(
            lambda: Snapshot.build(generate(self.mesh, context.state, proxy, context), previous)
        )
        if previous is not None and previous.versions == snapshot.versions:
            snapshot = previous  # same content: nothing to send, nobody to wake
        self._memo[key] = (context.state.version, snapshot)
        self.metrics.builds.inc()
        self.metrics.decisions.inc(context.computed - computed)
        return snapshot

    async def rebuild_all(self, *, yield_to_newer: bool = False) -> None:
        """Rebuild every known proxy's snapshot now, gateways first, then stalest first
        (see the module docstring). With ``yield_to_newer`` (the worker), stop as soon as
        the registry changed again: the worker starts over with the newer state."""
        started = time.perf_counter()
        self._advance()
        proxies = sorted(
            (self._proxies[n] for n in self._stale if n in self._proxies),
            key=lambda p: (p.role != "gateway", self._built.get(p.node_id, -1), p.node_id),
        )
        for proxy in proxies:
            if self._proxies.get(proxy.node_id) is not proxy:
                continue  # it left (or reconnected) since the rebuild began
            try:
                await self._build(proxy)
            except Exception as err:  # one proxy never stops the others' configuration
                self._failed(proxy, err)
                self._stale.discard(proxy.node_id)
                self._built[proxy.node_id] = self._registry.state.version
            if proxy.node_id not in self._proxies:  # it left while being built
                self._built.pop(proxy.node_id, None)
                self._cache.forget(proxy.node_id)
            if yield_to_newer and self._dirty.is_set():
                break
        self.builds += 1
        self.last_build_ms = (time.perf_counter() - started) * 1000

    async def run(self) -> None:
        """The rebuild worker; runs until cancelled. An unexpected error in a rebuild is
        logged and the worker waits for the next change (a change marks everything stale)."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.rebuild_all(yield_to_newer=True)
            except Exception:
                log.exception("snapshot rebuild failed; waiting for the next change")

    def start(self) -> asyncio.Task[None]:
        """Start the rebuild worker (:meth:`run`) as a task of the running loop and return it;
        :meth:`health_problem` watches it."""
        self._worker = asyncio.create_task(self.run(), name="snapshot-builder")
        return self._worker

    def health_problem(self) -> str | None:
        """Why configuration changes no longer reach proxies, or None: the worker started
        by :meth:`start` has ended (cancelled or failed)."""
        worker = self._worker
        if worker is None or not worker.done():
            return None
        if worker.cancelled():
            return "the snapshot builder was cancelled: configuration changes reach no proxy"
        return (
            f"the snapshot builder stopped ({worker.exception()!r}):"
            " configuration changes reach no proxy"
        )
