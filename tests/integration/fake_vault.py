"""A FAKE Vault: a small HTTP server on loopback implementing only the endpoints meshfed's
Vault backend calls, with the behaviour Vault's API documentation gives for them
(https://developer.hashicorp.com/vault/api-docs/secret/pki, .../auth/approle,
.../system/health):

- ``GET /v1/<mount>/ca/pem``: the mount's CA certificate as PEM text;
- ``GET /v1/<mount>/crl/pem`` (unauthenticated): the mount's CRL, PEM, signed by its CA,
  valid 72 h (Vault's default ``expiry``); nothing is ever revoked here;
- ``POST /v1/<mount>/root/sign-intermediate`` (``csr``, ``common_name``, ``organization``,
  ``ou``, ``ttl``, ``not_before_duration`` (default 30 s), ``uri_sans``,
  ``max_path_length``, ``permitted_dns_domains``): ``{"data": {"certificate",
  "issuing_ca", "ca_chain", "serial_number"}}``; CA:true with the given path length,
  keyCertSign/cRLSign, and nameConstraints (critical) for ``permitted_dns_domains``;
- ``POST /v1/auth/approle/login`` (``role_id``, ``secret_id``): ``{"auth": {"client_token"}}``;
  wrong credentials: 400 ``{"errors": ["invalid role or secret ID"]}``;
- ``POST /v1/auth/kubernetes/login`` (``role``, ``jwt``): the same; a wrong JWT or role: 403;
- without a valid ``X-Vault-Token``: 403 ``{"errors": ["permission denied"]}``;
- sealed (``sealed = True``): 503 ``{"errors": ["Vault is sealed"]}`` on every path.

It is not Vault; it signs with a real CA it creates (ECDSA P-256). Runs in a thread with its
own event loop; :meth:`stop` ends it.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _subject(body: dict[str, Any]) -> list[x509.NameAttribute]:
    """The subject Vault gives a signed intermediate: ``organization`` and ``ou`` (each
    comma-separated) and ``common_name``, in the order Go's ``pkix.Name`` writes them (O, OU,
    CN)."""
    out = [
        x509.NameAttribute(oid, value)
        for key, oid in (("organization", NameOID.ORGANIZATION_NAME),
                         ("ou", NameOID.ORGANIZATIONAL_UNIT_NAME))
        for value in str(body.get(key) or "").split(",") if value
    ]  # fmt: skip
    return [*out, x509.NameAttribute(NameOID.COMMON_NAME, body["common_name"])]


class FakeVault:
    """See the module docstring."""

    def __init__(self, mount: str = "pki") -> None:
        self.mount = mount
        self.token = "s." + secrets.token_urlsafe(16)
        self.role_id, self.secret_id = "role-" + secrets.token_hex(4), secrets.token_hex(16)
        self.k8s_role, self.k8s_jwt = "meshfed-controller", "eyJ" + secrets.token_urlsafe(24)
        self.sealed = False
        self.signed: list[str] = []  # common names of signed intermediates
        self.crl_reads = 0
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake Vault root")])
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_pem = self.ca.public_bytes(serialization.Encoding.PEM).decode()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- handlers ----------------------------------------------------------------------------

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"errors": [message]}, status=status)

    def _guard(self, request: web.Request, *, auth: bool = True) -> web.Response | None:
        if self.sealed:
            return self._error(503, "Vault is sealed")
        if auth and request.headers.get("X-Vault-Token") != self.token:
            return self._error(403, "permission denied")
        return None

    async def handle_ca_pem(self, request: web.Request) -> web.Response:
        refused = self._guard(request, auth=False)  # the CA is public in Vault
        return refused or web.Response(
            text=self.ca_pem, content_type="application/pem-certificate-chain"
        )

    async def handle_crl_pem(self, request: web.Request) -> web.Response:
        refused = self._guard(request, auth=False)  # the CRL is public in Vault
        if refused:
            return refused
        self.crl_reads += 1
        now = datetime.now(UTC)
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca.subject)
            .last_update(now)
            .next_update(now + timedelta(hours=72))
            .add_extension(x509.CRLNumber(self.crl_reads), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return web.Response(
            body=crl.public_bytes(serialization.Encoding.PEM), content_type="application/pkix-crl"
        )

    async def sign_intermediate(self, request: web.Request) -> web.Response:
        refused = self._guard(request)
        if refused:
            return refused
        body = await request.json()
        try:
            csr = x509.load_pem_x509_csr(body["csr"].encode())
        except (KeyError, ValueError):
            return self._error(400, "could not parse CSR")
        if not csr.is_signature_valid:
            return self._error(400, "certificate request signature invalid")
        ttl = str(body.get("ttl", ""))
        ttl_s = int(ttl[:-1]) if ttl.endswith("s") and ttl[:-1].isdigit() else 30 * 86400
        max_path = int(body.get("max_path_length", -1))
        back = str(body.get("not_before_duration", "30s"))  # Vault's default: 30 s
        back_s = int(back[:-1]) if back.endswith("s") and back[:-1].isdigit() else 30
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(_subject(body)))
            .issuer_name(self.ca.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(seconds=back_s))
            .not_valid_after(min(now + timedelta(seconds=ttl_s), self.ca.not_valid_after_utc))
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=max_path if max_path >= 0 else None),
                critical=True,
            )
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if body.get("permitted_dns_domains"):
            domains = str(body["permitted_dns_domains"]).split(",")
            builder = builder.add_extension(
                x509.NameConstraints([x509.DNSName(d) for d in domains], None), critical=True
            )
        if body.get("uri_sans"):
            uris = [x509.UniformResourceIdentifier(u) for u in str(body["uri_sans"]).split(",")]
            builder = builder.add_extension(x509.SubjectAlternativeName(uris), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        self.signed.append(body["common_name"])
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        return web.json_response(
            {
                "request_id": secrets.token_hex(8),
                "data": {
                    "certificate": pem,
                    "issuing_ca": self.ca_pem,
                    "ca_chain": [self.ca_pem],
                    "serial_number": format(cert.serial_number, "x"),
                },
            }
        )

    async def approle_login(self, request: web.Request) -> web.Response:
        refused = self._guard(request, auth=False)
        if refused:
            return refused
        body = await request.json()
        if body.get("role_id") != self.role_id or body.get("secret_id") != self.secret_id:
            return self._error(400, "invalid role or secret ID")
        return web.json_response(
            {"auth": {"client_token": self.token, "lease_duration": 3600, "renewable": True}}
        )

    async def kubernetes_login(self, request: web.Request) -> web.Response:
        refused = self._guard(request, auth=False)
        if refused:
            return refused
        body = await request.json()
        if body.get("role") != self.k8s_role or body.get("jwt") != self.k8s_jwt:
            return self._error(403, "permission denied")
        return web.json_response({"auth": {"client_token": self.token, "lease_duration": 3600}})

    # -- lifecycle ---------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get(f"/v1/{self.mount}/ca/pem", self.handle_ca_pem)
        app.router.add_get(f"/v1/{self.mount}/crl/pem", self.handle_crl_pem)
        app.router.add_post(f"/v1/{self.mount}/root/sign-intermediate", self.sign_intermediate)
        app.router.add_post("/v1/auth/approle/login", self.approle_login)
        app.router.add_post("/v1/auth/kubernetes/login", self.kubernetes_login)
        runner = web.AppRunner(app, access_log=None)
        self._runner = runner
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def start(self) -> FakeVault:
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
