"""Zone-local east-west gateways on the isolated bed (issue 42, proof 1): every cluster in a
network namespace of its own, joined by the link emulator; cluster B has two zones, an echo
replica and a zone-local gateway in each (``zoneGateways: true``). A ``distribute`` rule
sends A's requests 70/30 to B's zones. What the controller counts is the proof: the shares
served per zone (the callers' sidecars) are within 5 % of the rule, and the bytes B's
gateways carried to the sidecars (the gateways' own Envoys) never crossed a zone.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.isolated import (
    REGIONS,
    A,
    B,
    IsolatedFederation,
    federation_file,
    isolated_federation,
    wait_for,
)
from tests.prometheus import controller_samples

pytestmark = [pytest.mark.integration, pytest.mark.slow]

B_ZONES = ("eu-west-1a", "eu-west-1b")
SHARES = {B_ZONES[0]: 70, B_ZONES[1]: 30}
RPS, SECONDS = 30.0, 8.0


def _spec() -> dict[str, Any]:
    """The bed of :func:`federation_file` with A and B only; B in two zones with a gateway
    each; two echo replicas per cluster (one per zone); the demo frontend a trickle."""
    spec = federation_file(replicas=2, rps=0.2)
    clusters = [c for c in spec["spec"]["clusters"] if c["name"] in (A, B)]
    for c in clusters:
        if c["name"] == B:
            c["zones"], c["zoneGateways"] = list(B_ZONES), True
    spec["spec"]["clusters"] = clusters
    spec["spec"]["latency"] = {f"{REGIONS[A]} -> {REGIONS[B]}": "40ms"}
    return spec


def _distribute(fed: IsolatedFederation) -> None:
    policy = {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "echo", "namespace": "demo"},
        "spec": {
            "host": "echo.demo.svc.clusterset.local",
            "locality": {
                "distribute": [
                    {
                        "from": f"{REGIONS[A]}/*",
                        "to": {f"{REGIONS[B]}/{z}": share for z, share in SHARES.items()},
                    }
                ]
            },
        },
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(policy, f)
    try:
        fed.meshfed("apply", "-f", f.name)
    finally:
        Path(f.name).unlink()


def _counts(fed: IsolatedFederation) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Cumulative, from the controller: A's requests to echo by serving zone, and B's
    gateway-hop bytes (both directions) by (gateway zone, sidecar zone)."""
    served: Counter[str] = Counter()
    hops: Counter[tuple[str, str]] = Counter()
    for (name, labels), value in controller_samples(fed.home).items():
        label = dict(labels)
        if name == "meshfed_requests_total" and label.get("source_cluster") == A:
            served[label["destination_locality"].rsplit("/", 1)[-1]] += int(value)
        elif name == "meshfed_gateway_hop_bytes_total" and label.get("cluster") == B:
            zones = (label["gateway_locality"], label["destination_locality"])
            hops[(zones[0].rsplit("/", 1)[-1], zones[1].rsplit("/", 1)[-1])] += int(value)
    return served, hops


def test_each_zone_is_served_its_share_and_no_gateway_byte_crosses_a_zone(tmp_path) -> None:
    with isolated_federation(tmp_path, _spec()) as fed:
        _distribute(fed)
        # the rule in force: a probe's answers come from both of B's zones
        wait_for(
            lambda: (
                {r.served_by for r in fed.drive("sidecar-frontend", rps=20, duration_s=1)[0]} == {B}
            ),
            60,
            "A's requests served by B",
        )
        served_before, hops_before = _counts(fed)
        results, _ = fed.drive("sidecar-frontend", rps=RPS, duration_s=SECONDS)
        sent = len(results)
        assert [r for r in results if r.status != 200] == [], "failed requests"

        def counted() -> tuple[Counter[str], Counter[tuple[str, str]]] | None:
            served, hops = _counts(fed)
            served.subtract(served_before)
            hops.subtract(hops_before)
            return (served, hops) if sum(served.values()) >= sent else None

        served, hops = wait_for(counted, 30, "the controller's count of the requests")
    total = sum(served.values())
    shares = {z: served[z] / total for z in B_ZONES}
    print(f"served per zone of B: {shares} of {total}; gateway hop bytes: {dict(hops)}")
    assert all(abs(shares[z] - SHARES[z] / 100) <= 0.05 for z in B_ZONES), served
    assert all(hops[(z, z)] > 0 for z in B_ZONES), hops  # each zone's gateway carried its share
    assert all(n == 0 for (g, d), n in hops.items() if g != d), hops  # 0 cross-zone bytes
