"""A controller's role among replicas, as the hub and the API see it: the
:class:`Replica` protocol and :class:`SoleReplica`, the only controller (SQLite). The
replicas sharing PostgreSQL are :class:`federation.controller.replicas.PostgresReplica`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from federation.sync.messages import RoutingPlan
from federation.traffic import TrafficTable


class Replica(Protocol):
    """What the rest of the controller asks of its place among replicas."""

    name: str

    @property
    def is_leader(self) -> bool: ...
    @property
    def fence(self) -> tuple[str, int] | None: ...
    @property
    def healthy(self) -> bool: ...
    def sync_addresses(self) -> list[str]: ...
    def describe(self) -> dict[str, Any]: ...
    def share_traffic(self, cluster: str, table: TrafficTable) -> None: ...
    def shared_traffic(
        self, skip: frozenset[str] = frozenset()
    ) -> list[tuple[str, TrafficTable, float]]: ...
    def publish_plans(self, plans: dict[str, list[RoutingPlan]]) -> None: ...
    def shared_plans(self) -> dict[str, list[RoutingPlan]] | None: ...


class SoleReplica:
    """The only controller (SQLite): always the leader, always healthy, writes unfenced."""

    def __init__(
        self, name: str, sync_address: Callable[[], str], api_url: Callable[[], str] = str
    ) -> None:
        self.name = name
        self._sync_address = sync_address
        self._api_url = api_url

    is_leader = True
    fence = None
    healthy = True

    def sync_addresses(self) -> list[str]:
        """Its own sync address."""
        return [self._sync_address()]

    def describe(self) -> dict[str, Any]:
        """``GET /v1/replicas``: this one replica."""
        return {
            "replica": self.name,
            "leader": self.name,
            "fencing": None,
            "replicas": [
                {
                    "name": self.name,
                    "apiUrl": self._api_url(),
                    "syncAddress": self._sync_address(),
                    "live": True,
                }
            ],
        }

    def share_traffic(self, cluster: str, table: TrafficTable) -> None:
        """Nobody to share with."""

    def shared_traffic(
        self, skip: frozenset[str] = frozenset()
    ) -> list[tuple[str, TrafficTable, float]]:
        """Nothing from others."""
        return []

    def publish_plans(self, plans: dict[str, list[RoutingPlan]]) -> None:
        """Nobody to publish to."""

    def shared_plans(self) -> dict[str, list[RoutingPlan]] | None:
        """None: the planner's own plans are the ones in force."""
        return None
