"""The controller's open sync streams: one queue per connected control plane, and what each
was last sent.

A stream's queue carries :class:`~federation.sync.messages.ControllerUpdate` messages (each
with the next version) and, to end it, :class:`Closed`. A control plane's view goes out
only after its first report on the stream (:meth:`SyncStreams.mark_reported`), and an
update equal to the one it was last sent is not sent again (:meth:`SyncStreams.send`).
No I/O; the gRPC servicer (:mod:`federation.controller.sync`) drains the queues.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from federation.sync.messages import ChangeTrace, ControllerUpdate


@dataclass(frozen=True, slots=True)
class Closed:
    """Put on a stream's queue to end it: the cluster was removed (``retryable`` False: the
    control plane stops syncing), or this replica lost its database (True: the control plane
    moves to another replica)."""

    reason: str
    retryable: bool = False


Outbound = ControllerUpdate | Closed


class SyncStreams:
    """cluster -> its open stream's queue, the update it was last sent, whether it reported."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Outbound]] = {}
        self._sent: dict[str, ControllerUpdate] = {}
        self._reported: set[str] = set()
        self.version = 0

    def __len__(self) -> int:
        return len(self._queues)

    def connected(self) -> set[str]:
        """Clusters with an open stream."""
        return set(self._queues)

    def attach(self, cluster: str) -> asyncio.Queue[Outbound]:
        """A stream opened; a second one for the same cluster replaces the first (which is
        closed). Nothing is sent on it before :meth:`mark_reported`."""
        old = self._queues.get(cluster)
        if old is not None:
            old.put_nowait(Closed("replaced by a newer stream from the same cluster"))
        queue: asyncio.Queue[Outbound] = asyncio.Queue()
        self._queues[cluster] = queue
        self._sent.pop(cluster, None)
        self._reported.discard(cluster)
        return queue

    def detach(self, cluster: str, queue: asyncio.Queue[Outbound]) -> None:
        """A stream closed (a replaced stream's late detach changes nothing)."""
        if self._queues.get(cluster) is queue:
            del self._queues[cluster]
            self._sent.pop(cluster, None)
            self._reported.discard(cluster)

    def mark_reported(self, cluster: str) -> bool:
        """A report arrived from ``cluster``: True when it is the first on its open stream
        (which then gets its whole view)."""
        first = cluster in self._queues and cluster not in self._reported
        if first:
            self._reported.add(cluster)
        return first

    def ready(self) -> list[str]:
        """Clusters whose stream is open and has reported: those updates go to."""
        return [c for c in self._queues if c in self._reported]

    def send(
        self, cluster: str, view: ControllerUpdate, trace: ChangeTrace | None = None
    ) -> int | None:
        """Queue ``view`` to ``cluster`` with the next version (and ``trace``, the change
        that caused it), unless it equals what the stream was last sent; the version sent,
        or None."""
        queue = self._queues.get(cluster)
        if queue is None or self._sent.get(cluster) == view:
            return None
        self._sent[cluster] = view
        self.version += 1
        queue.put_nowait(replace(view, version=self.version, trace=trace))
        return self.version

    def close(self, cluster: str, reason: str, *, retryable: bool = False) -> None:
        """End ``cluster``'s stream with ``reason``."""
        queue = self._queues.get(cluster)
        if queue is not None:
            queue.put_nowait(Closed(reason, retryable))

    def close_all(self, reason: str, *, retryable: bool) -> None:
        """End every stream (this replica lost its database: ``retryable``)."""
        for queue in self._queues.values():
            queue.put_nowait(Closed(reason, retryable))
