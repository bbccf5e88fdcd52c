"""SPIFFE identities as frozen, validated value objects.

Rules come from the SPIFFE ID specification (github.com/spiffe/spiffe, standards/SPIFFE-ID.md):

- section 2: the scheme is exactly ``spiffe``; the whole ID is at most 2048 bytes; no port, user
  info, query or fragment; no percent-encoding.
- section 2.1: the trust domain is non-empty, at most 255 bytes, and made of lowercase letters,
  digits, ``.``, ``-`` and ``_``.
- section 2.2: the path, when present, starts with ``/``; each segment is non-empty, is neither
  ``.`` nor ``..``, and is made of letters, digits, ``.``, ``-`` and ``_``; no trailing ``/``.

Both classes compare and hash by their canonical string and never compare equal to ``str``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from trust.errors import InvalidSpiffeIdError, InvalidTrustDomainError

SCHEME_PREFIX = "spiffe://"
MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN_BYTES = 255

_TRUST_DOMAIN_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-_")
_PATH_SEGMENT_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")


def _trust_domain_rule_broken(name: str) -> str | None:
    """Return the rule a trust domain name breaks, or None when it is valid (section 2.1)."""
    if not name:
        return "the trust domain is empty"
    if len(name.encode()) > MAX_TRUST_DOMAIN_BYTES:
        return f"the trust domain is longer than {MAX_TRUST_DOMAIN_BYTES} bytes"
    if "@" in name:
        return "user info is not allowed in a SPIFFE ID"
    if ":" in name:
        return "a port is not allowed in the trust domain"
    if "%" in name:
        return "percent-encoded characters are not allowed"
    if any(c.isupper() for c in name):
        return "the trust domain must be lowercase"
    bad = sorted({c for c in name if c not in _TRUST_DOMAIN_CHARS})
    if bad:
        return (
            "trust domain characters are limited to lowercase letters, digits, '.', '-' and '_'"
            f" (found {''.join(bad)!r})"
        )
    return None


def _path_rule_broken(path: str) -> str | None:
    """Return the rule a SPIFFE ID path breaks, or None when it is valid (section 2.2)."""
    if not path:
        return None
    if not path.startswith("/"):
        return "the path must start with '/'"
    if path.endswith("/"):
        return "the path must not end with '/'"
    for segment in path[1:].split("/"):
        if not segment:
            return "the path must not contain empty segments ('//')"
        if segment in (".", ".."):
            return f"the path must not contain the dot segment {segment!r}"
        if "%" in segment:
            return "percent-encoded characters are not allowed"
        bad = sorted({c for c in segment if c not in _PATH_SEGMENT_CHARS})
        if bad:
            return (
                "path segment characters are limited to letters, digits, '.', '-' and '_'"
                f" (found {''.join(bad)!r} in segment {segment!r})"
            )
    return None


@dataclass(frozen=True, slots=True)
class TrustDomain:
    """A SPIFFE trust domain, e.g. ``example.org``.

    Build one with :meth:`parse`, which accepts ``example.org`` or ``spiffe://example.org``.
    Constructing it directly validates too.

    Raises:
        InvalidTrustDomainError: the name breaks SPIFFE-ID.md section 2.1.
    """

    name: str

    def __post_init__(self) -> None:
        rule = _trust_domain_rule_broken(self.name)
        if rule is not None:
            raise InvalidTrustDomainError(self.name, rule)

    @classmethod
    def parse(cls, text: str) -> TrustDomain:
        """Parse ``example.org`` or ``spiffe://example.org`` (no path allowed)."""
        if "://" in text:
            spiffe_id = SpiffeId.parse(text)
            if spiffe_id.path:
                raise InvalidTrustDomainError(text, "a trust domain ID must not have a path")
            return spiffe_id.trust_domain
        return cls(text)

    @property
    def id(self) -> SpiffeId:
        """The trust domain's own SPIFFE ID, ``spiffe://<name>`` (used as the CA's URI SAN)."""
        return SpiffeId(self, "")

    def workload_id(self, namespace: str, service_account: str) -> SpiffeId:
        """The Istio-convention workload ID ``spiffe://<td>/ns/<namespace>/sa/<service_account>``.

        Raises:
            InvalidSpiffeIdError: namespace or service account break the path rules.
        """
        return SpiffeId.parse(f"{SCHEME_PREFIX}{self.name}/ns/{namespace}/sa/{service_account}")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A SPIFFE ID: a trust domain plus an optional path, e.g. ``spiffe://example.org/ns/a/sa/b``.

    Build one with :meth:`parse`. ``path`` is ``""`` for the trust domain's own ID, else it
    starts with ``/``.

    Raises:
        InvalidSpiffeIdError: the ID breaks SPIFFE-ID.md section 2 (the message names the rule).
    """

    trust_domain: TrustDomain
    path: str = ""

    def __post_init__(self) -> None:
        rule = _path_rule_broken(self.path)
        if rule is not None:
            raise InvalidSpiffeIdError(str(self), rule)
        if len(str(self).encode()) > MAX_ID_BYTES:
            raise InvalidSpiffeIdError(str(self)[:64] + "...", f"longer than {MAX_ID_BYTES} bytes")

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """Parse and validate ``spiffe://<trust-domain>[/<path>]``.

        Raises:
            InvalidSpiffeIdError: naming the input and the first rule it breaks.
        """
        if not isinstance(text, str):
            raise InvalidSpiffeIdError(repr(text), "a SPIFFE ID must be a string")
        if not text:
            raise InvalidSpiffeIdError(text, "the SPIFFE ID is empty")
        if len(text.encode()) > MAX_ID_BYTES:
            raise InvalidSpiffeIdError(text[:64] + "...", f"longer than {MAX_ID_BYTES} bytes")
        if not text.startswith(SCHEME_PREFIX):
            return _raise_scheme(text)
        rest = text[len(SCHEME_PREFIX) :]
        if "#" in rest:
            raise InvalidSpiffeIdError(text, "a fragment ('#') is not allowed")
        if "?" in rest:
            raise InvalidSpiffeIdError(text, "a query ('?') is not allowed")
        authority, slash, path = rest.partition("/")
        path = slash + path
        if not authority:
            raise InvalidSpiffeIdError(text, "the trust domain is missing")
        rule = _trust_domain_rule_broken(authority)
        if rule is not None:
            raise InvalidSpiffeIdError(text, rule)
        rule = _path_rule_broken(path)
        if rule is not None:
            raise InvalidSpiffeIdError(text, rule)
        return cls(TrustDomain(authority), path)

    def member_of(self, trust_domain: TrustDomain) -> bool:
        """True when this ID belongs to ``trust_domain``."""
        return self.trust_domain == trust_domain

    def __str__(self) -> str:
        return f"{SCHEME_PREFIX}{self.trust_domain.name}{self.path}"


def _raise_scheme(text: str) -> SpiffeId:
    scheme, sep, _ = text.partition("://")
    if sep and scheme.lower() == "spiffe":
        raise InvalidSpiffeIdError(text, "the scheme must be exactly 'spiffe' (lowercase)")
    if sep:
        raise InvalidSpiffeIdError(text, f"the scheme must be 'spiffe', not {scheme!r}")
    raise InvalidSpiffeIdError(text, "a SPIFFE ID must start with 'spiffe://'")
