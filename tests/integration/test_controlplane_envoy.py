"""A real Envoy sidecar configured by a real ``meshfed controlplane serve`` process.

Backends are the demo echo app behind their own Envoy sidecars (mTLS STRICT, certificates
from our CA, obtained with workload tokens and read by Envoy as file-based SDS); the client is an Envoy sidecar whose outbound listener the test calls.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import (
    ControlPlaneHandle,
    LoadLoop,
    free_port,
    get,
    start_echo,
    start_sidecar,
    wait_until,
    workload_yaml,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "echo.demo.svc.clusterset.local"
ZONE_A = "aws/us-east-1/us-east-1a"


def _backend(procs, cp, i: int, *, delta: bool = False):
    """echo-<i>: app on 127.0.0.1:<free>, sidecar inbound on 127.0.1.<10+i>:<free>."""
    address = f"127.0.1.{10 + i}"
    app_port, inbound = free_port(), free_port(address)
    doc = workload_yaml(
        f"echo-{i}",
        service="echo",
        address=address,
        locality=ZONE_A,
        port=8080,
        target_port=app_port,
        inbound_port=inbound,
    )
    app = start_echo(procs, f"echo-{i}", app_port, cp.cluster)
    envoy = start_sidecar(
        procs,
        cp,
        name=f"echo-{i}",
        workload=f"echo-{i}",
        service_account="echo",
        locality=ZONE_A,
        delta=delta,
    )
    return doc, app, envoy


def _client(procs, cp, *, delta: bool):
    port = free_port()
    envoy = start_sidecar(
        procs,
        cp,
        name="client",
        service_account="frontend",
        locality=ZONE_A,
        outbound_port=port,
        delta=delta,
    )
    return port, envoy


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_routes_to_backends_and_moves_traffic_on_removal_and_death(procs, mesh_home, delta) -> None:
    cp = ControlPlaneHandle(procs, mesh_home, "east", ZONE_A)
    cp.start()
    backends = [_backend(procs, cp, i, delta=delta) for i in (1, 2, 3)]
    cp.apply("---\n".join(doc for doc, _, _ in backends))
    port, client = _client(procs, cp, delta=delta)
    for envoy in [client] + [e for _, _, e in backends]:
        envoy.wait_ready(30)

    seen: set[str] = set()

    def all_three() -> bool:
        status, data, headers = get(port, HOST)
        if status == 200:
            seen.add(data["name"])
            assert headers["x-meshfed-served-by"] == "east/us-east-1a"
            assert "URI=spiffe://example.org/ns/demo/sa/frontend" in data["xfcc"]
        return seen == {"echo-1", "echo-2", "echo-3"}

    wait_until(all_three, 30, "requests reaching all three backends")

    with LoadLoop(port, HOST, max_requests=6000, max_seconds=60) as load:
        load.wait_tail({"echo-1", "echo-2", "echo-3"}, 20, 10)
        cp.delete(backends[2][0])  # remove a WorkloadEntry
        load.wait_tail({"echo-1", "echo-2"}, 50, 15)
        _, app2, envoy2 = backends[1]
        envoy2.kill()  # the workload dies: its sidecar and app
        app2.kill()
        load.wait_tail({"echo-1"}, 50, 15)
    assert load.failures() == [], f"{len(load.failures())} failed of {len(load.samples)}"
    assert len(load.samples) >= 100
    statuses = {p["node_id"]: p for p in cp.proxy_status()}
    client_types = statuses["sidecar~demo~client"]["types"]
    # SDS is never asked over xDS: the SVID is read from files its owner wrote
    assert client_types.pop("SDS")["state"] == "NOT SENT"
    assert {t["state"] for t in client_types.values()} == {"SYNCED"}
    assert statuses["sidecar~demo~client"]["stream"] == ("delta" if delta else "sotw")


def test_restarting_the_control_plane_fails_no_request(procs, mesh_home) -> None:
    cp = ControlPlaneHandle(procs, mesh_home, "east", ZONE_A)
    cp.start()
    backends = [_backend(procs, cp, i) for i in (1, 2)]
    cp.apply("---\n".join(doc for doc, _, _ in backends))
    port, client = _client(procs, cp, delta=False)
    for envoy in [client] + [e for _, _, e in backends]:
        envoy.wait_ready(30)
    wait_until(lambda: get(port, HOST)[0] == 200, 30, "first successful request")

    with LoadLoop(port, HOST, max_requests=4000, max_seconds=40) as load:
        load.wait_tail({"echo-1", "echo-2"}, 20, 10)
        cp.stop()
        load.wait_tail({"echo-1", "echo-2"}, 50, 10)  # proxies keep serving, controller away
        cp.start()  # same state dir: workloads reloaded before any proxy is answered

        def all_synced() -> bool:
            status = {p["node_id"]: p for p in cp.proxy_status()}
            return len(status) == 3 and all(
                p["connected"]
                and {t["state"] for n, t in p["types"].items() if n != "SDS"} == {"SYNCED"}
                for p in status.values()
            )

        wait_until(all_synced, 20, "every proxy reconnected and SYNCED")
        load.wait_tail({"echo-1", "echo-2"}, 50, 10)
    assert load.failures() == [], f"{len(load.failures())} failed of {len(load.samples)}"
    assert "2 workloads loaded" in procs.log("controlplane-east-2")
