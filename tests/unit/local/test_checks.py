"""``meshfed check``'s verdicts (issue 41): each failure named, with what to do about it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from federation.checks import (
    certificate_checks,
    clock_check,
    gateway_check,
    member_checks,
    proxy_check,
    trust_domain_checks,
    worst,
)

NOW = 1_800_000_000.0


def _proxy(name: str, connected: bool = True, **types: str) -> dict:
    return {
        "node_id": name,
        "connected": connected,
        "types": {t: {"state": s, **({"nack_error": "bad route"} if s == "NACKED" else {})}
                  for t, s in (types or {"CDS": "SYNCED", "SDS": "NOT SENT"}).items()},
    }  # fmt: skip


def test_members_ready_connected_and_heard_from_pass_and_others_say_what_to_do() -> None:
    checks = member_checks(
        [
            {"name": "east", "state": "Ready", "connected": True, "lastHeartbeat": NOW - 2},
            {"name": "west", "state": "Ready", "connected": False, "lastHeartbeat": NOW - 90},
            {"name": "new", "state": "Pending", "connected": False, "lastHeartbeat": None},
        ],
        NOW,
    )
    assert [c.status for c in checks] == ["ok", "fail", "fail"]
    assert checks[1].detail == "Ready, not connected, last heard 90 s ago"
    assert "never heard from" in checks[2].detail and "meshfed cluster join new" in checks[2].fix


def test_proxies_out_of_sync_fail_by_name_with_the_nack_and_disconnected_ones_warn() -> None:
    assert proxy_check("east", [_proxy("a"), _proxy("b")], "").status == "ok"
    nacked = proxy_check("east", [_proxy("a"), _proxy("b", RDS="NACKED", CDS="SYNCED")], "")
    assert nacked.status == "fail"
    assert nacked.detail == "1 of 2 connected not in sync: b (RDS NACKED; NACK: bad route)"
    gone = proxy_check("east", [_proxy("a"), _proxy("sidecar~demo~echo-1", connected=False)], "")
    assert (gone.status, gone.detail) == ("warn", "1 in sync; 1 disconnected: sidecar~demo~echo-1")
    unknown = proxy_check("west", None, "its control plane's API is not known here")
    assert unknown.status == "warn" and "not asked" in unknown.detail


def test_clock_skew_beyond_the_round_trip_warns_then_fails() -> None:
    assert clock_check("controller", 0.3, 0.01).status == "ok"
    assert clock_check("controller", 2.9, 4.0).status == "ok"  # within the request's time
    assert clock_check("controller", -2.0, 0.01).status == "warn"
    failing = clock_check("control plane east", 12.0, 0.01)
    assert failing.status == "fail" and "chrony" in failing.fix
    assert clock_check("controller", None, 0.01).status == "warn"


def test_certificates_expired_fail_and_running_out_warns_by_kind() -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    day = timedelta(days=1)
    checks = certificate_checks(
        [
            ("root", "root-1", now - 300 * day, now + 3000 * day),
            ("root", "root-0", now - 300 * day, now + 10 * day),  # under 30 days
            ("intermediate", "east", now - 3 * day, now + 4 * day),  # 4 of 7 days left
            ("intermediate", "west", now - 6 * day, now + 1 * day),  # re-signing failed
            ("intermediate", "gone", now - 8 * day, now - 1 * day),
        ],
        now,
    )
    assert [c.status for c in checks] == ["ok", "warn", "ok", "warn", "fail"]
    assert "rotate-root" in checks[1].fix and "half life" in checks[3].fix


def test_gateways_and_the_worst_verdict() -> None:
    ok = gateway_check("east", "198.18.0.11:15443", None)
    down = gateway_check("west", "198.18.0.12:15443", "Connection refused")
    assert ok.status == "ok" and down.status == "fail" and "--gateway-allowed-cidrs" in down.fix
    assert gateway_check("k8s", "", None).status == "warn"
    assert worst([ok]) == "ok" and worst([ok, gateway_check("k8s", "", None)]) == "warn"
    assert worst([ok, down]) == "fail"


def test_federated_trust_domains_fail_without_roots_and_warn_when_refresh_fails() -> None:
    base = {
        "trustDomain": "b.example", "bundleEndpointURL": "https://b.example/bundle",
        "roots": 1, "sequence": 3, "inForce": True, "error": "", "failures": 0,
        "fetchedAt": "2026-12-05T10:00:00Z", "rootsExpireAt": "2036-12-01T00:00:00Z",
    }  # fmt: skip
    ok, warn, fail = trust_domain_checks(
        [
            base,
            {**base, "error": "https://b.example/bundle: no answer within 10 s", "failures": 4},
            {**base, "roots": 0, "inForce": False, "error": "TLS refused"},
        ]
    )
    assert (ok.status, warn.status, fail.status) == ("ok", "warn", "fail")
    assert "4 refreshes failed" in warn.detail and "2036-12-01" in warn.fix
    assert "TLS refused" in fail.fix and "--bundle-file" in fail.fix
    [off] = trust_domain_checks([{**base, "inForce": False, "suspended": "no root CRL"}])
    assert off.status == "fail" and "no root CRL" in off.detail
