"""The push context: what the generators derive from one registry state, computed once.

One :class:`PushContext` per registry version is shared by every proxy built from it --
sidecars, gateways and proxyless gRPC alike -- and generators read from it only. It holds the
services' inputs (:func:`~federation.controlplane.changes.service_inputs`), the
:class:`~federation.controlplane.changes.Change` from the previous version, the service ports,
and a memo of per-service results (outbound decisions per caller locality, the resources a
service contributes to a sidecar, a gateway or a gRPC client) and of whole-proxy results
whose inputs are compared (:meth:`PushContext.carried`). A memo entry of a service the
change does not touch is taken over from the previous context, so a change to one service of
a thousand decides and generates that one service again; the resource objects taken over are
the same objects, whose hashes :meth:`Snapshot.build` reuses too.

Only the previous context is kept (its own predecessor is dropped when a new one is made):
memory is two versions' worth of per-service results at most. Memo entries are written from
the builder's worker threads, by builds of different proxy classes that may overlap; a lost
race only computes the same immutable value twice.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from federation.controlplane.changes import EVERYTHING, Change, ServiceInputs, diff, service_inputs
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.services import ServicePort, ports_of_service
from federation.controlplane.registry import RegistryState, ServiceKey

T = TypeVar("T")
_MISSING = object()


class PushContext:
    """Per-version derived state (see the module docstring).

    Attributes:
        mesh / state: what it was made from.
        inputs: :class:`ServiceInputs` by ``(namespace, service)``, sorted by key.
        change: what differs from the previous context's state (everything for a first one,
            or when the mesh differs).
        ports: every service port, sorted by (namespace, service, port).
        computed: memo entries computed here (not taken over): the work this version cost.
        reused: memo entries taken over from the previous context.
    """

    def __init__(
        self, mesh: MeshContext, state: RegistryState, previous: PushContext | None = None
    ) -> None:
        self.mesh, self.state = mesh, state
        same_mesh = previous is not None and previous.mesh == mesh
        self.inputs: dict[ServiceKey, ServiceInputs] = service_inputs(
            state, (previous.state, previous.inputs) if previous is not None and same_mesh else None
        )
        if previous is not None and same_mesh:
            self.change: Change = diff(previous.state, previous.inputs, state, self.inputs)
            self.before: dict[ServiceKey, ServiceInputs] = previous.inputs
            previous._previous = None  # keep one version back, not the whole history
            self._previous: PushContext | None = previous
        else:
            self.change, self.before, self._previous = EVERYTHING, {}, None
        self._memo: dict[tuple[str, ServiceKey, Hashable], object] = {}
        self._carried: dict[tuple[str, Hashable], tuple[object, object]] = {}
        self.computed = 0
        self.reused = 0
        self.ports: list[ServicePort] = [p for key in self.inputs for p in self.ports_of(key)]

    def ports_of(self, key: ServiceKey) -> list[ServicePort]:
        """The ports of one service (:func:`ports_of_service`)."""
        return self.memo(
            "ports", key, None, lambda: ports_of_service(self.state, *key), exported=True
        )

    def memo(
        self,
        kind: str,
        key: ServiceKey,
        extra: Hashable,
        make: Callable[[], T],
        *,
        exported: bool = False,
    ) -> T:
        """``make()``'s result for service ``key`` (``kind`` and ``extra`` tell results of
        one service apart), computed once per version, or taken over from the previous
        version when the change does not touch ``key`` (``exported``: the result depends
        on the service's export too). ``make`` must read only ``key``'s inputs, the mesh
        and the price tables."""
        slot = (kind, key, extra)
        found = self._memo.get(slot, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        previous = self._previous
        if previous is not None and not self.change.touches(key, exported=exported):
            found = previous._memo.get(slot, _MISSING)
        if found is _MISSING:
            found = make()
            self.computed += 1
        else:
            self.reused += 1
        self._memo[slot] = found
        return found  # type: ignore[return-value]

    def carried(self, kind: str, extra: Hashable, inputs: object, make: Callable[[], T]) -> T:
        """``make()``'s result for a whole-proxy resource (``kind``; ``extra`` tells apart the
        proxies that want different ones), taken over from this version or the previous one
        when ``inputs`` -- everything ``make`` reads -- equal what it was made from there
        (``==``: parts a change left alone are the same objects, so this compares little).
        A sidecar's outbound RouteConfiguration of a thousand virtual hosts is then the
        same object after an endpoint change, and :meth:`Snapshot.build` neither makes nor
        serializes it again. The result must not be modified."""
        slot = (kind, extra)
        for context in (self, self._previous):
            found = context._carried.get(slot) if context is not None else None
            if found is not None and found[0] == inputs:
                self.reused += context is not self
                self._carried[slot] = found
                return found[1]  # type: ignore[return-value]
        value = make()
        self.computed += 1
        self._carried[slot] = (inputs, value)
        return value
