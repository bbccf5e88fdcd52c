"""The certificate service of a cluster control plane (``meshfed.ca.v1.CertificateService``).

Registered twice (see ``proto/ca.proto``):

- **token mode** (the CA port, server TLS only): the caller sends ``authorization: Bearer
  mfw_...``; the CSR must ask for the token's (namespace, service account) in this trust
  domain; a single-use token is used up only by a request that gets a certificate. On
  Kubernetes the bearer may instead be a projected service account token, checked with the
  TokenReview API (:mod:`federation.controlplane.kube.tokenreview`).
- **SVID mode** (the xDS port, mutual TLS): the caller's verified client certificate
  authenticates it; the CSR must ask for the same SPIFFE ID, and that SVID must have been
  issued by this cluster's CA (renewal, see :func:`trust.workload.issued_by_authority`).

Every refusal is answered before anything is signed: UNAUTHENTICATED (no credential),
PERMISSION_DENIED (a credential for something else, expired or used), INVALID_ARGUMENT (an
unparsable CSR). Each issuance and refusal is logged with the SPIFFE ID, never the token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal

import grpc

from federation.ca.names import namespace_and_account
from federation.ca.proto import ca_pb2, ca_pb2_grpc
from federation.ca.tokens import PREFIX as WORKLOAD_TOKEN_PREFIX
from federation.ca.tokens import TokenRefusedError, TokenStore
from trust import pki
from trust.authority import LocalCertificateAuthority
from trust.errors import InvalidCertificateError, SigningRefusedError
from trust.spiffe import SpiffeId
from trust.workload import issued_by_authority, requested_spiffe_id, sign_workload_csr

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


def peer_spiffe_id(context: Context) -> str | None:
    """The SPIFFE ID of the caller's verified client certificate (gRPC's ``peer_spiffe_id``
    auth property), or None without one."""
    values = list(context.auth_context().get("peer_spiffe_id") or [])
    return values[0].decode() if values else None


def peer_leaf_pem(context: Context) -> bytes | None:
    """The caller's client certificate (PEM), or None."""
    values = list(context.auth_context().get("x509_pem_cert") or [])
    return values[0] if values else None


def bearer_token(context: Context) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, or None."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None


class CertificateServicer(ca_pb2_grpc.CertificateServiceServicer):
    """See the module docstring.

    Args:
        authority: returns the cluster's intermediate CA now (it changes with the bundle).
        mode: ``token`` or ``svid``.
        tokens: the workload tokens (token mode).
        ttl: lifetime of issued SVIDs.
        crls: returns the member clusters' CRLs (PEM) sent with the trust bundle.
        ca_chain: returns the CA's current chain (PEM), sent with the trust bundle.
        member_cas: returns every member cluster's CA certificate (PEM; empty outside a
            federation), sent with the trust bundle: proxyless gRPC's trust anchors.
        on_issued: called with ``mode`` after each SVID is signed (metrics).
        review: token mode on Kubernetes: a bearer token that is not a workload token
            (``mfw_...``) is a service account token, and this returns its ``(namespace,
            service account)`` or raises :class:`TokenRefusedError`
            (:class:`federation.controlplane.kube.tokenreview.TokenReviewer`).
    """

    def __init__(
        self,
        authority: Callable[[], LocalCertificateAuthority],
        mode: Literal["token", "svid"],
        *,
        tokens: TokenStore | None = None,
        ttl: timedelta = pki.DEFAULT_SVID_TTL,
        crls: Callable[[], bytes] = lambda: b"",
        ca_chain: Callable[[], bytes] = lambda: b"",
        member_cas: Callable[[], bytes] = lambda: b"",
        federated: Callable[[], dict[str, bytes]] = dict,
        on_issued: Callable[[str], None] = lambda _mode: None,
        review: Callable[[str], Awaitable[tuple[str, str]]] | None = None,
    ) -> None:
        self._review = review
        self._on_issued = on_issued
        self._crls = crls
        self._ca_chain = ca_chain
        self._member_cas = member_cas
        self._federated = federated
        if mode == "token" and tokens is None:
            raise ValueError("token mode needs a token store")
        self._authority = authority
        self._mode = mode
        self._tokens = tokens
        self._ttl = ttl

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register on ``server``."""
        ca_pb2_grpc.add_CertificateServiceServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    async def _allowed(self, asked: SpiffeId, context: Context) -> tuple[SpiffeId, str]:
        """The SPIFFE ID the caller's credential is bound to, and which credential it was
        (``renewal``, ``workload token``, ``service account token``); aborts the call
        otherwise."""
        ca = self._authority()
        if self._mode == "svid":
            peer, leaf = peer_spiffe_id(context), peer_leaf_pem(context)
            if peer is None or leaf is None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
                raise AssertionError  # abort raises
            if not issued_by_authority(leaf, ca):
                await _refuse(context, asked, "the client SVID was not issued by this cluster")
            return SpiffeId.parse(peer), "renewal"
        token = bearer_token(context)
        if token is None:
            log.warning("refused a certificate for %s: no workload token", asked)
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "a first certificate needs a workload token ('authorization: Bearer mfw_...')",
            )
        ids = namespace_and_account(asked.path)
        if not asked.member_of(ca.trust_domain) or ids is None:
            await _refuse(context, asked, f"not a workload SPIFFE ID of {ca.trust_domain}")
            raise AssertionError
        assert self._tokens is not None and token is not None
        how = "workload token"
        try:
            if self._review is not None and not token.startswith(WORKLOAD_TOKEN_PREFIX):
                how = "service account token"
                owner = await self._review(token)
                if owner != ids:
                    raise TokenRefusedError(
                        f"the service account token is for {owner[0]}/{owner[1]}, not"
                        f" {ids[0]}/{ids[1]}"
                    )
            else:
                await asyncio.to_thread(self._tokens.redeem, token, *ids)
        except TokenRefusedError as err:
            await _refuse(context, asked, str(err))
        return asked, how

    async def CreateCertificate(  # noqa: N802 - gRPC method name
        self, request: ca_pb2.CreateCertificateRequest, context: Context
    ) -> ca_pb2.CreateCertificateResponse:
        """Sign the CSR for the caller's identity (see the module docstring)."""
        try:
            asked = requested_spiffe_id(request.csr_pem)
        except (InvalidCertificateError, SigningRefusedError) as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad CSR: {err}")
            raise AssertionError from err
        allowed, how = await self._allowed(asked, context)
        ca = self._authority()
        try:
            chain = sign_workload_csr(ca, request.csr_pem, allowed, self._ttl)
        except SigningRefusedError as err:
            await _refuse(context, asked, str(err))
            raise AssertionError from err
        log.info("issued an SVID for %s (%s)", allowed, how)
        self._on_issued(self._mode)
        return ca_pb2.CreateCertificateResponse(
            cert_chain_pem=chain,
            trust_bundle_pem=ca.trust_bundle().to_pem(),
            crl_pem=self._crls(),
            member_cas_pem=self._member_cas(),
            federated_bundles=self._federated(),
        )

    async def GetTrustBundle(  # noqa: N802 - gRPC method name
        self, request: ca_pb2.GetTrustBundleRequest, context: Context
    ) -> ca_pb2.TrustBundle:
        """The trust bundle and the member clusters' CRLs, as PEM."""
        return ca_pb2.TrustBundle(
            pem=self._authority().trust_bundle().to_pem(),
            crl_pem=self._crls(),
            ca_chain_pem=self._ca_chain(),
            member_cas_pem=self._member_cas(),
            federated_bundles=self._federated(),
        )


async def _refuse(context: Context, asked: SpiffeId, reason: str) -> None:
    log.warning("refused a certificate for %s: %s", asked, reason)
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
