"""``meshfed check``: what is wrong with a federation, each with what to do about it (issue
41). Pure: the verdicts on facts gathered by :mod:`federation.local.check`.

Each :class:`Check` is ``ok``, ``warn`` (works, but will not for long or cannot be seen
from here) or ``fail`` (something users feel now). The checks, in order:

- **controller**: its API answers (``GET /healthz``, ``/v1/clusters`` with the admin token);
- **clock**: the controller's and every control plane's clock against this machine's
  (``time`` of their ``/healthz``; the request's round trip is allowed for): over
  :data:`CLOCK_WARN_S` warns, over :data:`CLOCK_FAIL_S` fails -- SVIDs are valid from the
  moment they are signed, and leases and heartbeats are judged by time;
- **member**: every member cluster ``Ready`` and connected, its last heartbeat fresh;
- **proxies**: every connected proxy of every control plane in sync (SYNCED or NOT SENT per
  xDS type), naming those that are not and the last NACK (fails); disconnected ones named
  (warns);
- **certificate**: every root of the trust bundle and every joined cluster's intermediate:
  expired fails; a root with under :data:`CERT_WARN_DAYS` days left, or an intermediate with
  under a quarter of its life, warns;
- **gateway**: every member's east-west gateway accepts a TCP connection from here;
- **trust domain**: every federated trust domain (SPIFFE federation) has roots in force (none
  fails: its SVIDs are refused) and its last refresh succeeded (a failing one warns: the bundle
  held stays in force until its roots expire).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

#: Clock skew (s) that warns, and that fails.
CLOCK_WARN_S = 1.0
CLOCK_FAIL_S = 5.0
#: A root with fewer days left than this warns.
CERT_WARN_DAYS = 30
#: A member whose last heartbeat is older than this (s) is not heard from.
HEARTBEAT_STALE_S = 30.0

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict: ``check`` (kind), ``subject`` (what was checked), ``status``,
    ``detail`` (what was seen) and ``fix`` (what to do; "" when ok)."""

    check: str
    subject: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def controller_check(url: str, error: str | None) -> Check:
    """The controller's API answered (``error`` None) or not."""
    if error is None:
        return Check("controller", url, "ok", "the API answers")
    return Check(
        "controller",
        url,
        "fail",
        error,
        "start it ('meshfed up', or the controller's service), or name it: meshfed check"
        " --controller URL --token TOKEN",
    )


def clock_check(subject: str, skew_s: float | None, round_trip_s: float) -> Check:
    """``skew_s``: the server's clock minus this machine's at the middle of the request
    (None: the server did not say its time); ``round_trip_s``: the request's, allowed for."""
    if skew_s is None:
        return Check("clock", subject, "warn", "the server does not report its time",
                     "upgrade it: /healthz reports 'time' since this release")  # fmt: skip
    off = max(0.0, abs(skew_s) - round_trip_s / 2)
    detail = f"{skew_s:+.1f} s against this machine"
    if off <= CLOCK_WARN_S:
        return Check("clock", subject, "ok", detail)
    return Check(
        "clock",
        subject,
        "fail" if off > CLOCK_FAIL_S else "warn",
        detail,
        "synchronise the clocks (chrony or systemd-timesyncd against the same NTP servers):"
        " certificates, leases and heartbeats are judged by time",
    )


def member_checks(clusters: Sequence[Mapping[str, Any]], now: float) -> list[Check]:
    """Each member of ``GET /v1/clusters`` (``lastHeartbeat`` as Unix seconds, or None)."""
    out = []
    for c in clusters:
        name, state, heard = str(c["name"]), str(c.get("state", "")), c.get("lastHeartbeat")
        age = None if heard is None else now - float(heard)
        if state == "Ready" and c.get("connected") and age is not None and age <= HEARTBEAT_STALE_S:
            out.append(Check("member", name, "ok", f"Ready, last heard {age:.0f} s ago"))
            continue
        seen = f"last heard {age:.0f} s ago" if age is not None else "never heard from"
        out.append(
            Check(
                "member",
                name,
                "fail",
                f"{state or 'unknown'}, {'connected' if c.get('connected') else 'not connected'},"
                f" {seen}",
                f"is its control plane running? (meshfed status; its log under"
                f" $MESHFED_HOME/logs, or 'kubectl -n meshfed-system logs"
                f" deploy/meshfed-controlplane'); a member that never joined needs 'meshfed"
                f" cluster join {name}' and its token",
            )
        )
    return out


def out_of_sync(proxy: Mapping[str, Any]) -> str:
    """The xDS types of a connected proxy not in sync, with their last NACK ("" if none)."""
    types = proxy.get("types") or {}
    behind = [f"{t} {v.get('state')}" for t, v in sorted(types.items())
              if v.get("state") not in ("SYNCED", "NOT SENT")]  # fmt: skip
    nack = next((str(v["nack_error"]) for v in types.values() if v.get("nack_error")), "")
    return ", ".join(behind) + (f"; NACK: {nack[:80]}" if behind and nack else "")


def _named(proxies: Sequence[Mapping[str, Any]], why: Callable[[Mapping[str, Any]], str]) -> str:
    shown = [f"{p.get('node_id')}" + (f" ({why(p)})" if why(p) else "") for p in proxies[:5]]
    more = f" and {len(proxies) - 5} more" if len(proxies) > 5 else ""
    return "; ".join(shown) + more


def proxy_check(cluster: str, proxies: Sequence[Mapping[str, Any]] | None, error: str) -> Check:
    """The proxies of one control plane (``GET /v1/proxy-status``; None: it could not be
    asked, ``error`` says why). A connected proxy out of sync fails; a disconnected one (its
    sidecar stopped, or cut off from its control plane; kept in the list until it comes
    back) warns."""
    if proxies is None:
        return Check("proxies", cluster, "warn", f"not asked: {error}",
                     "run meshfed check where the control plane's API is reachable, or"
                     " 'meshfed proxy-status --controlplane URL'")  # fmt: skip
    connected = [p for p in proxies if p.get("connected")]
    behind = [p for p in connected if out_of_sync(p)]
    gone = [p for p in proxies if not p.get("connected")]
    if behind:
        return Check(
            "proxies",
            cluster,
            "fail",
            f"{len(behind)} of {len(connected)} connected not in sync:"
            f" {_named(behind, out_of_sync)}",
            "a NACK names what Envoy refused (meshfed proxy-status --controlplane URL); STALE"
            " that stays means the proxy does not ACK: see its log",
        )
    if gone:
        return Check(
            "proxies",
            cluster,
            "warn",
            f"{len(connected)} in sync; {len(gone)} disconnected: {_named(gone, lambda _: '')}",
            "a sidecar that should run: see its log (it cannot reach its control plane, or"
            " stopped); one that was removed is listed until the control plane restarts",
        )
    return Check("proxies", cluster, "ok", f"{len(connected)} in sync")


def certificate_checks(
    lifetimes: Iterable[tuple[str, str, datetime, datetime]], now: datetime
) -> list[Check]:
    """``(what, subject, notBefore, notAfter)`` of each ``root`` and ``intermediate``.
    Expired fails; a root with under :data:`CERT_WARN_DAYS` days left warns, and so does an
    intermediate with under a quarter of its life left (the controller re-signs joined
    clusters' intermediates at half life, so that means re-signing has failed for a while)."""
    out = []
    for what, subject, not_before, not_after in lifetimes:
        left = (not_after - now).total_seconds()
        life = max(1.0, (not_after - not_before).total_seconds())
        detail = f"{what}, valid until {not_after:%Y-%m-%dT%H:%M:%SZ} ({left / 86400:.1f} days)"
        low = left < CERT_WARN_DAYS * 86400 if what == "root" else left < life / 4
        if left > 0 and not low:
            out.append(Check("certificate", subject, "ok", detail))
            continue
        fix = (
            "rotate the root: meshfed trust rotate-root (dual-root, no request fails)"
            if what == "root"
            else "the controller re-signs a joined cluster's intermediate at half life over the"
            " sync channel: is the member connected (see its member check) and is a controller"
            " leading? (meshfed controller replicas)"
        )
        out.append(Check("certificate", subject, "fail" if left <= 0 else "warn", detail, fix))
    return out


def gateway_check(cluster: str, address: str, error: str | None) -> Check:
    """A TCP connection to ``cluster``'s east-west gateway from here (``error`` None: made)."""
    if not address:
        return Check("gateway", cluster, "warn", "no gateway address known",
                     "a Kubernetes member reports its LoadBalancer's address once the cloud"
                     " gives one: kubectl -n meshfed-system get svc meshfed-gateway")  # fmt: skip
    if error is None:
        return Check("gateway", cluster, "ok", f"{address} accepts connections")
    return Check(
        "gateway",
        cluster,
        "fail",
        f"{address}: {error}",
        "is the gateway running (meshfed status)? Its load balancer must admit the other"
        " members (meshfed install --gateway-allowed-cidrs) -- and this machine, to check"
        " from here",
    )


def trust_domain_checks(rows: Iterable[Mapping[str, Any]]) -> list[Check]:
    """One check per federated trust domain, from ``GET /v1/trustdomains``' rows."""
    out = []
    for r in rows:
        domain, seen = str(r["trustDomain"]), f"{r['roots']} roots, sequence {r['sequence']}"
        if r.get("suspended"):
            out.append(Check("trust domain", domain, "fail", f"not sent: {r['suspended']}",
                             "federation needs a CRL of every root: a local root's (the"
                             " controller signs it), Vault's or AWS Private CA's (in its S3"
                             " bucket; it must be reachable and enabled); or stop it:"
                             f" meshfed trust federate --with {domain} --remove"))  # fmt: skip
        elif not r["inForce"]:
            out.append(Check("trust domain", domain, "fail", "no unexpired root in force",
                             f"its bundle endpoint {r['bundleEndpointURL']} must answer"
                             f" ({r['error'] or 'never fetched'}); or give its bundle:"
                             " meshfed trust federate --bundle-file"))  # fmt: skip
        elif r["error"]:
            out.append(Check("trust domain", domain, "warn",
                             f"{seen}; {r['failures']} refreshes failed: {r['error']}",
                             f"the bundle held stays in force until {r['rootsExpireAt']}:"
                             f" make {r['bundleEndpointURL']} reachable from the"
                             " controller"))  # fmt: skip
        else:
            out.append(Check("trust domain", domain, "ok", f"{seen}, fetched {r['fetchedAt']}"))
    return out


#: The columns of ``meshfed check``'s table, and one check's row (:func:`row`).
CHECK_COLUMNS = ("CHECK", "OF", "STATUS", "SEEN", "FIX")


def row(check: Check) -> tuple[str, str, str, str, str]:
    """A check as a row of :data:`CHECK_COLUMNS`."""
    return (check.check, check.subject, check.status.upper(), check.detail, check.fix or "-")


def worst(checks: Iterable[Check]) -> Status:
    """``fail`` if any fails, else ``warn`` if any warns, else ``ok``."""
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"
