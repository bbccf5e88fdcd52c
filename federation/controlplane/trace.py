"""Propagation traces: where the time of one change goes, hop by hop (issue 37).

A change starts where a control plane's registry changes: the report that carries it to the
controller is stamped (:class:`~federation.sync.messages.ChangeTrace`: origin cluster and
registry version, when it changed, when the report left); the controller stamps when it
received the report and when it queued the updates the change caused; each control plane
that gets such an update records here when it arrived, when its registry changed, when each
proxy whose configuration the change altered got its new snapshot, and when that proxy's
Envoy (or gRPC client) held it: every response of it ACKed -- or of a newer snapshot of
that proxy published before the ACK, whichever is held first (the ADS stream reports each
snapshot it was given once it is held, ``ads._SyncTracking``). Proxies the change did not
concern are not rebuilt (:mod:`federation.controlplane.changes`) and do not appear.

Hops (each observed in ``meshfed_propagation_hop_seconds{hop}``; ``controller`` in the
controller's ``meshfed_controller_propagation_seconds``):

==========  =====================================================================  ========
report      origin registry change -> report sent (origin's clock)                 origin
controller  report received -> update queued (controller's clock)                  control.
deliver     update queued -> update received here (two clocks: skew shows here)    here
apply       update received -> registry changed here                               here
build       registry changed -> a proxy's new snapshot published (per proxy)        here
ack         snapshot published -> that proxy held it, all ACKed (per proxy)        here
total       origin registry change -> each proxy's ACK (two clocks)                here
==========  =====================================================================  ========

The origin records its own proxies too (its trace has no controller hops). The last
:data:`KEEP` traces are kept (``GET /v1/traces``, ``meshfed trace``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from federation.controlplane.metrics import ControlPlaneMetrics
from federation.sync.messages import ChangeTrace

#: Traces kept per control plane.
KEEP = 64
#: A trace takes proxies' snapshots published this long after its registry change (s);
#: later ones belong to later changes.
WINDOW_S = 30.0


#: Snapshots (serials) of a proxy remembered per trace until its ACK: the first one that carries the
#: change and the newest ones published after it (any of them held ends the hop).
CANDIDATES_KEPT = 16


@dataclass(slots=True)
class ProxyHops:
    """One proxy in a trace: when its new snapshot was published, and ACKed (None: not
    yet). ``snapshots``: the :attr:`~federation.controlplane.snapshot.Snapshot.serial` of
    each published snapshot that carries the change, the first one and any published after
    it before the ACK (a stream may skip straight to a newer one); the hop ends when the
    stream reports the first of them held. Serials, not snapshots: 64 traces holding a
    large estate's snapshots would keep hundreds of MB alive."""

    role: str
    published_at: float
    snapshots: list[int] = field(repr=False)
    acked_at: float | None = None


@dataclass(slots=True)
class TraceRecord:
    """One change as this control plane saw it."""

    trace: ChangeTrace
    received_at: float
    applied_at: float
    version: int
    proxies: dict[str, ProxyHops] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The record as ``GET /v1/traces`` shows it: times in Unix s, hops in ms."""
        t = self.trace
        acks = sorted(
            (p.acked_at - t.changed_at) * 1000 for p in self.proxies.values() if p.acked_at
        )
        hops = hop_ms(self)
        return {
            "origin": t.origin_cluster,
            "originVersion": t.origin_version,
            "version": self.version,
            "changedAt": t.changed_at,
            "hopsMs": hops,
            "proxies": {
                node: {
                    "role": p.role,
                    "buildMs": round((p.published_at - self.applied_at) * 1000, 1),
                    "ackMs": (
                        round((p.acked_at - p.published_at) * 1000, 1)
                        if p.acked_at is not None
                        else None
                    ),
                    "totalMs": (
                        round((p.acked_at - t.changed_at) * 1000, 1)
                        if p.acked_at is not None
                        else None
                    ),
                }
                for node, p in sorted(self.proxies.items())
            },
            "acked": len(acks),
            "pending": len(self.proxies) - len(acks),
            "lastAckMs": round(acks[-1], 1) if acks else None,
        }


def hop_ms(record: TraceRecord) -> dict[str, float | None]:
    """The hops of a record that are one number each, in ms (None: not part of this trace,
    e.g. the controller hops of a change at this cluster itself)."""
    t = record.trace

    def span(start: float, end: float) -> float | None:
        return round((end - start) * 1000, 1) if start and end else None

    published = [p.published_at for p in record.proxies.values()]
    return {
        "report": span(t.changed_at, t.reported_at),
        "controller": span(t.received_at, t.sent_at),
        "deliver": span(t.sent_at, record.received_at) if t.sent_at else None,
        "apply": span(record.received_at, record.applied_at) if t.sent_at else None,
        "firstBuild": span(record.applied_at, min(published)) if published else None,
    }


#: The columns of ``meshfed trace`` (:func:`trace_row`).
TRACE_COLUMNS = (
    "CHANGE", "REPORT", "CONTROLLER", "DELIVER", "APPLY", "BUILD", "ACK P50", "ACK MAX", "PROXIES",
)  # fmt: skip


def trace_row(trace: dict[str, Any]) -> tuple[str, ...]:
    """One row of ``meshfed trace`` from a trace as :meth:`TraceRecord.as_json` gives it:
    the change, each hop in ms ("-" where it has none), the ACKs' p50 and max counted from
    the origin's change, and proxies ACKed / altered."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    hops = trace["hopsMs"]
    totals = sorted(p["totalMs"] for p in trace["proxies"].values() if p["totalMs"] is not None)
    return (
        f"{trace['origin']} v{trace['originVersion']}",
        *(ms(hops[h]) for h in ("report", "controller", "deliver", "apply", "firstBuild")),
        ms(totals[len(totals) // 2] if totals else None),
        ms(totals[-1] if totals else None),
        f"{trace['acked']}/{trace['acked'] + trace['pending']}",
    )


class PropagationTracker:
    """Records the traces of changes at this control plane (see the module docstring).
    Runs on the event loop; no I/O."""

    def __init__(
        self, metrics: ControlPlaneMetrics | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.metrics = metrics or ControlPlaneMetrics()
        self.clock = clock
        self._records: deque[TraceRecord] = deque(maxlen=KEEP)

    def _observe(self, hop: str, seconds: float | None) -> None:
        if seconds is not None and seconds >= 0:
            self.metrics.propagation.labels(hop).observe(seconds)

    def reported(self, trace: ChangeTrace) -> None:
        """This control plane sent a report carrying its own change ``trace``: its own
        proxies are traced from the registry change."""
        self._observe("report", trace.reported_at - trace.changed_at)
        self._records.append(
            TraceRecord(trace, trace.changed_at, trace.changed_at, trace.origin_version)
        )

    def applied(self, trace: ChangeTrace, received_at: float, version: int) -> None:
        """An update carrying ``trace`` arrived at ``received_at`` and this control plane's
        registry is at ``version`` since (now)."""
        if any(
            r.trace.origin_cluster == trace.origin_cluster
            and r.trace.origin_version == trace.origin_version
            for r in self._records
        ):
            return  # an update sent again (a resync) carries the trace it had
        now = self.clock()
        self._observe("deliver", received_at - trace.sent_at if trace.sent_at else None)
        self._observe("apply", now - received_at)
        self._records.append(TraceRecord(trace, received_at, now, version))

    def published(self, node_id: str, role: str, version: int, snapshot: int) -> None:
        """``node_id`` got a new snapshot (its serial) built from registry ``version``."""
        now = self.clock()
        for record in self._records:
            hops = record.proxies.get(node_id)
            if hops is not None:
                if hops.acked_at is not None:
                    continue
                if len(hops.snapshots) >= CANDIDATES_KEPT:  # keep the first and the newest
                    hops.snapshots.pop()
                hops.snapshots.append(snapshot)  # a newer one before the ACK: either ends it
            elif record.version <= version and now - record.applied_at <= WINDOW_S:
                record.proxies[node_id] = ProxyHops(role, now, [snapshot])
                self._observe("build", now - record.applied_at)

    def synced(self, node_id: str, snapshot: int) -> None:
        """``node_id`` holds the snapshot whose serial is ``snapshot``: every type as of it
        ACKed (the stream reports each snapshot it was given once, in order)."""
        now = self.clock()
        for record in self._records:
            hops = record.proxies.get(node_id)
            if hops is not None and hops.acked_at is None and snapshot in hops.snapshots:
                hops.acked_at = now
                self._observe("ack", now - hops.published_at)
                self._observe("total", now - record.trace.changed_at)

    def traces(self) -> list[dict[str, Any]]:
        """The kept traces, newest first (:meth:`TraceRecord.as_json`)."""
        return [r.as_json() for r in reversed(self._records)]
