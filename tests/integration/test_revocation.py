"""Attack 5 of issue #15: after ``meshfed cluster remove c``, requests from c's sidecar (its
SVID still unexpired) to a service in another cluster are refused within 30 s, while a
remaining member's calls keep working.

Federation: a controller; cluster ``a`` serves ``echo`` (sidecar, east-west gateway, export);
clusters ``b`` and ``c`` each run one caller sidecar. Real processes on loopback.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
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
    "b": "aws/us-east-1/us-east-1b",
    "c": "gcp/us-east4/us-east4-a",
}
NET = {"a": 1, "b": 2, "c": 3}


def _join(procs, home, controller, name: str) -> ControlPlaneHandle:
    gateway = f"127.0.{NET[name]}.1:{free_port(f'127.0.{NET[name]}.1')}"
    out = run_meshfed(
        home, "cluster", "join", name, "--locality", LOCALITY[name], "--network",
        f"net-{name}", "--gateway", gateway, "-o", "json",
    ).stdout  # fmt: skip
    cp = ControlPlaneHandle(
        procs,
        home,
        name,
        LOCALITY[name],
        extra_args=[
            "--network", f"net-{name}", "--controller", f"127.0.0.1:{controller.api_port}",
            "--join-token", json.loads(out)["token"], "--gateway", gateway,
        ],
    )  # fmt: skip
    cp.start()
    cp.gateway = gateway  # type: ignore[attr-defined]
    return cp


def _caller(procs, home, cp) -> int:
    port = free_port()
    start_sidecar_agent(
        procs,
        home,
        cp,
        service="frontend",
        address=f"127.0.{NET[cp.cluster]}.10",
        app_port=free_port(),
        service_port=8080,
        outbound_port=port,
    )
    return port


def _serve_echo(procs, home, cp, admin_port: int | None = None) -> int:
    """Cluster ``cp`` serves ``echo``: the app, its sidecar on 127.0.1.11, the cluster's
    east-west gateway, and the export; returns the sidecar's inbound port."""
    app = free_port()
    start_echo(procs, f"{cp.cluster}-echo-1", app, cp.cluster)
    _, inbound = start_sidecar_agent(
        procs, home, cp, service="echo", address="127.0.1.11", app_port=app,
        service_port=8080, name=f"{cp.cluster}-echo-1", admin_port=admin_port,
    )  # fmt: skip
    start_gateway(procs, home, cp, cp.gateway)  # type: ignore[attr-defined]
    run_meshfed(
        home, "apply", "-f", "-",
        input_text="apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
        f"metadata: {{name: echo, namespace: demo}}\nspec: {{cluster: {cp.cluster}}}\n",
    )  # fmt: skip
    return inbound


def _status(port: int) -> int:
    return get(port, HOST, timeout_s=2)[0]


def test_removed_clusters_svids_are_refused_within_30s(procs, mesh_home) -> None:
    controller = ControllerHandle(procs, mesh_home, lease_s=10)
    controller.start()
    cps = {name: _join(procs, mesh_home, controller, name) for name in ("a", "b", "c")}
    admin = free_port()
    _serve_echo(procs, mesh_home, cps["a"], admin_port=admin)
    from_b, from_c = _caller(procs, mesh_home, cps["b"]), _caller(procs, mesh_home, cps["c"])
    # members trust each other: c's and b's SVIDs are accepted by a's sidecar (their CRLs are
    # in the member set every proxy holds)
    wait_until(lambda: _status(from_b) == 200 and _status(from_c) == 200, 60, "b and c served")

    run_meshfed(mesh_home, "cluster", "remove", "c")
    removed = time.monotonic()

    def refused_for_a_while() -> bool:
        return all(_status(from_c) != 200 for _ in range(20))

    wait_until(refused_for_a_while, 30, "c's requests refused after its removal")
    took = time.monotonic() - removed
    # b, still a member, is served throughout
    assert all(_status(from_b) == 200 for _ in range(20))
    # the refusal is a certificate verification failure at a's sidecar (not a missing route)
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter=ssl.fail_verify") as r:
        stats = dict(line.split(": ") for line in r.read().decode().splitlines() if ": " in line)
    assert sum(int(v) for k, v in stats.items() if "inbound" in k or "listener" in k) > 0, stats
    print(f"c refused {took:.1f} s after its removal")
