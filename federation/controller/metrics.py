"""Prometheus metrics of the federation controller (:mod:`federation.metrics`), served by its
REST API at ``GET /metrics`` (same admin bearer token as the rest of the API).

=============================================================  ===============================
``meshfed_controller_sync_streams``                            open sync streams (connected
                                                               control planes)
``meshfed_controller_clusters{state}``                         members by state (Ready,
                                                               Unreachable, Pending)
``meshfed_controller_reports_received_total{cluster}``         reports (heartbeats included)
``meshfed_controller_updates_sent_total{cluster}``             updates queued to a control
                                                               plane (only changed views go)
``meshfed_controller_recomputations_total``                    import recomputations (one per
                                                               changed report, lease change,
                                                               apply or bundle change)
``meshfed_controller_lease_expiries_total{cluster}``           a Ready member went silent past
                                                               its lease (became Unreachable)
=============================================================  ===============================
"""

from __future__ import annotations

from prometheus_client import Counter

from federation.metrics import Metrics


class ControllerMetrics(Metrics):
    """The controller's metrics (see the module docstring); gauges are added by the hub."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.reports = Counter(
            "meshfed_controller_reports_received",
            "Reports received from control planes",
            ["cluster"],
            registry=r,
        )
        self.updates = Counter(
            "meshfed_controller_updates_sent",
            "Updates queued to control planes (changed views only)",
            ["cluster"],
            registry=r,
        )
        self.recomputations = Counter(
            "meshfed_controller_recomputations", "Import recomputations", registry=r
        )
        self.lease_expiries = Counter(
            "meshfed_controller_lease_expiries",
            "Ready members that went silent past their lease",
            ["cluster"],
            registry=r,
        )
