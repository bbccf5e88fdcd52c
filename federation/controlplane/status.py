"""Proxy status: per connected proxy and xDS type, what was sent, what was ACKed, last NACK.

This answers "is my proxy in sync?" (``meshfed proxy-status``), like ``istioctl proxy-status``:

- SYNCED: the proxy ACKed the version last sent, and that is the snapshot's current version.
- STALE: a response is unacknowledged, or the snapshot moved on since the last ACK.
- NACKED: the proxy rejected the version last sent (``error_detail`` kept); it keeps serving
  its last good version.
- NOT SENT: the proxy never subscribed to this type.

A type whose last sent and current version is that of no resources (:data:`EMPTY_VERSION`)
is SYNCED without an ACK: Envoy does not answer a response for a type it no longer
watches (a gateway whose last EDS cluster went away), and it holds nothing of it to be
stale.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from federation.controlplane import resource

SyncState = Literal["SYNCED", "STALE", "NACKED", "NOT SENT"]

#: The version of a type with no resources (a snapshot's content hash of nothing).
EMPTY_VERSION = hashlib.sha256().hexdigest()[:16]


@dataclass
class TypeStatus:
    """One xDS type on one stream."""

    sent_version: str = ""
    sent_nonce: str = ""
    acked_version: str = ""
    nack_version: str = ""
    nack_error: str = ""
    nack_at: float | None = None
    last_nack_nonce: str = ""


@dataclass
class ProxyStatus:
    """One connected (or recently disconnected) proxy."""

    node_id: str
    role: str
    stream: Literal["sotw", "delta"]
    connected_at: float = field(default_factory=time.time)
    connected: bool = True
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def type(self, type_url: str) -> TypeStatus:
        """The status of ``type_url``, created on first use."""
        return self.types.setdefault(type_url, TypeStatus())


def sync_state(status: TypeStatus, current_version: str | None) -> SyncState:
    """Classify one type's status (see the module docstring)."""
    if not status.sent_version and not status.nack_error:
        return "NOT SENT"
    if status.nack_error and status.last_nack_nonce == status.sent_nonce:
        return "NACKED"
    if status.acked_version == status.sent_version and (
        current_version is None or status.acked_version == current_version
    ):
        return "SYNCED"
    if status.sent_version == EMPTY_VERSION and current_version in (None, EMPTY_VERSION):
        return "SYNCED"  # nothing to hold; Envoy does not ACK a type it stopped watching
    return "STALE"


class StatusRegistry:
    """Status of every proxy stream, keyed by node id (the latest stream wins)."""

    def __init__(self) -> None:
        self._proxies: dict[str, ProxyStatus] = {}

    def open(self, node_id: str, role: str, stream: Literal["sotw", "delta"]) -> ProxyStatus:
        """Start tracking a new stream for ``node_id``."""
        status = ProxyStatus(node_id, role, stream)
        self._proxies[node_id] = status
        return status

    def close(self, status: ProxyStatus) -> None:
        """Mark a stream closed (kept for display until the node reconnects)."""
        status.connected = False

    def proxies(self) -> list[ProxyStatus]:
        """Every tracked proxy (connected or recently disconnected)."""
        return list(self._proxies.values())

    def get(self, node_id: str) -> ProxyStatus | None:
        """The status of ``node_id``."""
        return self._proxies.get(node_id)

    def report(self, current_versions: dict[str, dict[str, str]]) -> list[dict[str, object]]:
        """A JSON-ready list: per proxy, per type, versions, state and last NACK.

        Args:
            current_versions: node id -> type URL -> the snapshot's current version.
        """
        rows: list[dict[str, object]] = []
        for node_id in sorted(self._proxies):
            p = self._proxies[node_id]
            current = current_versions.get(node_id, {})
            types = {}
            for type_url in resource.PUSH_ORDER:
                ts = p.types.get(type_url, TypeStatus())
                entry: dict[str, object] = {
                    "state": sync_state(ts, current.get(type_url)),
                    **{k: v for k, v in asdict(ts).items() if k != "last_nack_nonce"},
                    "current_version": current.get(type_url, ""),
                }
                types[resource.short_name(type_url)] = entry
            rows.append(
                {
                    "node_id": node_id,
                    "role": p.role,
                    "stream": p.stream,
                    "connected": p.connected,
                    "connected_at": p.connected_at,
                    "types": types,
                }
            )
        return rows


#: Columns of ``meshfed proxy-status``.
PROXY_STATUS_COLUMNS = (
    "CLUSTER", "NAME", "ROLE", "STREAM", "CDS", "LDS", "EDS", "RDS", "SDS", "LAST NACK",
)  # fmt: skip


def proxy_status_row(cluster: str, proxy: dict[str, Any]) -> list[str]:
    """One proxy of ``GET /v1/proxy-status`` (its JSON) as a row of
    :data:`PROXY_STATUS_COLUMNS`; ``cluster`` names the control plane that answered."""
    types = proxy["types"]
    nacks = [f"{t}: {v['nack_error']}" for t, v in types.items() if v.get("nack_error")]
    name = proxy["node_id"] + ("" if proxy["connected"] else " (disconnected)")
    states = [
        str(types.get(t, {}).get("state", "NOT SENT")) for t in ("CDS", "LDS", "EDS", "RDS", "SDS")
    ]
    return [cluster, name, proxy["role"], proxy["stream"], *states, "; ".join(nacks)[:120]]
