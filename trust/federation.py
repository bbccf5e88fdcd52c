"""Federating with another trust domain: the rules of a SPIFFE bundle endpoint's client.

From the SPIFFE Federation specification (github.com/spiffe/spiffe,
standards/SPIFFE_Federation.md):

- **endpoint parameters** (section 5.1): the bundle endpoint URL, the profile, the trust
  domain the fetched bundle belongs to; ``https_spiffe`` also needs the endpoint server's
  SPIFFE ID and a bundle of that ID's trust domain (5.2.2.2). URLs are ``https`` without
  userinfo (5.2.1.1, 5.2.2.1).
- **https_web** (5.2.1.4): the server certificate is checked as any HTTPS client does
  (RFC 6125: a locally trusted CA, the URL's host in the SAN) -- the system's CAs, or an
  operator's CA file.
- **https_spiffe** (5.2.2.4): the server presents an X509-SVID that chains to the latest
  bundle of the endpoint ID's trust domain (for a self-serving endpoint, the bundle given once
  and then each bundle fetched) and whose SPIFFE ID is exactly the configured one; the host
  name is not checked.
- **bundles of different trust domains are never merged** (4.2): callers keep one
  :class:`~trust.bundle.TrustBundle` per domain.
- **polling** (6.2): at the bundle's ``spiffe_refresh_hint``; after a failure, again at the
  next interval, not sooner (:func:`next_refresh_s`).

Redirects (5.2.1.4 and 5.2.2.4 say a client SHOULD follow them) are refused here: following one
under ``https_spiffe`` means checking the SVID of a second connection, which the fetcher does
not do; the error names the target so the operator can configure it instead.

Pure: the HTTP exchange is the caller's (:mod:`federation.controller.bundle_fetch`).
"""

from __future__ import annotations

import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Literal

from cryptography import x509

from trust import pki
from trust.bundle import TrustBundle
from trust.errors import InvalidCertificateError, InvalidSpiffeIdError, VerificationError
from trust.spiffe import SpiffeId, TrustDomain

BundleEndpointProfile = Literal["https_web", "https_spiffe"]
PROFILES: tuple[BundleEndpointProfile, ...] = ("https_web", "https_spiffe")

#: Largest bundle read from an endpoint (bytes); a bundle of ten P-384 roots is ~15 KiB.
MAX_BUNDLE_BYTES = 1 << 20
#: Bounds on how often a foreign bundle is fetched (s), whatever its refresh hint says: not
#: more than once per ``MIN_REFRESH_S`` (a hint of 0 must not become a busy loop), at least
#: once per ``MAX_REFRESH_S`` (a day, so a revoked root is dropped within one).
MIN_REFRESH_S = 1.0
MAX_REFRESH_S = 86_400.0


@dataclass(frozen=True, slots=True)
class BundleEndpoint:
    """The parameters of a foreign trust domain's bundle endpoint (spec section 5.1).

    Attributes:
        trust_domain: the domain whose bundle the endpoint serves.
        url: ``https://host[:port]/path``.
        profile: ``https_web`` or ``https_spiffe``.
        endpoint_id: the server's SPIFFE ID (``https_spiffe`` only; required there).

    Raises:
        ValueError: a URL that is not ``https`` or holds userinfo, a missing or unneeded
            ``endpoint_id``, an unknown profile.
    """

    trust_domain: TrustDomain
    url: str
    profile: BundleEndpointProfile
    endpoint_id: SpiffeId | None = None

    def __post_init__(self) -> None:
        problem = url_problem(self.url)
        if problem:
            raise ValueError(f"bundle endpoint URL {self.url!r}: {problem}")
        if self.profile not in PROFILES:
            raise ValueError(f"profile {self.profile!r}: use one of {', '.join(PROFILES)}")
        if self.profile == "https_spiffe" and self.endpoint_id is None:
            raise ValueError("profile https_spiffe needs the endpoint's SPIFFE ID")
        if self.profile == "https_web" and self.endpoint_id is not None:
            raise ValueError("an endpoint SPIFFE ID is for profile https_spiffe only")

    @property
    def self_serving(self) -> bool:
        """True when the endpoint's SPIFFE ID is in the domain it serves (5.2.2.2)."""
        return self.endpoint_id is not None and self.endpoint_id.member_of(self.trust_domain)


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a bundle endpoint URL (scheme ``https``, a host, no userinfo), or
    None."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError as err:
        return str(err)
    if parts.scheme != "https":
        return "the scheme must be https"
    if not parts.hostname:
        return "no host"
    if "@" in parts.netloc:
        return "userinfo is not allowed"
    return None


def parse_endpoint(
    trust_domain: str, url: str, profile: str, endpoint_id: str | None
) -> BundleEndpoint:
    """A :class:`BundleEndpoint` from text.

    Raises:
        ValueError: as :class:`BundleEndpoint`, or an invalid trust domain or SPIFFE ID
            (:class:`~trust.errors.InvalidSpiffeIdError` is a ValueError).
    """
    sid = SpiffeId.parse(endpoint_id) if endpoint_id else None
    if sid is not None and sid.path == "":
        raise InvalidSpiffeIdError(endpoint_id or "", "an endpoint SPIFFE ID names a workload")
    return BundleEndpoint(TrustDomain.parse(trust_domain), url, profile, sid)  # type: ignore[arg-type]


def client_context(
    endpoint: BundleEndpoint,
    endpoint_bundle: TrustBundle | None = None,
    *,
    web_ca_file: str | None = None,
) -> ssl.SSLContext:
    """The TLS client context to fetch from ``endpoint`` with (TLS 1.2 or later).

    ``https_web``: the system's CAs (``web_ca_file`` instead, when given) and host name
    checking. ``https_spiffe``: only the roots of ``endpoint_bundle`` (the latest bundle of
    the endpoint ID's trust domain), no host name check; the caller must then pass the
    server's certificate to :func:`check_endpoint_svid`.

    Raises:
        VerificationError: ``https_spiffe`` without a bundle for the endpoint's domain, or an
            empty one (every SVID of a domain with no roots is untrusted, Trust Domain and
            Bundle spec 4.1.3).
    """
    if endpoint.profile == "https_web":
        context = ssl.create_default_context(cafile=web_ca_file)
    else:
        assert endpoint.endpoint_id is not None  # BundleEndpoint checked
        domain = endpoint.endpoint_id.trust_domain
        if endpoint_bundle is None or endpoint_bundle.trust_domain != domain:
            raise VerificationError(f"no trust bundle of {domain} to authenticate {endpoint.url}")
        if not endpoint_bundle.roots:
            raise VerificationError(f"the trust bundle of {domain} holds no root")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # the SPIFFE ID is checked instead (5.2.2.4)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=endpoint_bundle.to_pem().decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_endpoint_svid(endpoint: BundleEndpoint, leaf_der: bytes | None) -> None:
    """For ``https_spiffe``, refuse a server certificate (DER, already verified against the
    bundle by the TLS handshake) that is not an X509-SVID leaf of the configured SPIFFE ID;
    nothing to check for ``https_web``.

    Raises:
        VerificationError: no certificate, not an X509-SVID leaf (X509-SVID.md 4), or another
            SPIFFE ID than ``endpoint.endpoint_id``.
    """
    if endpoint.profile != "https_spiffe":
        return
    if not leaf_der:
        raise VerificationError("the server presented no certificate")
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
    except ValueError as err:
        raise VerificationError("the server presented an unreadable certificate") from err
    problems = pki.leaf_svid_problems(leaf)
    if problems:
        raise VerificationError(f"the server presented no X509-SVID: {problems[0]}")
    presented = pki.uri_sans(leaf)[0]
    if presented != str(endpoint.endpoint_id):
        raise VerificationError(
            f"the server presented {presented}, not the configured endpoint SPIFFE ID"
            f" {endpoint.endpoint_id}"
        )


def foreign_root_problem(bundle: TrustBundle) -> str | None:
    """Why ``bundle`` cannot be the bundle of its trust domain, or None: a root whose URI
    SAN is the SPIFFE ID of another trust domain (X509-SVID.md 4.4 lets a CA certificate
    name its domain so; meshfed's and SPIRE's roots do). A bundle carries no domain name of
    its own (Trust Domain and Bundle spec 4), so this is the one check there is against a
    bundle or endpoint of another domain given by mistake."""
    for root in bundle.roots:
        for san in pki.uri_sans(root):
            try:
                named = SpiffeId.parse(san).trust_domain
            except InvalidSpiffeIdError:
                continue
            if named != bundle.trust_domain:
                return (
                    f"root {root.subject.rfc4514_string()} belongs to trust domain {named},"
                    f" not {bundle.trust_domain}"
                )
    return None


def parse_fetched(endpoint: BundleEndpoint, body: bytes) -> TrustBundle:
    """The bundle of ``endpoint.trust_domain`` from an endpoint's answer (a SPIFFE bundle,
    UTF-8 JSON, at most :data:`MAX_BUNDLE_BYTES`).

    Raises:
        InvalidCertificateError: too large, not UTF-8, not a SPIFFE bundle, a key whose
            certificate is not a CA, or a root of another trust domain
            (:func:`foreign_root_problem`).
    """
    if len(body) > MAX_BUNDLE_BYTES:
        raise InvalidCertificateError(f"an answer of more than {MAX_BUNDLE_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidCertificateError("an answer that is not UTF-8") from err
    bundle = TrustBundle.from_spiffe_json(endpoint.trust_domain, text)
    problem = foreign_root_problem(bundle)
    if problem:
        raise InvalidCertificateError(problem)
    return bundle


def is_newer(fetched: TrustBundle, held: TrustBundle | None) -> bool:
    """Whether ``fetched`` replaces ``held`` (section 4.2): a held bundle of a higher
    ``spiffe_sequence`` stays (a stale replica or cache answered); otherwise the latest
    retrieved wins."""
    return held is None or fetched.sequence >= held.sequence


def next_refresh_s(refresh_hint_s: float | None, default_s: float) -> float:
    """Seconds until the next fetch: the bundle's ``spiffe_refresh_hint`` (``default_s``
    when the bundle gave none or none was fetched yet), within [:data:`MIN_REFRESH_S`,
    :data:`MAX_REFRESH_S`]. The same after a failure (section 6.2: retry at the next
    interval, not aggressively)."""
    hint = default_s if refresh_hint_s is None else refresh_hint_s
    return min(MAX_REFRESH_S, max(MIN_REFRESH_S, float(hint)))
