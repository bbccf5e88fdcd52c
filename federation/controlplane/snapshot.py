"""Immutable, versioned xDS snapshots and the cache that holds one per proxy.

As in go-control-plane ``pkg/cache/v3``: a :class:`Snapshot` is a consistent set of resources
for one proxy, with a version per type (here a content hash, so an unchanged type keeps its
version and is not pushed again) and per resource (for delta xDS, and for the changed-only
EDS/RDS responses of SotW streams). A snapshot is shared by every proxy of one class and by
every stream of it, so what streams ask of it is computed once and kept on it: the wire bytes
of a response's resources (:meth:`Snapshot.response_body`), the names that changed since an
earlier snapshot (:meth:`Snapshot.changed_since`, kept with the earlier snapshot's versions,
never with the snapshot: no snapshot keeps another alive). Building from the previous
snapshot reuses the hash of every resource object it shares with it
(:meth:`Snapshot.build` ``previous``): a change to one service of a thousand hashes that
service's resources only. :meth:`Snapshot.problems` checks consistency -- every EDS name a
cluster uses, every RDS name a listener uses, every cluster a route points at, every SDS
secret referenced, exists -- and :meth:`SnapshotCache.set_snapshot` refuses an inconsistent
snapshot (Envoy would accept a route to a missing cluster and answer 503).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from federation.controlplane import resource
from federation.controlplane.generate.common import pack
from federation.errors import InconsistentSnapshotError

#: numbers :attr:`Snapshot.serial`
_serials = itertools.count(1)
_NO_VERSIONS: Mapping[str, str] = MappingProxyType({})


def _hash(data: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in data:
        digest.update(len(chunk).to_bytes(8, "big"))
        digest.update(chunk)
    return digest.hexdigest()[:16]


def _patched(
    given: list[Message], earlier: object, previous: Snapshot, type_url: str
) -> tuple[Mapping[str, Message], Mapping[str, str], str] | None:
    """``(resources, resource versions, version)`` of ``type_url`` from ``previous``, when
    ``given`` is ``previous``'s build input (``earlier``) with some objects replaced by ones
    of the same name: only those are named and hashed again (an endpoint change: 4 of 4,000
    assignments), the order and the rest are ``previous``'s. None otherwise."""
    if not isinstance(earlier, list) or len(earlier) != len(given):
        return None
    before = previous.resources.get(type_url, {})
    known = previous.resource_versions.get(type_url, {})
    replaced: dict[str, Message] = {}
    for new, old in zip(given, earlier, strict=True):
        if new is not old:
            name = _name(new)
            if name != _name(old) or name in replaced:
                return None  # renamed, moved or doubled: the long way
            replaced[name] = new
    if not replaced:
        return before, known, previous.versions[type_url]
    items, per = dict(before), dict(known)
    for name, message in replaced.items():
        items[name] = message
        per[name] = _hash([message.SerializeToString(deterministic=True)])
    if all(per[n] == known.get(n) for n in replaced):
        version = previous.versions[type_url]
    else:
        version = _hash(f"{n}={v}".encode() for n, v in sorted(per.items()))
    return MappingProxyType(items), MappingProxyType(per), version


def _name(message: Message) -> str:
    name = getattr(message, "name", "") or getattr(message, "cluster_name", "")
    return str(name)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Resources for one proxy, by type URL then name, with content-hash versions.

    Build with :meth:`build`. ``versions[type_url]`` changes iff that type's resources
    changed; ``resource_versions[type_url][name]`` likewise per resource. ``serial``: a
    number no other snapshot of this process has, for who must tell snapshots apart without
    holding them (a propagation trace, a stream's record of what its proxy holds).

    A snapshot never refers to another: what it derives from an earlier one is kept with
    that one's per-resource versions of the type, not with the snapshot (when each kept the
    one before, every snapshot since the control plane started stayed in memory).
    """

    resources: Mapping[str, Mapping[str, Message]]
    versions: Mapping[str, str]
    resource_versions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # what streams derive from this (immutable) snapshot, computed once: see the methods
    _derived: dict[tuple[object, ...], object] = field(
        default_factory=dict, repr=False, compare=False
    )
    serial: int = field(default_factory=lambda: next(_serials), compare=False)

    @classmethod
    def build(
        cls, by_type: Mapping[str, Iterable[Message]], previous: Snapshot | None = None
    ) -> Snapshot:
        """Index resources by name and compute versions (deterministic serialization).

        ``previous``: an earlier snapshot whose resource objects this one may share (the
        generators reuse a resource object while its inputs are unchanged); a shared object's
        version is taken from it instead of serializing and hashing it again; a type given
        as ``previous``'s build input with some objects replaced by ones of the same name is
        patched (:func:`_patched`).
        Resources are immutable once in a snapshot, so the same object has the same
        content.
        """
        resources: dict[str, Mapping[str, Message]] = {}
        versions: dict[str, str] = {}
        resource_versions: dict[str, Mapping[str, str]] = {}
        inputs: dict[tuple[object, ...], object] = {}
        for type_url in resource.PUSH_ORDER:
            given = list(by_type.get(type_url, []))
            inputs[("input", type_url)] = given
            earlier = previous._derived.get(("input", type_url)) if previous is not None else None
            patched = _patched(given, earlier, previous, type_url) if previous is not None else None
            if patched is not None:
                resources[type_url], resource_versions[type_url], versions[type_url] = patched
                continue
            items = {_name(m): m for m in given}
            before = previous.resources.get(type_url, {}) if previous is not None else {}
            known = previous.resource_versions.get(type_url, {}) if previous is not None else {}
            per = {
                n: (
                    known[n]
                    if before.get(n) is m
                    else _hash([m.SerializeToString(deterministic=True)])
                )
                for n, m in items.items()
            }
            resources[type_url] = MappingProxyType(dict(sorted(items.items())))
            resource_versions[type_url] = MappingProxyType(per)
            if previous is not None and known == per:
                versions[type_url] = previous.versions[type_url]
            else:
                versions[type_url] = _hash(f"{n}={v}".encode() for n, v in sorted(per.items()))
        return cls(
            MappingProxyType(resources),
            MappingProxyType(versions),
            MappingProxyType(resource_versions),
            inputs,
        )

    def names(self, type_url: str) -> frozenset[str]:
        """The names of this snapshot's resources of ``type_url`` (one shared frozenset)."""
        key = ("names", type_url)
        found = self._derived.get(key)
        if found is None:
            found = self._derived[key] = frozenset(self.resources.get(type_url, {}))
        return found  # type: ignore[return-value]

    def versions_of(self, type_url: str) -> Mapping[str, str]:
        """``resource_versions[type_url]`` (name -> version; one shared empty mapping for a
        type it lacks). Snapshots share it while the type does not change, so a stream keeps
        it to compare later snapshots with (:meth:`changed_since`) at no cost."""
        return self.resource_versions.get(type_url, _NO_VERSIONS)

    def _per_pair(
        self,
        what: str,
        type_url: str,
        then: Mapping[str, str],
        compute: Callable[[], frozenset[str]],
    ) -> frozenset[str]:
        """``compute()``, kept for this snapshot, ``what``, type and ``then`` (an earlier
        snapshot's :meth:`versions_of`, held: never the earlier snapshot itself)."""
        key = (what, type_url, id(then))
        found = self._derived.get(key)
        if found is None or found[0] is not then:  # type: ignore[index]
            found = self._derived[key] = (then, compute())
        return found[1]  # type: ignore[index,no-any-return]

    def changed_since(self, type_url: str, then: Mapping[str, str]) -> frozenset[str]:
        """Names of ``type_url`` resources whose version differs from ``then``'s (an earlier
        snapshot's :meth:`versions_of` the type) or that ``then`` lacks (removed ones are not
        included). Computed once per pair."""
        now = self.versions_of(type_url)
        return self._per_pair(
            "changed",
            type_url,
            then,
            lambda: frozenset(n for n, v in now.items() if then.get(n) != v),
        )

    def removed_since(self, type_url: str, then: Mapping[str, str]) -> frozenset[str]:
        """Names in ``then`` (an earlier snapshot's :meth:`versions_of` the type) that this
        snapshot lacks. Computed once per pair."""
        names = self.names(type_url)
        return self._per_pair(
            "removed", type_url, then, lambda: frozenset(n for n in then if n not in names)
        )

    def _remember(self, key: tuple[object, ...], body: bytes) -> bytes:
        if len(self._derived) > 64:  # name sets of streams come and go
            oldest = next((k for k in self._derived if k[0] in ("body", "delta")), None)
            if oldest is not None:
                del self._derived[oldest]
        self._derived[key] = body
        return body

    def delta_body(self, type_url: str, names: frozenset[str]) -> bytes:
        """The wire bytes of a ``DeltaDiscoveryResponse`` holding the ``type_url`` resources
        named (each a ``Resource`` with its name and version), in name order, and nothing
        else: a stream appends its own ``system_version_info``, ``type_url``, ``nonce`` and
        ``removed_resources``. Serialized once per snapshot, type and name set, as
        :meth:`response_body` is for SotW (issue 37: a delta stream built a ``Resource``
        message per resource for itself, and a thousand streams' initial push did not end
        in ten minutes)."""
        key = ("delta", type_url, names)
        found = self._derived.get(key)
        if found is not None:
            return found  # type: ignore[return-value]
        versions = self.resource_versions.get(type_url, {})
        body = discovery_pb2.DeltaDiscoveryResponse(
            resources=[
                discovery_pb2.Resource(
                    name=n, version=versions[n], resource=self.packed(type_url, n)
                )
                for n in sorted(names)
            ]
        ).SerializeToString()
        return self._remember(key, body)

    def response_body(self, type_url: str, names: frozenset[str] | None) -> bytes:
        """The wire bytes of a ``DiscoveryResponse`` holding the ``type_url`` resources
        (all of them when ``names`` is None, else those named) and nothing else: a stream
        appends its own ``version_info``, ``type_url`` and ``nonce`` fields (protobuf
        messages concatenate). Serialized once per snapshot, type and name set: a thousand
        streams of one proxy class send the same bytes."""
        key = ("body", type_url, names)
        found = self._derived.get(key)
        if found is None:
            items = self.get(type_url, names)
            found = self._remember(
                key,
                discovery_pb2.DiscoveryResponse(
                    resources=[self.packed(type_url, n) for n in items]
                ).SerializeToString(),
            )
        return found  # type: ignore[return-value]

    def packed(self, type_url: str, name: str) -> any_pb2.Any:
        """One resource wrapped in ``google.protobuf.Any``, packed once per snapshot."""
        key = ("any", type_url)
        table = self._derived.get(key)
        if table is None:
            table = self._derived[key] = {}
        found = table.get(name)  # type: ignore[attr-defined]
        if found is None:
            found = table[name] = pack(self.resources[type_url][name])  # type: ignore[index]
        return found  # type: ignore[no-any-return]

    def get(self, type_url: str, names: Iterable[str] | None = None) -> dict[str, Message]:
        """Resources of a type; all of them when ``names`` is None, else only those named."""
        items = self.resources.get(type_url, {})
        if names is None:
            return dict(items)
        return {n: items[n] for n in names if n in items}

    def problems(self, since: Snapshot | None = None) -> list[str]:
        """Every dangling reference in the snapshot (empty when consistent).

        ``since``: a snapshot known to be consistent (one already published). When this one
        differs from it in EDS contents alone -- the same clusters, listeners, routes and
        secrets, assignments of the same names -- nothing a reference names changed, and
        it is consistent without a look at its thousands of clusters (an endpoint change of
        1,000 services: ~25 ms of unpacking TLS contexts otherwise)."""
        if since is not None and self._refs_as_in(since):
            return []
        problems: list[str] = []
        clusters = self.resources.get(resource.CLUSTER, {})
        eds = self.resources.get(resource.ENDPOINT, {})
        rds = self.resources.get(resource.ROUTE, {})
        sds = self.resources.get(resource.SECRET, {})
        for name, c in clusters.items():
            assert isinstance(c, cluster_pb2.Cluster)
            if c.type == cluster_pb2.Cluster.DiscoveryType.EDS:
                service = c.eds_cluster_config.service_name or name
                if service not in eds:
                    problems.append(f"cluster {name} uses EDS {service}, which is missing")
            problems += [
                f"cluster {name} uses secret {s}, which is missing"
                for s in _cluster_secrets(c)
                if s not in sds
            ]
        for name, listener in self.resources.get(resource.LISTENER, {}).items():
            assert isinstance(listener, listener_pb2.Listener)
            for manager in _managers(listener):
                if manager.HasField("rds") and manager.rds.route_config_name not in rds:
                    problems.append(
                        f"listener {name} uses route {manager.rds.route_config_name},"
                        " which is missing"
                    )
                if manager.HasField("route_config"):
                    problems += _route_problems(manager.route_config, clusters)
            problems += [
                f"listener {name} uses secret {s}, which is missing"
                for s in _listener_secrets(listener)
                if s not in sds
            ]
        for route in rds.values():
            assert isinstance(route, route_pb2.RouteConfiguration)
            problems += _route_problems(route, clusters)
        return problems

    def _refs_as_in(self, other: Snapshot) -> bool:
        """True when every type that holds or resolves a reference has the same content as in
        ``other``, and EDS the same names."""
        same = all(
            self.versions.get(t) == other.versions.get(t)
            for t in (resource.CLUSTER, resource.LISTENER, resource.ROUTE, resource.SECRET)
        )
        return same and self.names(resource.ENDPOINT) == other.names(resource.ENDPOINT)


def _managers(listener: listener_pb2.Listener) -> list[hcm.HttpConnectionManager]:
    anys = [f.typed_config for chain in listener.filter_chains for f in chain.filters]
    if listener.HasField("api_listener"):
        anys.append(listener.api_listener.api_listener)
    result = []
    for packed in anys:
        if packed.Is(hcm.HttpConnectionManager.DESCRIPTOR):
            manager = hcm.HttpConnectionManager()
            packed.Unpack(manager)
            result.append(manager)
    return result


def _tls_secrets(common: tls_pb2.CommonTlsContext) -> list[str]:
    """Names of the secrets a TLS context takes from ADS (file-based ones are not ours)."""
    configs = list(common.tls_certificate_sds_secret_configs)
    if common.HasField("combined_validation_context"):
        configs.append(common.combined_validation_context.validation_context_sds_secret_config)
    return [c.name for c in configs if c.sds_config.HasField("ads")]


def _cluster_secrets(c: cluster_pb2.Cluster) -> list[str]:
    names: list[str] = []
    sockets = [m.transport_socket for m in c.transport_socket_matches]
    if c.HasField("transport_socket"):
        sockets.append(c.transport_socket)
    for socket in sockets:
        if socket.typed_config.Is(tls_pb2.UpstreamTlsContext.DESCRIPTOR):
            ctx = tls_pb2.UpstreamTlsContext()
            socket.typed_config.Unpack(ctx)
            names += _tls_secrets(ctx.common_tls_context)
    return names


def _listener_secrets(listener: listener_pb2.Listener) -> list[str]:
    names: list[str] = []
    for chain in listener.filter_chains:
        if chain.transport_socket.typed_config.Is(tls_pb2.DownstreamTlsContext.DESCRIPTOR):
            ctx = tls_pb2.DownstreamTlsContext()
            chain.transport_socket.typed_config.Unpack(ctx)
            names += _tls_secrets(ctx.common_tls_context)
    return names


def _route_problems(
    route: route_pb2.RouteConfiguration, clusters: Mapping[str, Message]
) -> list[str]:
    problems = []
    for vhost in route.virtual_hosts:
        for r in vhost.routes:
            targets = [r.route.cluster] if r.route.cluster else []
            targets += [w.name for w in r.route.weighted_clusters.clusters]
            problems += [
                f"route {route.name}/{vhost.name} points at cluster {t}, which is missing"
                for t in targets
                if t not in clusters
            ]
    return problems


class SnapshotSource(Protocol):
    """What the ADS server needs from a cache (it never sees the concrete class)."""

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        """The current snapshot for ``node_id``, or None before one is published."""
        ...

    async def wait_for_change(self, node_id: str, current: Snapshot | None) -> Snapshot:
        """Return as soon as the node's snapshot is not ``current`` (immediately if so already)."""
        ...


class SnapshotCache:
    """Holds the current snapshot per node id and wakes the streams of a node whose snapshot
    changed -- only those: a change published for one proxy wakes none of the others."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        # serials of shared class snapshots checked lately: each is checked once (serials,
        # not snapshots: holding 16 snapshots of a large estate is hundreds of MB)
        self._recently_checked: list[int] = []
        self.wakeups = 0  # streams woken (tests count them)

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        """See :class:`SnapshotSource`."""
        return self._snapshots.get(node_id)

    def node_ids(self) -> list[str]:
        """Nodes with a snapshot."""
        return sorted(self._snapshots)

    async def set_snapshot(self, node_id: str, snapshot: Snapshot) -> None:
        """Publish ``snapshot`` for ``node_id`` after checking it is consistent.

        Raises:
            InconsistentSnapshotError: listing the dangling references; nothing is published.
        """
        held = self._snapshots.get(node_id)  # published, so consistent
        if snapshot.serial in self._recently_checked:
            problems: list[str] = []
        else:
            problems = snapshot.problems(since=held)
            if not problems:
                self._recently_checked = [snapshot.serial, *self._recently_checked[:15]]
        if problems:
            raise InconsistentSnapshotError(
                f"snapshot for {node_id} is inconsistent: " + "; ".join(problems[:5])
            )
        if self._snapshots.get(node_id) is snapshot:
            return  # nothing new for its streams
        self._snapshots[node_id] = snapshot
        for waiter in self._waiters.pop(node_id, []):
            if not waiter.done():
                waiter.set_result(None)
                self.wakeups += 1

    def forget(self, node_id: str) -> None:
        """Drop a node's snapshot at once (its proxy left; nobody waits on it)."""
        self._snapshots.pop(node_id, None)

    async def clear(self, node_id: str) -> None:
        """Forget a node's snapshot (when its proxy is gone for good)."""
        self._snapshots.pop(node_id, None)

    async def wait_for_change(self, node_id: str, current: Snapshot | None) -> Snapshot:
        """See :class:`SnapshotSource`."""
        while True:
            snap = self._snapshots.get(node_id)
            if snap is not None and snap is not current:
                return snap
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(node_id, []).append(waiter)
            try:
                await waiter
            finally:
                waiting = self._waiters.get(node_id)
                if waiting is not None and waiter in waiting:
                    waiting.remove(waiter)
                    if not waiting:
                        del self._waiters[node_id]
