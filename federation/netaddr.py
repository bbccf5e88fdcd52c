"""``host:port`` parsing and free ports, shared by the CLI, servers and tests."""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
from pathlib import Path


def parse_host_port(text: str, *, what: str = "address") -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too).

    Raises:
        ValueError: no port, or a port outside 0-65535 (0 means "pick a free port").
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{what} {text!r} must be HOST:PORT")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{what} {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} {text!r}: port must be 0-65535")
    return host, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_ips(*listens: str) -> list[str]:
    """The distinct specific IP addresses among ``host:port`` listen addresses (not
    hostnames, not the unspecified ``0.0.0.0`` / ``::``), in order."""
    found: list[str] = []
    for listen in listens:
        host, _ = parse_host_port(listen)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        if not ip.is_unspecified and str(ip) not in found:
            found.append(str(ip))
    return found


#: Ports :func:`free_port` picks from: below Linux's ephemeral range (``ip_local_port_range``,
#: 32768-60999 by default), so that no port the kernel hands out -- to a ``bind(0)`` or to
#: the source of an outgoing connection -- can take one between the pick and its use.
_PICK_LOW = 10000
#: Ports with fixed defaults in meshfed (and in Istio, whose reserved ports they follow):
#: 15000-15099 (Envoy admin 15000, outbound 15001, inbound 15006, xDS 15010, certificates
#: 15012, API 15014, metrics 15020, health 15021, controller 15080 and 15090) and 15443-15499
#: (the east-west gateway's 15443, zone gateways from 15444 up). :func:`free_port` never picks
#: them, so that a picked port never meets a process started with its defaults (an Envoy
#: and a gRPC server would share such a port: both set ``SO_REUSEPORT`` unless told not to).
_FIXED_DEFAULTS = (range(15000, 15100), range(15443, 15500))
_handed_out: set[tuple[str, int]] = set()
_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, never handed out before by this process, outside the
    kernel's ephemeral range (see :data:`_PICK_LOW`) and not one of meshfed's fixed defaults
    (:data:`_FIXED_DEFAULTS`); another process may still take it
    before it is bound. Falls back to a kernel-chosen port when that range is too small."""
    high = _ephemeral_low()
    with _lock:
        for _ in range(200) if high - _PICK_LOW > 1000 else ():
            port = random.randrange(_PICK_LOW, high)  # noqa: S311 - not security
            if any(port in fixed for fixed in _FIXED_DEFAULTS):
                continue
            if (host, port) not in _handed_out and _bindable(host, port):
                _handed_out.add((host, port))
                return port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
