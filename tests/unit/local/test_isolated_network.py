"""The isolated network's pure parts: the latency matrix, the address plan, the iproute2
commands, and the link emulator's routing rules (issue #16)."""

from __future__ import annotations

import struct

import pytest
import yaml

from federation.errors import InvalidDocumentError
from federation.local.description import default_text, load
from federation.local.latency import default_rtt_ms, parse_loss, parse_pair, parse_rtt_ms, rtt_ms
from federation.local.netplan import (
    EXCHANGE,
    ClusterInput,
    NetworkPlan,
    Router,
    build_plan,
    pod_commands,
    setup_commands,
    teardown_commands,
)
from federation.model.locality import Locality

USE1 = Locality.parse("aws/us-east-1/us-east-1a")
USE1B = Locality.parse("aws/us-east-1/us-east-1b")
EUW1 = Locality.parse("aws/eu-west-1/eu-west-1a")
GEW1 = Locality.parse("gcp/europe-west1/europe-west1-b")


def test_durations_and_percentages():
    assert parse_rtt_ms("85ms") == 85
    assert parse_rtt_ms("0.085s") == pytest.approx(85)
    assert parse_rtt_ms(12.5) == 12.5
    assert parse_loss("0.5%") == pytest.approx(0.005)
    for bad in ("fast", "-3ms", "11s"):
        with pytest.raises(ValueError):
            parse_rtt_ms(bad)
    with pytest.raises(ValueError, match="above 100"):
        parse_loss("150%")


def test_pairs_are_unordered_and_checked():
    assert parse_pair("aws/us-east-1 -> gcp/europe-west1") == parse_pair(
        "gcp/europe-west1->aws/us-east-1"
    )
    for bad in ("aws/us-east-1", "aws/us-east-1 -> gcp", "aws/x -> aws/x"):
        with pytest.raises(ValueError):
            parse_pair(bad)


def test_default_rtts_come_from_the_published_table_then_the_estimate():
    assert default_rtt_ms(USE1, EUW1) == 68  # latency.yaml (CloudPing)
    assert default_rtt_ms(EUW1, GEW1) == 20
    assert default_rtt_ms(USE1, USE1B) == 1.0  # same region, other zone
    assert default_rtt_ms(USE1, USE1) == 0.2
    tokyo = Locality.parse("aws/ap-northeast-1/ap-northeast-1a")
    assert 150 < default_rtt_ms(USE1, tokyo) < 300  # great-circle estimate
    assert default_rtt_ms(USE1, Locality.parse("aws/mars-1/mars-1a")) == 150.0  # unknown
    overrides = {frozenset(("aws/us-east-1", "aws/eu-west-1")): 40.0}
    assert rtt_ms(EUW1, USE1, overrides) == 40.0


def _write(tmp_path, **spec):
    raw = yaml.safe_load(default_text())
    raw["spec"].update(spec)
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_federation_file_latency_and_loss(tmp_path):
    desc = load(
        _write(
            tmp_path,
            latency={"aws/us-east-1 -> gcp/europe-west1": "85ms"},
            loss={"aws/us-east-1 -> aws/eu-west-1": "1%"},
        )
    )
    assert desc.pairs("latency") == {frozenset(("aws/us-east-1", "gcp/europe-west1")): 85.0}
    assert desc.pairs("loss") == {frozenset(("aws/us-east-1", "aws/eu-west-1")): 0.01}


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"latency": {"aws/us-east-1 -> gcp": "85ms"}}, "spec.latency"),
        ({"latency": {"aws/us-east-1 -> gcp/europe-west1": "soon"}}, "not a duration"),
        (
            {
                "latency": {
                    "aws/us-east-1 -> gcp/europe-west1": "85ms",
                    "gcp/europe-west1 -> aws/us-east-1": "90ms",
                }
            },
            "same pair",
        ),
        ({"loss": {"aws/us-east-1 -> aws/eu-west-1": "200%"}}, "spec.loss"),
    ],
)
def test_bad_matrix_is_refused_naming_the_field(tmp_path, spec, needle):
    with pytest.raises(InvalidDocumentError, match=needle):
        load(_write(tmp_path, **spec))


def _plan(network_b: str = "b") -> NetworkPlan:
    return build_plan(
        "abcd",
        [
            ClusterInput("a", "127.0.1.0/24", USE1, "a"),
            ClusterInput("b", "127.0.2.0/24", EUW1, network_b),
            ClusterInput("c", "127.0.3.0/24", GEW1, "c"),
        ],
        controller_ports=(15080, 15090),
        gateway_port=15443,
        latency={frozenset(("aws/us-east-1", "aws/eu-west-1")): 40.0},
        loss={frozenset(("aws/us-east-1", "gcp/europe-west1")): 0.02},
    )


def test_address_plan():
    plan = _plan()
    assert [(n.name, n.public, n.private) for n in plan.nodes] == [
        ("host", "198.18.0.1", None),
        ("controller", "198.18.0.2", None),
        ("a", "198.18.0.10", "198.19.1.0/24"),
        ("b", "198.18.0.11", "198.19.2.0/24"),
        ("c", "198.18.0.12", "198.19.3.0/24"),
    ]
    assert plan.address("b", 10) == "198.19.2.10"
    assert plan.namespaces == [
        "meshfed-abcd-controller",
        "meshfed-abcd-a",
        "meshfed-abcd-b",
        "meshfed-abcd-c",
    ]
    assert plan.rtt_ms == {"a|b": 40.0, "a|c": 85.0, "b|c": 20.0}
    assert plan.loss == {"a|c": 0.02}
    assert NetworkPlan.from_json(plan.to_json()) == plan


def test_setup_and_teardown_commands():
    cmds = setup_commands(_plan())
    assert ["ip", "netns", "add", "meshfed-abcd-a"] in cmds
    # the cluster's own two addresses; its workloads are pods (pod_commands)
    assert ["ip", "-n", "meshfed-abcd-a", "addr", "add", "198.19.1.2/32", "dev", "lo"] in cmds
    assert not [c for c in cmds if c[-2:] == ["dev", "lo"] and c[-3].endswith("/24")]
    masquerade = cmds[cmds.index(["ip", "netns", "exec", "meshfed-abcd-a", "nft", "add", "table",
                                  "ip", "meshfed_nat"]) + 2]  # fmt: skip
    assert masquerade[-1].endswith(
        "oifname mfabcdn0 ip saddr 198.19.1.0/24 ip daddr 198.18.0.0/16 masquerade"
    )
    assert ["ip", "link", "set", "mfabcdn0", "netns", "meshfed-abcd-a"] in cmds
    # the host routes its federation's block and private ranges only (others: theirs)
    assert ["ip", "route", "add", "198.18.0.0/24", "dev", "mfabcdh", "src", "198.18.0.1"] in cmds
    assert ["ip", "route", "add", "198.19.2.0/24", "dev", "mfabcdh"] in cmds
    assert not [c for c in cmds if c[:3] == ["ip", "route", "add"] and c[3].endswith("/16")]
    # a node routes the whole internet (every federation's block) through its device
    internet = ["ip", "-n", "meshfed-abcd-a", "route", "add", "198.18.0.0/16", "dev", "mfabcdn0"]
    assert [*internet, "src", "198.18.0.10"] in cmds
    # no cluster routes to another's private range unless they share a network
    assert not [c for c in cmds if c[-4:-2] == ["dev", "mfabcdn0"] and "198.19." in c[-5]]
    shared = setup_commands(_plan(network_b="a"))
    route = ["ip", "-n", "meshfed-abcd-a", "route", "add", "198.19.2.0/24", "dev", "mfabcdn0"]
    assert [*route, "src", "198.18.0.10"] in shared
    down = teardown_commands("abcd", _plan().namespaces)
    assert down[0] == ["ip", "link", "del", "mfabcdh"]
    assert ["ip", "netns", "del", "meshfed-abcd-c"] in down


def test_a_pod_has_one_address_and_its_cluster_routes_it():
    cmds = pod_commands(_plan(), "a", "echo-1", 10)
    assert cmds[0] == ["ip", "netns", "add", "meshfed-abcd-a-echo-1"]
    veth = ["ip", "-n", "meshfed-abcd-a", "link", "add", "p10", "mtu", "65000", "type", "veth"]
    assert [*veth, "peer", "name", "eth0", "netns", "meshfed-abcd-a-echo-1"] in cmds
    route = ["ip", "-n", "meshfed-abcd-a", "route", "add", "198.19.1.10/32", "dev", "p10"]
    assert [*route, "src", "198.19.1.1"] in cmds
    pod = ["ip", "-n", "meshfed-abcd-a-echo-1"]
    assert [*pod, "addr", "add", "198.19.1.10/32", "dev", "eth0"] in cmds
    assert [*pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0", "onlink"] in cmds
    with pytest.raises(KeyError):
        pod_commands(_plan(), "controller", "x", 10)


def _packet(src: str, dst: str, sport: int = 40000, dport: int = 15443, proto: int = 6) -> bytes:
    def ip(a: str) -> bytes:
        return bytes(int(x) for x in a.split("."))

    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, proto, 0, ip(src), ip(dst))
    return header + struct.pack("!HH", sport, dport) + b"\0" * 16


def test_router_lets_only_gateways_and_the_controller_across():
    r = Router(_plan())
    a, b, c, ctl, host = (r.index(n) for n in ("a", "b", "c", "controller", "host"))
    # a -> b's gateway: delayed by half the 40 ms round trip
    assert r.route(a, _packet("198.18.0.10", "198.18.0.11")) == (b, 0.02)
    # b's gateway answers a
    assert r.route(b, _packet("198.18.0.11", "198.18.0.10", 15443, 40000)) == (a, 0.02)
    # a -> another port of b's public address, a -> b's workloads: refused
    assert r.route(a, _packet("198.18.0.10", "198.18.0.11", dport=15014)) == "refused"
    assert r.route(a, _packet("198.18.0.10", "198.19.2.10", dport=15006)) == "refused"
    # the controller's API and sync ports, and nothing else on it
    assert r.route(a, _packet("198.18.0.10", "198.18.0.2", dport=15090)) == (ctl, 0.0)
    assert r.route(a, _packet("198.18.0.10", "198.18.0.2", dport=22)) == "refused"
    # the operator's host reaches private addresses
    assert r.route(host, _packet("198.18.0.1", "198.19.3.2", dport=15014)) == (c, 0.0)
    # a source address that is not the sender's own is dropped
    assert r.route(a, _packet("198.18.0.11", "198.18.0.12")) == "spoofed"
    assert r.route(a, _packet("198.18.0.10", "10.0.0.1")) == "no-route"
    assert r.route(a, b"\x60" + b"\0" * 39) == "not-ipv4"


def test_router_same_network_clusters_reach_each_other():
    r = Router(_plan(network_b="a"))
    a, b = r.index("a"), r.index("b")
    assert r.route(a, _packet("198.18.0.10", "198.19.2.10", dport=15006)) == (b, 0.02)
    assert r.route(r.index("c"), _packet("198.18.0.12", "198.19.2.10")) == "refused"


def test_router_partitions_and_heals():
    r = Router(_plan())
    a, b = r.index("a"), r.index("b")
    assert r.partition("b") == ["controller", "a", "c"]
    assert r.route(a, _packet("198.18.0.10", "198.18.0.11")) == "partitioned"
    assert r.route(b, _packet("198.18.0.11", "198.18.0.2", dport=15090)) == "partitioned"
    assert r.route(r.index("host"), _packet("198.18.0.1", "198.19.2.2"))[0] == b  # type: ignore[index]
    r.heal("b")
    assert r.partitions() == []
    assert r.partition("b", ["controller"]) == ["controller"]
    assert r.route(a, _packet("198.18.0.10", "198.18.0.11")) == (b, 0.02)
    assert r.partitions() == [["b", "controller"]]
    for bad in (("host", None), ("b", ["host"]), ("b", ["nowhere"]), ("b", ["b"])):
        with pytest.raises(KeyError):
            r.partition(*bad)


def test_a_second_federation_takes_its_own_block_and_reaches_the_first_through_the_exchange():
    """Two isolated federations side by side: b's plan lives in 198.18.1.0/24; a packet from
    b's cluster to a's gateway leaves b's emulator for the exchange, a's emulator lets it in
    (a gateway's port) and lets through only the answers to connections a's nodes opened."""
    first = Router(_plan())
    second_plan = build_plan(
        "ef01",
        [ClusterInput("x", "127.0.21.0/24", USE1, "x")],
        controller_ports=(15080, 15090),
        gateway_port=15443,
        latency={},
        loss={},
        block="198.18.1.0/24",
    )
    assert [n.public for n in second_plan.nodes] == ["198.18.1.1", "198.18.1.2", "198.18.1.10"]
    assert NetworkPlan.from_json(second_plan.to_json()).block == "198.18.1.0/24"
    second = Router(second_plan)
    x, a, ctl = second.index("x"), first.index("a"), first.index("controller")
    # x -> a's gateway and a's controller: out through the exchange, in at a
    assert second.route(x, _packet("198.18.1.10", "198.18.0.10")) == (EXCHANGE, 0.0)
    assert first.route_exchanged(_packet("198.18.1.10", "198.18.0.10")) == (a, 0.0)
    assert first.route_exchanged(_packet("198.18.1.10", "198.18.0.2", dport=15090)) == (ctl, 0.0)
    # nothing else of a: another port, a private range, the host; nor a forged source
    assert first.route_exchanged(_packet("198.18.1.10", "198.18.0.10", dport=22)) == "refused"
    assert first.route_exchanged(_packet("198.18.1.10", "198.19.1.10")) == "no-route"
    assert first.route_exchanged(_packet("198.18.1.10", "198.18.0.1")) == "refused"
    assert first.route_exchanged(_packet("198.18.0.11", "198.18.0.10")) == "spoofed"
    # a's answer goes out; x takes it in only as the answer of x's own connection
    assert first.route(a, _packet("198.18.0.10", "198.18.1.10", 15443, 40000)) == (EXCHANGE, 0.0)
    answer = _packet("198.18.0.10", "198.18.1.10", 15443, 40000)
    assert second.route_exchanged(answer) == (x, 0.0)
    unasked = _packet("198.18.0.10", "198.18.1.10", 15443, 40001)
    assert second.route_exchanged(unasked) == "refused"
    # outside the internet there is no route; a block must be a /24 of it
    assert second.route(x, _packet("198.18.1.10", "10.0.0.1")) == "no-route"
    with pytest.raises(ValueError, match="not a /24"):
        build_plan("ef01", [], controller_ports=(), gateway_port=1, latency={}, loss={},
                   block="10.0.0.0/24")  # fmt: skip


def test_free_block_reserves_a_block_per_home_under_a_lock(tmp_path, monkeypatch):
    """Two ``up --isolate`` started at once get different blocks: the first reserves its
    block until its emulator serves it; the same home asking again gets the same one; a
    reservation older than RESERVATION_S is free again."""
    import os

    from federation.local import netns

    monkeypatch.setattr(netns, "_host_addresses", lambda: ["10.0.0.5", "198.18.0.1"])
    first = netns.free_block("aaaa", str(tmp_path))
    assert first == "198.18.1.0/24"  # 198.18.0.0/24 is on a device here
    assert netns.free_block("bbbb", str(tmp_path)) == "198.18.2.0/24"
    assert netns.free_block("aaaa", str(tmp_path)) == first
    stale = netns.reservation_path(first, str(tmp_path))
    old = stale.stat().st_mtime - netns.RESERVATION_S - 1
    os.utime(stale, (old, old))
    assert netns.free_block("cccc", str(tmp_path)) == first


def test_zone_gateways_get_a_port_each_that_the_router_lets_across(tmp_path):
    """``zoneGateways: true``: one zone-local gateway per zone on the cluster gateway's host
    at 15444, 15445, ...; the isolated network lets other clusters reach those ports (and
    still nothing else); a cluster without them gets none."""
    from federation.local.placement import IsolatedPlacement, Placement

    raw = yaml.safe_load(default_text())
    first = raw["spec"]["clusters"][0]
    first.update(zones=[f"{first['zones'][0]}", "zz-other-1b"], zoneGateways=True)
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(raw))
    desc = load(path)
    c, other = desc.spec.clusters[0], desc.spec.clusters[1]
    host = Placement(desc).gateway(c).rpartition(":")[0]
    assert Placement(desc).zone_gateways(c) == {
        c.zones[0]: f"{host}:15444",
        "zz-other-1b": f"{host}:15445",
    }
    assert Placement(desc).zone_gateways(other) == {}
    plan = IsolatedPlacement(desc, tmp_path / "home", "198.18.7.0/24").plan
    assert plan.node(c.name).ports == (15443, 15444, 15445)
    assert plan.node(other.name).ports == (15443,)
    r = Router(plan)
    src, dst = plan.node(other.name).public, plan.node(c.name).public
    assert r.route(r.index(other.name), _packet(src, dst, dport=15445))[0] == r.index(c.name)
    assert r.route(r.index(other.name), _packet(src, dst, dport=15446)) == "refused"


def test_a_key_held_by_another_homes_network_is_refused_and_nothing_removed(tmp_path, monkeypatch):
    """Two homes whose keys collide (four hex digits once did: ``cc4a`` for two homes of
    one test run): the second ``up`` is refused, naming the first home, instead of removing
    the first one's namespaces as its own leftovers; once that network is gone the key is
    free; the owner itself may claim it again."""
    from federation.local import netns

    existing: list[str] = []
    monkeypatch.setattr(netns, "leftovers", lambda key: list(existing))
    netns.claim_key("cc4acc4a", "/homes/a", str(tmp_path))
    existing.append("netns meshfed-cc4acc4a-controller")
    with pytest.raises(netns.IsolationUnavailableError) as refused:
        netns.claim_key("cc4acc4a", "/homes/b", str(tmp_path))
    assert "/homes/a" in str(refused.value) and "meshfed down" in str(refused.value)
    netns.claim_key("cc4acc4a", "/homes/a", str(tmp_path))  # its own: fine
    existing.clear()
    netns.claim_key("cc4acc4a", "/homes/b", str(tmp_path))
    assert (tmp_path / "cc4acc4a.home").read_text() == "/homes/b"


def test_down_releases_its_own_claim_only(tmp_path):
    """``meshfed down`` forgets its home's claim on the key once the network is gone (the
    exchange directory kept one file per federation ever started); a claim another home made
    since is left alone."""
    from federation.local import netns

    netns.claim_key("0a0b0c0d", "/homes/a", str(tmp_path))
    assert not netns.release_key("0a0b0c0d", "/homes/b", str(tmp_path))
    assert (tmp_path / "0a0b0c0d.home").read_text() == "/homes/a"
    assert netns.release_key("0a0b0c0d", "/homes/a", str(tmp_path))
    assert not (tmp_path / "0a0b0c0d.home").exists()
    assert not netns.release_key("0a0b0c0d", "/homes/a", str(tmp_path))  # nothing to forget


def test_the_home_key_names_devices_linux_accepts():
    """Every device name of a 200-cluster plan fits IFNAMSIZ (15 characters)."""
    from federation.local.netplan import home_key

    key = home_key("/some/home")
    assert len(key) == 8
    assert max(len(f"mf{key}{suffix}") for suffix in ("h", "c", "n199")) <= 15


def test_a_private_range_routed_to_another_federation_names_its_home(tmp_path):
    """``up --isolate`` refuses a cluster private range this host already routes; the
    refusal names the home whose network routes it (from its device ``mf<key>h`` and that
    key's claim) so the user knows where to run ``meshfed down``, else the device."""
    from federation.local import netns

    routes = (
        "default via 192.0.2.1 dev eth0\n"
        "198.19.1.0/24 dev mfce42b5afh scope link linkdown\n"
        "198.19.2.0/24 dev wg0 scope link\n"
        "blackhole 10.9.0.0/16\n"
    )
    devices = netns.route_devices(routes)
    assert devices["198.19.1.0/24"] == "mfce42b5afh"
    assert devices["198.19.2.0/24"] == "wg0"
    assert devices["10.9.0.0/16"] == "?" and "blackhole" not in devices
    netns.claim_key("ce42b5af", "/homes/a", str(tmp_path))
    assert netns.holder_of("mfce42b5afh", str(tmp_path)) == "home /homes/a"
    assert netns.holder_of("mf0000000ah", str(tmp_path)) == "device mf0000000ah"  # no claim
    assert netns.holder_of("wg0", str(tmp_path)) == "device wg0"
