"""Where the processes of a local federation run and listen: on loopback (the default), or in
the isolated network of ``meshfed up --isolate`` (:mod:`federation.local.netplan`).

The runner asks a placement for addresses, wraps argv with it, and runs its readiness checks
through it (a check of ``127.0.0.1`` inside a cluster must run in that cluster's namespace).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from federation.local.description import ClusterSpec, LocalFederation
from federation.local.netns import (
    NETNS_DIR,
    NetworkCommandError,
    call_in,
    claim_key,
    exec_argv,
    free_block,
    leftovers,
    namespaces_of,
    release_key,
    routed_elsewhere,
    run,
    run_ignoring_missing,
)
from federation.local.netplan import (
    ClusterInput,
    NetworkPlan,
    build_plan,
    home_key,
    pod_commands,
    pod_netns,
    setup_commands,
    teardown_commands,
)
from federation.local.processes import meshfed_argv
from federation.model.locality import Locality
from federation.netaddr import parse_host_port
from federation.sync.node import GATEWAY_PORT

T = TypeVar("T")

CONTROLLER = "controller"


class Placement:
    """Loopback: every cluster on its ``addressRange``, the controller where the file says."""

    isolated = False

    def __init__(self, desc: LocalFederation) -> None:
        self.desc = desc

    def address(self, c: ClusterSpec, host: int) -> str:
        """``.host`` of cluster ``c``."""
        return c.address(host)

    def gateway(self, c: ClusterSpec) -> str:
        """``host:port`` of ``c``'s east-west gateway (what other clusters dial)."""
        return f"{c.address(1)}:{GATEWAY_PORT}"

    def zone_gateways(self, c: ClusterSpec) -> dict[str, str]:
        """Zone -> ``host:port`` of each of ``c``'s zone-local gateways (none unless its
        ``zoneGateways``): the cluster gateway's host, :func:`zone_gateway_ports`."""
        if not c.zone_gateways:
            return {}
        host = self.gateway(c).rpartition(":")[0]
        return {z: f"{host}:{port}" for z, port in zip(c.zones, zone_gateway_ports(c), strict=True)}

    @property
    def controller_listen(self) -> str:
        return self.desc.spec.controller.listen

    @property
    def controller_sync_listen(self) -> str:
        return self.desc.spec.controller.sync_listen

    def frontend_stats_host(self, c: ClusterSpec) -> str:
        """Where the frontend serves its stats so that the CLI reaches them."""
        return "127.0.0.1"

    def netns(self, node: str) -> str | None:
        """The namespace of ``node`` (a cluster name, ``controller`` or ``<cluster>/<pod>``);
        None on loopback."""
        return None

    def pod(self, c: ClusterSpec, name: str, host: int, annotations: tuple[str, ...] = ()) -> str:
        """The node a workload of ``c`` runs on: on loopback its cluster (``annotations``, the
        pod's capture annotations, are not used: nothing is captured)."""
        return c.name

    @property
    def captured(self) -> bool:
        """Whether workloads run in pods whose traffic is captured (``meshfed proxy init``)."""
        return False

    def argv(self, node: str, argv: list[str]) -> list[str]:
        """``argv`` as it must run for ``node``."""
        return exec_argv(self.netns(node), argv)

    def check(self, node: str, fn: Callable[[], T]) -> T:
        """Run a readiness check from ``node``'s network."""
        return call_in(self.netns(node), fn)

    def info(self) -> dict[str, Any]:
        """What ``up.json`` records of the network (nothing on loopback)."""
        return {}


class IsolatedPlacement(Placement):
    """``--isolate``: every cluster and the controller in a namespace of their own, in
    ``block`` of the emulated internet (default: the first free one, :func:`free_block`).

    Raises:
        IsolationUnavailableError: no ``block`` given and none is free or another home's
            network carries this home's key (:func:`claim_key`: before anything is recorded,
            so that an ``up`` refused removes nothing of the other's).
    """

    isolated = True

    def __init__(self, desc: LocalFederation, home: Path, block: str | None = None) -> None:
        super().__init__(desc)
        self.home = home
        if block is None:  # a new federation: its key, then a block of its own
            key = home_key(str(home.resolve()))
            claim_key(key, str(home.resolve()))
            block = free_block(key)
        self.plan = plan_for(desc, home, block)
        self.plan_path = home / "network" / "plan.json"
        self.control = home / "network" / "emulator.sock"

    def address(self, c: ClusterSpec, host: int) -> str:
        return self.plan.address(c.name, host)

    def gateway(self, c: ClusterSpec) -> str:
        return f"{self.plan.node(c.name).public}:{GATEWAY_PORT}"

    @property
    def controller_listen(self) -> str:
        address = self.plan.node("controller").public
        return f"{address}:{parse_host_port(self.desc.spec.controller.listen)[1]}"

    @property
    def controller_sync_listen(self) -> str:
        port = parse_host_port(self.desc.spec.controller.sync_listen)[1]
        return f"{self.plan.node('controller').public}:{port}"

    def frontend_stats_host(self, c: ClusterSpec) -> str:
        return self.address(c, 9)

    def netns(self, node: str) -> str | None:
        cluster, _, pod = node.partition("/")
        return pod_netns(self.plan.key, cluster, pod) if pod else self.plan.node(node).netns

    @property
    def captured(self) -> bool:
        return True

    def pod(self, c: ClusterSpec, name: str, host: int, annotations: tuple[str, ...] = ()) -> str:
        """Pod ``name`` of ``c`` at ``.host`` (:func:`pod_commands`) with its capture rules
        (``meshfed proxy init`` in it, with ``annotations``); a pod that exists already (``demo
        revive``) is kept as it is.

        Raises:
            NetworkCommandError: an ``ip`` or ``nft`` command failed.
        """
        node = f"{c.name}/{name}"
        netns = self.netns(node)
        if not (NETNS_DIR / str(netns)).exists():
            init = [*meshfed_argv(), "proxy", "init"]
            init += [f"--annotation={a}" for a in annotations]
            run([*pod_commands(self.plan, c.name, name, host), exec_argv(netns, init)])
        return node

    def info(self) -> dict[str, Any]:
        return {
            "key": self.plan.key,
            "block": self.plan.block,
            "namespaces": self.plan.namespaces,
            "plan": str(self.plan_path),
            "control": str(self.control),
        }

    def build(self) -> None:
        """Write the plan and create the namespaces and devices (after removing any left by a
        crashed ``up`` of this home).

        Raises:
            NetworkCommandError: an ``ip`` command failed, or another isolated federation
                uses a cluster's private range (its ``addressRange``).
        """
        remove_network(self.info())
        privates = {n.private: n.name for n in self.plan.nodes if n.private}
        for private, holder in routed_elsewhere(list(privates)).items():
            c = self.desc.cluster(privates[private])
            home = holder.removeprefix("home ")
            down = f"; `MESHFED_HOME={home} meshfed down` removes it" if home != holder else ""
            raise NetworkCommandError(
                f"cluster {c.name}: addressRange {c.address_range} (private range {private})"
                f" is used by another isolated federation on this host ({holder}{down}):"
                " give this federation's clusters other addressRanges"
            )
        self.plan_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.plan_path.write_text(self.plan.to_json())
        run(setup_commands(self.plan))

    def emulator_argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "federation.local.emulator",
            "--plan",
            str(self.plan_path),
            "--control",
            str(self.control),
        ]


def zone_gateway_ports(c: ClusterSpec) -> tuple[int, ...]:
    """The ports of ``c``'s zone-local gateways, one per zone in order after the cluster
    gateway's (:data:`GATEWAY_PORT` + 1, + 2, ...); none unless ``c.zone_gateways``."""
    return tuple(GATEWAY_PORT + 1 + i for i in range(len(c.zones))) if c.zone_gateways else ()


def plan_for(desc: LocalFederation, home: Path, block: str) -> NetworkPlan:
    """The isolated network of ``desc`` run from ``home`` in ``block`` (a /24 of
    198.18.0.0/16)."""
    clusters = [
        ClusterInput(
            c.name,
            c.address_range,
            Locality.parse(f"{c.region}/{c.zones[0]}"),
            c.network or c.name,
            zone_gateway_ports(c),
        )
        for c in desc.spec.clusters
    ]
    ports = (
        parse_host_port(desc.spec.controller.listen)[1],
        parse_host_port(desc.spec.controller.sync_listen)[1],
    )
    return build_plan(
        home_key(str(home.resolve())),
        clusters,
        controller_ports=ports,
        gateway_port=GATEWAY_PORT,
        latency=desc.pairs("latency"),
        loss=desc.pairs("loss"),
        block=block,
    )


def release_network(info: dict[str, Any], home: Path) -> list[str]:
    """:func:`remove_network`, then, when nothing is left, forget ``home``'s claim on the
    network's key (:func:`~federation.local.netns.release_key`): ``down`` and an abandoned
    ``up``. Returns what is still there."""
    left = remove_network(info)
    if info and not left:
        release_key(str(info["key"]), str(home.resolve()))
    return left


def remove_network(info: dict[str, Any]) -> list[str]:
    """Remove the namespaces and devices recorded in ``info`` (``up.json``'s ``network``);
    idempotent. Returns what is still there afterwards (empty when all went)."""
    if not info:
        return []
    key = str(info["key"])
    namespaces = sorted(set(info.get("namespaces", [])) | set(namespaces_of(key)))  # + pods
    run_ignoring_missing(teardown_commands(key, namespaces))
    Path(str(info.get("control", "/nonexistent"))).unlink(missing_ok=True)
    return leftovers(key)
