"""TrafficPolicy ``http`` routes and ``connectionPool`` across clusters, with real Envoy
(issue #21): what a user sees for header routing, timeouts, fault injection scoped to the
callers of one cluster, mirroring and circuit breaking.

The federation of :mod:`tests.integration.federations` (``a`` with two ``echo`` replicas and
the caller, ``b`` and ``c`` with one each, behind their gateways), plus a second caller in
``b``. Policies are applied with ``meshfed apply`` to the controller; the tests share the
federation and run in order.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections import Counter

import pytest

from tests.integration.conftest import owned_processes
from tests.integration.federations import HOST, ThreeClusters, burst, policy_yaml
from tests.integration.harness import (
    MESHFED,
    RateLoop,
    free_port,
    get,
    meshfed_env,
    start_echo_tcp,
    start_sidecar_agent,
    tcp_line,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXPORT_DB = (
    "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
    "metadata: {{name: db, namespace: demo}}\nspec: {{cluster: {cluster}}}\n"
)


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    base = tmp_path_factory.mktemp("l7")
    with owned_processes(base) as procs:
        f = ThreeClusters(procs, base / "home", echo_access_log=True)
        f.start()
        # the canary: a v2 replica in b (and none anywhere else)
        f.start_echo("b", 2, labels={"version": "v2"})
        f.b_client_port = free_port()
        start_sidecar_agent(
            procs,
            f.home,
            f.cps["b"],
            service="frontend",
            address="127.0.2.10",
            app_port=free_port(),
            service_port=8080,
            outbound_port=f.b_client_port,
            name="b-frontend",
        )
        wait_until(
            lambda: get(f.b_client_port, HOST)[1].get("cluster") == "b", 45, "b's caller ready"
        )
        yield f


def apply(fed, spec: str) -> None:
    fed.meshfed("apply", "-f", "-", input_text=policy_yaml(spec))


def statuses(port: int, n: int, path: str = "/", **kw) -> Counter:
    seen: Counter = Counter()
    for _ in range(n):
        status, data, _ = get(port, HOST, path, **kw)
        seen[str(data.get("cluster")) if status == 200 else f"status {status}"] += 1
    return seen


def names(port: int, n: int, **kw) -> Counter:
    seen: Counter = Counter()
    for _ in range(n):
        status, data, _ = get(port, HOST, **kw)
        seen[str(data.get("name")) if status == 200 else f"status {status}"] += 1
    return seen


def test_x_canary_lands_on_v2_in_cluster_b_only(fed) -> None:
    apply(
        fed,
        "  subsets: [{name: v2, labels: {version: v2}}]\n"
        "  http:\n"
        "  - name: canary\n"
        "    match: [{headers: {x-canary: {exact: '1'}}}]\n"
        "    route: [{destination: {cluster: b, subset: v2}}]\n",
    )
    canary = {"x-canary": "1"}
    wait_until(
        lambda: names(fed.client_port, 10, headers=canary) == Counter({"b-echo-2": 10}),
        20,
        "canary route in force",
    )
    from_a = names(fed.client_port, 100, headers=canary)
    assert from_a == Counter({"b-echo-2": 100}), from_a  # b's v2 replica, never b-echo-1
    # everyone else stays local; b's own callers reach its v2 replica by label, directly
    assert statuses(fed.client_port, 100) == Counter({"a": 100})
    assert statuses(fed.client_port, 20, headers={"x-canary": "2"}) == Counter({"a": 20})
    from_b = names(fed.b_client_port, 50, headers=canary)
    assert from_b == Counter({"b-echo-2": 50}), from_b
    explained = json.loads(fed.meshfed("explain", HOST, "--from", "a", "-o", "json").stdout)
    assert explained["routes"][0]["to"] == ["100% cluster b, subset v2"]
    table = fed.meshfed("explain", HOST, "--from", "a").stdout
    assert "http canary" in table and "header x-canary exact 1" in table


def test_a_1s_timeout_turns_a_2s_backend_into_504_in_about_a_second(fed) -> None:
    apply(
        fed,
        "  http:\n  - match: [{uri: {prefix: /slow}}]\n    timeoutMs: 1000\n",
    )

    def timed() -> tuple[int, float]:
        started = time.monotonic()
        status, _, _ = get(fed.client_port, HOST, "/slow?delay_ms=2000", timeout_s=5)
        return status, time.monotonic() - started

    wait_until(lambda: timed()[0] == 504, 15, "timeout route in force")
    results = [timed() for _ in range(5)]
    print("timeout route: status, seconds:", results)
    assert all(status == 504 for status, _ in results)
    assert all(0.9 <= took <= 1.5 for _, took in results), results
    status, _, _ = get(fed.client_port, HOST, "/fast?delay_ms=1500", timeout_s=5)
    assert status == 200  # other paths keep no timeout
    # timeouts count as gateway failures for outlier detection: a's replicas were ejected
    # (baseEjectionTime 5 s) and b served meanwhile; they come back
    wait_until(lambda: statuses(fed.client_port, 20) == Counter({"a": 20}), 30, "a's replicas back")


def test_injected_aborts_hit_half_of_cluster_as_callers_and_none_of_bs(fed) -> None:
    apply(
        fed,
        "  http:\n"
        "  - name: chaos-from-a\n"
        "    match: [{sourceClusters: [a]}]\n"
        "    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}\n",
    )
    wait_until(lambda: statuses(fed.client_port, 40)["status 503"] >= 8, 15, "fault route in force")
    from_a = statuses(fed.client_port, 1000)
    print("callers in a:", from_a)
    # every answer is the injected 503 or served: where a served request lands is the load
    # balancer's business, not the fault's (once, on a loaded host, 25 of 1,000 went to b --
    # probably Envoy's priority spillover while one of a's two replicas was briefly out)
    assert set(from_a) <= {"a", "b", "c", "status 503"}, from_a
    assert from_a["a"] >= 400, from_a
    assert 450 <= from_a["status 503"] <= 550, from_a  # 50 % +- 5 %
    from_b = statuses(fed.b_client_port, 200)
    assert from_b == Counter({"b": 200}), from_b  # b's callers are not touched


def test_mirrored_requests_reach_the_mirror_and_the_caller_sees_only_the_primary(fed) -> None:
    apply(
        fed,
        "  http:\n"
        "  - route: [{destination: {cluster: a}}]\n"
        "    mirror: {cluster: c}\n"
        "    mirrorPercentage: {value: 100}\n",
    )
    marker = f"/mirror-{uuid.uuid4().hex[:8]}"

    def mirrored() -> int:
        get(fed.client_port, HOST, marker)
        return fed.procs.log("app-c-echo-1").count(f"GET {marker} ")

    wait_until(lambda: mirrored() > 0, 15, "mirror route in force")
    before = fed.procs.log("app-c-echo-1").count(f"GET {marker} ")
    seen = statuses(fed.client_port, 50, marker)
    assert seen == Counter({"a": 50}), seen  # the caller only ever sees the primary
    log = fed.procs.log("app-c-echo-1")
    wait_until(
        lambda: fed.procs.log("app-c-echo-1").count(f"GET {marker} ") >= before + 50,
        10,
        "every request mirrored to c",
    )
    lines = [line for line in log.splitlines() if f"GET {marker} " in line]
    assert all(f"host={HOST}-shadow" in line for line in lines), lines[:3]


def test_circuit_breaking_caps_concurrent_requests_and_overflow_is_503_uo(fed) -> None:
    apply(
        fed,
        "  connectionPool: {maxConnections: 3, http1MaxPendingRequests: 1, http2MaxRequests: 3}\n",
    )

    wait_until(
        lambda: any(s == 503 for s, _ in burst(fed.client_port, "/?delay_ms=1500")),
        20,
        "connection pool limits in force",
    )
    results = burst(fed.client_port, "/?delay_ms=1500")
    ok = [s for s, _ in results if s == 200]
    over = [h for s, h in results if s == 503]
    print("burst of 12:", Counter(s for s, _ in results))
    assert 3 <= len(ok) <= 4, results  # 3 in flight (+1 pending on HTTP/1.1 upstreams)
    assert len(ok) + len(over) == 12
    assert all(h.get("x-envoy-overloaded") == "true" for h in over)
    # the caller's access log says why: response flag UO (upstream overflow)
    [log] = (fed.home / "proxies").glob("sidecar_demo_frontend-*/envoy.log")
    overflowed = [
        line
        for line in log.read_text().splitlines()
        if line.startswith("outbound") and "/?delay_ms=1500" in line and " 503 UO " in line
    ]
    assert len(overflowed) >= len(over), overflowed[:3]


def _tcp_reply(port: int) -> str:
    try:
        return tcp_line(port, "hello")
    except OSError as err:
        return f"error {err}"


def test_a_tcp_service_is_routed_locally_across_clusters_by_weight_and_fails_over(fed) -> None:
    """``db`` (plain TCP) in a and b behind sidecars; a's caller reaches it on a loopback
    port its sidecar listens on (``--upstream``), mTLS between the sidecars."""
    apply(fed, "  timeoutMs: 15000\n")  # no http routes left from the tests before
    dbs = {}
    for cluster, net in (("a", 1), ("b", 2)):
        app_port = free_port()
        app = start_echo_tcp(fed.procs, f"{cluster}-db-1", app_port, cluster)
        agent, _ = start_sidecar_agent(
            fed.procs, fed.home, fed.cps[cluster], service="db", address=f"127.0.{net}.31",
            app_port=app_port, service_port=9000, protocol="tcp", name=f"{cluster}-db-1",
        )  # fmt: skip
        dbs[cluster] = (app, agent)
    fed.meshfed(
        "apply", "-f", "-",
        input_text=EXPORT_DB.format(cluster="a") + "---\n" + EXPORT_DB.format(cluster="b"),
    )  # fmt: skip
    local = free_port()
    start_sidecar_agent(
        fed.procs, fed.home, fed.cps["a"], service="tcp-client", address="127.0.1.32",
        app_port=free_port(), service_port=8080, outbound_port=free_port(),
        upstreams=[f"db.demo:9000={local}"],
    )  # fmt: skip
    wait_until(lambda: _tcp_reply(local) == "a-db-1 a hello", 45, "a's db through the sidecar")
    tcp_policy = (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
        "metadata: {{name: db, namespace: demo}}\n"
        "spec:\n  host: db.demo.svc.clusterset.local\n"
        "  tcp:\n  - route: [{{destination: {{cluster: a}}, weight: {a}}},"
        " {{destination: {{cluster: b}}, weight: {b}}}]\n"
    )
    fed.meshfed("apply", "-f", "-", input_text=tcp_policy.format(a=0, b=100))
    wait_until(lambda: _tcp_reply(local) == "b-db-1 b hello", 20, "b's db across the gateway")
    assert Counter(_tcp_reply(local) for _ in range(20)) == Counter({"b-db-1 b hello": 20})
    fed.meshfed("apply", "-f", "-", input_text=tcp_policy.format(a=50, b=50))
    wait_until(lambda: len({_tcp_reply(local) for _ in range(20)}) == 2, 20, "50/50 in force")
    split = Counter(_tcp_reply(local).split()[1] for _ in range(200))
    print("tcp 50/50 over 200 connections:", split)
    assert set(split) == {"a", "b"} and 70 <= split["a"] <= 130, split
    # failover: a's db dies; with the policy gone, connections go to b
    fed.meshfed("delete", "-f", "-", input_text=tcp_policy.format(a=50, b=50))
    wait_until(lambda: _tcp_reply(local) == "a-db-1 a hello", 20, "local again")
    for proc in dbs["a"]:
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    wait_until(lambda: _tcp_reply(local) == "b-db-1 b hello", 20, "failover to b")
    replies = Counter(_tcp_reply(local) for _ in range(50))
    assert replies == Counter({"b-db-1 b hello": 50}), replies


def test_invalid_routes_are_refused_whole_naming_the_field(fed) -> None:
    cases = [
        (
            "  http:\n  - route: [{destination: {cluster: b}}]\n  - timeoutMs: 5\n",
            "http[0] matches every request",
        ),
        (
            "  http:\n  - match: [{uri: {prefix: /x}}]\n  - match: [{uri: {prefix: /x}}]\n",
            "http[1].match[0] is the same as a match of http[0]",
        ),
        (
            "  http:\n  - route: [{destination: {cluster: zz}}]\n",
            "spec.http: 'zz' not a member cluster",
        ),
        (
            "  http:\n  - match: [{uri: {regex: '(('}}]\n",
            "regex '(('",
        ),
        (
            "  http:\n  - route: [{destination: {cluster: a}, weight: 60},"
            " {destination: {cluster: b}, weight: 30}]\n",
            "weights must sum to 100, not 90",
        ),
    ]
    before = json.loads(fed.meshfed("get", "policies", "-o", "json").stdout)
    for spec, reason in cases:
        r = fed.meshfed("apply", "-f", "-", input_text=policy_yaml(spec), check=False)
        assert r.returncode == 2, r.stderr
        assert "TrafficPolicy demo/echo" in r.stderr and reason in r.stderr, r.stderr
    assert json.loads(fed.meshfed("get", "policies", "-o", "json").stdout) == before


BASE = "  outlierDetection: {consecutive5xx: 100}\n"  # a failing target keeps failing


def _shift_route(fed) -> list[dict]:
    [policy] = [
        p
        for p in json.loads(fed.meshfed("get", "policies", "-o", "json").stdout)
        if p["spec"]["host"] == HOST
    ]
    return [r for r in policy["spec"].get("http", []) if r.get("name") == "meshfed-shift"]


def test_meshfed_shift_moves_traffic_step_by_step_and_dry_run_changes_nothing(fed) -> None:
    apply(fed, BASE)
    dry = fed.meshfed("shift", "echo.demo", "--to", "b", "--steps", "50,100", "--dry-run")
    assert "50%" in dry.stdout and "meshfed-shift" in dry.stdout
    assert _shift_route(fed) == []  # nothing applied
    bad = fed.meshfed("shift", "echo.demo", "--to", "nowhere", check=False)
    assert bad.returncode == 2 and "--to 'nowhere'" in bad.stderr
    with RateLoop(fed.client_port, HOST, rps=40, max_seconds=40) as load:
        done = fed.meshfed(
            "shift", "echo.demo", "--to", "b", "--steps", "50,100", "--interval", "4s",
            "--max-error-rate", "5%", "-o", "json",
        )  # fmt: skip
    result = json.loads(done.stdout)
    print("shift to b:", [(s["weight"], s["requests"], s["errorRate"]) for s in result["steps"]])
    assert result["result"] == "done" and [s["weight"] for s in result["steps"]] == [50, 100]
    assert "step 1/2: 50% to cluster b" in done.stderr and "shift complete" in done.stderr
    assert _shift_route(fed)[0]["route"] == [{"destination": {"cluster": "b"}, "weight": 100}]
    assert load.failures() == []
    assert statuses(fed.client_port, 30) == Counter({"b": 30})
    # explain says what the sidecars do (issue 41: it printed 'split 0% -> b' and a 100 %)
    explained = fed.explain()["ports"][0]
    assert explained["destinations"][0]["to"] == "cluster b"
    assert {r["cluster"]: r["share"] for r in explained["rows"] if r["share"]} == {"b": 1.0}
    table = fed.meshfed("explain", "echo.demo", "--from", "a").stdout
    assert "every request: 100% cluster b" in table and " 0% cluster" not in table


def test_meshfed_shift_rolls_back_when_the_target_starts_failing(fed) -> None:
    """c starts answering 500 at the shift's second step under 50 req/s: the callers'
    sidecars retry c's failures on a (issue 42: at most 5 failed requests seen by the caller;
    were 82-103), the shift judges the retried attempts as failures and rolls back, exit 3."""
    apply(fed, BASE)  # the policy before the shift: everything local to a
    wait_until(lambda: statuses(fed.client_port, 20) == Counter({"a": 20}), 20, "back to a")
    fail = fed.fail_file("c-echo-1")
    argv = [MESHFED, "shift", "echo.demo", "--to", "c", "--steps", "20,50,100",
            "--interval", "8s", "--max-error-rate", "2%"]  # fmt: skip
    with RateLoop(fed.client_port, HOST, rps=50, max_seconds=60) as load:
        broke = float("inf")
        lines: list[str] = []
        with subprocess.Popen(
            argv, env=meshfed_env(fed.home), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            text=True,
        ) as shift:  # fmt: skip
            try:
                assert shift.stderr is not None
                for line in shift.stderr:  # bounded: the shift ends within 3 steps of 8 s
                    lines.append(line)
                    if line.startswith("step 2/3"):
                        fail.touch()  # c starts failing in the middle of the shift
                        broke = time.monotonic()
                rc = shift.wait(30)
            finally:
                if shift.poll() is None:
                    shift.kill()
                    shift.wait(5)
                fail.unlink(missing_ok=True)
        ended = time.monotonic()
        wait_until(lambda: len([s for s in load.samples if s.at > ended + 2]) >= 50, 15, "load")
    err = "".join(lines)
    print(err)
    assert rc == 3, err
    assert broke < float("inf"), err  # the shift reached step 2 before c failed
    # c's failed attempts were retried on a (the callers saw none of them) and judged as
    # failures of the step -- or c, ejected, answered too little of its share
    rolled = next(x for x in err.splitlines() if x.startswith("rolling back: step 2 (50%)"))
    assert "over --max-error-rate" in rolled or "under half its 50%" in rolled, rolled
    assert " retried)" in err, err  # the step's lines count the retries
    assert _shift_route(fed) == []  # the policy is as it was
    failed = [s for s in load.failures() if s.at >= broke]
    after = [s for s in load.failures() if s.at > ended + 2]
    print(f"failed requests while c failed and before the rollback: {len(failed)}")
    assert len(failed) <= 5, failed  # issue 42: were 82-103 before retries on the stable
    assert after == [], after  # none once the rollback is in force


def test_meshfed_shift_rolls_back_when_a_step_costs_more_than_the_ceiling(fed) -> None:
    """Issue 42: ``--max-usd-per-hour``: a to cross-cloud shift (a -> c: AWS to GCP, priced)
    under 50 req/s costs more than a ceiling of a millionth of a dollar an hour from its
    first step: the shift rolls back, exits 3 and names the dollars measured and the ceiling;
    the policy is as it was."""
    apply(fed, BASE)
    wait_until(lambda: statuses(fed.client_port, 20) == Counter({"a": 20}), 20, "back to a")

    def recent_failures() -> int:  # the telemetry of the last seconds: an earlier test's
        # failures and retried attempts
        rows = fed.controller.api("GET", "/v1/traffic?window=5&by=destination_service")["edges"]
        return sum(round(r["errorShare"] * r["requests"]) + r["retries"] for r in rows)

    wait_until(lambda: recent_failures() == 0, 20, "no failed attempt in the telemetry window")
    argv = [MESHFED, "shift", "echo.demo", "--to", "c", "--steps", "50,100", "--interval", "6s",
            "--max-usd-per-hour", "0.000001"]  # fmt: skip
    with RateLoop(fed.client_port, HOST, rps=50, max_seconds=60):
        done = subprocess.run(
            argv, env=meshfed_env(fed.home), capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    print(done.stderr)
    assert done.returncode == 3, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("rolling back: step 1 (50%)"))
    assert "/hour is over --max-usd-per-hour $0.000001" in line and "egress $0." in line, line
    assert _shift_route(fed) == []  # the policy is as it was
