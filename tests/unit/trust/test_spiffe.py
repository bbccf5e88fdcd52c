"""SPIFFE ID and trust domain validation (SPIFFE-ID.md section 2)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trust.errors import InvalidSpiffeIdError, InvalidTrustDomainError
from trust.spiffe import SpiffeId, TrustDomain

# (input, fragment of the rule the error must name)
INVALID_IDS = [
    ("", "empty"),
    ("spiffe://", "trust domain is missing"),
    ("spiffe:///ns/a", "trust domain is missing"),
    ("https://example.org/ns/a", "scheme must be 'spiffe'"),
    ("SPIFFE://example.org/ns/a", "lowercase"),
    ("example.org/ns/a", "must start with 'spiffe://'"),
    ("spiffe://Example.org/ns/a", "must be lowercase"),
    ("spiffe://example.org:8080/ns/a", "port"),
    ("spiffe://user@example.org/ns/a", "user info"),
    ("spiffe://user:pw@example.org/ns/a", "user info"),
    ("spiffe://example.org/ns/a?x=1", "query"),
    ("spiffe://example.org/ns/a#frag", "fragment"),
    ("spiffe://example.org/ns/../sa", "dot segment"),
    ("spiffe://example.org/ns/./sa", "dot segment"),
    ("spiffe://example.org/..", "dot segment"),
    ("spiffe://example.org//ns", "empty segments"),
    ("spiffe://example.org/ns//sa", "empty segments"),
    ("spiffe://example.org/ns/a/", "must not end with '/'"),
    ("spiffe://example.org/", "must not end with '/'"),
    ("spiffe://example.org/ns/a%20b", "percent-encoded"),
    ("spiffe://exa%41mple.org/ns", "percent-encoded"),
    ("spiffe://example.org/ns/a b", "path segment characters"),
    ("spiffe://exa mple.org", "trust domain characters"),
    ("spiffe://example.org/ns/é", "path segment characters"),
    ("spiffe://example.org/" + "a" * 2100, "2048 bytes"),
    ("spiffe://" + "a" * 256 + "/x", "255 bytes"),
]


@pytest.mark.parametrize(("text", "rule"), INVALID_IDS)
def test_invalid_ids_name_input_and_rule(text: str, rule: str) -> None:
    with pytest.raises(InvalidSpiffeIdError) as info:
        SpiffeId.parse(text)
    message = str(info.value)
    assert rule in message
    assert "invalid SPIFFE ID" in message
    assert text[:30] in message


@pytest.mark.parametrize(
    "text",
    [
        "spiffe://example.org",
        "spiffe://example.org/ns/default/sa/web",
        "spiffe://a-b_c.d0/Path.With-Upper_case",
        "spiffe://x/a/b/c/d/e",
        "spiffe://example.org/...",
        "spiffe://example.org/a..b",
    ],
)
def test_valid_ids_round_trip(text: str) -> None:
    assert str(SpiffeId.parse(text)) == text


def test_parts() -> None:
    sid = SpiffeId.parse("spiffe://example.org/ns/demo/sa/echo")
    assert sid.trust_domain == TrustDomain("example.org")
    assert sid.path == "/ns/demo/sa/echo"
    assert sid.member_of(TrustDomain("example.org"))
    assert not sid.member_of(TrustDomain("other.org"))


def test_no_equality_with_str_and_hash_consistent() -> None:
    sid = SpiffeId.parse("spiffe://example.org/a")
    assert sid != "spiffe://example.org/a"
    assert TrustDomain("example.org") != "example.org"
    assert hash(sid) == hash(SpiffeId.parse("spiffe://example.org/a"))
    assert len({sid, SpiffeId.parse("spiffe://example.org/a")}) == 1


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty"),
        ("Example.org", "lowercase"),
        ("example.org:443", "port"),
        ("spiffe://example.org/ns/x", "path"),
        ("exa$mple", "trust domain characters"),
    ],
)
def test_invalid_trust_domains(text: str, rule: str) -> None:
    with pytest.raises(InvalidSpiffeIdError) as info:
        TrustDomain.parse(text)
    assert rule in str(info.value)


def test_trust_domain_error_says_trust_domain() -> None:
    with pytest.raises(InvalidTrustDomainError, match="invalid trust domain 'Bad'"):
        TrustDomain("Bad")


def test_trust_domain_accepts_spiffe_form_and_builds_workload_ids() -> None:
    td = TrustDomain.parse("spiffe://example.org")
    assert td.name == "example.org"
    assert str(td.id) == "spiffe://example.org"
    assert str(td.workload_id("demo", "echo")) == "spiffe://example.org/ns/demo/sa/echo"
    with pytest.raises(InvalidSpiffeIdError, match="path segment"):
        td.workload_id("de mo", "echo")


_td = st.text(alphabet=string.ascii_lowercase + string.digits + ".-_", min_size=1, max_size=40)
_segment = st.text(
    alphabet=string.ascii_letters + string.digits + ".-_", min_size=1, max_size=20
).filter(lambda s: s not in (".", ".."))


@given(_td, st.lists(_segment, max_size=6))
def test_round_trip_property(td: str, segments: list[str]) -> None:
    text = "spiffe://" + td + "".join("/" + s for s in segments)
    sid = SpiffeId.parse(text)
    assert str(sid) == text
    assert SpiffeId.parse(str(sid)) == sid
    assert sid.trust_domain.name == td


@given(st.text(max_size=60))
def test_parse_never_raises_anything_but_invalid_id(text: str) -> None:
    try:
        sid = SpiffeId.parse(text)
    except InvalidSpiffeIdError:
        return
    assert str(sid) == text
