"""The control plane probes a workload as soon as it is registered, not at the next tick:
until its first probe no other cluster hears of it (issue #16's propagation bench)."""

from __future__ import annotations

import asyncio

from federation.controlplane import health
from federation.controlplane.registry import Health, ServiceRegistry
from federation.model.documents import load_documents

ENTRY = """apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: echo-1, namespace: demo}
spec:
  service: echo
  address: 127.0.1.10
  serviceAccount: echo
  locality: aws/us-east-1/us-east-1a
  ports: [{name: http, port: 8080, targetPort: 18080}]
"""


def test_a_new_workload_is_probed_at_once(monkeypatch):
    async def scenario() -> Health:
        probed = asyncio.Event()

        async def fake_probe(w, session=None) -> bool:
            probed.set()
            return True

        monkeypatch.setattr(health, "probe", fake_probe)
        registry = ServiceRegistry()
        checker = health.HealthChecker(registry)
        task = asyncio.create_task(checker.run(tick_s=3600))  # the tick never comes
        try:
            await asyncio.sleep(0)  # the first (empty) round has run
            registry.apply(load_documents(ENTRY))
            await asyncio.wait_for(probed.wait(), 10)
            await asyncio.sleep(0)
            return registry.state.health_of(("demo", "echo-1"))
        finally:
            task.cancel()

    assert asyncio.run(scenario()) is Health.HEALTHY
