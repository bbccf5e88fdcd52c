"""A federation controller with three member clusters, all real processes on loopback.

``meshfed controller serve`` (REST + mTLS gRPC sync, SQLite state, lease 3 s) and three
``meshfed controlplane serve --controller ... --join-token ...`` (clusters ``a`` 127.0.1.0/24,
``b`` 127.0.2.0/24, ``c`` 127.0.3.0/24). ``echo`` runs behind real Envoy sidecars in ``a`` and
``b``, each with an east-west gateway; ``a`` exports it with an MCS ServiceExport applied to its
control plane, ``b`` with a meshfed ServiceExport applied to the controller. A client sidecar in
``c`` calls ``echo.demo.svc.clusterset.local``. Imports reach ``c`` only through the controller.

The tests of this module share the federation and run in file order: the last two stop parts
of it (the controller, then cluster ``b``'s control plane).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.client import ClientTls, call, find_token, request_json
from federation.durations import parse_rfc3339
from federation.errors import ApiError
from federation.sync.join_token import split_join_token
from tests.integration.conftest import owned_processes
from tests.integration.harness import (
    MESHFED,
    ControllerHandle,
    ControlPlaneHandle,
    LoadLoop,
    Processes,
    RateLoop,
    Sample,
    api_context,
    free_port,
    get,
    meshfed_env,
    run_meshfed,
    start_all,
    start_echo,
    start_gateway,
    start_sidecar_agent,
    wait_until,
    workload_yaml,
)
from tests.prometheus import Samples, samples
from trust import pki
from trust.bundle import TrustBundle
from trust.errors import TrustError
from trust.spiffe import SpiffeId, TrustDomain

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LEASE_S = 3.0
HOST = "echo.demo.svc.clusterset.local"
LOCALITY = {
    "a": "aws/us-east-1/us-east-1a",
    "b": "aws/eu-west-1/eu-west-1a",
    "c": "gcp/europe-west1/europe-west1-b",
}
NET = {"a": 1, "b": 2, "c": 3}


def _meshfed(home: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run_meshfed(home, *args, **kw)


def _join(home: Path, name: str, gateway: str) -> str:
    out = _meshfed(
        home,
        "cluster",
        "join",
        name,
        "--locality",
        LOCALITY.get(name, "aws/us-east-1"),
        "--network",
        f"net-{name}",
        "--gateway",
        gateway,
        "-o",
        "json",
    ).stdout
    return str(json.loads(out)["token"])


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """The federation described in the module docstring (about 20 s to start)."""
    base = tmp_path_factory.mktemp("federation")
    with owned_processes(base) as procs:
        yield _start(procs, base / "home")


def _start(procs: Processes, home: Path) -> dict[str, Any]:
    controller = ControllerHandle(procs, home, LEASE_S)
    controller.start()
    cps: dict[str, ControlPlaneHandle] = {}
    gateways: dict[str, str] = {}
    for name in ("a", "b", "c"):
        gateways[name] = f"127.0.{NET[name]}.1:{free_port(f'127.0.{NET[name]}.1')}"
        token = _join(home, name, gateways[name])
        cp = ControlPlaneHandle(
            procs,
            home,
            name,
            LOCALITY[name],
            extra_args=[
                "--network",
                f"net-{name}",
                "--controller",
                f"127.0.0.1:{controller.api_port}",
                "--join-token",
                token,
                "--gateway",
                gateways[name],
            ],
        )
        cps[name] = cp
    start_all(list(cps.values()))  # together
    wait_until(
        lambda: all(c["state"] == "Ready" for c in controller.clusters().values()),
        15,
        "three Ready clusters",
    )
    echoes: dict[str, tuple[str, int, int]] = {}  # cluster -> address, inbound, app port
    gateway_procs = {}
    for name in ("a", "b"):
        gateway_procs[name] = start_gateway(procs, home, cps[name], gateways[name])
        app = free_port()
        start_echo(procs, f"{name}-echo-1", app, name)
        _, inbound = start_sidecar_agent(
            procs,
            home,
            cps[name],
            service="echo",
            address=f"127.0.{NET[name]}.11",
            app_port=app,
            service_port=8080,
        )
        echoes[name] = (f"127.0.{NET[name]}.11", inbound, app)
    cps["a"].apply(
        "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n"
        "metadata: {name: echo, namespace: demo}\n"
    )
    _meshfed(
        home,
        "apply",
        "-f",
        "-",
        input_text="apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
        "metadata: {name: echo, namespace: demo}\nspec: {cluster: b}\n",
    )
    client_port = free_port()
    start_sidecar_agent(
        procs,
        home,
        cps["c"],
        service="frontend",
        address="127.0.3.10",
        app_port=free_port(),
        service_port=8080,
        outbound_port=client_port,
    )
    wait_until(lambda: get(client_port, HOST)[0] == 200, 45, "c -> echo through a gateway")
    return {
        "home": home,
        "controller": controller,
        "cps": cps,
        "client_port": client_port,
        "echoes": echoes,
        "gateway_procs": gateway_procs,
    }


def _imports_of(home: Path, cluster: str) -> dict[str, dict[str, Any]]:
    out = _meshfed(home, "get", "imports", "-o", "json").stdout
    return {i["metadata"]["name"]: i["spec"] for i in json.loads(out) if i["cluster"] == cluster}


def _clusters_seen(port: int, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        status, data, _ = get(port, HOST)
        seen[str(data.get("cluster")) if status == 200 else f"status {status}"] += 1
    return seen


def test_service_exported_in_two_clusters_is_imported_in_the_third_and_reached_through_both_gateways(
    fed,
) -> None:
    home = fed["home"]
    spec = wait_until(
        lambda: (s := _imports_of(home, "c").get("echo")) and len(s["clusters"]) == 2 and s,
        15,
        "c imports echo from a and b",
    )
    assert {c["cluster"] for c in spec["clusters"]} == {"a", "b"}
    assert {c["network"] for c in spec["clusters"]} == {"net-a", "net-b"}
    assert all(c["endpoints"] == 1 for c in spec["clusters"])
    assert spec["ports"] == [{"name": "http", "port": 8080, "protocol": "http"}]
    # a and b import it from each other only; nothing imports the unexported frontend
    assert [c["cluster"] for c in _imports_of(home, "a")["echo"]["clusters"]] == ["b"]
    assert "frontend" not in _imports_of(home, "a")
    # the sidecar in c reaches both clusters (same priority: both are another cloud for c)
    seen = wait_until(
        lambda: (s := _clusters_seen(fed["client_port"], 60)) and len(s) == 2 and s,
        20,
        "responses from a and b",
    )
    assert set(seen) == {"a", "b"}, seen

    # the access logs say who called whom (issue #17): c's caller names its own cluster and
    # locality and both serving clusters; a's and b's echo sidecars name c by the cluster
    # claim of its SVID (a DNS SAN only c's CA can sign)
    def logged(pattern: str) -> bool:
        logs = (home / "proxies").glob("sidecar_demo_*/envoy.log")
        return any(re.search(pattern, p.read_text(), re.MULTILINE) for p in logs)

    for server in ("a", "b"):
        wait_until(
            lambda server=server: (
                logged(rf"^outbound src=c/gcp/europe-west1/\S+ dst={server}/\S+ \[.* 200 ")
                and logged(
                    rf"^inbound src=c\.cluster\.meshfed\.internal dst={server}/\S+ \[.* 200 "
                )
            ),
            10,
            f"access log lines of c -> {server}",
        )
    # get clusters shows locality, network, gateway, heartbeat and state
    clusters = json.loads(_meshfed(home, "cluster", "list", "-o", "json").stdout)
    assert [(c["name"], c["state"], c["network"]) for c in clusters] == [
        ("a", "Ready", "net-a"),
        ("b", "Ready", "net-b"),
        ("c", "Ready", "net-c"),
    ]
    # RFC 3339 in UTC, as Kubernetes writes times
    assert all(c["lastHeartbeat"].endswith("Z") for c in clusters)
    assert all(time.time() - parse_rfc3339(c["lastHeartbeat"]) < LEASE_S for c in clusters)
    # c measured the RTT to both gateways (TCP connect, ms) and reported it
    rtts = wait_until(
        lambda: set(r := fed["controller"].clusters()["c"]["rttMs"]) == {"a", "b"} and r,
        15,
        "c's RTTs to a and b",
    )
    assert all(0 < v < 100 for v in rtts.values()), rtts
    table = _meshfed(home, "get", "clusters").stdout
    assert "LAST HEARTBEAT" in table and "Ready" in table


AUTHZ_ALLOW_FRONTEND = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-callers, namespace: demo}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: ["example.org/ns/demo/sa/frontend"]}}]
"""
AUTHZ_DENY_ADMIN = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: demo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
"""
AUTHZ_DRY_RUN_LOCKDOWN = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: lockdown, namespace: meshfed-system, annotations: {istio.io/dry-run: "true"}}
spec: {}
"""


def test_authorization_policies_hold_across_clusters(fed) -> None:
    """An ALLOW policy for ``frontend``, applied once to the controller, is enforced by the
    echo sidecars of a and b for callers in c (their SVIDs cross the gateways): ``intruder``
    in c gets 403; DENY beats ALLOW; a dry-run policy denies nothing and logs its verdict."""
    home, procs = fed["home"], fed["cps"]["c"].procs
    intruder_port = free_port()
    start_sidecar_agent(
        procs,
        home,
        fed["cps"]["c"],
        service="intruder",
        address="127.0.3.12",
        app_port=free_port(),
        service_port=8080,
        outbound_port=intruder_port,
    )
    wait_until(lambda: get(intruder_port, HOST)[0] == 200, 45, "intruder reaches echo (no policy)")

    def apply(text: str) -> None:
        _meshfed(home, "apply", "-f", "-", input_text=text)

    def statuses(port: int, path: str = "/", n: int = 10) -> set[int]:
        return {get(port, HOST, path)[0] for _ in range(n)}

    try:
        apply(AUTHZ_ALLOW_FRONTEND)
        wait_until(lambda: statuses(intruder_port) == {403}, 20, "intruder denied")
        assert statuses(fed["client_port"], n=20) == {200}  # frontend allowed, via a and b
        status, body, _ = get(intruder_port, HOST)
        assert status == 403 and "RBAC" in body.get("raw", "")
        # a principal of another trust domain matches no caller: applied, with a warning
        # saying so, and frontend is denied too ...
        foreign = _meshfed(home, "apply", "-f", "-",
                           input_text=AUTHZ_ALLOW_FRONTEND.replace("example.org/", "other.org/"))  # fmt: skip
        assert "Warning: authorizationpolicy/demo/echo-callers: spec.rules[0].from[0].source" \
            ".principals[0]: 'other.org/ns/demo/sa/frontend' names trust domain 'other.org'" \
            in foreign.stderr, foreign.stderr  # fmt: skip
        wait_until(lambda: statuses(fed["client_port"]) == {403}, 20, "frontend denied")
        # ... while Istio's cluster.local means this federation's trust domain: allowed again
        istio = _meshfed(home, "apply", "-f", "-",
                         input_text=AUTHZ_ALLOW_FRONTEND.replace("example.org/", "cluster.local/"))  # fmt: skip
        assert "Warning" not in istio.stderr
        wait_until(lambda: statuses(fed["client_port"]) == {200}, 20, "cluster.local: frontend")
        assert statuses(intruder_port) == {403}
        apply(AUTHZ_ALLOW_FRONTEND)

        # explain says the same, naming the policy
        def explain(caller: str) -> dict:
            out = _meshfed(
                home, "explain", "authz", "--from", caller, "--to", "echo.demo", "--at", "a",
                "-o", "json",
            ).stdout  # fmt: skip
            [row] = json.loads(out)["rows"]
            return row

        for caller, decision in (("intruder", "DENY"), ("frontend", "ALLOW")):
            row = explain(f"c/demo/{caller}")
            assert row["decision"] == decision and "demo/echo-callers" in row["reason"], row
        # clusters: the caller's SVID names the cluster whose CA issued it (unforgeable by
        # other clusters' CAs: name constraints), so frontend in c is denied when only a and b
        # may call, and allowed again when c may
        apply(AUTHZ_ALLOW_FRONTEND.replace('frontend"]', 'frontend"], clusters: ["a", "b"]'))
        wait_until(lambda: statuses(fed["client_port"]) == {403}, 20, "frontend in c denied")
        assert explain("c/demo/frontend")["decision"] == "DENY"
        assert explain("b/demo/frontend")["decision"] == "ALLOW"
        apply(AUTHZ_ALLOW_FRONTEND.replace('frontend"]', 'frontend"], clusters: ["c"]'))
        wait_until(lambda: statuses(fed["client_port"]) == {200}, 20, "frontend in c allowed")
        assert statuses(intruder_port) == {403}
        apply(AUTHZ_DENY_ADMIN)
        wait_until(lambda: statuses(fed["client_port"], "/admin") == {403}, 20, "DENY wins")
        assert statuses(fed["client_port"], "/") == {200}
        # dry run: lift the ALLOW, add a mesh-wide dry-run "deny all": nothing is denied ...
        _meshfed(
            home, "delete", "-f", "-", input_text=AUTHZ_ALLOW_FRONTEND + "---" + AUTHZ_DENY_ADMIN
        )
        apply(AUTHZ_DRY_RUN_LOCKDOWN)
        wait_until(lambda: statuses(intruder_port) == {200}, 20, "dry run denies nothing")
        # ... and the echo sidecars' access logs say what it would have done
        logs = [p.read_text() for p in (home / "proxies").glob("sidecar_demo_echo-*/envoy.log")]
        wait_until(
            lambda: any(
                "allow_shadow_engine_result" in p.read_text() and "denied" in p.read_text()
                for p in (home / "proxies").glob("sidecar_demo_echo-*/envoy.log")
            ),
            10,
            "a shadow 'denied' in an echo sidecar's access log",
        )
        assert logs
    finally:
        _meshfed(
            home,
            "delete",
            "--ignore-not-found",  # some were deleted above
            "-f",
            "-",
            input_text=AUTHZ_ALLOW_FRONTEND
            + "---"
            + AUTHZ_DENY_ADMIN
            + "---"
            + AUTHZ_DRY_RUN_LOCKDOWN,
        )
    wait_until(lambda: get(intruder_port, HOST)[0] == 200, 20, "policies gone")


AUTHZ_DENY_ADMIN_EXACT = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin-exact, namespace: demo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin", "/admin/secret"]}}]}]
"""

#: spelling -> (status, the path the app is sent): the table in docs/policy.md
PATH_SPELLINGS = {
    "/admin": (403, None),
    "/%61dmin": (403, None),
    "/%61%64%6D%69%6E": (403, None),
    "/./admin": (403, None),
    "/x/../admin": (403, None),
    "/x/%2E%2E/admin": (403, None),
    "//admin": (403, None),
    "/admin/": (200, "/admin/"),
    "/admin%2Fsecret": (403, None),
    "/admin%2fsecret": (403, None),
    "/admin%5Csecret": (403, None),
    "/admin//secret": (403, None),
    "/ADMIN": (200, "/ADMIN"),
    "/adminx": (200, "/adminx"),
    "/public%2Fx": (200, "/public/x"),
    "/public/%7Euser": (200, "/public/~user"),
}


def test_authorization_policy_paths_hold_for_every_spelling_of_a_path(fed) -> None:
    """Issue #35 (2): ``DENY paths: ["/admin"]`` let ``/%61dmin``, ``/./admin`` and
    ``/x/../admin`` reach the app as ``/admin``, and ``%2F`` reached it as ``/``. Now both
    sidecars normalise every path first (RFC 3986, merged slashes, escaped slashes decoded):
    each spelling of a denied path gets 403, and what is allowed reaches the app in the
    spelling the policy was checked against (raw path, before the app decodes anything)."""
    home = fed["home"]
    _meshfed(home, "apply", "-f", "-", input_text=AUTHZ_DENY_ADMIN_EXACT)
    try:
        wait_until(
            lambda: {get(fed["client_port"], HOST, "/admin")[0] for _ in range(20)} == {403},
            20,
            "DENY at every echo replica",
        )
        seen = {}
        for spelling in PATH_SPELLINGS:
            status, body, _ = get(fed["client_port"], HOST, spelling)
            seen[spelling] = (status, body.get("rawPath") if status == 200 else None)
        assert seen == PATH_SPELLINGS
    finally:
        _meshfed(home, "delete", "-f", "-", input_text=AUTHZ_DENY_ADMIN_EXACT)


AUTHZ_WHEN_HEADER = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-needs-token, namespace: demo}
spec:
  action: ALLOW
  rules:
  - when:
    - key: request.headers[x-token]
      values: ["open-*"]
      notValues: ["open-nothing"]
"""


def test_an_allow_policy_with_a_when_on_a_header_lets_in_only_requests_that_carry_it(fed) -> None:
    """Issue #40: Istio's ``when`` on ``request.headers[...]`` (values and notValues, with
    Istio's globs): 403 without the header, 200 with it, for every echo replica."""
    home = fed["home"]
    _meshfed(home, "apply", "-f", "-", input_text=AUTHZ_WHEN_HEADER)

    def statuses(headers: dict[str, str] | None = None, n: int = 20) -> set[int]:
        return {get(fed["client_port"], HOST, headers=headers)[0] for _ in range(n)}

    try:
        wait_until(lambda: statuses() == {403}, 20, "requests without the header denied")
        assert statuses({"x-token": "open-sesame"}) == {200}
        assert statuses({"x-token": "open-nothing"}) == {403}  # notValues
        assert statuses({"x-token": "closed"}) == {403}

        def explained(*header: str) -> set[str]:
            out = _meshfed(home, "explain", "authz", "--from", "c/demo/frontend", "--to",
                           "echo.demo", "--at", "a", *header, "-o", "json").stdout  # fmt: skip
            return {r["decision"] for r in json.loads(out)["rows"]}

        assert explained() == {"DENY"}  # explain says what the sidecars do
        assert explained("-H", "x-token: open-sesame") == {"ALLOW"}
    finally:
        _meshfed(home, "delete", "-f", "-", input_text=AUTHZ_WHEN_HEADER)
    wait_until(lambda: statuses() == {200}, 20, "the policy gone")


def _plain_text_get(address: str, port: int) -> int | str:
    """A plain-text HTTP GET straight to a sidecar's inbound port (no mTLS): the status, or
    how the connection ended."""
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": HOST})
        return conn.getresponse().status
    except (ConnectionError, http.client.HTTPException, OSError) as err:
        return type(err).__name__
    finally:
        conn.close()


def test_peer_authentication_permissive_lets_plain_text_in_strict_refuses_it_per_port(fed) -> None:
    """Issue #40: Istio's PeerAuthentication, applied to the controller, decides what a's echo
    sidecar accepts: STRICT (meshfed's default) closes a plain-text connection; a namespace
    PERMISSIVE lets it in (migration mode) while mesh callers keep using mTLS; a workload
    policy's portLevelMtls STRICT for the app's port beats the namespace's PERMISSIVE."""
    home = fed["home"]
    address, inbound, app_port = fed["echoes"]["a"]
    assert isinstance(_plain_text_get(address, inbound), str)  # STRICT: closed
    namespace = (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: demo}\nspec: {mtls: {mode: PERMISSIVE}}\n"
    )
    workload = (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: echo-app-port, namespace: demo}\n"
        "spec: {selector: {matchLabels: {app: echo}}, mtls: {mode: UNSET},"
        f" portLevelMtls: {{{app_port}: {{mode: STRICT}}}}}}\n"
    )
    try:
        _meshfed(home, "apply", "-f", "-", input_text=namespace)
        wait_until(lambda: _plain_text_get(address, inbound) == 200, 20, "PERMISSIVE in force")
        assert get(fed["client_port"], HOST)[0] == 200  # mTLS callers still served
        _meshfed(home, "apply", "-f", "-", input_text=workload)
        wait_until(
            lambda: isinstance(_plain_text_get(address, inbound), str), 20, "port STRICT again"
        )
        assert get(fed["client_port"], HOST)[0] == 200
    finally:
        _meshfed(home, "delete", "-f", "-", input_text=namespace + "---\n" + workload)


def test_export_conflict_follows_mcs_oldest_wins(fed) -> None:
    """a exports ``dup`` on port 8080 first, b later on port 9090: b gets Conflict."""
    home, cps = fed["home"], fed["cps"]
    cps["a"].apply(
        workload_yaml(
            "dup-1",
            service="dup",
            address="127.0.1.50",
            locality=LOCALITY["a"],
            port=8080,
            target_port=18080,
        )
        + "---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n"
        "metadata: {name: dup, namespace: demo}\n"
    )
    # a's export is recorded (first seen) once c imports it: b's, applied now, is younger
    wait_until(lambda: "dup" in _imports_of(home, "c"), 10, "dup exported by a and imported in c")
    cps["b"].apply(
        workload_yaml(
            "dup-1",
            service="dup",
            address="127.0.2.50",
            locality=LOCALITY["b"],
            port=9090,
            target_port=19090,
        )
        + "---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n"
        "metadata: {name: dup, namespace: demo}\n"
    )

    def statuses() -> dict[str, dict[str, Any]]:
        out = _meshfed(home, "get", "exports", "-o", "json").stdout
        return {e["cluster"]: e for e in json.loads(out) if e["service"] == "dup"}

    got = wait_until(lambda: len(s := statuses()) == 2 and s, 10, "both dup exports seen")
    assert got["a"]["condition"] == "Exported"
    assert got["b"]["condition"] == "Conflict"
    assert "oldest export (cluster a)" in got["b"]["message"]
    table = _meshfed(home, "get", "exports").stdout
    assert "Conflict" in table
    spec = _imports_of(home, "c")["dup"]
    assert [c["cluster"] for c in spec["clusters"]] == ["a"]
    assert spec["ports"][0]["port"] == 8080
    # a imports nothing of the conflicting exporter: its import of its own service (MCS:
    # every member has it, for the ClusterSetIP) names no other cluster, b included
    own = _imports_of(home, "a")["dup"]
    assert own["clusters"] == [] and own["ips"] == spec["ips"] and len(spec["ips"]) == 1


def _traces(fed, cluster: str) -> list[dict[str, Any]]:
    out = _meshfed(
        fed["home"], "trace", "--controlplane", fed["cps"][cluster].api_url, "--origin", "a",
        "-o", "json",
    ).stdout  # fmt: skip
    return list(json.loads(out))


def test_the_trace_of_one_change_shows_every_hop(fed) -> None:
    """Issue #37: a second endpoint of echo in cluster a reaches c's client sidecar (the
    weight of a's gateway in its EDS changes); ``meshfed trace`` at c shows the change from
    a's registry through the controller to c's registry, c's new snapshot and the Envoy's
    ACK, with a time for every hop; the table names the same hops."""
    home, cps = fed["home"], fed["cps"]
    doc = workload_yaml(
        "echo-trace", service="echo", address="127.0.1.12", locality=LOCALITY["a"],
        port=8080, target_port=free_port(),
    )  # fmt: skip
    cps["a"].apply(doc)
    try:

        def complete() -> dict[str, Any] | None:
            for t in _traces(fed, "c"):
                if t["acked"] and all(v is not None for v in t["hopsMs"].values()):
                    return t
            return None

        wait_until(lambda: complete() is not None, 30, "a complete trace at c")
        trace = complete()
        assert trace is not None
        assert set(trace["hopsMs"]) == {"report", "controller", "deliver", "apply", "firstBuild"}
        (sidecar,) = [p for p in trace["proxies"].values() if p["totalMs"] is not None][:1]
        assert sidecar["role"] == "sidecar" and sidecar["ackMs"] is not None
        # only proxies the change altered: c's gateway serves nothing of a's echo
        assert all(p["role"] != "gateway" for p in trace["proxies"].values())
        table = _meshfed(home, "trace", "--controlplane", cps["c"].api_url, "--origin", "a").stdout
        print(table)
        for column in ("REPORT", "CONTROLLER", "DELIVER", "APPLY", "BUILD", "ACK P50", "ACK MAX"):
            assert column in table
        assert "a v" in table
        # at the origin: its own proxies, and the report hop
        assert any(t["hopsMs"]["report"] is not None for t in _traces(fed, "a"))
        c = cps["c"]
        metrics = _scrape(
            c.api_url, find_token(c.api_url, home=c.home), api_context(c.api_url, c.home)
        )
        hops = {
            dict(labels).get("hop")
            for name, labels in metrics
            if name == "meshfed_propagation_hop_seconds_count"
        }
        assert {"deliver", "apply", "build", "ack", "total"} <= hops
    finally:
        cps["a"].delete(doc)


def _exporters_seen_by(fed, importer: str, service: str) -> set[str]:
    """The exporters of ``service`` in ``importer``'s import, as the controller sends it."""
    for item in fed["controller"].api("GET", "/v1/imports")["imports"]:
        if item["cluster"] == importer and item["metadata"]["name"] == service:
            return {c["cluster"] for c in item["spec"]["clusters"]}
    return set()


def _envoy_of(agent_pid: int) -> int:
    """The pid of the Envoy an agent runs (its child process named ``envoy``)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            comm, fields = rest.rsplit(") ", 1)
        except (OSError, ValueError):
            continue
        if comm == "envoy" and int(fields.split()[1]) == agent_pid:
            return int(pid)
    raise AssertionError(f"no Envoy under agent {agent_pid}")


def test_a_new_export_is_announced_once_its_gateway_routes_it(fed) -> None:
    """Make before break (``federation/controlplane/link/export_gate.py``): other clusters
    reach an export through its cluster's gateway, so a new export is announced only once
    that gateway holds it. With a's gateway frozen (SIGSTOP on its Envoy: it ACKs nothing),
    a new export of a is not imported in c; thawed, it is as soon as the gateway ACKs, well
    before the hold-back limit (HOLD_S); a gateway that stays frozen delays a new export by
    that limit, not for ever."""
    from federation.controlplane.link.export_gate import HOLD_S

    cps = fed["cps"]
    envoy = _envoy_of(fed["gateway_procs"]["a"].pid)

    def export(service: str, address: str) -> str:
        return (
            workload_yaml(
                f"{service}-1", service=service, address=address, locality=LOCALITY["a"],
                port=8080, target_port=free_port(),
            )
            + "---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n"
            f"metadata: {{name: {service}, namespace: demo}}\n"
        )  # fmt: skip

    docs = [export("gated", "127.0.1.61"), export("gated-late", "127.0.1.62")]
    os.kill(envoy, signal.SIGSTOP)
    try:
        cps["a"].apply(docs[0])
        applied = time.monotonic()
        while time.monotonic() - applied < 1.0:  # frozen: a's report holds it back
            assert "a" not in _exporters_seen_by(fed, "c", "gated"), (
                "announced before a's gateway held it"
            )
            time.sleep(0.05)
        os.kill(envoy, signal.SIGCONT)
        wait_until(lambda: "a" in _exporters_seen_by(fed, "c", "gated"), 10, "gated in c")
        released = time.monotonic() - applied
        assert released < HOLD_S - 0.3, f"{released:.2f} s: released by the limit, not the ACK"

        os.kill(envoy, signal.SIGSTOP)
        started = time.monotonic()
        cps["a"].apply(docs[1])
        wait_until(lambda: "a" in _exporters_seen_by(fed, "c", "gated-late"), 15, "gated-late")
        held = time.monotonic() - started
        assert held >= HOLD_S, f"announced {held:.2f} s after the apply, the gateway frozen"
        a = cps["a"]  # and its control plane says why it waited
        log = a.procs.log(f"controlplane-a-{a.starts}")
        assert "export demo/gated-late reported after" in log, log[-2000:]
        print(f"released on the gateway's ACK after {released:.2f} s; frozen: {held:.2f} s")
    finally:
        os.kill(envoy, signal.SIGCONT)
        cps["a"].delete("---\n".join(docs))


def _stat(admin_port: int, name: str) -> int:
    """One counter of an Envoy's admin ``/stats`` (0 when absent)."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", f"/stats?filter=^{re.escape(name)}$")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    found = re.search(rf"^{re.escape(name)}: (\d+)$", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def test_an_export_scaled_to_zero_stays_imported_and_its_return_is_an_endpoint_change(
    fed,
) -> None:
    """A ServiceImport outlives its pods (MCS, KEP-1645; Istio keeps a Service's cluster at
    zero replicas): ``scaled``, exported by a, loses its only workload (its sidecar agent
    stops and deregisters). c still imports it, from a with no endpoint, and a caller in c
    gets 503 ``no healthy upstream`` from its sidecar (not a missing route); the workload
    back, c's sidecar is sent the endpoint alone -- no CDS update (a cluster to make and
    warm again), and requests are served again. Withdrawn, the export ends the import."""
    home, cps = fed["home"], fed["cps"]
    procs, host = cps["a"].procs, "scaled.demo.svc.clusterset.local"
    export = (
        "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n"
        "metadata: {name: scaled, namespace: demo}\n"
    )
    app, port, admin = free_port(), free_port(), free_port()
    started = [start_echo(procs, "a-scaled-1", app, "a")]

    def scale_up() -> subprocess.Popen[bytes]:
        agent, _ = start_sidecar_agent(
            procs, home, cps["a"], service="scaled", address="127.0.1.64", app_port=app,
            service_port=8080, name="scaled-1",
        )  # fmt: skip
        started.append(agent)
        return agent

    exported = False
    try:
        agent = scale_up()
        cps["a"].apply(export)
        exported = True
        caller, _ = start_sidecar_agent(
            procs, home, cps["c"], service="scaled-caller", address="127.0.3.14",
            app_port=free_port(), service_port=8080, outbound_port=port, admin_port=admin,
            name="scaled-caller-1",
        )  # fmt: skip
        started.append(caller)
        wait_until(lambda: get(port, host)[0] == 200, 45, "c -> scaled in a")

        agent.send_signal(signal.SIGTERM)  # scaled to zero: the agent deregisters
        agent.wait(timeout=30)
        spec = wait_until(
            lambda: (s := _imports_of(home, "c").get("scaled")) and s["clusters"] and s,
            15,
            "scaled still imported in c",
        )
        wait_until(
            lambda: _imports_of(home, "c")["scaled"]["clusters"][0]["endpoints"] == 0,
            15,
            "a's endpoint withdrawn",
        )
        assert [c["cluster"] for c in spec["clusters"]] == ["a"]
        assert spec["ports"] == [{"name": "http", "port": 8080, "protocol": "http"}]
        _, data, _ = wait_until(
            lambda: (r := get(port, host))[0] == 503 and r, 10, "503 from c's sidecar"
        )
        assert "no healthy upstream" in data.get("raw", ""), data
        cds = _stat(admin, "cluster_manager.cds.update_success")
        eds_before = _stat(admin, f"cluster.outbound|8080||{host}.update_success")

        scale_up()  # the workload is back
        wait_until(lambda: get(port, host)[0] == 200, 30, "c -> scaled in a again")
        assert _stat(admin, "cluster_manager.cds.update_success") == cds, "a CDS update"
        assert _stat(admin, f"cluster.outbound|8080||{host}.update_success") > eds_before

        cps["a"].delete(export)
        exported = False
        wait_until(lambda: "scaled" not in _imports_of(home, "c"), 15, "import withdrawn")
    finally:
        for proc in reversed(started):
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            proc.wait(timeout=30)
        for name in ("scaled-1", "scaled-caller-1"):  # stopped for good: not to be renewed
            shutil.rmtree(home / "proxies" / f"sidecar_demo_{name}", ignore_errors=True)
        if exported:
            cps["a"].delete(export)


def _csr(trust_domain: str) -> str:
    key = pki.generate_private_key()
    csr = pki.build_csr(key, spiffe_id=TrustDomain(trust_domain).id, common_name="x")
    from cryptography.hazmat.primitives import serialization

    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _join_raw(fed, cluster: str, token: str, csr: str) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        fed["controller"].url + "/v1/join",
        data=json.dumps({"cluster": cluster, "token": token, "csr": csr}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(
            req, timeout=10, context=fed["controller"].ssl_context()
        ) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


def _root_signatures(fed) -> int:
    """Intermediates the controller's root has signed (one log line each)."""
    controller = fed["controller"]
    return controller.procs.log(f"controller-{controller.starts}").count(
        "root signed an intermediate CA"
    )


def _serve_with_token(fed, home: Path, cluster: str, token: str, state_dir: Path):
    return subprocess.run(
        [
            MESHFED,
            "controlplane",
            "serve",
            "--cluster",
            cluster,
            "--locality",
            "aws/us-east-1",
            "--xds-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--controller",
            f"127.0.0.1:{fed['controller'].api_port}",
            "--join-token",
            token,
            "--state-dir",
            str(state_dir),
        ],
        env=meshfed_env(home),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_join_tokens_are_single_use_expire_and_csrs_must_be_for_our_trust_domain(
    fed, tmp_path
) -> None:
    home = fed["home"]
    token = _join(home, "d", "127.0.4.1:15443")
    signed = _root_signatures(fed)
    assert _join_raw(fed, "d", "mfj_wrong", _csr("example.org")) == 401
    assert _join_raw(fed, "e", token, _csr("example.org")) == 401  # token of another cluster
    assert _root_signatures(fed) == signed  # refused before anything was signed
    assert _join_raw(fed, "d", token, _csr("evil.org")) == 403  # foreign trust domain
    # a token pinned to another root: the control plane refuses the controller, stores
    # nothing and never sends the token (it stays usable)
    secret, _ = split_join_token(token)
    result = _serve_with_token(fed, home, "d", f"{secret}.{'0' * 64}", tmp_path / "cp-pin")
    assert result.returncode == 2, result.stderr
    assert "not the federation the join token names" in result.stderr
    assert not (tmp_path / "cp-pin" / "federation.json").exists()
    assert not (tmp_path / "cp-pin" / "ca").exists()
    assert _root_signatures(fed) == signed
    assert _join_raw(fed, "d", token, _csr("example.org")) == 200  # still unused: works once
    assert _root_signatures(fed) == signed + 1
    assert _join_raw(fed, "d", token, _csr("example.org")) == 401  # ... and only once
    assert _root_signatures(fed) == signed + 1
    out = _meshfed(
        home,
        "cluster",
        "join",
        "e",
        "--locality",
        "aws/us-east-1",
        "--gateway",
        "127.0.5.1:15443",
        "--token-ttl",
        "1s",
        "-o",
        "json",
    ).stdout
    answer = json.loads(out)
    expired, expires_at = answer["token"], answer["expiresAt"]
    wait_until(lambda: time.time() > expires_at + 0.1, 5, "the 1 s join token expired")
    assert _join_raw(fed, "e", expired, _csr("example.org")) == 401
    # a control plane started with a bad token is refused and says so
    result = _serve_with_token(fed, home, "e", expired, tmp_path / "cp-e")
    assert result.returncode == 2, result.stderr
    assert "401" in result.stderr and "join token" in result.stderr
    assert not (tmp_path / "cp-e" / "federation.json").exists()
    for name in ("d", "e"):
        _meshfed(home, "cluster", "remove", name)


def test_rest_api_without_the_admin_token_answers_401(fed) -> None:
    import urllib.error
    import urllib.request

    for method, path in [
        ("GET", "/v1/clusters"),
        ("GET", "/v1/exports"),
        ("GET", "/v1/imports"),
        ("GET", "/v1/policies"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/clusters"),
        ("POST", "/v1/apply"),
        ("DELETE", "/v1/clusters/a"),
    ]:
        for auth in (None, "Bearer wrong"):
            req = urllib.request.Request(
                fed["controller"].url + path,
                method=method,
                data=b"{}" if method == "POST" else None,
            )
            if auth:
                req.add_header("Authorization", auth)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5, context=fed["controller"].ssl_context())
            err.value.close()
            assert err.value.code == 401, (method, path, auth)
    assert fed["controller"].clusters()["a"]["state"] == "Ready"  # nothing was removed
    # the API is HTTPS with a certificate from the federation's root: a client trusting only
    # the system's CAs refuses it, and plain HTTP to it fails
    with pytest.raises(ApiError, match="certificate is not trusted"):
        asyncio.run(
            request_json(
                "GET",
                fed["controller"].url + "/healthz",
                None,
                tls=ClientTls(ssl.create_default_context()),
            )
        )
    with pytest.raises(ApiError):
        call("GET", fed["controller"].url.replace("https://", "http://"), "/healthz")
    doc = fed["controller"].api("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.") and "/v1/join" in doc["paths"]


def test_a_certificate_from_one_clusters_intermediate_cannot_speak_for_another(fed) -> None:
    """Cluster a's intermediate signs an SVID claiming to be b's control plane: refused."""
    import grpc

    from federation.sync.proto import sync_pb2, sync_pb2_grpc
    from trust.authority import issue_svid
    from trust.cluster_ca import ClusterCaDirectory

    a_ca = ClusterCaDirectory(fed["home"] / "controlplanes" / "a" / "ca").authority(
        TrustDomain("example.org")
    )
    forged = issue_svid(
        a_ca, SpiffeId.parse("spiffe://example.org/ns/meshfed-system/sa/controlplane-b")
    )
    creds = grpc.ssl_channel_credentials(
        root_certificates=a_ca.bundle.to_pem(),
        private_key=forged.private_key_pem(),
        certificate_chain=forged.chain_pem(),
    )
    with grpc.secure_channel(
        f"127.0.0.1:{fed['controller'].sync_port}",
        creds,
        options=[("grpc.ssl_target_name_override", "controller.meshfed.internal")],
    ) as channel:
        stub = sync_pb2_grpc.FederationSyncStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            for _ in stub.Sync(iter([sync_pb2.ClusterReport(cluster="b")]), timeout=5):
                pass
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not issued by its joined intermediate" in err.value.details()


def test_apply_with_one_bad_document_stores_none(fed, tmp_path) -> None:
    home = fed["home"]
    good = (
        "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
        "metadata: {name: extra, namespace: demo}\nspec: {cluster: a}\n"
    )

    def stored() -> list[str]:
        docs = fed["controller"].api("GET", "/v1/exports")["documents"]
        return [d["metadata"]["name"] for d in docs]

    # refused by the schema before the controller is asked
    bad_schema = good + "---\n" + good.replace("extra", "Bad_Name")
    r = _meshfed(home, "apply", "-f", "-", input_text=bad_schema, check=False)
    assert r.returncode == 2
    assert "document 2 (ServiceExport demo/Bad_Name): metadata.name" in r.stderr
    # refused by the controller: the cluster is not a member
    bad_cluster = (
        good + "---\n" + good.replace("extra", "other").replace("cluster: a", "cluster: zz")
    )
    path = tmp_path / "policies.yaml"
    path.write_text(bad_cluster)
    r = _meshfed(home, "apply", "-f", str(path), check=False)
    assert r.returncode == 2
    assert "document 2 (ServiceExport demo/other): spec.cluster: 'zz' is not a member" in r.stderr
    assert "extra" not in stored() and "other" not in stored()
    # the good document alone is stored, and deleted again
    assert "configured" in _meshfed(home, "apply", "-f", "-", input_text=good).stdout
    assert "extra" in stored()
    assert "deleted" in _meshfed(home, "delete", "-f", "-", input_text=good).stdout
    assert "extra" not in stored()
    # a workload belongs to a control plane, not the controller
    r = _meshfed(
        home,
        "apply",
        "-f",
        "-",
        input_text=workload_yaml(
            "w", service="w", address="127.0.1.9", locality=LOCALITY["a"], port=80, target_port=80
        ),
        check=False,
    )
    assert r.returncode == 2 and "--controlplane" in r.stderr


def _roots(path: Path) -> list[Any]:
    return pki.load_certificates(path.read_bytes(), source=str(path))


def _identity_dirs(home: Path) -> list[Path]:
    """Every agent's identity directory (sidecars and gateways)."""
    return sorted(p for p in home.glob("proxies/*/identity") if (p / "cert.pem").exists())


def test_root_rotation_under_200_rps_re_signs_every_cluster_and_retires_the_old_root(
    fed,
) -> None:
    """Attack 7 of issue #15: ``meshfed trust rotate-root`` with three joined clusters under
    200 rps: the controller sends the two-root bundle and has the new root re-sign every
    joined cluster's intermediate over sync (same key); every workload renews its SVID under
    it; then ``--retire-old`` is accepted, every bundle drops the old root, no request fails,
    and every SVID chains to the new root only."""
    home = fed["home"]
    old_root = _roots(home / "trust" / "bundle.pem")[0]
    dirs = _identity_dirs(home)
    # the fixture's 2 gateways, 2 echo sidecars and the frontend's; earlier tests of the
    # module add c's gateway and more sidecars (every one of them must renew too)
    assert len(dirs) >= 5, dirs
    with RateLoop(fed["client_port"], HOST, rps=200, max_requests=40000, max_seconds=150) as load:
        wait_until(lambda: len(load.samples) >= 200, 15, "traffic flowing")
        _meshfed(home, "trust", "rotate-root")
        new_root = _roots(home / "trust" / "bundle.pem")[-1]
        assert new_root != old_root

        def intermediates_re_signed() -> bool:
            return all(
                pki.issued_by(_roots(home / "controlplanes" / c / "ca" / "ca.pem")[0], new_root)
                for c in ("a", "b", "c")
            )

        wait_until(intermediates_re_signed, 30, "every joined intermediate re-signed")

        def svids_renewed() -> bool:
            return all(pki.issued_by(_roots(d / "cert.pem")[1], new_root) for d in dirs)

        # after the control planes' 15 s grace (agents fetch the two-root bundle first)
        wait_until(svids_renewed, 45, "every SVID renewed under the re-signed intermediates")
        # refused until every re-sign is RETIRE_AFTER_RESIGN old (exit 2, saying how long)
        early = _meshfed(home, "trust", "rotate-root", "--retire-old", check=False)
        if early.returncode != 0:
            assert early.returncode == 2 and "try again in" in early.stderr, early.stderr

        def retired() -> bool:
            retire = _meshfed(home, "trust", "rotate-root", "--retire-old", check=False)
            assert retire.returncode in (0, 2), retire.stderr
            return retire.returncode == 0

        wait_until(retired, 45, "--retire-old accepted", interval_s=2)

        def one_root_everywhere() -> bool:
            files = [home / "controlplanes" / c / "ca" / "bundle.pem" for c in ("a", "b", "c")]
            files += [d / "bundle.pem" for d in dirs]
            return all(p.read_text().count("BEGIN CERTIFICATE") == 1 for p in files)

        wait_until(one_root_everywhere, 30, "the old root gone from every bundle")
        after = len(load.samples)
        wait_until(lambda: len(load.samples) >= after + 1000, 20, "5 s more of traffic")
    assert load.failures() == [], f"{len(load.failures())} failed of {len(load.samples)}"
    print(f"root rotation + retirement under load: 0 failed of {len(load.samples)} requests")
    new_only = TrustBundle(TrustDomain("example.org"), (new_root,))
    old_only = TrustBundle(TrustDomain("example.org"), (old_root,))
    for d in dirs:
        chain = _roots(d / "cert.pem")
        new_only.verify(chain)
        with pytest.raises(TrustError):
            old_only.verify(chain)
    # the controller's API moved to a certificate under the new root by itself
    pem = ssl.get_server_certificate(("127.0.0.1", fed["controller"].api_port))
    inter = _roots(home / "trust" / "intermediates" / "meshfed-controller" / "ca.pem")[0]
    assert pki.issued_by(pki.load_certificates(pem.encode(), source="api")[0], inter)
    assert pki.issued_by(inter, new_root)
    assert fed["controller"].clusters()["a"]["state"] == "Ready"


def test_killing_and_restarting_the_controller_fails_no_request(fed) -> None:
    controller = fed["controller"]
    with LoadLoop(
        fed["client_port"], HOST, interval_s=0.01, max_requests=4000, max_seconds=60
    ) as load:
        wait_until(lambda: len(load.samples) >= 50, 10, "traffic flowing")
        assert controller.proc is not None
        controller.proc.send_signal(signal.SIGKILL)
        controller.proc.wait(5)
        killed, before = time.monotonic(), len(load.samples)
        # the control planes keep serving their last state: two leases of it
        wait_until(
            lambda: time.monotonic() - killed > 2 * LEASE_S and len(load.samples) - before > 100,
            4 * LEASE_S,
            "two leases of traffic while the controller is down",
        )
        served_while_down = len(load.samples) - before
        controller.start()
        wait_until(
            lambda: all(
                c["state"] == "Ready" and c["connected"] for c in controller.clusters().values()
            ),
            20,
            "every control plane reconnected",
        )
        reconnected = len(load.samples)
        wait_until(lambda: len(load.samples) - reconnected >= 50, 10, "traffic after reconnect")
    assert served_while_down > 100
    assert load.failures() == [], load.failures()[:5]
    assert {s.name for s in load.samples} == {"a-echo-1", "b-echo-1"}
    # state intact: members, exports and imports as before
    assert set(controller.clusters()) == {"a", "b", "c"}
    assert {c["cluster"] for c in _imports_of(fed["home"], "c")["echo"]["clusters"]} == {"a", "b"}


def test_a_cluster_whose_lease_expires_is_withdrawn_everywhere(fed) -> None:
    """b's control plane stops (its gateway and echo keep running): after the lease nothing
    is routed to b any more, and b is Unreachable."""
    controller, cps = fed["controller"], fed["cps"]
    with LoadLoop(
        fed["client_port"], HOST, interval_s=0.01, max_requests=3000, max_seconds=40
    ) as load:
        wait_until(lambda: len(load.samples) >= 50, 10, "traffic flowing")
        cps["b"].stop()
        stopped = time.monotonic()
        wait_until(
            lambda: controller.clusters()["b"]["state"] == "Unreachable",
            LEASE_S + 3,
            "b Unreachable",
        )
        marked = time.monotonic() - stopped

        def after() -> list[Sample]:
            return [s for s in load.samples if s.at > stopped + LEASE_S + 1]

        wait_until(lambda: len(after()) > 100, 2 * LEASE_S + 10, "traffic after the lease")
    assert marked <= LEASE_S + 1.5, marked
    # the controller counted the expiry; a's control plane still syncs (issue #17's metrics)
    metrics = _scrape(controller.url, controller.token(), controller.ssl_context())
    assert metrics[("meshfed_controller_lease_expiries_total", (("cluster", "b"),))] == 1
    assert metrics[("meshfed_controller_clusters", (("state", "Unreachable"),))] == 1
    assert metrics[("meshfed_controller_sync_streams", ())] == 2
    a = cps["a"]
    metrics = _scrape(a.api_url, find_token(a.api_url, home=a.home), api_context(a.api_url, a.home))
    assert metrics[("meshfed_sync_stream_up", ())] == 1
    assert metrics[("meshfed_sync_updates_received_total", ())] >= 1
    assert metrics[("meshfed_sync_last_update_timestamp_seconds", ())] > 0
    after = after()
    assert len(after) > 100
    assert {s.name for s in after} == {"a-echo-1"}, Counter(s.name for s in after)
    assert load.failures() == []
    assert [c["cluster"] for c in _imports_of(fed["home"], "c")["echo"]["clusters"]] == ["a"]
    yaml.safe_load(_meshfed(fed["home"], "cluster", "list", "-o", "yaml").stdout)


def _scrape(url: str, token: str, context: ssl.SSLContext | None = None) -> Samples:
    """``GET <url>/metrics`` with the bearer token, parsed."""
    import urllib.request

    req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5, context=context) as resp:
        return samples(resp.read().decode())


def _link_of(cp: ControlPlaneHandle) -> dict[str, Any]:
    """The control plane's federation link as its ``/v1/info`` shows it."""
    token = find_token(cp.api_url, home=cp.home)
    return dict(call("GET", cp.api_url, "/v1/info", token=token, home=cp.home)["federation"] or {})


def test_removing_a_cluster_withdraws_it_and_its_control_plane_stops_syncing(fed) -> None:
    home, b = fed["home"], fed["cps"]["b"]
    assert b.proc is not None
    if b.proc.poll() is not None:  # stopped by the lease test: back, and in sync again
        b.start()
    wait_until(lambda: _link_of(b)["connected"], 20, "b in sync with the controller")
    assert _link_of(b)["stopped"] is None
    assert "cluster b removed" in _meshfed(home, "cluster", "remove", "b").stdout
    assert set(fed["controller"].clusters()) == {"a", "c"}
    assert [c["cluster"] for c in _imports_of(home, "c")["echo"]["clusters"]] == ["a"]
    # b's control plane is refused (PERMISSION_DENIED): it stops and says so, no retry loop
    wait_until(lambda: _link_of(b)["stopped"] is not None, 15, "b's link stopped")
    link = _link_of(b)
    assert "PERMISSION_DENIED" in link["stopped"] and "register it again" in link["stopped"]
    assert not link["connected"]
    log = b.procs.log(f"controlplane-b-{b.starts}")
    assert "stopped syncing (serving the last state)" in log
    r = _meshfed(home, "cluster", "remove", "b", check=False)
    assert r.returncode == 2 and "not a member" in r.stderr
