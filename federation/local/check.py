"""``meshfed check``'s facts: asked of the controller's API, of each member's control plane
whose API this machine knows (``$MESHFED_HOME/controlplanes/<cluster>/endpoint.json``, as
``meshfed up`` writes it), and of each member's gateway by a TCP connection; judged by
:mod:`federation.checks`.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation.checks import (
    Check,
    certificate_checks,
    clock_check,
    controller_check,
    gateway_check,
    member_checks,
    out_of_sync,
    proxy_check,
    trust_domain_checks,
)
from federation.client import call
from federation.durations import parse_rfc3339
from federation.errors import FederationError
from federation.netaddr import parse_host_port
from trust.errors import TrustError
from trust.pki import validity

log = logging.getLogger(__name__)

#: How long a gateway may take to accept a connection (s).
GATEWAY_TIMEOUT_S = 2.0
#: How long a proxy may stay out of sync before it counts (s): a push in flight is not.
SETTLE_S = 3.0


def _timed(ask: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float | None, float]:
    """``ask()``'s answer, the server's clock minus ours at the request's middle (None when
    the answer has no ``time``), and the round trip (s)."""
    sent, started = time.time(), time.monotonic()
    answer = ask()
    round_trip = time.monotonic() - started
    server = answer.get("time")
    skew = None if not isinstance(server, int | float) else server - (sent + round_trip / 2)
    return answer, skew, round_trip


def _controlplane_api(home: Path, cluster: str) -> str | None:
    try:
        endpoint = home / "controlplanes" / cluster / "endpoint.json"
        return str(json.loads(endpoint.read_text())["api"])
    except (OSError, ValueError, KeyError):
        return None


def _connect_error(address: str) -> str | None:
    """None when ``host:port`` accepts a TCP connection within the timeout, else why not."""
    try:
        host, port = parse_host_port(address)
        with socket.create_connection((host, port), timeout=GATEWAY_TIMEOUT_S):
            return None
    except (OSError, ValueError) as err:
        return str(err) or err.__class__.__name__


def _lifetimes(bundle_pem: str, clusters: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    try:
        for name, not_before, not_after in validity(bundle_pem.encode(), source="trust bundle"):
            out.append(("root", name, not_before, not_after))
    except TrustError:
        pass  # the bundle is checked by every join; nothing to judge here
    for c in clusters:
        got = c.get("intermediate") or {}
        if got.get("notBefore") and got.get("notAfter"):
            out.append((
                "intermediate", c["name"],
                datetime.fromtimestamp(parse_rfc3339(got["notBefore"]), UTC),
                datetime.fromtimestamp(parse_rfc3339(got["notAfter"]), UTC),
            ))  # fmt: skip
    return out


def _settled_proxies(ask: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
    """The proxy status, asked again (up to :data:`SETTLE_S`) while a connected proxy is out of
    sync: a push in flight is STALE for milliseconds, which is no failure."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        proxies: list[dict[str, Any]] = ask()["proxies"]
        if time.monotonic() >= deadline or not any(
            p.get("connected") and out_of_sync(p) for p in proxies
        ):
            return proxies
        time.sleep(0.25)


def _controlplane_checks(cluster: str, api: str | None, home: Path) -> list[Check]:
    """The clock and the proxies of ``cluster``'s control plane at ``api`` (None: unknown)."""
    if api is None:
        return [proxy_check(cluster, None, "its control plane's API is not known here")]

    def ask(path: str) -> dict[str, Any]:
        return dict(call("GET", api, path, home=home))

    try:
        _, skew, round_trip = _timed(lambda: ask("/healthz"))
        proxies = _settled_proxies(lambda: ask("/v1/proxy-status"))
    except FederationError as err:
        return [proxy_check(cluster, None, str(err))]
    return [
        clock_check(f"control plane {cluster}", skew, round_trip),
        proxy_check(cluster, proxies, ""),
    ]


def run_checks(controller: str, token: str | None, home: Path) -> list[Check]:
    """Every check of :mod:`federation.checks`, in its order; only the controller's when it
    does not answer. Never raises for what it finds: a failure is a check."""
    try:
        _, skew, round_trip = _timed(lambda: call("GET", controller, "/healthz", home=home))
        clusters = call("GET", controller, "/v1/clusters", token=token, home=home)["clusters"]
        bundle = call("GET", controller, "/v1/bundle", home=home).get("trustBundle", "")
    except FederationError as err:
        return [controller_check(controller, str(err))]
    out = [controller_check(controller, None), clock_check("controller", skew, round_trip)]
    heard = {c["name"]: c.get("lastHeartbeat") for c in clusters}
    members = [
        {**c, "lastHeartbeat": parse_rfc3339(heard[c["name"]]) if heard[c["name"]] else None}
        for c in clusters
    ]
    out += member_checks(members, time.time())
    for c in clusters:
        out += _controlplane_checks(c["name"], _controlplane_api(home, c["name"]), home)
    out += certificate_checks(_lifetimes(bundle, clusters), datetime.now(UTC))
    try:
        domains = call("GET", controller, "/v1/trustdomains", token=token, home=home)
        out += trust_domain_checks(domains["trustdomains"])
    except FederationError as err:  # a controller of an older release: nothing to check
        log.info("no trust domains checked: %s", err)
    out += [
        gateway_check(c["name"], c.get("gateway") or "", _connect_error(c["gateway"]))
        if c.get("gateway")
        else gateway_check(c["name"], "", None)
        for c in clusters
    ]
    out += [  # each zone's own gateway too
        gateway_check(f"{c['name']}/{zone}", address, _connect_error(address))
        for c in clusters
        for zone, address in sorted((c.get("zoneGateways") or {}).items())
    ]
    return out
