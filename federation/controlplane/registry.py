"""The service registry of one cluster: workloads and their health, versioned and immutable.

``RegistryState`` is an immutable view handed to the pure generators; ``ServiceRegistry`` owns
the current state, replaces it atomically on every change and tells subscribers.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from federation.model.workload import WorkloadEntry

log = logging.getLogger(__name__)

WorkloadKey = tuple[str, str]  # (namespace, name)


class Health(enum.Enum):
    """Endpoint health as probed by the control plane (Envoy's ``HealthStatus`` names)."""

    UNKNOWN = "UNKNOWN"  # not probed yet: treated as healthy, as Envoy does
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"

    @property
    def serving(self) -> bool:
        """True when traffic may go to the endpoint."""
        return self is not Health.UNHEALTHY


@dataclass(frozen=True, slots=True)
class RegistryState:
    """A consistent view of the registry at one version.

    Attributes:
        version: increases by one on every change.
        workloads: by ``(namespace, name)``.
        health: by ``(namespace, name)``; missing means UNKNOWN.
    """

    version: int = 0
    workloads: Mapping[WorkloadKey, WorkloadEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    health: Mapping[WorkloadKey, Health] = field(default_factory=lambda: MappingProxyType({}))

    def health_of(self, key: WorkloadKey) -> Health:
        """The health of a workload (UNKNOWN when never probed)."""
        return self.health.get(key, Health.UNKNOWN)

    def by_service(self, namespace: str, service: str) -> list[WorkloadEntry]:
        """Workloads of one service, sorted by name."""
        return sorted(
            (
                w
                for w in self.workloads.values()
                if w.metadata.namespace == namespace and w.spec.service == service
            ),
            key=lambda w: w.metadata.name,
        )

    def services(self) -> list[tuple[str, str]]:
        """Every ``(namespace, service)`` with at least one workload, sorted."""
        return sorted({(w.metadata.namespace, w.spec.service) for w in self.workloads.values()})


Listener = Callable[[RegistryState], None]


class ServiceRegistry:
    """Holds the current :class:`RegistryState`; every mutation publishes a new one."""

    def __init__(self, workloads: Iterable[WorkloadEntry] = ()) -> None:
        initial = {w.key: w for w in workloads}
        self._state = RegistryState(0, MappingProxyType(initial), MappingProxyType({}))
        self._listeners: list[Listener] = []

    @property
    def state(self) -> RegistryState:
        """The current state."""
        return self._state

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with each new state (synchronously, after it is installed)."""
        self._listeners.append(listener)

    def _publish(self, state: RegistryState) -> None:
        self._state = state
        for listener in list(self._listeners):
            listener(state)

    def apply(self, entries: Iterable[WorkloadEntry]) -> list[WorkloadKey]:
        """Create or replace workloads (all in one new version); returns the keys changed."""
        entries = list(entries)
        workloads = dict(self._state.workloads)
        changed = [e.key for e in entries if workloads.get(e.key) != e]
        if not changed:
            return []
        for entry in entries:
            workloads[entry.key] = entry
        health = {k: v for k, v in self._state.health.items() if k not in changed}
        self._publish(
            replace(
                self._state,
                version=self._state.version + 1,
                workloads=MappingProxyType(workloads),
                health=MappingProxyType(health),
            )
        )
        log.info(
            "registry v%d: applied %s", self._state.version, ", ".join("/".join(k) for k in changed)
        )
        return changed

    def delete(self, keys: Iterable[WorkloadKey]) -> list[WorkloadKey]:
        """Remove workloads; returns the keys that existed."""
        workloads = dict(self._state.workloads)
        removed = [k for k in keys if workloads.pop(k, None) is not None]
        if not removed:
            return []
        health = {k: v for k, v in self._state.health.items() if k not in removed}
        self._publish(
            replace(
                self._state,
                version=self._state.version + 1,
                workloads=MappingProxyType(workloads),
                health=MappingProxyType(health),
            )
        )
        log.info(
            "registry v%d: deleted %s", self._state.version, ", ".join("/".join(k) for k in removed)
        )
        return removed

    def set_health(self, key: WorkloadKey, health: Health) -> bool:
        """Record a probe result; publishes only when the health actually changed."""
        if key not in self._state.workloads or self._state.health_of(key) is health:
            return False
        updated = dict(self._state.health)
        updated[key] = health
        self._publish(
            replace(self._state, version=self._state.version + 1, health=MappingProxyType(updated))
        )
        log.info("workload %s is %s", "/".join(key), health.value)
        return True
