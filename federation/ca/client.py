"""The workload side of the certificate service: get an SVID, keep it and the bundle fresh.

:class:`WorkloadIdentity` generates every key itself and sends only CSRs:

1. :meth:`~WorkloadIdentity.ensure` -- reuse the SVID in the identity directory if it is for
   this SPIFFE ID and not past its renewal time; renew it if it is still valid; otherwise ask
   the CA port for a first certificate with the workload token.
2. :meth:`~WorkloadIdentity.run` -- renew at half life (minus jitter) over the xDS port with
   the current SVID as client certificate, and fetch the trust bundle and the member
   clusters' CRLs every ``bundle_poll_s`` (a root rotation, or a cluster's removal, reaches
   the files within that time). Failures are retried with backoff
   (1 s doubling to 30 s) and logged; the old files stay in place meanwhile.

The control plane is verified against the trust bundle and by its DNS name
(:func:`federation.ca.names.control_plane_server_name`), whatever address is dialled.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import grpc

from federation.ca.files import IdentityDirectory
from federation.ca.proto import ca_pb2, ca_pb2_grpc
from federation.errors import FederationError
from trust import pki
from trust.errors import TrustError
from trust.spiffe import SpiffeId
from trust.svid import X509Svid
from trust.workload import issued_under, new_key_and_csr

log = logging.getLogger(__name__)

#: How long one call to the certificate service may take (seconds).
CALL_TIMEOUT_S = 10.0


class IdentityError(FederationError):
    """No SVID could be obtained; ``retryable`` is False when the credential was refused."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class CaEndpoints:
    """Where a workload reaches its control plane.

    Attributes:
        ca: ``host:port`` of the CA port (first certificate, trust bundle).
        xds: ``host:port`` of the xDS port (renewals, mutual TLS).
        server_name: the DNS name the control plane's certificate carries.
    """

    ca: str
    xds: str
    server_name: str


def _options(server_name: str) -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", server_name)]


def _describe(err: grpc.aio.AioRpcError) -> IdentityError:
    code = err.code()
    retryable = code not in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    return IdentityError(
        f"the certificate service refused: {code.name}: {err.details()}"
        if not retryable
        else f"the certificate service is unreachable ({code.name}: {err.details()})",
        retryable=retryable,
    )


class WorkloadIdentity:
    """Keeps the SVID of ``spiffe_id`` fresh in ``directory`` (see the module docstring).

    Args:
        spiffe_id: the identity to hold.
        directory: where the files go.
        endpoints: the control plane.
        bundle_pem: the trust bundle to verify the control plane with before the first
            answer (later, the bundle in ``directory``).
        token: the workload token (needed only when no valid SVID is on disk).
        bundle_poll_s: how often the trust bundle is fetched (seconds).
    """

    def __init__(
        self,
        spiffe_id: SpiffeId,
        directory: IdentityDirectory,
        endpoints: CaEndpoints,
        bundle_pem: bytes,
        token: str | None,
        *,
        bundle_poll_s: float = 5.0,
    ) -> None:
        self.spiffe_id = spiffe_id
        self.directory = directory
        self.endpoints = endpoints
        self._bundle = bundle_pem
        self._crls = b""
        self._members = b""
        self._federated: dict[str, bytes] = {}
        self._token = token
        self.bundle_poll_s = bundle_poll_s
        self.svid: X509Svid | None = None
        self._channel: tuple[X509Svid, grpc.aio.Channel] | None = None

    def xds_channel(self) -> grpc.aio.Channel:
        """A channel to the control plane's xDS port with the current SVID (mutual TLS), for
        other calls than certificates (e.g. :mod:`federation.agent.tap`'s reports). The same
        channel is returned until the SVID is renewed; the caller does not close it.

        Raises:
            IdentityError: no SVID yet (call :meth:`ensure` first).
        """
        if self.svid is None:
            raise IdentityError("no SVID yet", retryable=True)
        if self._channel is None or self._channel[0] is not self.svid:
            creds = grpc.ssl_channel_credentials(
                self._bundle, self.svid.private_key_pem(), self.svid.chain_pem()
            )
            channel = grpc.aio.secure_channel(
                self.endpoints.xds, creds, options=_options(self.endpoints.server_name)
            )
            if self._channel is not None:
                old = self._channel[1]
                asyncio.get_running_loop().call_later(
                    CALL_TIMEOUT_S, lambda: asyncio.ensure_future(old.close())
                )
            self._channel = (self.svid, channel)
        return self._channel[1]

    # -- calls -------------------------------------------------------------------------

    async def _create(self, csr_pem: bytes, *, renew: bool) -> ca_pb2.CreateCertificateResponse:
        if renew:
            assert self.svid is not None
            creds = grpc.ssl_channel_credentials(
                self._bundle, self.svid.private_key_pem(), self.svid.chain_pem()
            )
            target, metadata = self.endpoints.xds, None
        else:
            if not self._token:
                raise IdentityError(
                    f"no valid SVID in {self.directory.path} and no workload token: mint one"
                    f" with 'meshfed workload token' and pass it with --workload-token-file",
                    retryable=False,
                )
            creds = grpc.ssl_channel_credentials(self._bundle)
            target, metadata = self.endpoints.ca, (("authorization", f"Bearer {self._token}"),)
        async with grpc.aio.secure_channel(
            target, creds, options=_options(self.endpoints.server_name)
        ) as channel:
            stub = ca_pb2_grpc.CertificateServiceStub(channel)  # type: ignore[no-untyped-call]
            try:
                response: ca_pb2.CreateCertificateResponse = await stub.CreateCertificate(
                    ca_pb2.CreateCertificateRequest(csr_pem=csr_pem),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT_S,
                )
            except grpc.aio.AioRpcError as err:
                raise _describe(err) from err
        return response

    async def _issue(self, *, renew: bool) -> X509Svid:
        key_pem, csr_pem = new_key_and_csr(self.spiffe_id)
        response = await self._create(csr_pem, renew=renew)
        try:
            svid = X509Svid.parse(response.cert_chain_pem, key_pem, source="issued SVID")
        except TrustError as err:
            raise IdentityError(
                f"the control plane sent a bad SVID: {err}", retryable=True
            ) from err
        if svid.spiffe_id != self.spiffe_id:
            raise IdentityError(
                f"the control plane issued {svid.spiffe_id}, not {self.spiffe_id}", retryable=False
            )
        self._bundle = response.trust_bundle_pem or self._bundle
        self._crls = bytes(response.crl_pem)
        self._members = bytes(response.member_cas_pem)
        self._federated = dict(response.federated_bundles)
        self._write(svid.chain_pem(), key_pem)
        self.svid = svid
        log.info(
            "%s SVID %s (valid until %s)",
            "renewed" if renew else "obtained",
            svid.spiffe_id,
            svid.not_after.isoformat(),
        )
        return svid

    def _write(self, chain_pem: bytes, key_pem: bytes) -> None:
        self.directory.write(
            chain_pem,
            key_pem,
            self._bundle,
            self._crls,
            self._members,
            federated=self._federated,
            trust_domain=self.spiffe_id.trust_domain.name,
        )

    async def fetch_bundle(self) -> tuple[bytes, bytes, bytes, bytes, dict[str, bytes]]:
        """``(trust bundle, member CRLs, CA chain, member CAs, federated bundles)`` from the
        CA port (verified with the current bundle).

        Raises:
            IdentityError: the call failed.
        """
        creds = grpc.ssl_channel_credentials(self._bundle)
        async with grpc.aio.secure_channel(
            self.endpoints.ca, creds, options=_options(self.endpoints.server_name)
        ) as channel:
            stub = ca_pb2_grpc.CertificateServiceStub(channel)  # type: ignore[no-untyped-call]
            try:
                answer = await stub.GetTrustBundle(
                    ca_pb2.GetTrustBundleRequest(), timeout=CALL_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as err:
                raise _describe(err) from err
        return (
            bytes(answer.pem),
            bytes(answer.crl_pem),
            bytes(answer.ca_chain_pem),
            bytes(answer.member_cas_pem),
            dict(answer.federated_bundles),
        )

    # -- lifecycle ---------------------------------------------------------------------

    def _on_disk(self) -> X509Svid | None:
        found = self.directory.read()
        if found is None:
            return None
        chain, key, bundle, crls = found
        try:
            svid = X509Svid.parse(chain, key, source=str(self.directory.cert))
        except TrustError as err:
            log.warning("ignoring the SVID on disk: %s", err)
            return None
        if svid.spiffe_id != self.spiffe_id or svid.not_after <= pki.utcnow():
            return None
        self._bundle, self._crls = bundle, crls
        members = self.directory.members
        self._members = members.read_bytes() if members.exists() else b""
        if self._members == bundle:
            self._members = b""  # written as the bundle: no member CAs were known
        return svid

    async def ensure(self) -> X509Svid:
        """An SVID on disk and in :attr:`svid` (see the module docstring, step 1).

        Raises:
            IdentityError: the token is missing or refused, or the control plane is
                unreachable.
        """
        existing = self._on_disk()
        if existing is not None:
            self.svid = existing
            if pki.utcnow() < existing.renew_at():
                log.info("reusing SVID %s from %s", existing.spiffe_id, self.directory.path)
                return existing
            try:
                return await self._issue(renew=True)
            except IdentityError as err:
                log.warning("renewing the SVID on disk failed (%s); asking with the token", err)
        return await self._issue(renew=False)

    async def _refresh_bundle(self) -> None:
        bundle, crls, ca_chain, members, federated = await self.fetch_bundle()
        if self.svid is not None and ca_chain and not issued_under(self.svid, ca_chain):
            log.info("the cluster's CA was re-signed: renewing the SVID now")
            await self._issue(renew=True)
        known = (self._bundle, self._crls, self._members, self._federated)
        if (bundle, crls, members, federated) != known and self.svid is not None:
            self._bundle, self._crls, self._members = bundle, crls, members
            self._federated = federated
            found = self.directory.read()
            if found is not None:
                self._write(found[0], found[1])
                log.info("trust bundle / member CRLs / member CAs / federated bundles updated")

    async def run(self, *, rng: random.Random | None = None) -> None:
        """Renew and refresh until cancelled (see the module docstring, step 2)."""
        backoff = 1.0
        while True:
            assert self.svid is not None
            wait = (self.svid.renew_at(rng=rng) - pki.utcnow()).total_seconds()
            try:
                if wait <= 0:
                    await self._issue(renew=True)
                else:
                    await asyncio.sleep(min(wait, self.bundle_poll_s))
                    await self._refresh_bundle()
                backoff = 1.0
            except (IdentityError, OSError, TrustError) as err:
                log.warning("identity refresh failed, retrying in %.0f s: %s", backoff, err)
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)
