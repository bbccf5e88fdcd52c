"""Locality- and cost-aware load balancing and TrafficPolicy, end to end with real Envoy.

A controller and three clusters on loopback, all real processes:

- ``a``: aws/us-east-1/us-east-1a (127.0.1.0/24): two ``echo`` replicas and the caller (a
  sidecar whose requests the tests count);
- ``b``: aws/us-west-2/us-west-2a (127.0.2.0/24): same cloud and continent as ``a``;
  estimated RTT from ``a`` about 54 ms, $0.02/GB (AWS inter-region);
- ``c``: gcp/us-east4/us-east4-a (127.0.3.0/24): another cloud; estimated RTT about 1 ms,
  $0.12/GB (GCP Premium Tier internet egress).

Each of ``b`` and ``c`` runs an east-west gateway and one ``echo`` behind a sidecar; every
cluster exports ``echo``. RTTs are estimates from the regions' coordinates (gateways on
loopback are never measured; see federation_link.rtts_for_decisions). Policies are applied
with ``meshfed apply`` to the controller. The tests share the federation and run in order.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import owned_processes
from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    Processes,
    RateLoop,
    free_port,
    get,
    run_meshfed,
    start_echo,
    start_gateway,
    start_sidecar_agent,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HOST = "echo.demo.svc.clusterset.local"
LOCALITY = {
    "a": "aws/us-east-1/us-east-1a",
    "b": "aws/us-west-2/us-west-2a",
    "c": "gcp/us-east4/us-east4-a",
}
NET = {"a": 1, "b": 2, "c": 3}
EXPORT = (
    "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
    "metadata: {{name: echo, namespace: demo}}\nspec: {{cluster: {cluster}}}\n"
)


def _policy(spec: str, name: str = "echo") -> str:
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
        f"metadata: {{name: {name}, namespace: demo}}\n"
        f"spec:\n  host: {HOST}\n{spec}"
    )


class Fed:
    def __init__(self, procs: Processes, home: Path) -> None:
        self.procs, self.home = procs, home
        self.controller = ControllerHandle(procs, home, lease_s=10)
        self.cps: dict[str, ControlPlaneHandle] = {}
        self.a_apps: list[dict[str, Any]] = []
        self.client_port = free_port()

    def meshfed(self, *args: str, **kw: Any):
        return run_meshfed(self.home, *args, **kw)

    def start(self) -> None:
        self.controller.start()
        for name in ("a", "b", "c"):
            gateway = f"127.0.{NET[name]}.1:{free_port(f'127.0.{NET[name]}.1')}"
            out = self.meshfed(
                "cluster",
                "join",
                name,
                "--locality",
                LOCALITY[name],
                "--network",
                f"net-{name}",
                "--gateway",
                gateway,
                "-o",
                "json",
            ).stdout
            cp = ControlPlaneHandle(
                self.procs,
                self.home,
                name,
                LOCALITY[name],
                extra_args=[
                    "--network",
                    f"net-{name}",
                    "--controller",
                    f"127.0.0.1:{self.controller.api_port}",
                    "--join-token",
                    json.loads(out)["token"],
                    "--gateway",
                    gateway,
                ],
            )
            cp.start()
            self.cps[name] = cp
            if name != "a":
                start_gateway(self.procs, self.home, cp, gateway)
                self.start_echo(name, 1)
        for i in (1, 2):
            self.a_apps.append(self.start_echo("a", i))
        self.meshfed(
            "apply", "-f", "-", input_text="---\n".join(EXPORT.format(cluster=c) for c in "abc")
        )
        start_sidecar_agent(
            self.procs,
            self.home,
            self.cps["a"],
            service="frontend",
            address="127.0.1.10",
            app_port=free_port(),
            service_port=8080,
            outbound_port=self.client_port,
        )
        wait_until(lambda: self.names(20) == {"a-echo-1", "a-echo-2"}, 45, "a's echo replicas")
        wait_until(
            lambda: all(
                len(i["spec"]["clusters"]) == 2
                for i in json.loads(self.meshfed("get", "imports", "-o", "json").stdout)
                if i["cluster"] == "a"
            ),
            15,
            "a imports echo from b and c",
        )

    def start_echo(self, cluster: str, i: int) -> dict[str, Any]:
        name = f"{cluster}-echo-{i}"
        app_port = free_port()
        app = start_echo(self.procs, name, app_port, cluster)
        agent, _ = start_sidecar_agent(
            self.procs,
            self.home,
            self.cps[cluster],
            service="echo",
            address=f"127.0.{NET[cluster]}.{10 + i}",
            app_port=app_port,
            service_port=8080,
            name=name,
        )
        return {"name": name, "app": app, "agent": agent, "i": i}

    def kill_a(self) -> None:
        for entry in self.a_apps:
            for proc in (entry["agent"], entry["app"]):
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)

    def revive_a(self) -> None:
        self.a_apps = [self.start_echo("a", entry["i"]) for entry in self.a_apps]

    def names(self, n: int) -> set[str]:
        return {str(get(self.client_port, HOST)[1].get("name")) for _ in range(n)}

    def clusters_of(self, n: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(n):
            status, data, _ = get(self.client_port, HOST)
            seen[str(data.get("cluster")) if status == 200 else f"status {status}"] += 1
        return seen

    def explain(self) -> dict[str, Any]:
        out = self.meshfed("explain", HOST, "--from", "a", "-o", "json").stdout
        return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    base = tmp_path_factory.mktemp("policy")
    with owned_processes(base) as procs:
        f = Fed(procs, base / "home")
        f.start()
        yield f


def _cluster(name: str) -> str:
    return name.split("-", 1)[0]


def test_defaults_keep_traffic_local_and_fail_over_without_errors(fed) -> None:
    assert fed.clusters_of(100) == Counter({"a": 100})
    rows = fed.explain()["ports"][0]["rows"]
    assert [(r["cluster"], r["priority"]) for r in rows] == [("a", 0), ("b", 1), ("c", 2)]
    assert rows[0]["share"] == 1.0 and "same zone" in rows[0]["reason"]
    with RateLoop(fed.client_port, HOST, rps=200, max_seconds=40) as load:
        time.sleep(2)
        killed = time.monotonic()
        fed.kill_a()
        time.sleep(3)
        fed.revive_a()
        revived = time.monotonic()
        wait_until(
            lambda: {_cluster(s.name) for s in load.samples[-40:]} == {"a"},
            30,
            "traffic back in a",
        )
    assert load.rate() > 150, load.rate()
    assert load.failures() == [], (
        [(round(f.at - killed, 3), f.status) for f in load.failures()],
        round(revived - killed, 3),
    )
    after_kill = [s for s in load.samples if killed + 1.0 <= s.at <= revived]
    assert after_kill and {_cluster(s.name) for s in after_kill} == {"b"}, Counter(
        s.name for s in after_kill
    )
    first_b = min(s.at for s in load.samples if s.at >= killed and s.name.startswith("b-"))
    assert first_b - killed < 1.0


def test_split_shifts_traffic_and_a_change_takes_effect_within_a_second(fed) -> None:
    fed.meshfed("apply", "-f", "-", input_text=_policy("  split: {a: 80, b: 20}\n"))
    wait_until(lambda: "b" in fed.clusters_of(40), 10, "split in force")
    seen = fed.clusters_of(1000)
    assert set(seen) == {"a", "b"}, seen
    assert 750 <= seen["a"] <= 850 and 150 <= seen["b"] <= 250, seen
    with RateLoop(fed.client_port, HOST, rps=100, max_seconds=20) as load:
        time.sleep(1)
        fed.meshfed("apply", "-f", "-", input_text=_policy("  split: {a: 0, b: 100}\n"))
        applied = time.monotonic()
        time.sleep(3)
    late = [s for s in load.samples if s.at >= applied + 1.0]
    assert late and {_cluster(s.name) for s in late} == {"b"}, Counter(s.name for s in late)
    assert load.failures() == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("  split: {a: 50, b: 40}\n", "spec.split: Value error, weights must sum to 100, not 90"),
        ("  split: {a: 50, zz: 50}\n", "spec.split: 'zz' not a member cluster"),
        (
            "  cost: {latencyBudgetMs: -5}\n",
            "spec.cost.latencyBudgetMs: Input should be greater than 0",
        ),
        (
            "  locality: {failoverPriority: [example.com/rack]}\n",
            "spec.locality.failoverPriority: Value error, unknown label 'example.com/rack'",
        ),
    ],
)
def test_invalid_policies_are_refused_whole_and_the_old_one_stays(fed, spec, field) -> None:
    good_other = _policy("  cost: {mode: optimize}\n", name="other")
    r = fed.meshfed(
        "apply", "-f", "-", input_text=good_other + "---\n" + _policy(spec), check=False
    )
    assert r.returncode == 2, r.stderr
    assert "document 2 (TrafficPolicy demo/echo)" in r.stderr and field in r.stderr, r.stderr
    names = [
        p["metadata"]["name"]
        for p in json.loads(fed.meshfed("get", "policies", "-o", "json").stdout)
    ]
    assert names == ["echo"]  # "other" was not stored either
    assert fed.clusters_of(30) == Counter({"b": 30})  # the 0/100 split is still in force


def test_cost_mode_fails_over_to_the_cheaper_cloud_unless_the_latency_budget_forbids(fed) -> None:
    fed.meshfed("apply", "-f", "-", input_text=_policy("  cost: {mode: prefer-cheaper}\n"))
    wait_until(lambda: fed.clusters_of(20) == Counter({"a": 20}), 10, "split removed")
    fed.kill_a()
    try:
        wait_until(lambda: fed.clusters_of(20) == Counter({"b": 20}), 10, "failover to b")
        live = wait_until(
            lambda: (
                [r for r in fed.explain()["ports"][0]["rows"] if r["healthy"] > 0]
                if [r["cluster"] for r in fed.explain()["ports"][0]["rows"] if r["healthy"] > 0]
                == ["b", "c"]
                else None
            ),
            10,
            "the control plane sees a's replicas down",
        )
        assert live[0]["usdPerGB"] == 0.02 and live[1]["usdPerGB"] == 0.12
        assert "cheapest first" in live[0]["reason"]
        fed.meshfed(
            "apply",
            "-f",
            "-",
            input_text=_policy("  cost: {mode: prefer-cheaper, latencyBudgetMs: 20}\n"),
        )
        wait_until(lambda: fed.clusters_of(20) == Counter({"c": 20}), 10, "failover to c")
        rows = [r for r in fed.explain()["ports"][0]["rows"] if r["healthy"] > 0]
        assert [r["cluster"] for r in rows] == ["c", "b"]
        assert "RTT over the 20 ms budget" in rows[1]["reason"] and rows[1]["rttMs"] > 20
        table = fed.meshfed("explain", "echo.demo", "--from", "a").stdout
        assert "RTT over the 20 ms budget" in table and "PRIORITY" in table
    finally:
        fed.revive_a()
