"""``meshfed get KIND [NAME] [-n NS]`` with kubectl's words (issue 41)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from federation.errors import ConfigError
from federation.selection import Kind, get, listing_table, parse_kind, select

POLICIES = [
    {"kind": "TrafficPolicy", "metadata": {"name": "echo", "namespace": "demo"}},
    {"kind": "AuthorizationPolicy", "metadata": {"name": "echo", "namespace": "demo"}},
    {
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "lockdown", "namespace": "meshfed-system"},
    },
]


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("clusters", Kind("clusters")),
        ("cluster", Kind("clusters")),
        ("ServiceExport", Kind("exports")),
        ("serviceimports", Kind("imports")),
        ("policies", Kind("policies")),
        ("policy", Kind("policies")),
        ("authorizationpolicies", Kind("policies", "AuthorizationPolicy")),
        ("TrafficPolicy", Kind("policies", "TrafficPolicy")),
        ("pricetables", Kind("policies", "PriceTable")),
    ],
)
def test_kinds_are_read_as_kubectl_reads_them(word: str, kind: Kind) -> None:
    assert parse_kind(word) == kind


def test_an_unknown_kind_names_the_ones_there_are() -> None:
    with pytest.raises(
        ConfigError,
        match=r"'pods' is not a kind \(one of .*cluster.*trafficpolicy.*; plurals and dr",
    ):
        parse_kind("pods")


def test_name_namespace_and_kind_select_rows() -> None:
    authz = parse_kind("authorizationpolicy")
    assert select(authz, POLICIES, None, None) == POLICIES[1:]
    assert select(authz, POLICIES, None, "demo") == [POLICIES[1]]
    assert select(parse_kind("policies"), POLICIES, "echo", "demo") == POLICIES[:2]
    clusters = [{"name": "a"}, {"name": "b"}]
    assert select(parse_kind("cluster"), clusters, "b", "ignored") == [{"name": "b"}]
    exports = [{"service": "echo", "namespace": "demo", "cluster": "a"}]
    assert select(parse_kind("exports"), exports, None, "prod") == []


def test_a_name_nothing_has_is_not_found() -> None:
    with pytest.raises(ConfigError, match="AuthorizationPolicy 'nope' not found in namespace demo"):
        select(parse_kind("authorizationpolicy"), POLICIES, "nope", "demo")


def test_get_reads_the_listing_the_kind_names() -> None:
    asked = []

    def fetch(path: str) -> dict[str, object]:
        asked.append(path)
        return {"policies": POLICIES}

    assert get("trafficpolicy", "echo", None, fetch) == ("policies", [POLICIES[0]])
    assert asked == ["/v1/policies"]


def test_tables_of_the_listings() -> None:
    from federation.selection import listing_table

    headers, rows = listing_table("policies", POLICIES)
    assert headers == ["KIND", "NAMESPACE", "NAME"] and rows[2] == [
        "AuthorizationPolicy", "meshfed-system", "lockdown",
    ]  # fmt: skip
    imported = {
        "cluster": "b",
        "metadata": {"name": "echo", "namespace": "demo"},
        "spec": {"ips": ["241.0.0.7"], "ports": [{"port": 8080, "protocol": "TCP"}],
                 "clusters": [{"cluster": "a", "gateway": "10.0.0.1:15443", "endpoints": 2}]},
    }  # fmt: skip
    headers, [row] = listing_table("imports", [imported])
    assert row == ["b", "echo.demo", "241.0.0.7", "8080/TCP", "a: 10.0.0.1:15443, 2"]
    member = {"name": "a", "state": "Ready", "locality": "aws/us-east-1/us-east-1a",
              "network": "n1", "gateway": None, "provider": "aws",
              "lastHeartbeat": "2026-12-05T15:00:00Z", "exports": []}  # fmt: skip
    now = 1_796_482_800.0 + 12  # 2026-12-05T15:00:12Z
    headers, [row] = listing_table("clusters", [member], now)
    assert headers[0] == "NAME" and row[4] == "(not reported yet)" and row[6:] == ["12s ago", "-"]
    with pytest.raises(ValueError, match="no table for nodes"):
        listing_table("nodes", [])


def test_shell_completion_script_and_completions() -> None:
    from click.testing import CliRunner

    from federation.cli.main import cli

    script = CliRunner().invoke(cli, ["completion", "bash"])
    assert script.exit_code == 0 and "complete -o nosort -F _meshfed_completion meshfed" in (
        script.output
    )
    env = {"_MESHFED_COMPLETE": "bash_complete", "COMP_WORDS": "meshfed ap", "COMP_CWORD": "1"}
    words = CliRunner().invoke(cli, [], env=env, prog_name="meshfed")
    assert "plain,apply" in words.output.splitlines(), words.output


def test_trust_domains_by_any_of_their_names_and_their_table_says_what_is_wrong() -> None:
    for word in ("trustdomains", "TrustDomainFederation", "clusterfederatedtrustdomains"):
        assert parse_kind(word).listing == "trustdomains"
    row = {
        "trustDomain": "b.example", "profile": "https_spiffe",
        "bundleEndpointURL": "https://b.example/v1/spiffe-bundle", "roots": 0, "sequence": 3,
        "fetchedAt": None, "error": "TLS refused", "suspended": "no root CRL",
    }  # fmt: skip
    headers, [cells] = listing_table("trustdomains", [row])
    assert headers[0] == "TRUST DOMAIN" and cells[-1] == "no root CRL" and cells[-2] == "never"
    assert listing_table("trustdomains", [{**row, "suspended": ""}])[1][0][-1] == "TLS refused"


def test_wide_adds_kubectl_style_columns_to_each_listing() -> None:
    """``-o wide``: more columns, the same rows; a listing with nothing to add stays as is."""
    cluster = {
        "name": "a", "state": "Ready", "locality": "aws/us-east-1", "network": "a",
        "gateway": "1.2.3.4:15443", "provider": "aws", "lastHeartbeat": "2026-12-05T10:00:00Z",
        "exports": ["echo.demo"], "joinedAt": "2026-12-05T09:00:00Z", "connected": True,
        "services": 3, "intermediate": {"notAfter": "2026-12-12T09:00:00Z"},
    }  # fmt: skip
    now = datetime(2026, 12, 5, 11, 0, tzinfo=UTC).timestamp()
    narrow, _ = listing_table("clusters", [cluster], now)
    headers, [row] = listing_table("clusters", [cluster], now, wide=True)
    assert headers[: len(narrow)] == narrow
    assert dict(zip(headers[len(narrow) :], row[len(narrow) :], strict=True)) == {
        "JOINED": "2h ago", "CONNECTED": "yes", "SERVICES": "3",
        "CA EXPIRES": "2026-12-12T09:00:00Z",
    }  # fmt: skip
    policies = [
        {**POLICIES[0], "spec": {"host": "echo.demo.svc.clusterset.local"}},
        {**POLICIES[1], "spec": {"selector": {"matchLabels": {"app": "echo"}}}},
        {**POLICIES[2], "spec": {}},
    ]
    headers, rows = listing_table("policies", policies, wide=True)
    assert headers[-1] == "TARGET"
    assert [r[-1] for r in rows] == ["echo.demo.svc.clusterset.local", "app=echo", "-"]
    imports = [
        {"cluster": "a", "metadata": {"name": "echo", "namespace": "demo"},
         "spec": {"ports": [], "clusters": []}},
    ]  # fmt: skip
    assert listing_table("imports", imports, wide=True) == listing_table("imports", imports)
