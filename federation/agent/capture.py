"""Transparent capture: the nftables rules that send a pod's TCP traffic (and its DNS) through
its sidecar, as ``meshfed proxy init`` -- the Kubernetes init container, and each pod of
``meshfed up --isolate`` -- installs them in the pod's network namespace.

:func:`capture_settings` reads the pod's annotations and :func:`ruleset` writes the rules
(both pure); :func:`apply` and :func:`remove` run ``nft`` (Debian package ``nftables``).

Why nftables, not iptables: the whole ruleset is one table, ``inet meshfed``, loaded by one
``nft -f`` in one kernel transaction (it applies whole or not at all: a pod never runs with
half its rules) and removed by deleting that table; one family (``inet``) covers IPv4 and
IPv6; and there is no choice between the legacy and nft back ends of ``iptables`` to get
wrong. Istio's ``istio-iptables`` writes the same rules with iptables.

The rules (Istio's conventions where they exist; ports are Istio's too):

- **outbound** (``output`` hook, NAT): connections of the sidecar's own UID or GID
  (``--proxy-uid``/``--proxy-gid``, 1337) are left alone -- Envoy's and the agent's own
  connections, which would otherwise loop back into Envoy; DNS (UDP and TCP port 53) goes to
  the agent's resolver on ``127.0.0.1:15053`` (:mod:`federation.agent.dns`); other TCP goes to
  Envoy's outbound listener on port 15001 unless it is for loopback, an excluded port, or an
  address outside the included ranges.
- **inbound** (``prerouting`` hook, NAT): TCP to any port but the sidecar's own (15006,
  where mTLS from other sidecars arrives, and the excluded ones) goes to Envoy's inbound
  listener on 15006, which requires mTLS (STRICT) or also takes plain text (PERMISSIVE).

Annotations (``traffic.meshfed.io/<name>``, or Istio's ``traffic.sidecar.istio.io/<name>``;
both spellings with different values are refused): ``includeOutboundIPRanges`` (default
``*``), ``excludeOutboundIPRanges``, ``includeOutboundPorts`` (captured whatever the
address), ``excludeOutboundPorts``, ``includeInboundPorts`` (default ``*``),
``excludeInboundPorts``. Istio's ``kubevirtInterfaces`` and other names are refused.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace

from federation.errors import ConfigError
from federation.sync.node import CAPTURE_ANNOTATIONS, PROXY_GID, PROXY_UID

TABLE = "meshfed"
OUTBOUND_CAPTURE_PORT = 15001
INBOUND_CAPTURE_PORT = 15006
DNS_CAPTURE_PORT = 15053

PREFIXES = CAPTURE_ANNOTATIONS
#: Annotation name -> :class:`CaptureSettings` field.
_FIELDS = {
    "includeOutboundIPRanges": "include_outbound",
    "excludeOutboundIPRanges": "exclude_outbound",
    "includeOutboundPorts": "include_outbound_ports",
    "excludeOutboundPorts": "exclude_outbound_ports",
    "includeInboundPorts": "include_inbound",
    "excludeInboundPorts": "exclude_inbound",
}


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """What a pod's rules capture (see the module docstring).

    Attributes:
        proxy_uid / proxy_gid: the sidecar's (Envoy's and its agent's) user and group.
        outbound_port / inbound_port: Envoy's capturing listeners.
        dns_port: the agent's DNS resolver on 127.0.0.1; None: DNS is not captured.
        include_outbound: CIDRs whose TCP is captured; None means every address.
        exclude_outbound: CIDRs never captured.
        include_outbound_ports / exclude_outbound_ports: destination ports always / never
            captured (exclusion wins).
        include_inbound: destination ports captured inbound; None means every port.
        exclude_inbound: ports never captured inbound (the sidecar's own are added).
    """

    proxy_uid: int = PROXY_UID
    proxy_gid: int = PROXY_GID
    outbound_port: int = OUTBOUND_CAPTURE_PORT
    inbound_port: int = INBOUND_CAPTURE_PORT
    dns_port: int | None = DNS_CAPTURE_PORT
    include_outbound: tuple[str, ...] | None = None
    exclude_outbound: tuple[str, ...] = ()
    include_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    include_inbound: tuple[int, ...] | None = None
    exclude_inbound: tuple[int, ...] = ()


def _annotation(annotations: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """``(key, value)`` of annotation ``name`` in either spelling.

    Raises:
        ConfigError: both spellings, with different values.
    """
    found = [(p + name, annotations[p + name]) for p in PREFIXES if p + name in annotations]
    if len({v.strip() for _, v in found}) > 1:
        raise ConfigError(
            f"annotations {found[0][0]}={found[0][1]!r} and {found[1][0]}={found[1][1]!r}"
            " disagree: keep one"
        )
    return found[0] if found else None


def _ports(key: str, text: str) -> tuple[int, ...]:
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if not (item.isascii() and item.isdigit() and 0 < int(item) < 65536):
            raise ConfigError(f"annotation {key}: {item[:20]!r} is not a port 1-65535")
        out.append(int(item))
    return tuple(sorted(set(out)))


def _cidrs(key: str, text: str) -> tuple[str, ...]:
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"annotation {key}: {item[:50]!r} is not an IP range") from None
    return tuple(out)


def capture_settings(
    annotations: Mapping[str, str], base: CaptureSettings | None = None
) -> CaptureSettings:
    """``base`` (default :class:`CaptureSettings`) with the pod's capture annotations.

    Raises:
        ConfigError: an unknown ``traffic.*`` annotation name, a value that is not a port list
            or CIDR list (``*`` allowed for the two ``include`` lists), or both spellings of
            one annotation with different values; names the annotation.
    """
    base = base or CaptureSettings()
    for key in annotations:
        for prefix in PREFIXES:
            if key.startswith(prefix) and key[len(prefix) :] not in _FIELDS:
                raise ConfigError(
                    f"annotation {key}: not supported (meshfed reads {', '.join(_FIELDS)})"
                )
    updates: dict[str, object] = {}
    for name, attribute in _FIELDS.items():
        found = _annotation(annotations, name)
        if found is None:
            continue
        key, text = found
        if name.startswith("include") and text.strip() == "*":
            updates[attribute] = None
        elif name.endswith("IPRanges"):
            updates[attribute] = _cidrs(key, text)
        else:
            updates[attribute] = _ports(key, text)
    return replace(base, **updates)  # type: ignore[arg-type]


def _set(items: object) -> str:
    values = [str(i) for i in items]  # type: ignore[attr-defined]
    return "{ " + ", ".join(values) + " }"


def _by_family(cidrs: tuple[str, ...]) -> tuple[list[str], list[str]]:
    v4 = [c for c in cidrs if ":" not in c]
    return v4, [c for c in cidrs if ":" in c]


def ruleset(s: CaptureSettings) -> str:
    """The ``nft -f`` script for ``s``: it replaces table ``inet meshfed`` whole (see the
    module docstring for the rules and their order)."""
    out = [
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  chain outbound {",
        "    type nat hook output priority -100; policy accept;",
        f"    meta skuid {s.proxy_uid} return",
        f"    meta skgid {s.proxy_gid} return",
    ]
    if s.dns_port is not None:
        out += [
            f"    udp dport 53 redirect to :{s.dns_port}",
            f"    tcp dport 53 redirect to :{s.dns_port}",
        ]
    out += [
        "    meta l4proto != tcp return",
        "    ip daddr 127.0.0.0/8 return",
        "    ip6 daddr ::1 return",
    ]
    if s.exclude_outbound_ports:
        out.append(f"    tcp dport {_set(s.exclude_outbound_ports)} return")
    if s.include_outbound_ports:
        out.append(f"    tcp dport {_set(s.include_outbound_ports)} redirect to :{s.outbound_port}")
    v4, v6 = _by_family(s.exclude_outbound)
    if v4:
        out.append(f"    ip daddr {_set(v4)} return")
    if v6:
        out.append(f"    ip6 daddr {_set(v6)} return")
    if s.include_outbound is not None:
        v4, v6 = _by_family(s.include_outbound)
        out.append(f"    ip daddr != {_set(v4)} return" if v4 else "    meta nfproto ipv4 return")
        out.append(f"    ip6 daddr != {_set(v6)} return" if v6 else "    meta nfproto ipv6 return")
    out += [
        f"    meta l4proto tcp redirect to :{s.outbound_port}",
        "  }",
        "  chain inbound {",
        "    type nat hook prerouting priority -100; policy accept;",
        "    meta l4proto != tcp return",
        f"    tcp dport {_set(sorted({s.inbound_port, *s.exclude_inbound}))} return",
    ]
    if s.include_inbound is not None:
        if s.include_inbound:
            out.append(f"    tcp dport != {_set(s.include_inbound)} return")
        else:
            out.append("    return")
    out += [f"    meta l4proto tcp redirect to :{s.inbound_port}", "  }", "}", ""]
    return "\n".join(out)


def nft_path() -> str | None:
    """The ``nft`` binary (on PATH, or in ``/usr/sbin`` / ``/sbin``, which a non-login
    PATH may lack), or None when nftables is not installed."""
    return shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if shutil.which(p)), None
    )


def _nft() -> str:
    """:func:`nft_path`.

    Raises:
        ConfigError: not installed (Debian package ``nftables``).
    """
    path = nft_path()
    if path is None:
        raise ConfigError("nft not found: install Debian's nftables package")
    return path


def apply(script: str) -> None:
    """Load ``script`` (:func:`ruleset`) with ``nft -f -`` in this process's network
    namespace: one transaction, all or nothing.

    Raises:
        ConfigError: nft is missing or refused the script (its message; e.g. no
            CAP_NET_ADMIN).
    """
    done = subprocess.run(  # noqa: S603 - fixed argv
        [_nft(), "-f", "-"], input=script, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ConfigError(f"nft -f: {done.stderr.strip() or done.returncode}")


def remove() -> bool:
    """Delete table ``inet meshfed`` (what ``meshfed uninject`` or a pod's removal leaves:
    nothing). Returns False when it was not there.

    Raises:
        ConfigError: nft is missing, or failed for another reason than a missing table.
    """
    done = subprocess.run(  # noqa: S603 - fixed argv
        [_nft(), "delete", "table", "inet", TABLE], capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        return True
    if "No such file or directory" in done.stderr:
        return False
    raise ConfigError(f"nft delete table: {done.stderr.strip()}")


def init(
    annotations: tuple[str, ...],
    *,
    proxy_uid: int = PROXY_UID,
    proxy_gid: int = PROXY_GID,
    dns: bool = True,
    dry_run: bool = False,
    undo: bool = False,
) -> str:
    """``meshfed proxy init``: install (or with ``undo`` remove) this network namespace's
    capture rules; returns what to print (the rules; with ``dry_run`` nothing is changed).

    Args:
        annotations: ``KEY=VALUE`` pod annotations (:func:`capture_settings`).

    Raises:
        ConfigError: an annotation is not ``KEY=VALUE`` or not valid, or nft failed.
    """
    if undo:
        if dry_run:
            return f"delete table inet {TABLE}\n"
        return "removed\n" if remove() else "no capture rules were installed\n"
    pairs: dict[str, str] = {}
    for item in annotations:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--annotation {item!r}: use KEY=VALUE")
        pairs[key] = value
    settings = capture_settings(
        pairs,
        CaptureSettings(
            proxy_uid=proxy_uid, proxy_gid=proxy_gid, dns_port=DNS_CAPTURE_PORT if dns else None
        ),
    )
    script = ruleset(settings)
    if not dry_run:
        apply(script)
    return script
