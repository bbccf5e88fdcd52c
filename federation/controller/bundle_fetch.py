"""Fetching a foreign trust domain's SPIFFE bundle from its bundle endpoint, by the rules of
:mod:`trust.federation`: the TLS context of the endpoint's profile, the ``https_spiffe``
server's SPIFFE ID checked after the handshake and before the request is sent, no redirect
followed, a bounded body.

The standard library's :mod:`http.client` (in a thread) rather than aiohttp: it hands over the
connected TLS socket before the request, where aiohttp releases a connection whose answer it
has read and with it the peer's certificate.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import urllib.parse

from federation.errors import BundleFetchError
from trust.bundle import TrustBundle
from trust.errors import TrustError
from trust.federation import (
    MAX_BUNDLE_BYTES,
    BundleEndpoint,
    check_endpoint_svid,
    client_context,
    parse_fetched,
)

#: Seconds a fetch may take to connect, and then each read.
FETCH_TIMEOUT_S = 10.0


def _fetch(
    endpoint: BundleEndpoint, context: ssl.SSLContext, timeout_s: float
) -> tuple[int, str, bytes]:
    parts = urllib.parse.urlsplit(endpoint.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPSConnection(
        parts.hostname or "", parts.port or 443, timeout=timeout_s, context=context
    )
    try:
        conn.connect()
        assert isinstance(conn.sock, ssl.SSLSocket)
        check_endpoint_svid(endpoint, conn.sock.getpeercert(binary_form=True))
        conn.request("GET", target, headers={"Accept": "application/json"})
        response = conn.getresponse()
        return (
            response.status,
            response.getheader("Location", "?"),
            response.read(MAX_BUNDLE_BYTES + 1),
        )
    finally:
        conn.close()


async def fetch_bundle(
    endpoint: BundleEndpoint,
    endpoint_bundle: TrustBundle | None = None,
    *,
    web_ca_file: str | None = None,
    timeout_s: float = FETCH_TIMEOUT_S,
) -> TrustBundle:
    """GET ``endpoint.url`` and return the bundle of ``endpoint.trust_domain`` it serves.

    ``endpoint_bundle``: for ``https_spiffe``, the latest bundle of the endpoint SPIFFE ID's
    trust domain (the held bundle for a self-serving endpoint). ``web_ca_file``: for
    ``https_web``, a CA file instead of the system's CAs.

    Raises:
        BundleFetchError: unreachable, TLS refused (an unknown CA, another host name), an
            ``https_spiffe`` server presenting another SPIFFE ID, a redirect, a status other
            than 200, a timeout, or an answer that is not a SPIFFE bundle; the message names
            the URL and the reason.
    """
    try:
        context = client_context(endpoint, endpoint_bundle, web_ca_file=web_ca_file)
        status, location, body = await asyncio.to_thread(_fetch, endpoint, context, timeout_s)
        if 300 <= status < 400:
            raise BundleFetchError(
                f"{endpoint.url} redirects to {location}: redirects are not followed;"
                " configure that URL instead"
            )
        if status != 200:
            raise BundleFetchError(f"{endpoint.url} answered HTTP {status}")
        return parse_fetched(endpoint, body)
    except TrustError as err:
        raise BundleFetchError(f"{endpoint.url}: {err}") from err
    except ssl.SSLCertVerificationError as err:
        hint = (
            "; if the endpoint's domain rotated its root without publishing it first"
            " (rotate-root --publish-only), federate again with its new --bundle-file"
            if endpoint.profile == "https_spiffe"
            else ""
        )
        raise BundleFetchError(
            f"{endpoint.url}: TLS refused ({endpoint.profile}): {err.verify_message}{hint}"
        ) from err
    except TimeoutError as err:
        raise BundleFetchError(f"{endpoint.url}: no answer within {timeout_s:g} s") from err
    except (OSError, http.client.HTTPException) as err:
        raise BundleFetchError(f"{endpoint.url}: {err}") from err
