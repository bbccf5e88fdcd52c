"""The control plane's Prometheus metrics: what a scrape returns, and push latency."""

from __future__ import annotations

import pytest

from federation.controlplane import resource
from federation.controlplane.metrics import ControlPlaneMetrics, push_latency_s
from tests.prometheus import Samples, samples


def _samples(metrics: ControlPlaneMetrics) -> Samples:
    return samples(metrics.exposition().decode())


def test_counters_and_scrape_time_gauges_parse() -> None:
    m = ControlPlaneMetrics()
    m.pushed(resource.CLUSTER)
    m.pushed(resource.CLUSTER)
    m.nacked(resource.LISTENER)
    m.issued("token")
    m.issued("svid")
    m.update_received()
    health = {"HEALTHY": 2.0, "UNHEALTHY": 1.0}
    m.gauge("meshfed_workloads", "by health", lambda: health, "health")
    m.gauge("meshfed_sync_stream_up", "absent when not joined", lambda: None)
    got = _samples(m)
    assert got[("meshfed_xds_pushes_total", (("type", "CDS"),))] == 2
    assert got[("meshfed_xds_nacks_total", (("type", "LDS"),))] == 1
    assert got[("meshfed_svids_issued_total", (("via", "workload-token"),))] == 1
    assert got[("meshfed_svids_issued_total", (("via", "svid"),))] == 1
    assert got[("meshfed_sync_updates_received_total", ())] == 1
    assert got[("meshfed_sync_last_update_timestamp_seconds", ())] > 1.7e9
    assert got[("meshfed_workloads", (("health", "UNHEALTHY"),))] == 1
    assert not any(name == "meshfed_sync_stream_up" for name, _ in got)
    health["UNHEALTHY"] = 0.0  # read again at the next scrape
    assert _samples(m)[("meshfed_workloads", (("health", "UNHEALTHY"),))] == 0


def test_push_latency_counts_from_the_first_change_the_proxy_had_not_seen() -> None:
    changed_at = {5: 10.0, 6: 10.2, 7: 10.5}
    assert push_latency_s(changed_at, built_version=5, now=11.0) == pytest.approx(0.8)  # v6
    assert push_latency_s(changed_at, built_version=6, now=11.0) == pytest.approx(0.5)  # v7
    assert push_latency_s(changed_at, built_version=7, now=11.0) is None  # nothing newer
    assert push_latency_s({}, built_version=0, now=1.0) is None
