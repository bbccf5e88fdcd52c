"""The network of ``meshfed up --isolate``: address plan, the iproute2 commands that build and
remove it, and the routing rules of the link emulator. Pure (no I/O).

Nodes: the operator's **host** (its own network namespace), the **controller** and every
member **cluster**, each cluster and the controller in a namespace of their own named
``meshfed-<key>-<name>`` (``key``: 8 hex digits of the ``$MESHFED_HOME`` path). Every node has
one TUN device (``mf<key>h`` / ``mf<key>c`` / ``mf<key>n<i>``, MTU 65000) attached to the link
emulator (:mod:`federation.local.emulator`), which plays the internet between them.

Addresses (RFC 2544's benchmarking block 198.18.0.0/15, which no real network routes):

- the internet 198.18.0.0/16; each federation's **block** a /24 of it (198.18.0.0/24 for
  the first, the next free one for each federation started beside it): host ``.1``,
  controller ``.2``, cluster ``i`` ``.10+i`` (its east-west gateway listens there, port
  15443);
- cluster with ``addressRange`` 127.0.N.0/24: private range 198.19.N.0/24, the same host
  numbers as on loopback: ``.1`` and the control plane's ``.2`` on the cluster namespace's
  loopback device; every workload in a **pod** of its own (:func:`pod_commands`): a
  namespace ``meshfed-<key>-<cluster>-<pod>`` joined to its cluster's by a veth pair
  (``p<host>`` there, ``eth0`` in the pod), its one address ``/32`` on ``eth0`` and its
  default route through the link-local ``169.254.1.1`` (Calico's layout), which the
  cluster's namespace routes and forwards: frontend ``.9``, echo replicas ``.10+i``; pods'
  connections to the internet range leave from the cluster's public address (masquerade,
  as through a VPC's NAT gateway).

What may cross (the emulator drops the rest, as a VPC and its security groups would):

- the host reaches everything (the operator's VPN);
- anyone reaches the controller's API and sync ports, and a cluster's public address on its
  gateway port; answers from those ports go back;
- a cluster reaches another's private range only when both are on one ``network`` (one VPC),
  through a route the plan adds;
- nothing between two nodes that are partitioned (``meshfed demo partition``);
- another federation's block, through its link emulator (the **exchange**: each emulator
  owns its block's Unix datagram socket under :data:`EXCHANGE_DIR`): any node may send
  there, as to the internet; from there only what anyone may reach (controller ports, a
  gateway's port) and the answers to connections a node of this federation opened get in.

Each packet is delayed by half the round trip of its pair of localities
(:mod:`federation.local.latency`; the controller and the host are 0 ms from everyone) and
dropped with the pair's loss probability.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from federation.local.latency import rtt_ms
from federation.model.locality import Locality

#: Every federation's public addresses: the emulated internet.
INTERNET = ipaddress.IPv4Network("198.18.0.0/16")
#: The block of the first federation (others take the next free /24 of :data:`INTERNET`).
FIRST_BLOCK = "198.18.0.0/24"
PRIVATE_SUPERNET = ipaddress.ip_network("198.19.0.0/16")
#: Where each running link emulator binds its block's exchange socket (root only).
EXCHANGE_DIR = "/run/meshfed/exchange"
TUN_MTU = 65000
NAMESPACE_PREFIX = "meshfed-"

NodeKind = Literal["host", "controller", "cluster"]


def host_link(key: str) -> str:
    """The host-side TUN device of home ``key``'s network (``mf<key>h``): the routes to its
    clusters' private ranges go through it."""
    return f"mf{key}h"


def home_key(home: str) -> str:
    """8 hex digits naming one ``$MESHFED_HOME``'s namespaces and devices (``mf<key>n199``,
    the longest device name, is 14 characters: Linux allows 15). Four digits collided: two
    homes of one test run shared ``cc4a``, and the second ``up`` removed the first one's
    network as its own leftovers; :func:`~federation.local.netns.claim_key` refuses what a
    collision would still do."""
    return hashlib.sha256(home.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Node:
    """One node of the isolated network.

    Attributes:
        name: ``host``, ``controller`` or the cluster's name.
        public: its address on the internet (in the plan's ``block``).
        private: a cluster's private /24, else None.
        netns: its network namespace; None for the host's own.
        tun: its TUN device.
        ports: TCP ports that other nodes may reach on ``public``.
        region / zone: a cluster's locality (for the latency matrix); empty otherwise.
        network: a cluster's network (clusters of one network reach each other's private
            ranges); empty otherwise.
    """

    name: str
    kind: NodeKind
    public: str
    tun: str
    private: str | None = None
    netns: str | None = None
    ports: tuple[int, ...] = ()
    region: str = ""
    zone: str = ""
    network: str = ""


@dataclass(frozen=True)
class NetworkPlan:
    """The whole network (see the module docstring); saved as JSON in ``$MESHFED_HOME``.

    Attributes:
        rtt_ms: round trip (ms) by ``"<node>|<node>"`` (names sorted); missing pairs are 0.
        loss: per-packet loss probability (0-1) by the same keys.
        block: this federation's /24 of :data:`INTERNET`.
    """

    key: str
    nodes: tuple[Node, ...]
    rtt_ms: dict[str, float] = field(default_factory=dict)
    loss: dict[str, float] = field(default_factory=dict)
    block: str = FIRST_BLOCK

    def node(self, name: str) -> Node:
        """The node called ``name``.

        Raises:
            KeyError: no such node.
        """
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def namespaces(self) -> list[str]:
        return [n.netns for n in self.nodes if n.netns]

    def address(self, cluster: str, host: int) -> str:
        """``.host`` in ``cluster``'s private range."""
        private = self.node(cluster).private
        if private is None:
            raise KeyError(cluster)
        return str(ipaddress.ip_network(private).network_address + host)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> NetworkPlan:
        raw = json.loads(text)
        nodes = tuple(Node(**{**n, "ports": tuple(n["ports"])}) for n in raw["nodes"])
        return cls(raw["key"], nodes, raw["rtt_ms"], raw["loss"], raw.get("block", FIRST_BLOCK))


def pair_key(a: str, b: str) -> str:
    """The matrix key of two node names (order-free)."""
    return "|".join(sorted((a, b)))


@dataclass(frozen=True)
class ClusterInput:
    """What the plan needs of a cluster: name, ``127.0.N.0/24`` range, locality, network,
    and the ports of its zone-local gateways (reachable besides the gateway's)."""

    name: str
    address_range: str
    locality: Locality
    network: str
    zone_gateway_ports: tuple[int, ...] = ()


def build_plan(
    key: str,
    clusters: list[ClusterInput],
    *,
    controller_ports: tuple[int, ...],
    gateway_port: int,
    latency: Mapping[frozenset[str], float],
    loss: Mapping[frozenset[str], float],
    block: str = FIRST_BLOCK,
) -> NetworkPlan:
    """The plan for ``clusters`` (in the federation file's order; at most 200).

    Args:
        key: :func:`home_key` of the federation's home.
        controller_ports: the controller's API and sync ports.
        latency / loss: the federation file's overrides by pair of regions.
        block: the federation's /24 of :data:`INTERNET`.

    Raises:
        ValueError: ``block`` is not a /24 of :data:`INTERNET`.
    """
    net = ipaddress.IPv4Network(block)
    if net.prefixlen != 24 or not net.subnet_of(INTERNET):
        raise ValueError(f"{block} is not a /24 of {INTERNET}")
    base = net.network_address
    nodes = [
        Node("host", "host", str(base + 1), host_link(key)),
        Node(
            "controller",
            "controller",
            str(base + 2),
            f"mf{key}c",
            netns=f"{NAMESPACE_PREFIX}{key}-controller",
            ports=controller_ports,
        ),
    ]
    for i, c in enumerate(clusters):
        third = ipaddress.ip_network(c.address_range).network_address.packed[2]
        nodes.append(
            Node(
                c.name,
                "cluster",
                str(base + 10 + i),
                f"mf{key}n{i}",
                private=f"198.19.{third}.0/24",
                netns=f"{NAMESPACE_PREFIX}{key}-{c.name}",
                ports=(gateway_port, *c.zone_gateway_ports),
                region=c.locality.region,
                zone=c.locality.zone,
                network=c.network,
            )
        )
    rtts: dict[str, float] = {}
    losses: dict[str, float] = {}
    for i, a in enumerate(clusters):
        for b in clusters[i + 1 :]:
            k = pair_key(a.name, b.name)
            rtts[k] = rtt_ms(a.locality, b.locality, latency)
            p = loss.get(frozenset((a.locality.region, b.locality.region)), 0.0)
            if p:
                losses[k] = p
    return NetworkPlan(key, tuple(nodes), rtts, losses, str(net))


def same_network(a: Node, b: Node) -> bool:
    """Two clusters on one network (one VPC): they reach each other's private ranges."""
    return a.kind == b.kind == "cluster" and a.network == b.network and a.name != b.name


def setup_commands(plan: NetworkPlan) -> list[list[str]]:
    """iproute2 commands (argv) that build the namespaces and TUN devices of ``plan``, in order.
    The devices carry nothing until the link emulator attaches to them."""
    cmds: list[list[str]] = []
    host = plan.node("host")
    for n in plan.nodes:
        if n.netns:
            cmds.append(["ip", "netns", "add", n.netns])
            cmds.append(["ip", "-n", n.netns, "link", "set", "lo", "up"])
        if n.private:
            net = ipaddress.ip_network(n.private)
            for number in (1, 2):
                own = f"{net.network_address + number}/32"
                cmds.append(["ip", "-n", str(n.netns), "addr", "add", own, "dev", "lo"])
            cmds.append(
                ["ip", "netns", "exec", str(n.netns), "sysctl", "-qw", "net.ipv4.ip_forward=1"]
            )
            cmds += _snat_commands(str(n.netns), n.tun, n.private)
        cmds.append(["ip", "tuntap", "add", "dev", n.tun, "mode", "tun"])
        ip = ["ip"] if n.netns is None else ["ip", "-n", n.netns]
        if n.netns:
            cmds.append(["ip", "link", "set", n.tun, "netns", n.netns])
        cmds.append([*ip, "link", "set", n.tun, "mtu", str(TUN_MTU), "up"])
        cmds.append([*ip, "addr", "add", f"{n.public}/32", "dev", n.tun])
        if n is host:  # its own federation's addresses; another's go to that one's device
            cmds.append([*ip, "route", "add", plan.block, "dev", n.tun, "src", n.public])
            for peer in plan.nodes:
                if peer.private:
                    cmds.append([*ip, "route", "add", peer.private, "dev", n.tun])
        else:  # the whole internet: this federation's block and every other's
            cmds.append([*ip, "route", "add", str(INTERNET), "dev", n.tun, "src", n.public])
        for peer in plan.nodes:
            if same_network(n, peer) and peer.private:
                cmds.append([*ip, "route", "add", peer.private, "dev", n.tun, "src", n.public])
    return cmds


def _snat_commands(netns: str, tun: str, private: str) -> list[list[str]]:
    """A cluster's NAT to the internet: its pods' connections to public addresses leave
    from the cluster's public address (nftables masquerade), as a VPC's NAT gateway does;
    connections to a peer's private range (one network) keep the pod's address."""
    nft = ["ip", "netns", "exec", netns, "nft"]
    return [
        [*nft, "add", "table", "ip", "meshfed_nat"],
        [*nft, "add chain ip meshfed_nat postrouting { type nat hook postrouting priority 100 ; }"],
        [*nft, f"add rule ip meshfed_nat postrouting oifname {tun} ip saddr {private}"
         f" ip daddr {INTERNET} masquerade"],
    ]  # fmt: skip


#: The pod side's gateway: every cluster-side veth holds it (a /32), so each pod reaches its
#: cluster's namespace at the same address, as Calico's 169.254.1.1.
POD_GATEWAY = "169.254.1.1"


def pod_netns(key: str, cluster: str, pod: str) -> str:
    """The namespace of pod ``pod`` of ``cluster``."""
    return f"{NAMESPACE_PREFIX}{key}-{cluster}-{pod}"


def pod_commands(plan: NetworkPlan, cluster: str, pod: str, host: int) -> list[list[str]]:
    """iproute2 commands that make pod ``pod`` of ``cluster`` with address ``.host`` of its
    private range (see the module docstring).

    Raises:
        KeyError: ``cluster`` is not a cluster of ``plan``.
    """
    node = plan.node(cluster)
    if node.netns is None or node.private is None:
        raise KeyError(cluster)
    ns, pns = node.netns, pod_netns(plan.key, cluster, pod)
    address = plan.address(cluster, host)
    veth = f"p{host}"
    first = str(ipaddress.ip_network(node.private).network_address + 1)
    peer = ["peer", "name", "eth0", "netns", pns]
    return [
        ["ip", "netns", "add", pns],
        ["ip", "-n", pns, "link", "set", "lo", "up"],
        ["ip", "-n", ns, "link", "add", veth, "mtu", str(TUN_MTU), "type", "veth", *peer],
        ["ip", "-n", ns, "addr", "add", f"{POD_GATEWAY}/32", "dev", veth],
        ["ip", "-n", ns, "link", "set", veth, "up"],
        ["ip", "-n", ns, "route", "add", f"{address}/32", "dev", veth, "src", first],
        ["ip", "-n", pns, "link", "set", "eth0", "mtu", str(TUN_MTU), "up"],
        ["ip", "-n", pns, "addr", "add", f"{address}/32", "dev", "eth0"],
        ["ip", "-n", pns, "route", "add", "default", "via", POD_GATEWAY, "dev", "eth0", "onlink"],
    ]


def teardown_commands(key: str, namespaces: list[str]) -> list[list[str]]:
    """Commands that remove what :func:`setup_commands` made (deleting a namespace deletes its
    devices, addresses and routes); each may fail harmlessly when already gone."""
    return [
        ["ip", "link", "del", host_link(key)],
        *(["ip", "netns", "del", ns] for ns in namespaces),
    ]


# -- the emulator's routing decision -----------------------------------------------------------

_TCP, _UDP = 6, 17
#: :meth:`Router.route`'s destination for a packet to another federation's block.
EXCHANGE = -1
#: Connections to other federations remembered for their answers (oldest forgotten first).
FLOW_LIMIT = 65536


def _ip(addr: str) -> int:
    return int(ipaddress.ip_address(addr))


class Router:
    """Where a packet read from a node's TUN device goes (see the module docstring).

    Pure and fast: :meth:`route` looks at the IPv4 header and the TCP/UDP ports only.
    Partitions are kept here (:meth:`partition` / :meth:`heal`).
    """

    def __init__(self, plan: NetworkPlan) -> None:
        self.plan = plan
        self.nodes = list(plan.nodes)
        self._public = {_ip(n.public): i for i, n in enumerate(self.nodes)}
        self._private = {
            int(ipaddress.ip_network(n.private).network_address) >> 8: i
            for i, n in enumerate(self.nodes)
            if n.private
        }
        self._own = [_ip(n.public) for n in self.nodes]
        self._ports = [frozenset(n.ports) for n in self.nodes]
        count = len(self.nodes)
        self.delay_s = [[0.0] * count for _ in range(count)]
        self.loss = [[0.0] * count for _ in range(count)]
        for i, a in enumerate(self.nodes):
            for j, b in enumerate(self.nodes):
                k = pair_key(a.name, b.name)
                self.delay_s[i][j] = plan.rtt_ms.get(k, 0.0) / 2000
                self.loss[i][j] = plan.loss.get(k, 0.0)
        self._kinds = [n.kind for n in self.nodes]
        self._peers_private = [
            {j for j, b in enumerate(self.nodes) if same_network(a, b)} for a in self.nodes
        ]
        self.cut: set[frozenset[int]] = set()
        self._block = int(ipaddress.ip_network(plan.block).network_address) >> 8
        self._internet = int(INTERNET.network_address) >> (32 - INTERNET.prefixlen)
        #: (protocol, their address, their port, our address, our port) of connections our
        #: nodes opened to other federations: what may answer through the exchange.
        self.flows: dict[tuple[int, int, int, int, int], None] = {}

    def index(self, name: str) -> int:
        """The index of node ``name``.

        Raises:
            KeyError: no such node.
        """
        for i, n in enumerate(self.nodes):
            if n.name == name:
                return i
        raise KeyError(name)

    def partition(self, name: str, peers: list[str] | None = None) -> list[str]:
        """Cut ``name`` off from ``peers`` (default: every other cluster and the controller;
        the host always stays connected). Returns the peers cut.

        Raises:
            KeyError: an unknown node, or the host.
        """
        me = self.index(name)
        if self._kinds[me] == "host":
            raise KeyError(name)
        chosen = peers or [n.name for n in self.nodes if n.kind != "host" and n.name != name]
        indexes = [self.index(p) for p in chosen]
        if any(self._kinds[j] == "host" or j == me for j in indexes):
            raise KeyError("host" if "host" in chosen else name)
        self.cut.update(frozenset((me, j)) for j in indexes)
        return chosen

    def heal(self, name: str) -> None:
        """Restore every path of ``name``.

        Raises:
            KeyError: no such node.
        """
        me = self.index(name)
        self.cut = {pair for pair in self.cut if me not in pair}

    def partitions(self) -> list[list[str]]:
        """The cut pairs, by name."""
        return sorted(sorted(self.nodes[i].name for i in pair) for pair in self.cut)

    def route(self, src: int, packet: bytes) -> tuple[int, float] | str:
        """``(destination node, delay s)`` for an IPv4 packet that ``src`` sent, or why it
        is dropped (``not-ipv4``, ``spoofed``, ``no-route``, ``refused``, ``partitioned``)."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return "not-ipv4"
        saddr, daddr = struct.unpack_from("!II", packet, 12)
        if saddr != self._own[src] and self._private.get(saddr >> 8) != src:
            return "spoofed"
        dst = self._public.get(daddr)
        private = dst is None
        if private:
            dst = self._private.get(daddr >> 8)
            if dst is None:
                return self._outward(packet, saddr, daddr)
        assert dst is not None
        if not self._allowed(src, dst, private, packet):
            return "refused"
        if frozenset((src, dst)) in self.cut:
            return "partitioned"
        return dst, self.delay_s[src][dst]

    def _foreign(self, addr: int) -> bool:
        """``addr`` is on the internet, in another federation's block."""
        return addr >> (32 - INTERNET.prefixlen) == self._internet and addr >> 8 != self._block

    def _outward(self, packet: bytes, saddr: int, daddr: int) -> tuple[int, float] | str:
        """A packet to another federation's block: to the exchange (``EXCHANGE``), its
        connection remembered so the answers may come back; else ``no-route``."""
        if not self._foreign(daddr):
            return "no-route"
        if packet[9] in (_TCP, _UDP):
            self.flows[(packet[9], daddr, self._dport(packet), saddr, self._sport(packet))] = None
            if len(self.flows) > FLOW_LIMIT:
                del self.flows[next(iter(self.flows))]
        return EXCHANGE, 0.0

    def route_exchanged(self, packet: bytes) -> tuple[int, float] | str:
        """``(destination node, delay s)`` for a packet another federation's emulator
        passed on, or why it is dropped: it must come from another block (``spoofed``), go
        to a public address here (``no-route``), and reach a port anyone may reach or
        answer a connection a node here opened (``refused``)."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return "not-ipv4"
        saddr, daddr = struct.unpack_from("!II", packet, 12)
        if not self._foreign(saddr):
            return "spoofed"
        dst = self._public.get(daddr)
        if dst is None:
            return "no-route"
        if self._kinds[dst] == "host":
            return "refused"
        if packet[9] in (_TCP, _UDP):
            sport, dport = self._sport(packet), self._dport(packet)
            answer = (packet[9], saddr, sport, daddr, dport) in self.flows
            if not answer and dport not in self._ports[dst]:
                return "refused"
        return dst, 0.0

    def _allowed(self, src: int, dst: int, private: bool, packet: bytes) -> bool:
        if self._kinds[src] == "host" or self._kinds[dst] == "host":
            return True
        if private:
            return dst in self._peers_private[src]
        if self._kinds[dst] == "controller" and packet[9] in (_TCP, _UDP):
            return self._dport(packet) in self._ports[dst]
        if packet[9] not in (_TCP, _UDP):
            return True  # ICMP to a public address (ping, unreachable)
        sport = self._sport(packet)
        return self._dport(packet) in self._ports[dst] or sport in self._ports[src]

    @staticmethod
    def _sport(packet: bytes) -> int:
        ihl = (packet[0] & 0x0F) * 4
        return int.from_bytes(packet[ihl : ihl + 2], "big") if len(packet) >= ihl + 4 else -1

    @staticmethod
    def _dport(packet: bytes) -> int:
        ihl = (packet[0] & 0x0F) * 4
        return int.from_bytes(packet[ihl + 2 : ihl + 4], "big") if len(packet) >= ihl + 4 else -1
