"""ClusterSetIPs: the virtual address of each exported service across the federation. Pure.

Kubernetes MCS (KEP-1645, "ClusterSetIP") gives every ``ServiceImport`` of type
ClusterSetIP an address in ``spec.ips``, the same in every cluster, that clients reach by the
name ``<svc>.<ns>.svc.clusterset.local``. meshfed's controller allocates it once, when a
service is first exported, from a configurable range (``meshfed controller serve
--clusterset-ip-range``), and keeps it in its store: it stays the same across restarts,
replicas and exporters coming and going, and is freed only when no cluster exports the
service any more.

Nothing routes these addresses: a captured pod's connection to one is redirected to its
sidecar before it leaves the pod (:mod:`federation.agent.capture`), which picks the service
by destination address and port. The default range is in 240.0.0.0/4, reserved since RFC 1112
(section 4) and never assigned on a network, as Istio's auto-allocated ServiceEntry
addresses are (``240.240.0.0/16``); meshfed's default ``240.241.0.0/16`` is next to Istio's so
that both meshes can run side by side during a migration.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from federation.errors import ConfigError

#: The default range (see the module docstring).
DEFAULT_RANGE = "240.241.0.0/16"

#: Smallest range accepted: a /28 holds 14 services.
MAX_PREFIX_V4 = 28


class ClusterSetRangeError(ConfigError, ValueError):
    """``--clusterset-ip-range`` is not an IPv4 network of at least 16 addresses, or it is
    full (exit 2: give a larger range)."""


def parse_range(text: str) -> ipaddress.IPv4Network:
    """``text`` as the allocation range.

    Raises:
        ClusterSetRangeError: not an IPv4 CIDR, host bits set, smaller than a /28, or inside
            127.0.0.0/8, 0.0.0.0/8 or a multicast range (the kernel treats those specially).
    """
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        raise ClusterSetRangeError(f"--clusterset-ip-range {text!r}: {err}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ClusterSetRangeError(f"--clusterset-ip-range {text!r}: must be IPv4")
    if net.prefixlen > MAX_PREFIX_V4:
        raise ClusterSetRangeError(
            f"--clusterset-ip-range {text!r}: at most /{MAX_PREFIX_V4} (16 addresses)"
        )
    for special in ("127.0.0.0/8", "0.0.0.0/8", "224.0.0.0/4"):
        if net.overlaps(ipaddress.IPv4Network(special)):
            raise ClusterSetRangeError(f"--clusterset-ip-range {text!r}: overlaps {special}")
    return net


def allocate(namespace: str, service: str, net: ipaddress.IPv4Network, taken: Iterable[str]) -> str:
    """The address for ``namespace/service``: the first free host address of ``net`` at or
    after a start that the name's SHA-256 picks (so one service gets the same address from
    any replica given the same table), skipping the network and broadcast addresses.

    Raises:
        ClusterSetRangeError: every host address of ``net`` is taken.
    """
    used = {int(ipaddress.ip_address(a)) for a in taken}
    base = int(net.network_address)
    hosts = net.num_addresses - 2
    digest = hashlib.sha256(f"{namespace}/{service}".encode()).digest()
    start = int.from_bytes(digest[:8], "big") % hosts
    for i in range(hosts):
        candidate = base + 1 + (start + i) % hosts
        if candidate not in used:
            return str(ipaddress.IPv4Address(candidate))
    raise ClusterSetRangeError(
        f"--clusterset-ip-range {net} is full ({hosts} services): give a larger range"
    )
