"""Prometheus metrics of one cluster control plane (:mod:`federation.metrics`), served by its
API at ``GET /metrics`` (same bearer token as the rest of the API).

====================================================  =========================================
``meshfed_xds_pushes_total{type}``                    xDS responses sent (``type``: CDS, EDS,
                                                      LDS, RDS, SDS), SotW and delta
``meshfed_xds_nacks_total{type}``                     responses a proxy rejected (NACK)
``meshfed_xds_connected_proxies{role}``               open ADS streams by proxy role
``meshfed_xds_push_latency_seconds``                  histogram: from the registry change that
                                                      made a proxy's snapshot stale to the
                                                      snapshot's publication to that proxy's
                                                      stream (Istio's
                                                      ``pilot_proxy_convergence_time``, up to
                                                      the send); connects are not counted
``meshfed_propagation_hop_seconds{hop}``              histogram: the hops of a change's trace
                                                      (:mod:`federation.controlplane.trace`):
                                                      ``report`` (origin: registry change to
                                                      report sent), ``deliver`` (controller's
                                                      send to arrival here), ``apply``
                                                      (arrival to registry change), ``build``
                                                      (to a first proxy's new snapshot),
                                                      ``ack`` (publication to each proxy's
                                                      ACK), ``total`` (origin's change to each
                                                      ACK here)
``meshfed_snapshot_builds_total``                     proxy snapshots generated
``meshfed_decision_recomputations_total``             outbound decisions computed for Envoy
                                                      sidecars (placement, priorities, weights:
                                                      once per caller locality and registry
                                                      version)
``meshfed_workloads{health}``                         local workloads by probed health
``meshfed_svids_issued_total{via}``                   SVIDs signed (``via``: ``workload-token``
                                                      for a first certificate, ``svid`` for a
                                                      renewal)
``meshfed_ca_certificate_expiry_timestamp_seconds``   when this cluster's intermediate CA
                                                      certificate expires
``meshfed_sync_stream_up``                            1 while the sync stream to the federation
                                                      controller is open (absent when not
                                                      joined)
``meshfed_sync_updates_received_total``               controller updates applied
``meshfed_sync_last_update_timestamp_seconds``        when the last one arrived (0: never);
                                                      lag = now - this
====================================================  =========================================
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

from federation.controlplane import resource
from federation.metrics import Metrics

#: Push latency buckets (s): a busy 2-core host spreads a rebuild over a few hundred ms.
PUSH_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ControlPlaneMetrics(Metrics):
    """The metrics of one control plane (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.xds_pushes = Counter(
            "meshfed_xds_pushes", "xDS responses sent, by resource type", ["type"], registry=r
        )
        self.xds_nacks = Counter(
            "meshfed_xds_nacks", "xDS responses a proxy rejected, by type", ["type"], registry=r
        )
        self.push_latency = Histogram(
            "meshfed_xds_push_latency_seconds",
            "Registry change to the publication of each stale proxy's new snapshot",
            buckets=PUSH_LATENCY_BUCKETS,
            registry=r,
        )
        self.propagation = Histogram(
            "meshfed_propagation_hop_seconds",
            "Hops of a change's propagation trace (report, deliver, apply, build, ack, total)",
            ["hop"],
            buckets=PUSH_LATENCY_BUCKETS,
            registry=r,
        )
        self.builds = Counter("meshfed_snapshot_builds", "Proxy snapshots generated", registry=r)
        self.build_failures = Counter(
            "meshfed_snapshot_build_failures",
            "Proxy snapshot builds that failed (the proxy keeps its last configuration)",
            registry=r,
        )
        self.decisions = Counter(
            "meshfed_decision_recomputations",
            "Outbound decisions computed (once per caller locality and registry version)",
            registry=r,
        )
        self.svids = Counter(
            "meshfed_svids_issued",
            "SVIDs signed, by how the caller authenticated",
            ["via"],
            registry=r,
        )
        self.sync_updates = Counter(
            "meshfed_sync_updates_received", "Federation controller updates applied", registry=r
        )
        self.sync_last_update = Gauge(
            "meshfed_sync_last_update_timestamp_seconds",
            "Unix time of the last controller update (0: none yet)",
            registry=r,
        )

    def pushed(self, type_url: str) -> None:
        """One xDS response of ``type_url`` sent."""
        self.xds_pushes.labels(resource.short_name(type_url)).inc()

    def nacked(self, type_url: str) -> None:
        """One xDS response of ``type_url`` rejected."""
        self.xds_nacks.labels(resource.short_name(type_url)).inc()

    def issued(self, via: str) -> None:
        """One SVID signed; ``via``: ``token`` or ``svid`` (the certificate service's mode)."""
        self.svids.labels("workload-token" if via == "token" else "svid").inc()

    def update_received(self) -> None:
        """One controller update applied, now."""
        self.sync_updates.inc()
        self.sync_last_update.set(time.time())


def push_latency_s(changed_at: Mapping[int, float], built_version: int, now: float) -> float | None:
    """Seconds from the first registry change a proxy had not seen -- the first version after
    ``built_version`` (the version its previous snapshot was built from), whose time is in
    ``changed_at`` (version -> ``time.monotonic()``) -- to ``now``; None when no change is
    recorded after that version (nothing made the proxy stale)."""
    later = [v for v in changed_at if v > built_version]
    if not later:
        return None
    return max(0.0, now - changed_at[min(later)])
