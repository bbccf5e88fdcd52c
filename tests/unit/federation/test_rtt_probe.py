"""The RTT prober keeps the last measurement of a gateway that stops answering (issue #16:
during a partition the estimate would reorder priorities, and again after the heal)."""

from __future__ import annotations

import asyncio

from federation.controlplane.link import rtt
from federation.controlplane.registry import ServiceRegistry
from federation.model.documents import load_documents

IMPORT = """apiVersion: meshfed.io/v1alpha1
kind: ServiceImport
metadata: {name: echo, namespace: demo}
spec:
  ports: [{name: http, port: 8080}]
  serviceAccounts: [echo]
  clusters:
  - {cluster: west, gateway: '198.18.0.11:15443', network: west, locality: aws/eu-west-1/eu-west-1a, endpoints: 1}
"""


def test_a_failed_probe_keeps_the_last_measurement(monkeypatch):
    answers = iter([40.0, None, 41.0])

    async def fake_connect(gateway: str, timeout_s: float = 2.0) -> float | None:
        assert gateway == "198.18.0.11:15443"
        return next(answers)

    monkeypatch.setattr(rtt, "connect_time_ms", fake_connect)
    registry = ServiceRegistry()
    registry.apply(load_documents(IMPORT))
    prober = rtt.RttProber(registry)
    seen = []
    for _ in range(3):
        asyncio.run(prober.probe_once())
        seen.append((prober.rtt_ms.get("west"), registry.state.rtt_ms.get("west")))
    assert seen == [(40.0, 40.0), (40.0, 40.0), (41.0, 40.0)]  # 41 is within the hysteresis
