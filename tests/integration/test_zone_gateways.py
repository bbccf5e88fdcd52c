"""Zone-local east-west gateways (issue 42), end to end on loopback with real Envoy.

A controller and two clusters: ``a`` (aws/us-east-1, the caller's sidecar only) and ``b``
(aws/eu-west-1) with one ``echo`` replica in each of its zones ``eu-west-1a`` and
``eu-west-1b`` and a gateway per zone (``meshfed proxy gateway --zone-local``), which b's
control plane reports with ``--zone-gateway``. A TrafficPolicy ``distribute`` sends a's
requests 70/30 to b's zones. What a user sees: the requests land in each zone at its
share, each zone's gateway forwards only into its own zone (Envoy's per-host counters of
the gateways), and when a zone's replica goes, its share moves to the other zone without a
failed request.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import ssl
import urllib.request
from collections import Counter
from typing import Any

import pytest

from tests.integration.conftest import owned_processes
from tests.integration.federations import HOST, policy_yaml
from tests.integration.harness import (
    ControllerHandle,
    RateLoop,
    free_port,
    get,
    join_cluster,
    run_meshfed,
    start_echo,
    start_gateway,
    start_sidecar_agent,
    wait_until,
)
from tests.integration.test_federation import _scrape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A = "aws/us-east-1/us-east-1a"
B_REGION = "aws/eu-west-1"
ZONES = ("eu-west-1a", "eu-west-1b")
SNI = "outbound_.8080_._.echo.demo.svc.clusterset.local"
EXPORT = (
    "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
    "metadata: {name: echo, namespace: demo}\nspec: {cluster: b}\n"
)
DISTRIBUTE = policy_yaml(
    "  locality:\n    distribute:\n"
    f"    - from: '{A}'\n"
    f"      to: {{'{B_REGION}/{ZONES[0]}': 70, '{B_REGION}/{ZONES[1]}': 30}}\n"
)


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    base = tmp_path_factory.mktemp("zones")
    home = base / "home"
    with owned_processes(base) as procs:
        ctl = ControllerHandle(procs, home)
        ctl.start()
        gateways = {z: f"127.0.2.1:{free_port('127.0.2.1')}" for z in ZONES}
        admins = {z: free_port() for z in ZONES}
        zone_flags = [f for z, gw in gateways.items() for f in ("--zone-gateway", f"{z}={gw}")]
        a = join_cluster(procs, home, ctl, "a", A, f"127.0.1.1:{free_port('127.0.1.1')}", [])
        b = join_cluster(
            procs, home, ctl, "b", f"{B_REGION}/{ZONES[0]}", gateways[ZONES[0]], zone_flags
        )
        for z in ZONES:
            start_gateway(
                procs, home, b, gateways[z], name=f"gateway-b-{z}",
                extra_args=["--zone-local", "--locality", f"{B_REGION}/{z}",
                            "--admin-port", str(admins[z])],
            )  # fmt: skip
        replicas = {}
        for i, z in enumerate(ZONES, start=1):
            app_port = free_port()
            app = start_echo(procs, f"b-echo-{z}", app_port, "b")
            agent, _ = start_sidecar_agent(
                procs, home, b, service="echo", address=f"127.0.2.{10 + i}",
                app_port=app_port, service_port=8080, name=f"b-echo-{z}",
                locality=f"{B_REGION}/{z}",
            )  # fmt: skip
            replicas[z] = (app, agent)
        run_meshfed(home, "apply", "-f", "-", input_text=EXPORT + "---\n" + DISTRIBUTE)
        # the caller's connections open once each gateway forwards into its own zone: one
        # it forwarded elsewhere meanwhile would stay there until it drains (5 minutes)
        for z in ZONES:
            wait_until(
                lambda z=z: _forwards_to_own_zone(gateways[z], admins[z], z),
                30,
                f"gateway {z} forwarding into its zone",
            )
        client = free_port()
        start_sidecar_agent(
            procs, home, a, service="frontend", address="127.0.1.10", app_port=free_port(),
            service_port=8080, outbound_port=client,
        )  # fmt: skip
        f = {
            "home": home, "ctl": ctl, "client": client, "admins": admins, "replicas": replicas,
            "gateways": gateways,
        }  # fmt: skip
        wait_until(lambda: _zones(f, 20).keys() == set(ZONES), 60, "both of b's zones serving a")
        yield f


def _zones(fed: dict[str, Any], n: int) -> Counter[str]:
    """Where ``n`` requests from a's caller landed: the serving echo's zone."""
    out: Counter[str] = Counter()
    for _ in range(n):
        status, body, _ = get(fed["client"], HOST, "/")
        if status == 200:
            out[body["name"].removeprefix("b-echo-")] += 1
    return out


def _echo_hosts(admin_port: int) -> list[dict[str, Any]]:
    """The hosts of echo's cluster in a gateway's Envoy (admin ``/clusters?format=json``)."""
    with urllib.request.urlopen(
        f"http://127.0.0.1:{admin_port}/clusters?format=json", timeout=5
    ) as answer:
        statuses = json.loads(answer.read())["cluster_statuses"]
    return [h for c in statuses if HOST in c["name"] for h in c.get("host_statuses", [])]


def _own_zone_healthy(admin_port: int, zone: str) -> bool:
    """The gateway has its zone's echo endpoint, healthy (EDS and its health checks)."""
    try:
        hosts = _echo_hosts(admin_port)
    except OSError:
        return False
    return any(
        h["locality"].get("zone") == zone
        and h["health_status"].get("eds_health_status") == "HEALTHY"
        and not any(v is True for v in h["health_status"].values())  # failed_*, pending_*
        for h in hosts
    )


def _forwards_to_own_zone(gateway: str, admin_port: int, zone: str) -> bool:
    """A connection opened to ``gateway`` with echo's SNI now goes to an endpoint in
    ``zone``: a probe (its TLS handshake is refused by the sidecar -- no client certificate --
    after the gateway chose it), judged by the gateway's per-host ``cx_total``."""
    if not _own_zone_healthy(admin_port, zone):
        return False
    before = _gateway_hosts(admin_port, "cx_total")
    host, port = gateway.rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        contextlib.suppress(OSError),
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SNI),
    ):
        pass
    after = _gateway_hosts(admin_port, "cx_total")
    return {z for z in after if after[z] > before.get(z, 0)} == {zone}


def _gateway_hosts(admin_port: int, stat: str = "cx_active") -> dict[str, int]:
    """A gateway's upstream connections per endpoint's zone (Envoy admin
    ``/clusters?format=json``: each host's ``stat`` -- ``cx_active``, open now, or
    ``cx_total``, opened so far -- and locality), echo's cluster only."""
    out: Counter[str] = Counter()
    for host in _echo_hosts(admin_port):
        cx = next((int(s.get("value", 0)) for s in host["stats"] if s["name"] == stat), 0)
        out[host["locality"].get("zone", "")] += cx
    return dict(out)


#: How far the controller's count of a gateway's bytes may trail its Envoy's own counters
#: (bytes): the callers' HTTP/2 PINGs (every 200 ms) keep flowing while a record waits for
#: its flush (1 s), the agent's report (2 s) and the control plane's (2 s).
HOP_SLACK_BYTES = 16_384


def _hop_bytes(fed: dict[str, Any]) -> dict[tuple[str, str], tuple[float, float]]:
    """The gateway-hop bytes (to, from the sidecar) the controller counted so far, by
    (gateway zone, sidecar zone) -- once, for every gateway, they are what its Envoy counted
    on its upstream connections (``upstream_cx_tx|rx_bytes_total`` of echo's gateway
    cluster, admin ``/stats``), less at most :data:`HOP_SLACK_BYTES`."""
    ctl = fed["ctl"]

    def counted() -> dict[tuple[str, str], tuple[float, float]] | None:
        out: dict[tuple[str, str], tuple[float, float]] = {}
        scraped = _scrape(ctl.url, ctl.token(), ctl.ssl_context())
        for (name, labels), value in scraped.items():
            label = dict(labels)
            if name != "meshfed_gateway_hop_bytes_total":
                continue
            key = (label["gateway_locality"], label["destination_locality"])
            key = (key[0].rsplit("/", 1)[-1], key[1].rsplit("/", 1)[-1])
            sent, received = out.get(key, (0.0, 0.0))
            if label["direction"] == "to_endpoint":
                out[key] = (sent + value, received)
            else:
                out[key] = (sent, received + value)
        for zone, admin in fed["admins"].items():
            envoy = _envoy_bytes(admin)
            ours = [sum(v[i] for k, v in out.items() if k[0] == zone) for i in (0, 1)]
            if not all(e - HOP_SLACK_BYTES <= o <= e for o, e in zip(ours, envoy, strict=True)):
                return None
        return out

    found = wait_until(counted, 20, "the gateways' hop bytes at the controller as Envoy's")
    assert found is not None
    return found


def _envoy_bytes(admin_port: int) -> tuple[int, int]:
    """Bytes a gateway's Envoy sent to and received from echo's endpoints so far."""
    with urllib.request.urlopen(
        f"http://127.0.0.1:{admin_port}/stats?filter=upstream_cx_[tr]x_bytes_total", timeout=5
    ) as answer:
        lines = answer.read().decode().splitlines()
    stats = dict(line.rsplit(": ", 1) for line in lines if HOST in line)
    prefix = f"cluster.gateway|8080||{HOST}."
    return (
        int(stats[prefix + "upstream_cx_tx_bytes_total"]),
        int(stats[prefix + "upstream_cx_rx_bytes_total"]),
    )


def test_each_zone_gets_its_share_through_its_own_gateway_and_nothing_crosses_zones(fed) -> None:
    """The plan's per-zone shares (here a ``distribute`` rule: 70/30) hold across b's
    gateways: the served shares (by the serving replica) are within 5 % of them, and the
    connections that carried them lead from each zone's gateway into its own zone only (0
    cross-zone at the gateway hop)."""
    before = _hop_bytes(fed)
    served = _zones(fed, 400)
    total = sum(served.values())
    assert total == 400, served
    shares = {z: served[z] / total for z in ZONES}
    print(f"served per zone: {shares}")
    assert abs(shares[ZONES[0]] - 0.7) <= 0.05 and abs(shares[ZONES[1]] - 0.3) <= 0.05, served
    for zone, admin in fed["admins"].items():
        # the connections that carried the requests (the callers' pooled ones) are open:
        # each gateway's lead into its own zone only. (One a gateway opened across zones
        # while its own endpoint failed a moment at start-up -- the failover it must do --
        # shows in cx_total, closed.)
        active, total = _gateway_hosts(admin), _gateway_hosts(admin, "cx_total")
        print(f"gateway {zone}: connections per endpoint zone open {active}, ever {total}")
        assert active.get(zone, 0) > 0, active
        assert all(cx == 0 for z, cx in active.items() if z != zone), (active, total)
    # the gateways' own count of the hop, as b's control plane reported it to the
    # controller (equal to their Envoys' counters): the requests' bytes stayed in each zone
    after = _hop_bytes(fed)
    carried = {k: tuple(a - b for a, b in zip(v, before.get(k, (0, 0)), strict=True))
               for k, v in after.items()}  # fmt: skip
    print(f"gateway hop bytes (to, from sidecar) by (gateway zone, sidecar zone): {carried}")
    assert all(sum(carried[(z, z)]) > 10_000 for z in ZONES), carried
    assert all(v == (0, 0) for (g, d), v in carried.items() if g != d), carried  # 0 cross-zone
    # the controller shows what b reported; explain names the zone gateways as the hop
    assert fed["ctl"].clusters()["b"]["zoneGateways"] == fed["gateways"]
    out = run_meshfed(fed["home"], "explain", "echo.demo", "--from", "a", "-o", "json").stdout
    rows = json.loads(out)["ports"][0]["rows"]
    hops = {r["locality"]: r["via"] for r in rows}
    assert {h.split()[:2] == ["zone", "gateway"] for h in hops.values()} == {True}, hops
    assert set(hops) == {f"{B_REGION}/{z}" for z in ZONES}, hops
    assert {r["gatewayHop"] for r in rows} == {"same-zone"}, rows
    # the hops are in the traffic ledger as echo's paths, the bytes the gateways counted
    out = run_meshfed(fed["home"], "cost", "report", "--since", "1d", "-o", "json").stdout
    [echo] = [s for s in json.loads(out)["services"] if s["service"] == "echo.demo"]
    in_ledger = {p["pathClass"]: p for p in echo["paths"] if p["destinationCluster"] == "b"}
    same = in_ledger["gateway-hop:same-zone"]
    print(f"ledger: {echo['gatewayHopConnections']} hop connections, same-zone hop {same}")
    assert same["sourceCluster"] == "b" and same["connections"] > 0 and same["usd"] == 0
    ledger_bytes = sum(
        p["requestBytes"] + p["responseBytes"]
        for c, p in in_ledger.items()
        if c.startswith("gateway-hop:")
    )
    counted = sum(sum(v) for v in after.values())
    assert counted <= ledger_bytes <= counted + HOP_SLACK_BYTES, (ledger_bytes, counted)


def test_a_zone_that_loses_its_endpoints_gives_its_share_to_the_other_without_failures(
    fed,
) -> None:
    app, agent = fed["replicas"][ZONES[1]]
    with RateLoop(fed["client"], HOST, rps=50, max_seconds=40) as load:
        wait_until(lambda: len(load.samples) >= 50, 10, "load running")
        for proc in (agent, app):
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        wait_until(lambda: _zones(fed, 20) == Counter({ZONES[0]: 20}), 30, "all in eu-west-1a")
    assert load.failures() == [], load.failures()[:5]
