"""The cost scenario of issue #18 on the isolated bed, shared by its integration test and
``bench/cost_live.py``: the three clusters of :mod:`tests.integration.isolated` (RTT A-B
40 ms, A-C 80 ms, B-C 30 ms; two clouds), one echo replica each whose capacity is declared
(``echo.capacityRps``) and enforced (the replica answers 503 beyond it), and an open-loop
load generator in A sending through the frontend's sidecar (zone us-east-1a, where A's
replica runs) at a multiple of A's capacity.

Three policies for the same service:

- ``round-robin``: global balancing without locality (a ``distribute`` rule giving each
  region a third);
- ``locality-failover``: Istio's default -- cost mode ``off``, nearest first, spill only when
  health checks or outlier detection eject the local endpoints (with meshfed's default
  retries, a shed request is retried on another priority);
- ``optimize``: cost mode ``optimize`` with a latency budget of :data:`BUDGET_MS`.

:func:`measure` runs one policy at one load and returns what the client saw (failed
requests, p50/p99 ms, served-by shares) and what the mesh counted (egress US$ from the
controller's ``meshfed_egress_usd_total``, the Envoy-counted bytes times the price, plus the
east-west gateways' own hop, ``meshfed_gateway_hop_egress_usd_total``), beside the
optimizer's own prediction where there is a plan. :func:`zone_scenario_file` is the variant
with B in two zones, with or without zone-local gateways.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from federation.controller.planner import PlannerSettings
from tests.integration.isolated import (
    REGIONS,
    A,
    B,
    IsolatedFederation,
    Result,
    federation_file,
)
from tests.prometheus import controller_samples

#: The optimize policy's latency budget (ms): B (40 ms) is within it, C (80 ms) is not.
BUDGET_MS = 60.0
#: Response padding per request (bytes), so that the dollars are not all headers.
PAD_BYTES = 4096
CALLER = "aws/us-east-1/us-east-1a"
SERVICE_HOST = "echo.demo.svc.clusterset.local"
POLICY_NAMES = ("round-robin", "locality-failover", "optimize")


def zone_scenario_file(capacity_rps: float, zone_gateways: bool) -> dict[str, Any]:
    """The bed with B in two zones (``bench/cost_live.py --zones``): two echo replicas per
    cluster of ``capacity_rps`` each -- A's both in its one zone, us-east-1a (so A serves
    2 x ``capacity_rps``), B's one per zone, C's both in its zone -- and, with
    ``zone_gateways``, a zone-local east-west gateway per zone of B. Without them B is one
    gateway endpoint to its callers, and its gateway forwards to its own zone (eu-west-1a)
    first; with them each zone of B is a candidate of its own."""
    spec = federation_file(replicas=2, rps=0.2)
    spec["spec"]["echo"]["capacityRps"] = capacity_rps
    for c in spec["spec"]["clusters"]:
        if c["name"] == A:
            c["zones"] = ["us-east-1a"]
        elif c["name"] == B:
            c["zones"], c["zoneGateways"] = ["eu-west-1a", "eu-west-1b"], zone_gateways
    return spec


def scenario_file(capacity_rps: float) -> dict[str, Any]:
    """The bed with one echo replica per cluster serving at most ``capacity_rps``; the demo
    frontend sends a trickle (0.2 rps) so that the generator's requests dominate."""
    spec = federation_file(replicas=1, rps=0.2)
    spec["spec"]["echo"]["capacityRps"] = capacity_rps
    return spec


def policy(name: str, headroom: float | None = None) -> dict[str, Any]:
    """The TrafficPolicy document of one of :data:`POLICY_NAMES` (``headroom``: optimize's,
    None for the default 0.8)."""
    spec: dict[str, Any] = {"host": SERVICE_HOST}
    if name == "round-robin":
        third = {
            f"{region}/*": share
            for region, share in zip(REGIONS.values(), (34, 33, 33), strict=True)
        }
        spec["locality"] = {"distribute": [{"from": "*", "to": third}]}
    elif name == "locality-failover":
        spec["cost"] = {"mode": "off"}
    elif name == "optimize":
        spec["cost"] = {"mode": "optimize", "latencyBudgetMs": BUDGET_MS}
        if headroom is not None:
            spec["cost"]["headroom"] = headroom
    else:
        raise ValueError(name)
    return {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "echo", "namespace": "demo"},
        "spec": spec,
    }


def apply_policy(fed: IsolatedFederation, name: str, headroom: float | None = None) -> None:
    """Apply ``policy(name, headroom)`` to the controller (it replaces the previous one: same
    name)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(policy(name, headroom), f)
    try:
        fed.meshfed("apply", "-f", f.name)
    finally:
        Path(f.name).unlink()


@dataclass
class Counted:
    """What the controller's metrics say the sidecars of A counted, cumulative."""

    requests: float
    usd: float
    bytes: float
    hop_usd: float = 0.0
    cross_zone_hop_bytes: float = 0.0


def counted(fed: IsolatedFederation) -> Counted:
    """Requests, egress US$ and egress bytes of every edge from cluster A, as exposed by the
    controller (``meshfed_requests_total``, ``meshfed_egress_usd_total``,
    ``meshfed_egress_bytes_total``); and every east-west gateway's hop, US$ and bytes across
    zones (``meshfed_gateway_hop_egress_usd_total``, ``meshfed_gateway_hop_bytes_total``;
    A's load is all that crosses gateways here but the demo frontend's trickle)."""
    requests = usd = wire = hop_usd = hop_cross = 0.0
    for (name, labels), value in controller_samples(fed.home).items():
        lab = dict(labels)
        if name == "meshfed_gateway_hop_egress_usd_total":
            hop_usd += value
        elif name == "meshfed_gateway_hop_bytes_total" and lab["path_class"] != "same-zone":
            hop_cross += value
        if lab.get("source_cluster") != A:
            continue
        if name == "meshfed_requests_total":
            requests += value
        elif name == "meshfed_egress_usd_total":
            usd += value
        elif name == "meshfed_egress_bytes_total":
            wire += value
    return Counted(requests, usd + hop_usd, wire, hop_usd, hop_cross)


def plan(fed: IsolatedFederation) -> dict[str, Any] | None:
    """The optimizer's plan for the frontend's locality (``meshfed explain -o json``)."""
    data = json.loads(
        fed.meshfed("explain", "echo.demo", "--from", A, "--locality", CALLER, "-o", "json")
    )
    return data.get("plan")


@dataclass
class Measurement:
    """One policy at one load."""

    policy: str
    rps: float
    seconds: float
    sent: int
    failed: int
    p50_ms: float
    p99_ms: float
    served: dict[str, float]  # cluster -> share of the answered requests
    usd_per_request: float  # egress US$ per request the mesh counted in the window
    counted_requests: float
    predicted_usd_per_hour: float | None  # the optimizer's plan, scaled to the offered load
    hop_usd_per_request: float = 0.0  # of usd_per_request: the gateway hops'
    cross_zone_hop_bytes: float = 0.0  # bytes gateways carried across zones in the window
    zones: dict[str, float] | None = None  # <cluster>/<zone> -> share of the answered

    @property
    def usd_per_hour(self) -> float:
        """Egress US$/hour of the offered load at the counted price per request."""
        return self.usd_per_request * self.rps * 3600


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


#: Seconds the load goes on after the measured window (the counters' snapshot at its end
#: must not see the load stop).
TAIL_S = 3.0
#: At most this many seconds after the warm-up for an optimize plan to settle (s).
SETTLE_S = 60.0


def settled(fed: IsolatedFederation, rps: float, timeout_s: float) -> dict[str, Any]:
    """Wait until the optimizer's plan for the frontend's locality has caught up with an
    offered load of ``rps``: its demand within 10 % of it (the planner solves again only
    when an input moves by more, ``PlannerSettings.resolve_threshold``) and its shares the
    same at two looks a planning interval apart (each interval moves at most a quarter of
    the requests toward a new optimum, ``PlannerSettings.max_shift``). Returns the plan.

    Raises:
        AssertionError: not settled within ``timeout_s`` (the last plan seen is named).
    """
    interval = PlannerSettings().interval_s
    deadline = time.monotonic() + timeout_s
    last: tuple[tuple[str, float], ...] | None = None
    found: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        found = plan(fed)
        if found is not None and abs(found["demandRps"] - rps) <= 0.1 * rps:
            shares = tuple((p["locality"], round(p["share"], 2)) for p in found["localities"])
            if shares == last:
                return found
            last = shares
        else:
            last = None
        time.sleep(interval)  # the planner's round: a look sooner sees the same plan
    raise AssertionError(f"the plan did not settle at {rps:g} rps in {timeout_s:g} s: {found}")


def measure(
    fed: IsolatedFederation,
    name: str,
    rps: float,
    *,
    warm_s: float,
    seconds: float,
    headroom: float | None = None,
    settle_s: float = SETTLE_S,
) -> Measurement:
    """Apply policy ``name`` and send ``rps`` without a pause: plans follow the demand during
    at least ``warm_s``; for ``optimize``, until the plan has settled too (:func:`settled`,
    waited on for at most ``settle_s`` more; 0: not waited on); the next ``seconds`` are measured -- the
    client's failures, latency and served-by shares of the requests sent in the window, and
    the egress US$ per request the mesh counted between two snapshots of the controller's
    counters taken at the window's ends (steady load: the counters' few seconds of delay
    shift both snapshots alike, and the ratio of dollars to requests does not depend on
    it). The load goes on for :data:`TAIL_S` after the window, then stops.

    Raises:
        AssertionError: the plan did not settle within ``settle_s``, or the load generator
            did not finish.
    """
    apply_policy(fed, name, headroom)
    box: dict[str, list[Result]] = {}
    stop = threading.Event()
    longest = warm_s + settle_s + seconds + TAIL_S

    def drive() -> None:
        box["results"], _ = fed.drive(
            "sidecar-frontend", rps=rps, duration_s=longest, path=f"/?size={PAD_BYTES}", stop=stop
        )

    begin = time.monotonic()
    thread = threading.Thread(target=drive, name="load", daemon=True)
    thread.start()
    try:
        time.sleep(max(0.0, begin + warm_s - time.monotonic()))  # a schedule, not a wait
        if name == "optimize" and settle_s > 0:
            settled(fed, rps, settle_s)
        start = time.monotonic() - begin
        before = counted(fed)
        time.sleep(max(0.0, begin + start + seconds - time.monotonic()))
        after = counted(fed)
        found = plan(fed) if name == "optimize" else None
        time.sleep(TAIL_S)  # the counters' snapshot at the window's end saw the load go on
    finally:
        stop.set()
        thread.join(timeout=longest + 60)
    assert "results" in box, "the load generator did not finish"
    results = [r for r in box["results"] if start <= r.sent < start + seconds]
    ok = [r for r in results if r.status == 200]
    served = Counter(r.served_by for r in ok)
    zones = Counter(f"{r.served_by}/{r.zone}" for r in ok)
    requests = after.requests - before.requests
    predicted = None
    if found is not None and found["demandRps"] > 0:
        predicted = found["usdPerHour"] * rps / found["demandRps"]
    return Measurement(
        policy=name,
        rps=rps,
        seconds=seconds,
        sent=len(results),
        failed=len(results) - len(ok),
        p50_ms=_quantile([1000 * (r.done - r.sent) for r in ok], 0.5),
        p99_ms=_quantile([1000 * (r.done - r.sent) for r in ok], 0.99),
        served={k: v / max(1, len(ok)) for k, v in sorted(served.items())},
        usd_per_request=(after.usd - before.usd) / requests if requests > 0 else 0.0,
        counted_requests=requests,
        predicted_usd_per_hour=predicted,
        hop_usd_per_request=(after.hop_usd - before.hop_usd) / requests if requests > 0 else 0.0,
        cross_zone_hop_bytes=after.cross_zone_hop_bytes - before.cross_zone_hop_bytes,
        zones={k: v / max(1, len(ok)) for k, v in sorted(zones.items())},
    )
