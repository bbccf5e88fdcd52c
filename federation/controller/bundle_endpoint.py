"""The controller as a SPIFFE bundle endpoint server (SPIFFE_Federation.md section 5): the
federation's trust bundle as a SPIFFE bundle (JWK Set with ``spiffe_sequence`` and
``spiffe_refresh_hint``), UTF-8 JSON, ``Content-Type: application/json``, to anyone (the spec
forbids client authentication, 5.2.1.3 and 5.2.2.3).

Served twice:

- on the REST API at ``GET /v1/spiffe-bundle`` (:data:`API_PATH`), profile ``https_spiffe``:
  the API's certificate is the controller's X509-SVID
  ``spiffe://<td>/ns/meshfed-system/sa/controller`` (:mod:`federation.controller.tls`);
- with ``--bundle-endpoint-listen HOST:PORT``, on a listener of its own that answers
  nothing else (the address a foreign mesh is let through to, without the admin API), at
  ``GET /`` (:data:`LISTENER_PATH`): profile ``https_web`` with the operator's certificate
  and key (``--bundle-endpoint-cert``/``--bundle-endpoint-key``: a Web PKI certificate
  naming the URL's host; re-read when the files change, as cert-manager or certbot renew
  them), else ``https_spiffe`` with the controller's SVID.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from federation.errors import ConfigError
from federation.serving import server_context
from trust.bundle import TrustBundle

log = logging.getLogger(__name__)

#: Where the REST API serves the bundle.
API_PATH = "/v1/spiffe-bundle"
#: Where ``--bundle-endpoint-listen`` serves it.
LISTENER_PATH = "/"
#: Default ``spiffe_refresh_hint`` the controller publishes (s): how often federated meshes
#: poll it (``--bundle-refresh-hint``).
DEFAULT_REFRESH_HINT_S = 300
#: How often (s) the operator's certificate files are checked for a renewal.
CERT_CHECK_S = 10.0


def spiffe_bundle_body(bundle: TrustBundle, refresh_hint_s: int) -> bytes:
    """The endpoint's answer: ``bundle`` as a SPIFFE bundle with ``refresh_hint_s`` (s) as
    its ``spiffe_refresh_hint``, UTF-8 JSON."""
    return replace(bundle, refresh_hint_s=refresh_hint_s).to_spiffe_json().encode()


def bundle_response(body: bytes) -> web.Response:
    """The HTTP answer carrying a SPIFFE bundle (``application/json``; never cached by
    intermediaries for longer than a refresh, so ``no-cache``)."""
    return web.Response(
        body=body,
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache"},
    )


def bundle_app(body: Callable[[], bytes]) -> web.Application:
    """The application of the dedicated listener: ``GET /`` (and ``HEAD``) answers the bundle
    ``body()`` gives; every other path is 404, every other method 405."""

    async def serve(_request: web.Request) -> web.Response:
        return bundle_response(body())

    app = web.Application()
    app.router.add_get(LISTENER_PATH, serve)
    return app


class OperatorCertificate:
    """The ``https_web`` profile's certificate: a chain and key (PEM) the operator provides,
    loaded into :attr:`context` and loaded again when either file's modification time
    changes.

    Raises:
        ConfigError: from :meth:`load`, a file cannot be read or the key does not match.
    """

    def __init__(self, chain: Path, key: Path) -> None:
        self.chain, self.key = chain, key
        self.context = server_context()
        self._stamp: tuple[float, float] | None = None

    def _mtimes(self) -> tuple[float, float]:
        return (self.chain.stat().st_mtime, self.key.stat().st_mtime)

    def load(self) -> ssl.SSLContext:
        """Load the files now; the context to serve with."""
        try:
            stamp = self._mtimes()
            self.context.load_cert_chain(self.chain, self.key)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                f"--bundle-endpoint-cert {self.chain} / --bundle-endpoint-key {self.key}: {err}"
            ) from err
        self._stamp = stamp
        return self.context

    async def reload_forever(self) -> None:
        """Every :data:`CERT_CHECK_S`, reload when the files changed (a failed reload is
        logged and the certificate in use kept); until cancelled."""
        while True:
            await asyncio.sleep(CERT_CHECK_S)
            try:
                if self._mtimes() != self._stamp:
                    self.load()
                    log.info("reloaded the bundle endpoint's certificate from %s", self.chain)
            except (OSError, ConfigError) as err:
                log.error("keeping the bundle endpoint's certificate: %s", err)
