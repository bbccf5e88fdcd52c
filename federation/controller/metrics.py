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
``meshfed_controller_update_messages_total{kind}``             updates sent on sync streams,
                                                               ``whole`` or ``delta`` (sync
                                                               protocol 2: only what changed)
``meshfed_controller_update_bytes_total{kind}``                their wire size (bytes)
``meshfed_controller_propagation_seconds``                     histogram: a change's report
                                                               received -> the updates it
                                                               caused queued (the
                                                               ``controller`` hop of its trace)
``meshfed_controller_recomputations_total``                    import recomputations (one per
                                                               changed report, lease change,
                                                               apply or bundle change)
``meshfed_controller_lease_expiries_total{cluster}``           a Ready member went silent past
                                                               its lease (became Unreachable)
``meshfed_controller_plan_solves_total{service}``              linear programs solved (cost
                                                               mode optimize; only when inputs
                                                               moved)
``meshfed_controller_plan_solve_seconds``                      time per solve (histogram)
``meshfed_controller_plans``                                   routing plans in force (caller
                                                               localities x services)
``meshfed_controller_federated_bundle_fetches_total``          fetches of a foreign trust
``{trust_domain,result}``                                      domain's bundle (``ok``,
                                                               ``error``; on the leader)
``meshfed_controller_federated_bundle_roots{trust_domain}``    unexpired roots in force per
                                                               foreign domain (0: its SVIDs
                                                               are refused)
``meshfed_controller_federated_bundle_age_seconds``            since the last successful fetch
``{trust_domain}``                                             (absent before the first)
=============================================================  ===============================
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
        self.update_messages = Counter(
            "meshfed_controller_update_messages",
            "Updates sent on sync streams, whole or delta (sync protocol 2)",
            ["kind"],
            registry=r,
        )
        self.update_bytes = Counter(
            "meshfed_controller_update_bytes",
            "Wire bytes of the updates sent on sync streams",
            ["kind"],
            registry=r,
        )
        self.propagation = Histogram(
            "meshfed_controller_propagation_seconds",
            "A change's report received to the updates it caused queued",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
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
        self.plan_solves = Counter(
            "meshfed_controller_plan_solves",
            "Linear programs solved for cost mode optimize",
            ["service"],
            registry=r,
        )
        self.bundle_fetches = Counter(
            "meshfed_controller_federated_bundle_fetches",
            "Fetches of a foreign trust domain's bundle from its bundle endpoint",
            ["trust_domain", "result"],
            registry=r,
        )
        self.plan_solve_seconds = Histogram(
            "meshfed_controller_plan_solve_seconds",
            "Seconds per linear program (HiGHS)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
