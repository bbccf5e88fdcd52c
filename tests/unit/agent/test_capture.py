"""Capture rules (:mod:`federation.agent.capture`) and the pod's DNS answers
(:mod:`federation.agent.dns`): pure parts. The rules are loaded into a real kernel by
tests/integration/test_capture.py."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, DNSRecord

from federation.agent.capture import CaptureSettings, capture_settings, init, ruleset
from federation.agent.dns import local_answer
from federation.errors import ConfigError

ISTIO = "traffic.sidecar.istio.io/"
OURS = "traffic.meshfed.io/"


def test_istio_spellings_and_ours_are_read_alike() -> None:
    for prefix in (ISTIO, OURS):
        s = capture_settings(
            {
                prefix + "excludeOutboundIPRanges": "10.0.0.0/8, 169.254.169.254/32",
                prefix + "includeInboundPorts": "9090,8080",
                prefix + "excludeOutboundPorts": "5432",
                prefix + "includeOutboundIPRanges": "*",
            }
        )
        assert s.exclude_outbound == ("10.0.0.0/8", "169.254.169.254/32")
        assert s.include_inbound == (8080, 9090)
        assert s.exclude_outbound_ports == (5432,)
        assert s.include_outbound is None


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({ISTIO + "excludeInboundPorts": "80,http"}, "'http' is not a port"),
        ({OURS + "excludeOutboundIPRanges": "10.0.0/33"}, "is not an IP range"),
        ({ISTIO + "kubevirtInterfaces": "net1"}, "kubevirtInterfaces: not supported"),
        (
            {ISTIO + "excludeOutboundPorts": "1", OURS + "excludeOutboundPorts": "2"},
            "disagree",
        ),
    ],
)
def test_a_bad_annotation_is_named(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        capture_settings(annotations)
    assert next(iter(annotations)).split("/")[1] in str(err.value) or "disagree" in message


def test_the_rules_exempt_the_proxy_first_and_send_dns_to_the_agent() -> None:
    lines = [line.strip() for line in ruleset(CaptureSettings()).splitlines()]
    out = lines[lines.index("chain outbound {") :]
    assert out[2:4] == ["meta skuid 1337 return", "meta skgid 1337 return"]
    assert out[4:6] == ["udp dport 53 redirect to :15053", "tcp dport 53 redirect to :15053"]
    assert "ip daddr 127.0.0.0/8 return" in out
    assert out[out.index("}") - 1] == "meta l4proto tcp redirect to :15001"
    inbound = lines[lines.index("chain inbound {") :]
    assert "tcp dport { 15006 } return" in inbound  # mTLS from other sidecars is not captured
    assert "meta l4proto tcp redirect to :15006" in inbound
    # the script replaces the table whole (one transaction)
    assert lines[:2] == ["table inet meshfed", "delete table inet meshfed"]


def test_included_ranges_leave_the_rest_and_no_dns_leaves_dns() -> None:
    text = ruleset(
        CaptureSettings(dns_port=None, include_outbound=("240.0.0.0/4",), include_inbound=())
    )
    assert "dport 53" not in text
    assert "ip daddr != { 240.0.0.0/4 } return" in text
    assert "meta nfproto ipv6 return" in text  # no IPv6 range included: none captured
    inbound = text[text.index("chain inbound") :]
    assert "    return\n" in inbound  # includeInboundPorts "": nothing captured inbound


def test_init_dry_run_prints_and_refuses_a_malformed_annotation() -> None:
    assert "redirect to :15001" in init((OURS + "excludeOutboundPorts=5432",), dry_run=True)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        init(("excludeOutboundPorts",), dry_run=True)
    assert init((), dry_run=True, undo=True) == "delete table inet meshfed\n"


TABLE = {"echo.demo.svc.clusterset.local": ("240.241.0.7", "fd00::7")}


def _ask(name: str, qtype: str) -> DNSRecord | None:
    return local_answer(DNSRecord.question(name, qtype), TABLE)


def test_the_table_answers_a_and_aaaa_of_its_names_in_any_case() -> None:
    a = _ask("Echo.Demo.svc.clusterset.local", "A")
    assert a is not None and [str(r.rdata) for r in a.rr] == ["240.241.0.7"]
    assert a.rr[0].ttl == 5 and a.header.aa
    aaaa = _ask("echo.demo.svc.clusterset.local.", "AAAA")
    assert aaaa is not None and [str(r.rdata) for r in aaaa.rr] == ["fd00::7"]


def test_other_names_and_types_are_forwarded_and_a_missing_family_is_nodata() -> None:
    assert _ask("example.org", "A") is None
    assert _ask("nope.demo.svc.clusterset.local", "A") is None
    assert _ask("echo.demo.svc.clusterset.local", "TXT") is None
    only_v4 = local_answer(
        DNSRecord.question("db.demo.svc.clusterset.local", "AAAA"),
        {"db.demo.svc.clusterset.local": ("240.241.0.9",)},
    )
    assert only_v4 is not None and only_v4.rr == [] and only_v4.header.rcode == 0
    assert only_v4.q.qtype == QTYPE.AAAA
