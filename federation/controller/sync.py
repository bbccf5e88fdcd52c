"""The ``FederationSync`` gRPC service: one bidirectional stream per cluster control plane.

The peer is identified by its client certificate (mTLS; gRPC has already verified the chain
up to a root of the trust bundle): its single URI SAN must be
``spiffe://<td>/ns/meshfed-system/sa/controlplane-<cluster>`` for a joined member, **and** the
certificate must be signed directly by the intermediate CA the controller signed for that
cluster when it joined -- so one cluster's intermediate cannot speak for another cluster.
Every report must name that same cluster.

Updates follow sync protocol 2 (:mod:`federation.sync.delta`): the first update of a stream
is whole, each later one a delta on the previous one, for a control plane that speaks 2; a
control plane of an older release gets whole updates, one of a newer release than this
controller is refused with FAILED_PRECONDITION and a message saying to upgrade the
controller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc

from federation.controller.hub import SyncHub
from federation.controller.store import ClusterRecord, StoreError
from federation.controller.streams import Closed
from federation.errors import FederationError, InvalidDocumentError, NotFoundError
from federation.sync import delta
from federation.sync.convert import (
    trace_from_proto,
    traffic_from_proto,
    update_to_proto,
)
from federation.sync.identity import cluster_from_spiffe_path
from federation.sync.messages import ClusterReport, ControllerUpdate
from federation.sync.proto import sync_pb2, sync_pb2_grpc
from federation.traffic import TrafficTable
from trust import pki
from trust.errors import TrustError
from trust.spiffe import SpiffeId

log = logging.getLogger(__name__)


def peer_cluster(peer_pem: bytes | None, trust_domain: str, lookup: Any) -> tuple[str | None, str]:
    """``(cluster, "")`` for a control plane's certificate, else ``(None, reason)``.

    Args:
        peer_pem: the peer's leaf certificate (PEM) as gRPC's auth context gives it.
        trust_domain: the federation's trust domain name.
        lookup: ``name -> ClusterRecord`` (raises NotFoundError for a non-member).
    """
    if not peer_pem:
        return None, "no client certificate"
    try:
        cert = pki.load_certificates(peer_pem, source="peer certificate")[0]
        sans = pki.uri_sans(cert)
        sid = SpiffeId.parse(sans[0]) if len(sans) == 1 else None
    except (TrustError, ValueError):
        return None, "unparsable client certificate"
    if sid is None or sid.trust_domain.name != trust_domain:
        return None, "client certificate is not a SPIFFE ID of this trust domain"
    cluster = cluster_from_spiffe_path(sid.path)
    if cluster is None:
        return None, f"{sid} is not a control plane identity"
    try:
        record: ClusterRecord = lookup(cluster)
    except NotFoundError:
        return None, f"cluster {cluster!r} is not a member"
    if record.joined_at is None or not record.intermediate_pem:
        return None, f"cluster {cluster!r} has not joined"
    issuer = pki.load_certificates(record.intermediate_pem.encode(), source="intermediate")[0]
    if not pki.issued_by(cert, issuer):
        return None, f"certificate for {cluster!r} was not issued by its joined intermediate CA"
    return cluster, ""


class _RefusedReportError(FederationError):
    """A report the stream must end for: another cluster's (PERMISSION_DENIED), invalid
    (INVALID_ARGUMENT), or not storable here (UNAVAILABLE: the database is unreachable)."""

    def __init__(
        self, message: str, code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED
    ) -> None:
        super().__init__(message)
        self.code = code


def _for_peer(
    cluster: str, peer: int, update: ControllerUpdate, said: list[str]
) -> tuple[sync_pb2.ControllerUpdate, list[str]]:
    """``update`` as ``cluster``'s control plane (speaking protocol ``peer``) reads it
    (:func:`federation.sync.delta.for_peer`), and what it left out -- logged unless it is
    what was ``said`` for the previous update."""
    whole, dropped = delta.for_peer(update_to_proto(update), peer)
    if dropped and dropped != said:
        log.warning(
            "control plane %s speaks sync protocol %d: left out of its updates (upgrade it"
            " to apply them): %s",
            cluster, peer, ", ".join(dropped),
        )  # fmt: skip
    return whole, dropped


class FederationSyncService(sync_pb2_grpc.FederationSyncServicer):
    """See the module docstring."""

    def __init__(self, hub: SyncHub, trust_domain: str) -> None:
        self._hub = hub
        self._trust_domain = trust_domain

    @staticmethod
    def _checked(
        cluster: str, report: sync_pb2.ClusterReport, held: delta.HeldReport | None = None
    ) -> tuple[delta.HeldReport, TrafficTable | None]:
        """A report of ``cluster``'s stream, validated and, when it is a delta, merged onto
        ``held`` (the stream's previous report; nothing is applied yet).

        Raises:
            _RefusedReportError: another cluster's report, an invalid one, or a delta on a
                report this stream did not carry (INVALID_ARGUMENT: the control plane
                reconnects and starts whole).
        """
        if report.cluster != cluster:
            raise _RefusedReportError(
                f"certificate is for {cluster}, report for {report.cluster}",
                grpc.StatusCode.PERMISSION_DENIED,
            )
        refused = delta.controller_refuses(cluster, report.protocol)
        if refused is not None:
            raise _RefusedReportError(refused, grpc.StatusCode.FAILED_PRECONDITION)
        try:
            return delta.merge_report(held, report), traffic_from_proto(report)
        except (InvalidDocumentError, delta.UpdateGapError) as err:
            raise _RefusedReportError(
                f"invalid report: {err}", grpc.StatusCode.INVALID_ARGUMENT
            ) from err

    def _accept(
        self,
        cluster: str,
        body: ClusterReport,
        traffic: TrafficTable | None,
        trace: sync_pb2.ChangeTrace,
    ) -> None:
        """Apply a validated report (:meth:`_checked`); ``trace``: the report's, when it
        carries a change (stamped here with its arrival, for the propagation trace).

        Raises:
            _RefusedReportError: UNAVAILABLE, this replica cannot store it.
        """
        received = trace_from_proto(trace) if trace.origin_cluster == cluster else None
        if received is not None:
            received = replace(received, received_at=time.time())
        if traffic is not None:
            self._hub.report_traffic(cluster, traffic)
        try:
            self._hub.report(cluster, body, trace=received)
        except StoreError as err:
            if not err.retryable:
                raise
            raise _RefusedReportError(  # another replica may have its database
                "this controller replica lost its database; try another",
                grpc.StatusCode.UNAVAILABLE,
            ) from err

    def _outgoing(
        self, whole: sync_pb2.ControllerUpdate, last: sync_pb2.ControllerUpdate | None
    ) -> sync_pb2.ControllerUpdate:
        """``whole`` as sent: a delta on ``last`` (the stream's previous update, None for
        its first or for a control plane older than protocol 2), counted in the metrics."""
        message = delta.delta(last, whole) if last is not None else whole
        kind = "delta" if message.base_version else "whole"
        self._hub.metrics.update_messages.labels(kind).inc()
        self._hub.metrics.update_bytes.labels(kind).inc(message.ByteSize())
        return message

    async def Sync(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[sync_pb2.ClusterReport],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[sync_pb2.ControllerUpdate]:
        """Receive reports, send updates (see the module docstring)."""
        if not self._hub.replica.healthy:
            await context.abort(  # raises
                grpc.StatusCode.UNAVAILABLE,
                "this controller replica lost its database; try another",
            )
        pems = list(context.auth_context().get("x509_pem_cert") or [])
        cluster, reason = peer_cluster(
            pems[0] if pems else None, self._trust_domain, self._hub.store.cluster
        )
        if cluster is None:
            log.warning("sync stream refused: %s", reason)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)  # raises
        # a stream counts from its first accepted report: one that is refused must not
        # replace the cluster's working stream (SyncHub.attach closes the older one)
        reports = aiter(request_iterator)
        first = await anext(reports, None)
        if first is None:
            return
        try:
            checked = self._checked(cluster, first)
        except _RefusedReportError as err:
            log.warning("sync stream of %s refused: %s", cluster, err)
            await context.abort(err.code, str(err))  # raises
        peer = delta.spoken(first.protocol)
        incremental = peer >= delta.INCREMENTAL
        queue = self._hub.attach(cluster)
        log.info("sync stream open: %s", cluster)

        async def read() -> None:
            held, traffic = checked
            self._accept(cluster, held.report, traffic, first.trace)
            async for report in reports:
                held, traffic = self._checked(cluster, report, held)
                self._accept(cluster, held.report, traffic, report.trace)

        reader = asyncio.create_task(read())
        last: sync_pb2.ControllerUpdate | None = None  # the whole update sent last
        last_dropped: list[str] = []  # what the previous update left out (said once)
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    try:
                        reader.result()
                    except _RefusedReportError as err:
                        await context.abort(err.code, str(err))
                    return  # the control plane closed its side
                item = getter.result()
                if isinstance(item, Closed):
                    code = grpc.StatusCode.UNAVAILABLE if item.retryable else None
                    await context.abort(code or grpc.StatusCode.PERMISSION_DENIED, item.reason)
                whole, last_dropped = _for_peer(cluster, peer, item, last_dropped)
                yield self._outgoing(whole, last if incremental else None)
                last = whole
        finally:
            reader.cancel()
            self._hub.detach(cluster, queue)
            log.info("sync stream closed: %s", cluster)
