"""Linux network namespaces and TUN devices for ``meshfed up --isolate``: the I/O half of
:mod:`federation.local.netplan` (which decides what to build). Needs root, iproute2 and
``/dev/net/tun``.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from federation.agent.capture import nft_path
from federation.errors import FederationError
from federation.local.netplan import EXCHANGE_DIR, NAMESPACE_PREFIX, host_link

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
NETNS_DIR = Path("/run/netns")


class IsolationUnavailableError(FederationError):
    """This machine cannot build the isolated network (not root, no iproute2, no TUN, or the
    address block is in use); the message says which and what to do."""


class NetworkCommandError(FederationError):
    """An ``ip`` command failed; the message holds the command and what it printed."""

    retryable = True


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)
    if setns is not None:  # Python 3.12+
        setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def call_in(netns: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` in network namespace ``netns`` (None: here) on a thread of its own, so that
    every socket it opens belongs to that namespace; returns what ``fn`` returns and raises
    what it raises."""
    if netns is None:
        return fn()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            with (NETNS_DIR / netns).open() as handle:
                _setns(handle.fileno())
            box["value"] = fn()
        except BaseException as err:  # handed back to the caller
            box["error"] = err

    thread = threading.Thread(target=run, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def open_tun(name: str, netns: str | None) -> int:
    """Attach to the persistent TUN device ``name`` in ``netns``; returns a non-blocking fd
    that reads and writes whole IPv4 packets (no packet-info header).

    Raises:
        OSError: no such device, or it is attached already.
    """

    def attach() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
        return fd

    return call_in(netns, attach)


def exec_argv(netns: str | None, argv: list[str]) -> list[str]:
    """``argv`` run inside ``netns`` (``ip netns exec``; the process keeps its pid)."""
    return argv if netns is None else ["ip", "netns", "exec", netns, *argv]


def _host_addresses() -> list[str]:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"],  # noqa: S607 - iproute2 from PATH, as `ip netns exec`
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            found.append(parts[parts.index("inet") + 1].split("/")[0])
    return found


def preflight() -> None:
    """Check that the isolated network can be built here.

    Raises:
        IsolationUnavailableError: not root, ``ip`` or ``nft`` missing, or no
            ``/dev/net/tun``.
    """
    if os.geteuid() != 0:
        raise IsolationUnavailableError(
            "--isolate needs root (it creates network namespaces); run it with sudo, or"
            " drop --isolate for the loopback federation"
        )
    if shutil.which("ip") is None:
        raise IsolationUnavailableError(
            "--isolate needs iproute2's `ip` (Debian: apt-get install iproute2)"
        )
    if nft_path() is None:
        raise IsolationUnavailableError(
            "--isolate needs nftables' `nft` for its pods' capture rules (Debian: apt-get"
            " install nftables)"
        )
    if not Path("/dev/net/tun").exists():
        raise IsolationUnavailableError("--isolate needs /dev/net/tun (the tun kernel module)")


def exchange_path(block: str, directory: str = EXCHANGE_DIR) -> Path:
    """The exchange socket of the federation whose block is ``block`` (``198.18.N.0/24``)."""
    return Path(directory) / f"{ipaddress.ip_network(block).network_address}.sock"


def exchange_alive(path: Path) -> bool:
    """True when an emulator is bound to the exchange socket ``path`` (a datagram socket
    nobody binds refuses a connect)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


#: How long (s) a block picked by :func:`free_block` stays reserved for the federation that
#: picked it, until its link emulator serves it (``up`` builds the network in seconds).
RESERVATION_S = 300.0


def reservation_path(block: str, directory: str = EXCHANGE_DIR) -> Path:
    """The file that reserves ``block`` between :func:`free_block` and its emulator's start."""
    return exchange_path(block, directory).with_suffix(".reserved")


def free_block(key: str, directory: str = EXCHANGE_DIR) -> str:
    """The first /24 of the emulated internet (198.18.0.0/16) that no federation of this
    host uses -- none of its addresses is assigned here, no link emulator serves it, no other
    home reserved it in the last :data:`RESERVATION_S` -- reserved for home ``key`` (under
    a lock, so two ``up --isolate`` started at once take different blocks).

    Raises:
        IsolationUnavailableError: all 256 are in use.
        OSError: the exchange directory cannot be made.
    """
    Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
    with (Path(directory) / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = {str(ipaddress.ip_network(f"{a}/24", strict=False)) for a in _host_addresses()}
        now = time.time()
        for third in range(256):
            block = f"198.18.{third}.0/24"
            reserved = reservation_path(block, directory)
            try:
                held = (
                    reserved.read_text() != key and now - reserved.stat().st_mtime < RESERVATION_S
                )
            except OSError:
                held = False
            if block in taken or held or exchange_alive(exchange_path(block, directory)):
                continue
            reserved.write_text(key)
            return block
    raise IsolationUnavailableError("every /24 of 198.18.0.0/16 is used by another federation")


def claim_path(key: str, directory: str = EXCHANGE_DIR) -> Path:
    """Where :func:`claim_key` records which home holds ``key``."""
    return Path(directory) / f"{key}.home"


def claim_key(key: str, home: str, directory: str = EXCHANGE_DIR) -> None:
    """Record home ``home`` as the owner of the namespaces and devices named with ``key``
    (:func:`~federation.local.netplan.home_key` of it), under the exchange directory's lock,
    unless another home's network with that key exists now: building it would first remove
    that network as this home's leftovers.

    Raises:
        IsolationUnavailableError: another home's namespaces or devices carry ``key``
            (names that home, and ``meshfed down`` there as the fix).
        OSError: the exchange directory cannot be made or written.
    """
    Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = claim_path(key, directory)
    with (Path(directory) / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            other = owner.read_text()
        except OSError:
            other = home
        found = leftovers(key) if other != home else []
        if found:
            raise IsolationUnavailableError(
                f"{found[0]} (key {key}) belongs to the isolated federation of home {other};"
                f" run `MESHFED_HOME={other} meshfed down` first, or use another MESHFED_HOME"
            )
        owner.write_text(home)


def release_key(key: str, home: str, directory: str = EXCHANGE_DIR) -> bool:
    """Forget home ``home``'s claim on ``key`` (:func:`claim_key`) once its network is gone
    (``meshfed down``), under the exchange directory's lock; a claim another home has made
    since is kept. Returns whether a claim was removed.

    Raises:
        OSError: the claim exists but cannot be read or removed.
    """
    owner = claim_path(key, directory)
    if not owner.exists():
        return False
    with (Path(directory) / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if owner.read_text() != home:
                return False
        except FileNotFoundError:
            return False
        owner.unlink()
        return True


def routed_elsewhere(prefixes: list[str], directory: str = EXCHANGE_DIR) -> dict[str, str]:
    """Those of ``prefixes`` (a federation's private /24s) this host already routes -- to
    another isolated federation's device -- each with who holds it: the home recorded by
    :func:`claim_key` for the device's key (``mf<key>h``), else the device's name."""
    out = subprocess.run(
        ["ip", "-4", "-o", "route", "show"],  # noqa: S607 - iproute2 from PATH
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    routed = route_devices(out)
    return {p: holder_of(routed[p], directory) for p in prefixes if p in routed}


#: Route types ``ip route show`` prints before a route's destination (ip-route(8)).
_ROUTE_TYPES = frozenset(
    {"unicast", "local", "broadcast", "multicast", "throw", "unreachable", "prohibit",
     "blackhole", "nat", "anycast"}
)  # fmt: skip


def route_devices(routes: str) -> dict[str, str]:
    """``ip -4 -o route show``'s output as destination -> device (``?`` for a route with
    no ``dev``, e.g. ``blackhole 10.9.0.0/16``)."""
    found = {}
    for line in routes.splitlines():
        words = line.split()
        if words and words[0] in _ROUTE_TYPES:
            words = words[1:]
        if words:
            found[words[0]] = words[words.index("dev") + 1] if "dev" in words[:-1] else "?"
    return found


def holder_of(device: str, directory: str = EXCHANGE_DIR) -> str:
    """``home <path>`` for an isolated federation's host device ``mf<key>h`` whose key is
    claimed (:func:`claim_key`), else ``device <name>``."""
    key = device[2:-1]
    if len(key) == 8 and device == host_link(key):
        try:
            return f"home {claim_path(key, directory).read_text()}"
        except OSError:
            pass
    return f"device {device}"


def run(commands: list[list[str]]) -> None:
    """Run iproute2 commands in order.

    Raises:
        NetworkCommandError: a command failed (names it and quotes its error).
    """
    for argv in commands:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise NetworkCommandError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")


def run_ignoring_missing(commands: list[list[str]]) -> int:
    """Run removal commands, each may fail because its object is gone; returns how many did
    something."""
    done = 0
    for argv in commands:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        done += result.returncode == 0
    return done


def namespaces_of(key: str) -> list[str]:
    """The network namespaces of home ``key`` that exist now (its clusters', the
    controller's and every pod's), sorted."""
    return sorted(p.name for p in NETNS_DIR.glob(f"{NAMESPACE_PREFIX}{key}-*"))


def leftovers(key: str) -> list[str]:
    """Namespaces (``netns <name>``) and host links (``link <name>``) of home ``key`` that
    exist now."""
    found = [f"netns {name}" for name in namespaces_of(key)]
    out = subprocess.run(
        ["ip", "-o", "link", "show"],  # noqa: S607 - iproute2 from PATH
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in out.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(f"mf{key}"):
            found.append(f"link {name}")
    return found
