"""Who may call a control plane's xDS port: only proxies whose SVID this cluster's CA signed.

The xDS port (mutual TLS) carries ADS, SVID renewals and traffic reports. TLS proves only that
the client's SVID chains to the federation's root, which every member cluster's SVIDs do --
and so do those of a cluster that was removed (until they expire) and those signed by a
cluster's *old* intermediate key after it re-joined under the same name. A proxy gets its
configuration from its own cluster's control plane and no other, so every call on this port
is refused with PERMISSION_DENIED before any handler runs unless the client certificate was
signed by this cluster's current CA key (:func:`trust.workload.issued_by_authority`; a
re-signed intermediate keeps its key, so SVIDs from before a root rotation still pass).
Istio's istiod likewise serves only the proxies its own CA vouches for.

One check per call, in a server interceptor, so no service on the port can forget it. The
verdict per client certificate is remembered (at most :data:`CACHE_SIZE` certificates) until
the CA changes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from federation.ca.service import peer_leaf_pem, peer_spiffe_id
from trust.authority import LocalCertificateAuthority
from trust.errors import InvalidCertificateError
from trust.workload import issued_by_authority

log = logging.getLogger(__name__)

#: Client certificates whose verdict is remembered (about 1 KiB each).
CACHE_SIZE = 4096

Context = grpc.aio.ServicerContext[Any, Any]


class OwnClusterOnly(grpc.aio.ServerInterceptor):
    """See the module docstring.

    Args:
        authority: returns the cluster's CA now (it is replaced on re-sign and rotation).
    """

    def __init__(self, authority: Callable[[], LocalCertificateAuthority]) -> None:
        self._authority = authority
        self._verdicts: dict[bytes, bool] = {}
        self._verdicts_of: object = None

    def problem(self, context: Context) -> str | None:
        """Why the caller may not use this port, or None when its SVID is this cluster's."""
        leaf = peer_leaf_pem(context)
        if leaf is None:
            return "no client certificate"
        ca = self._authority()
        if self._verdicts_of is not ca.certificate or len(self._verdicts) >= CACHE_SIZE:
            self._verdicts, self._verdicts_of = {}, ca.certificate
        verdict = self._verdicts.get(leaf)
        if verdict is None:
            try:
                verdict = issued_by_authority(leaf, ca)
            except InvalidCertificateError:
                verdict = False
            self._verdicts[leaf] = verdict
        if verdict:
            return None
        return (
            f"{peer_spiffe_id(context) or 'the client'}: its SVID was not issued by this"
            " cluster's CA; a proxy is served only by its own cluster's control plane"
        )

    async def _check(self, context: Context, method: str) -> None:
        problem = self.problem(context)
        if problem is not None:
            log.warning("refused %s: %s", method, problem)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap the method's handler so that :meth:`problem` is checked first (the stubs
        type handlers as synchronous; on a grpc.aio server they are coroutine functions and
        async generator functions)."""
        handler: Any = await continuation(details)
        if handler is None:
            return None
        method = details.method
        check = self._check
        options: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Context) -> Any:
                await check(context, method)
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **options)
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: Context) -> Any:
                await check(context, method)
                return await inner_su(requests, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                await check(context, method)
                async for response in inner_us(request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, **options)
        inner_ss = handler.stream_stream

        async def stream_stream(
            requests: AsyncIterator[Any], context: Context
        ) -> AsyncIterator[Any]:
            await check(context, method)
            async for response in inner_ss(requests, context):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, **options)
