"""The Aggregated Discovery Service: state-of-the-world and delta xDS over one gRPC stream.

The server sees only :class:`~federation.controlplane.snapshot.SnapshotSource` and
:class:`StreamCallbacks`; it never builds configuration itself. Protocol rules (Envoy docs,
"xDS REST and gRPC protocol"):

- The server runs only behind mutual TLS; the first request carries the node, and a node
  whose claimed identity is not its client certificate's is refused with PERMISSION_DENIED
  before anything is sent (:meth:`StreamCallbacks.on_stream_open` decides).
- Nothing is sent until the source has a snapshot for the node,
  so a proxy is never answered before the control plane's state is loaded.
- A request whose ``response_nonce`` is not the last nonce sent for its type is stale and
  ignored (SotW).
- A request with ``error_detail`` is a NACK: recorded with its message; the proxy keeps its
  last good version and nothing is re-sent until the snapshot changes.
- After a CDS (LDS) response, Envoy re-requests EDS (RDS) with an unchanged version and nonce
  while clusters (listeners) warm; that request is answered, else warming waits for the 15 s
  initial-fetch timeout. Only the clusters the push added or changed warm, and the answer
  carries their EDS (a cluster's EDS resource is named as the cluster), not every subscribed
  one; after an LDS push, every subscribed RDS. Delta streams get that EDS (RDS) pushed
  right after the CDS (LDS) response.
- LDS and CDS with no resource names (or ``*``) are wildcard subscriptions (Envoy); other
  types, and gRPC's named LDS/CDS, get only the names asked for.
- Only what changed is sent. A snapshot change pushes only the types whose version changed
  (content hashes). Delta streams get only the changed and removed resources. SotW streams
  get the whole state of the world for LDS and CDS, whose responses must hold every resource,
  but for EDS and RDS only the resources that changed since the snapshot the stream last
  sent: in SotW those types are incremental, and a resource left out of a response is kept
  (xDS protocol, "Grouping Resources into Responses"). The first response gets everything
  subscribed, a subscription that grew the names it added, the re-request after a CDS push
  the re-warming clusters' EDS (after an LDS push, every subscribed RDS).
- Bytes, not messages, are queued for SotW streams: a response's resources are serialized
  once per snapshot and name set (:meth:`Snapshot.response_body`) and shared by every
  stream of the proxy class; each stream appends its own version and nonce.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from federation.ca.service import peer_spiffe_id
from federation.controlplane import resource
from federation.controlplane.metrics import ControlPlaneMetrics
from federation.controlplane.snapshot import Snapshot, SnapshotSource
from federation.controlplane.status import ProxyStatus, StatusRegistry

log = logging.getLogger(__name__)


class StreamCallbacks(Protocol):
    """Hooks the server calls; the control plane uses them to build snapshots on demand."""

    async def on_stream_open(self, node: base_pb2.Node, peer: str | None) -> str:
        """A proxy connected; return the key its snapshots are stored under.

        ``peer`` is the SPIFFE ID of the proxy's verified client certificate (None without).

        Raises:
            ValueError: the node description is unusable (the stream is refused with
                INVALID_ARGUMENT).
            PermissionError: the node claims another identity than its certificate's
                (PERMISSION_DENIED).
            Exception: anything else: its configuration cannot be made (INTERNAL).
        """
        ...

    def on_stream_closed(self, node_id: str) -> None:
        """The proxy's stream ended."""
        ...


#: Called with a node id and a snapshot's :attr:`~Snapshot.serial` once the node holds that
#: snapshot: every type as of it (or a later one) ACKed, nothing owed (:class:`_SyncTracking`).
Synced = Callable[[str, int], None]

_nonces = itertools.count(1)


def _nonce() -> str:
    return str(next(_nonces))


@dataclass
class _SotwType:
    names: frozenset[str] = frozenset()
    wildcard: bool = False
    sent_version: str | None = None
    nonce: str = ""
    owed: bool = False
    # what an owed response must carry besides the changes: the EDS of the clusters the last
    # CDS pushes added or changed (they warm anew); None: every subscribed resource
    rewarm: frozenset[str] | None = None
    # the per-resource versions of the snapshot the last response came from (its
    # Snapshot.versions_of the type; not the snapshot, which would stay in memory with it)
    sent: Mapping[str, str] | None = None


def _rewarmed(type_url: str, changed: frozenset[str]) -> frozenset[str] | None:
    """The EDS resources Envoy waits for after a CDS push of ``changed`` clusters, or None
    (every subscribed one) after an LDS push. Only a cluster the push added or changed is
    warmed anew; a cluster's EDS resource is named as the cluster
    (``eds_cluster_config.service_name``, as :mod:`federation.controlplane.generate.clusters`
    makes every EDS cluster), so only the changed clusters' EDS goes -- not all 4,000 of a
    1,000-service sidecar for every added service. A listener's route configurations are
    not named after it. Pure."""
    return changed if type_url == resource.CLUSTER else None


_NAME_SETS: dict[frozenset[str], frozenset[str]] = {}


def _shared(names: frozenset[str], snapshot: Snapshot | None, type_url: str) -> frozenset[str]:
    """One frozenset object for equal subscriptions: the snapshot's own name set when the
    stream asks for all of them (a sidecar asks EDS for every cluster), else an interned
    copy. A thousand streams subscribed to a thousand names hold one set, not a thousand."""
    if snapshot is not None and names == (every := snapshot.names(type_url)):
        return every
    found = _NAME_SETS.get(names)
    if found is None:
        if len(_NAME_SETS) >= 256:
            _NAME_SETS.pop(next(iter(_NAME_SETS)))
        found = _NAME_SETS[names] = names
    return found


class Outgoing:
    """One response on its way to gRPC, handed over once: gRPC keeps the last object a
    stream yielded until the next one, so an idle stream would hold its last response (a
    whole EDS of a thousand services, on each of a thousand streams); this wrapper gives its
    contents up when serialized (:func:`serialize_response`)."""

    __slots__ = ("response",)

    def __init__(self, response: bytes | Message) -> None:
        self.response: bytes | Message | None = response


def _names_type() -> Any:
    """A message of ``DiscoveryRequest``'s ``resource_names`` (field 3) alone: parsing a
    request into it and serializing it again gives the wire bytes of its names without
    making a Python string of any of them."""
    proto = descriptor_pb2.FileDescriptorProto(name="meshfed_ads_names.proto", package="meshfed")
    proto.message_type.add(name="ResourceNames").field.add(
        name="resource_names",
        number=3,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    return message_factory.GetMessages([proto])["meshfed.ResourceNames"]


_ResourceNames = _names_type()
#: wire bytes of a request's names -> their frozenset, shared by every stream (bounded)
_NAMES_BY_WIRE: dict[bytes, frozenset[str]] = {}


@dataclass(frozen=True, slots=True)
class SotwRequest:
    """A received SotW request and its resource names, read once per distinct list: a
    sidecar repeats its whole EDS subscription (thousands of names) in every ACK, and a
    thousand streams ACK every push; making those names Python strings cost 0.8 ms per ACK
    (4,000 names), looking the list up by its wire bytes about a third of it, comparing the
    run of names with the lists seen lately a fifth (:func:`read_sotw_request`).
    ``message``: the request, possibly without its ``resource_names`` (use ``names``)."""

    message: discovery_pb2.DiscoveryRequest
    names: frozenset[str]


def _light_request_type() -> Any:
    """``DiscoveryRequest`` without ``resource_names`` (field 3): parsing an ACK into it makes
    no string of its thousands of names (they stay unknown bytes, then are dropped)."""
    proto = descriptor_pb2.FileDescriptorProto()
    discovery_pb2.DESCRIPTOR.CopyToProto(proto)
    (request,) = [m for m in proto.message_type if m.name == "DiscoveryRequest"]
    fields = [f for f in request.field if f.number != 3]
    del request.field[:]
    request.field.extend(fields)
    del proto.message_type[:]
    proto.message_type.append(request)
    proto.name, proto.package = "meshfed_ads_light.proto", "meshfed.light"
    pool = descriptor_pool.Default()  # where Envoy's types it refers to are
    return message_factory.GetMessages([proto], pool=pool)["meshfed.light.DiscoveryRequest"]


_LightRequest = _light_request_type()
#: (wire bytes of a request's run of names, their frozenset), newest first: most ACKs repeat
#: a list every stream of a class sends; they are compared, not hashed (bounded)
_RECENT_RUNS: list[tuple[bytes, frozenset[str]]] = []
_RECENT_KEPT = 8


def read_sotw_request(raw: bytes) -> SotwRequest:
    """The gRPC request deserializer of the SotW method (see :class:`SotwRequest`).

    An ACK that repeats a name list seen lately (a sidecar's EDS subscription, 4,000 names
    of 1,000 services) is read without parsing its names: the request minus its names, and
    the run of names, which is compared with the lists seen (~60 us instead of ~280 us per
    ACK; a thousand streams ACK each push). ``message`` then lacks ``resource_names``;
    read ``names``."""
    light = _LightRequest.FromString(raw)
    run = _names_run(raw, light)
    if run is not None:
        if not run:
            return SotwRequest(light, frozenset())
        for wire, names in _RECENT_RUNS:
            if len(wire) == len(run) and wire == run:
                light.DiscardUnknownFields()
                # a message of its own: the parsed one keeps the skipped names' bytes in its
                # arena (upb; discarding them does not free them), ~190 KiB for 4,000
                # names, which a stream would hold with its last request
                kept = _LightRequest()
                kept.CopyFrom(light)
                return SotwRequest(kept, names)
    message = discovery_pb2.DiscoveryRequest.FromString(raw)
    names = _names_of(raw)
    if run is not None and _only_names(run):
        _RECENT_RUNS.insert(0, (run, names))
        del _RECENT_RUNS[_RECENT_KEPT:]
    return SotwRequest(message, names)


def _names_run(raw: bytes, light: Any) -> bytes | None:
    """The bytes of ``raw`` between its fields before ``resource_names`` (1, 2) and after
    it (4-6), when ``raw`` is those fields canonically encoded (field order, as Envoy's and
    gRPC's protobuf write them) around that run; None otherwise, and for a first request
    (it carries the node: rare, read the long way)."""
    if light.HasField("node"):
        return None
    before = _LightRequest(version_info=light.version_info).SerializeToString()
    after = _LightRequest(type_url=light.type_url, response_nonce=light.response_nonce)
    if light.HasField("error_detail"):
        after.error_detail.CopyFrom(light.error_detail)
    tail = after.SerializeToString()
    if len(before) + len(tail) > len(raw) or not (raw.startswith(before) and raw.endswith(tail)):
        return None
    return raw[len(before) : len(raw) - len(tail)]


def _only_names(run: bytes) -> bool:
    """True when ``run`` is nothing but ``resource_names`` entries (so a request that is
    the same run between the same fields has exactly those names)."""
    only = _ResourceNames.FromString(run)
    wire: bytes = only.SerializeToString()
    only.DiscardUnknownFields()
    return wire == run and only.SerializeToString() == run


def _names_of(raw: bytes) -> frozenset[str]:
    """The names of field 3 of a request (``resource_names`` of SotW, ``resource_names_subscribe``
    of delta), one shared frozenset per distinct list (bounded cache by wire bytes)."""
    only_names = _ResourceNames.FromString(raw)
    only_names.DiscardUnknownFields()  # the version and nonce differ in every ACK
    wire = only_names.SerializeToString()
    names = _NAMES_BY_WIRE.get(wire)
    if names is None:
        names = frozenset(only_names.resource_names)
        if len(_NAMES_BY_WIRE) >= 64:  # a key is up to a few hundred KB
            _NAMES_BY_WIRE.pop(next(iter(_NAMES_BY_WIRE)))
        _NAMES_BY_WIRE[wire] = names
    return names


@dataclass(frozen=True, slots=True)
class DeltaRequest:
    """A received delta request and its subscribed names, read once per distinct list as
    :class:`SotwRequest`'s are (a sidecar subscribes EDS to every cluster at once: a
    thousand streams x 4,000 names)."""

    message: discovery_pb2.DeltaDiscoveryRequest
    subscribe: frozenset[str]


def read_delta_request(raw: bytes) -> DeltaRequest:
    """The gRPC request deserializer of the delta method (see :class:`DeltaRequest`)."""
    message = discovery_pb2.DeltaDiscoveryRequest.FromString(raw)
    return DeltaRequest(
        message, _names_of(raw) if message.resource_names_subscribe else frozenset()
    )


def serialize_response(outgoing: Outgoing) -> bytes:
    """The gRPC response serializer of the ADS methods: queued bytes go out as they are,
    messages are serialized; the :class:`Outgoing` is emptied."""
    response, outgoing.response = outgoing.response, None
    assert response is not None, "a response is serialized once"
    return response if isinstance(response, bytes) else response.SerializeToString()


@dataclass
class _DeltaType:
    """One type on a delta stream. What the client holds is either ``base`` -- the
    per-resource versions of the type in the snapshot last sent (its
    :meth:`Snapshot.versions_of`, shared by every stream: a thousand sidecars x 4,000
    names), of every name it wants there -- or, while ``base`` is None, ``known`` (name ->
    version: the client's ``initial_resource_versions``, or after its subscription
    changed)."""

    names: frozenset[str] = frozenset()
    wildcard: bool = False
    known: dict[str, str] = field(default_factory=dict)
    nonce: str = ""
    base: Mapping[str, str] | None = None

    def held(self) -> dict[str, str]:
        """``known``, made explicit from ``base`` first when it is set."""
        if self.base is not None:
            self.known = {n: v for n, v in self.base.items() if self.wildcard or n in self.names}
            self.base = None
        return self.known


class AggregatedDiscoveryService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """ADS over grpc.aio; register with :meth:`add_to_server`."""

    def __init__(
        self,
        source: SnapshotSource,
        callbacks: StreamCallbacks,
        status: StatusRegistry,
        metrics: ControlPlaneMetrics | None = None,
        on_synced: Synced | None = None,
    ) -> None:
        self._source = source
        self._callbacks = callbacks
        self.status = status
        self._metrics = metrics or ControlPlaneMetrics()
        self._on_synced = on_synced

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register this servicer on ``server`` (the generated registration, but with a
        response serializer that passes pre-serialized bytes through)."""
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self.StreamAggregatedResources,
                request_deserializer=read_sotw_request,
                response_serializer=serialize_response,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self.DeltaAggregatedResources,
                request_deserializer=read_delta_request,
                response_serializer=serialize_response,
            ),
        }
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "envoy.service.discovery.v3.AggregatedDiscoveryService", handlers
                ),
            )
        )

    async def _open(
        self, node: base_pb2.Node, context: grpc.aio.ServicerContext[Any, Any], kind: str
    ) -> str:
        try:
            return await self._callbacks.on_stream_open(node, peer_spiffe_id(context))
        except ValueError as err:
            log.warning("%s stream refused: %s", kind, err)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise  # abort raises; this keeps type checkers informed
        except PermissionError as err:
            log.warning("%s stream refused: %s", kind, err)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
            raise
        except Exception as err:  # the callbacks logged the cause
            await context.abort(grpc.StatusCode.INTERNAL, str(err))
            raise

    async def _serve(
        self,
        kind: Literal["sotw", "delta"],
        request_iterator: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[Any]:
        """One ADS stream of either kind: a reader feeds requests to the per-stream state
        machine, a watcher feeds it snapshots; responses are yielded in queue order."""
        # responses (bytes or messages), None at the end, or the error that ended the stream
        out: asyncio.Queue[Any] = asyncio.Queue()
        first = await anext(request_iterator, None)
        if first is None:
            return
        node = first.message.node if isinstance(first, SotwRequest | DeltaRequest) else first.node
        node_id = await self._open(node, context, kind)
        role = node.metadata.fields.get("meshfed.io/role")
        status = self.status.open(node_id, role.string_value if role else "", kind)
        stream: _SotwStream | _DeltaStream = (
            _SotwStream(node_id, status, out, self._metrics)
            if kind == "sotw"
            else _DeltaStream(node_id, status, out, self._metrics)
        )
        stream.on_synced = self._on_synced
        log.info("%s stream open: %s", kind, node_id)

        async def read() -> None:
            nonlocal first
            try:
                stream.handle(first)
                first = None
                async for request in request_iterator:
                    stream.handle(request)
                    # not held while the stream idles: a request may carry thousands of
                    # names (~200 KiB for a sidecar's EDS subscription of 1,000 services)
                    del request
                out.put_nowait(None)
            except Exception as err:  # the stream ends with it (the loop below raises it)
                out.put_nowait(err)

        async def watch() -> None:
            snapshot: Snapshot | None = None
            try:
                while True:
                    snapshot = await self._source.wait_for_change(node_id, snapshot)
                    stream.on_snapshot(snapshot)
            except Exception as err:
                out.put_nowait(err)

        tasks = [asyncio.create_task(read()), asyncio.create_task(watch())]
        try:
            while True:
                item = await out.get()
                if item is None:
                    break
                if isinstance(item, Exception):
                    raise item
                # not held here while suspended at the yield: gRPC resumes this generator
                # only when it wants the next response, so an idle stream kept its last one
                # (the Outgoing is emptied when serialized; the bytes were not)
                outgoing, item = Outgoing(item), None
                yield outgoing
        finally:
            for task in tasks:
                task.cancel()
            self.status.close(status)
            self._callbacks.on_stream_closed(node_id)
            log.info("%s stream closed: %s", kind, node_id)

    async def StreamAggregatedResources(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        """State-of-the-world ADS stream (see the module docstring)."""
        async for response in self._serve("sotw", request_iterator, context):
            yield response

    async def DeltaAggregatedResources(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[DeltaRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        """Delta (incremental) ADS stream (see the module docstring)."""
        async for response in self._serve("delta", request_iterator, context):
            yield response


class _SyncTracking:
    """Which of a stream's snapshots its proxy holds, for propagation traces
    (:mod:`federation.controlplane.trace`).

    The snapshots a stream is given are numbered in order. Per type, the responses sent and
    not yet ACKed are kept with the number of the snapshot each was sent from; an ACK of one
    (also of an older nonce, which SotW otherwise ignores as stale: Envoy applies and ACKs
    responses in order) means the proxy holds that type as of every snapshot up to the next
    response still in flight, or the current one. A type with nothing in flight holds the
    current snapshot's content (it did not change, or its change sent nothing the proxy
    subscribes to). The proxy holds snapshot *k* once every type holds it and nothing is
    owed; each snapshot is reported once, in order (``on_synced``), also when a newer one
    came before the ACK -- a change is in force when the first snapshot carrying it is
    held, not when the proxy has caught up with every later one. A NACK advances nothing."""

    node_id: str
    snapshot: Snapshot | None
    types: dict[str, Any]

    #: snapshots given and not yet held that are remembered (a proxy that never ACKs)
    GIVEN_KEPT = 64

    def _init_tracking(self) -> None:
        self._index = 0  # the number of the current snapshot, from 1
        # (number, serial) of the snapshots given and not yet held
        self._given: collections.deque[tuple[int, int]] = collections.deque()
        self._inflight: dict[str, list[tuple[str, int]]] = {}  # type -> [(nonce, number)]
        self._held: dict[str, int] = {}  # type -> newest snapshot number the proxy holds
        self.on_synced: Synced | None = None

    def _given_snapshot(self, snapshot: Snapshot) -> None:
        self._index += 1
        self._given.append((self._index, snapshot.serial))
        if len(self._given) > self.GIVEN_KEPT:
            self._given.popleft()

    def _sent(self, type_url: str, nonce: str) -> None:
        self._inflight.setdefault(type_url, []).append((nonce, self._index))

    def _acked(self, type_url: str, nonce: str) -> None:
        sent = self._inflight.get(type_url)
        if not sent:
            return
        for i, (sent_nonce, _) in enumerate(sent):
            if sent_nonce == nonce:
                del sent[: i + 1]
                self._held[type_url] = sent[0][1] - 1 if sent else self._index
                return

    def _check_synced(self) -> None:
        if not self.types or self.snapshot is None:
            return
        for type_url in self.types:
            if not self._inflight.get(type_url):
                self._held[type_url] = self._index
        if any(getattr(ts, "owed", False) for ts in self.types.values()):
            return
        newest = min(self._held.get(t, 0) for t in self.types)
        while self._given and self._given[0][0] <= newest:
            _, serial = self._given.popleft()
            if self.on_synced is not None:
                self.on_synced(self.node_id, serial)


class _SotwStream(_SyncTracking):
    """Per-stream SotW state machine; all methods run on the event loop, no awaits inside."""

    def __init__(
        self,
        node_id: str,
        status: ProxyStatus,
        out: asyncio.Queue[bytes | None],
        metrics: ControlPlaneMetrics | None = None,
    ) -> None:
        self.node_id = node_id
        self.status = status
        self.out = out
        self.metrics = metrics or ControlPlaneMetrics()
        self.snapshot: Snapshot | None = None
        self.types: dict[str, _SotwType] = {}
        self._init_tracking()

    def handle(self, request: discovery_pb2.DiscoveryRequest | SotwRequest) -> None:
        if isinstance(request, SotwRequest):
            self._handle(request.message, request.names)
        else:
            self._handle(request, frozenset(request.resource_names))
        self._check_synced()

    def _handle(self, req: discovery_pb2.DiscoveryRequest, names: frozenset[str]) -> None:
        type_url = req.type_url
        ts = self.types.setdefault(type_url, _SotwType())
        tstatus = self.status.type(type_url)
        if req.response_nonce and req.response_nonce != ts.nonce:
            if not req.HasField("error_detail"):
                self._acked(type_url, req.response_nonce)  # an older response, applied
            log.debug(
                "%s %s: stale nonce %s ignored",
                self.node_id,
                resource.short_name(type_url),
                req.response_nonce,
            )
            return
        if req.HasField("error_detail"):
            tstatus.nack_version = ts.sent_version or ""
            tstatus.nack_error = req.error_detail.message
            tstatus.last_nack_nonce = req.response_nonce
            tstatus.nack_at = time.time()
            self.metrics.nacked(type_url)
            log.warning(
                "%s NACKed %s version %s: %s",
                self.node_id,
                resource.short_name(type_url),
                ts.sent_version,
                req.error_detail.message,
            )
            return
        if req.response_nonce:
            tstatus.acked_version = req.version_info
            self._acked(type_url, req.response_nonce)
        wildcard = type_url in resource.WILDCARD_TYPES and (not names or "*" in names)
        names = names - {"*"} if "*" in names else names
        changed = (names is not ts.names and names != ts.names) or wildcard != ts.wildcard
        added = names - ts.names if changed and not wildcard else frozenset()
        if changed:
            ts.names = _shared(names, self.snapshot, type_url)
        elif names is not ts.names:
            ts.names = names  # the same names, as the next ACK will carry them: is, not ==
        ts.wildcard = wildcard
        if self.snapshot is None:
            return
        if ts.sent_version is None or (changed and type_url in resource.WILDCARD_TYPES):
            self.send(type_url, whole=True)
        elif changed or ts.owed:
            # a subscription that grew gets the names it added; an answer owed after a
            # CDS push, the re-warming clusters' EDS; both, whatever changed meanwhile
            self._send_owed(type_url, added)
        elif self.snapshot.versions.get(type_url) != ts.sent_version:
            self.send(type_url)

    def _send_owed(self, type_url: str, added: frozenset[str] = frozenset()) -> None:
        ts = self.types[type_url]
        if ts.owed and ts.rewarm is None:
            self.send(type_url, whole=True)
        else:
            self.send(type_url, extra=added | ts.rewarm if ts.owed and ts.rewarm else added)

    def _owe(self, fts: _SotwType, type_url: str, sent_before: Mapping[str, str] | None) -> None:
        """After a CDS (LDS) response Envoy re-requests EDS (RDS) and the warming clusters
        (listeners) wait for the answer: it is owed, and carries what :func:`_rewarmed`
        says (SotW's EDS is not state of the world: what a response leaves out is kept)."""
        assert self.snapshot is not None
        rewarm = None
        if sent_before is not None:
            rewarm = _rewarmed(type_url, self.snapshot.changed_since(type_url, sent_before))
        if fts.owed and (fts.rewarm is None or rewarm is None):
            rewarm = None  # an answer already owed in whole stays whole
        elif fts.owed and fts.rewarm is not None and rewarm is not None:
            rewarm = fts.rewarm | rewarm
        fts.owed, fts.rewarm = True, rewarm

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._given_snapshot(snapshot)
        for type_url in resource.PUSH_ORDER:
            ts = self.types.get(type_url)
            if ts is None:
                continue
            if ts.sent_version is None:
                self.send(type_url, whole=True)
            elif snapshot.versions.get(type_url) != ts.sent_version and ts.owed:
                self._send_owed(type_url)
            elif snapshot.versions.get(type_url) != ts.sent_version:
                self.send(type_url)
        self._check_synced()

    def send(
        self, type_url: str, *, whole: bool = False, extra: frozenset[str] = frozenset()
    ) -> None:
        """Send ``type_url`` from the current snapshot: every subscribed resource, or for
        EDS/RDS without ``whole`` only those changed since the last response's snapshot and
        the subscribed ones among ``extra`` (nothing at all when that is none)."""
        snapshot = self.snapshot
        assert snapshot is not None
        ts = self.types[type_url]
        version = snapshot.versions.get(type_url, "")
        names: frozenset[str] | None = None if ts.wildcard else ts.names
        sent_before = ts.sent
        if not whole and ts.sent is not None and type_url not in resource.WILDCARD_TYPES:
            changed = snapshot.changed_since(type_url, ts.sent)
            names = (changed | extra if extra else changed) & ts.names
            if not names:
                ts.sent_version, ts.sent = version, snapshot.versions_of(type_url)
                ts.owed, ts.rewarm = False, None
                return
        body = snapshot.response_body(type_url, names)
        count = len(snapshot.resources.get(type_url, {})) if names is None else len(names)
        ts.sent_version, ts.nonce, ts.owed, ts.rewarm = version, _nonce(), False, None
        ts.sent = snapshot.versions_of(type_url)
        tstatus = self.status.type(type_url)
        tstatus.sent_version, tstatus.sent_nonce = version, ts.nonce
        follow = resource.FOLLOW_UP.get(type_url)
        if follow in self.types:
            self._owe(self.types[follow], type_url, sent_before)
        log.debug(
            "%s <- %s v%s (%d resources)",
            self.node_id,
            resource.short_name(type_url),
            version,
            count,
        )
        self.metrics.pushed(type_url)
        self._sent(type_url, ts.nonce)
        self.out.put_nowait(
            body
            + discovery_pb2.DiscoveryResponse(
                version_info=version, type_url=type_url, nonce=ts.nonce
            ).SerializeToString()
        )


class _DeltaStream(_SyncTracking):
    """Per-stream delta state machine."""

    def __init__(
        self,
        node_id: str,
        status: ProxyStatus,
        out: asyncio.Queue[bytes | None],
        metrics: ControlPlaneMetrics | None = None,
    ) -> None:
        self.node_id = node_id
        self.status = status
        self.out = out
        self.metrics = metrics or ControlPlaneMetrics()
        self.snapshot: Snapshot | None = None
        self.types: dict[str, _DeltaType] = {}
        self._init_tracking()

    def handle(self, request: discovery_pb2.DeltaDiscoveryRequest | DeltaRequest) -> None:
        if isinstance(request, DeltaRequest):
            self._handle(request.message, request.subscribe)
        else:
            self._handle(request, frozenset(request.resource_names_subscribe))
        self._check_synced()

    def _handle(self, req: discovery_pb2.DeltaDiscoveryRequest, subscribe: frozenset[str]) -> None:
        type_url = req.type_url
        first = type_url not in self.types
        ts = self.types.setdefault(type_url, _DeltaType())
        tstatus = self.status.type(type_url)
        if first:
            ts.known = dict(req.initial_resource_versions)
            ts.wildcard = type_url in resource.WILDCARD_TYPES and not req.resource_names_subscribe
        if req.response_nonce and req.response_nonce == ts.nonce:
            if req.HasField("error_detail"):
                tstatus.nack_version = tstatus.sent_version
                tstatus.nack_error = req.error_detail.message
                tstatus.last_nack_nonce = req.response_nonce
                tstatus.nack_at = time.time()
                self.metrics.nacked(type_url)
                log.warning(
                    "%s NACKed %s: %s",
                    self.node_id,
                    resource.short_name(type_url),
                    req.error_detail.message,
                )
            else:
                tstatus.acked_version = tstatus.sent_version
                self._acked(type_url, req.response_nonce)
        elif req.response_nonce and not req.HasField("error_detail"):
            self._acked(type_url, req.response_nonce)  # an older response, applied in order
        unsubscribe = frozenset(req.resource_names_unsubscribe)
        if subscribe or unsubscribe:
            ts.held()  # the subscription changes: from here on, name by name
        if "*" in subscribe:
            ts.wildcard = True
            subscribe = subscribe - {"*"}
        if "*" in unsubscribe:
            ts.wildcard = False
        for name in unsubscribe:
            ts.known.pop(name, None)
        if subscribe or unsubscribe:
            names = subscribe if not ts.names else (ts.names | subscribe)
            ts.names = _shared(
                names - unsubscribe if unsubscribe else names, self.snapshot, type_url
            )
        if self.snapshot is not None:
            self.send(type_url, force=subscribe)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._given_snapshot(snapshot)
        for type_url in resource.PUSH_ORDER:
            if type_url in self.types:
                self.send(type_url, force=frozenset())
        self._check_synced()

    def _delta(
        self, ts: _DeltaType, type_url: str, force: Set[str]
    ) -> tuple[frozenset[str], list[str]]:
        """(changed, removed) names of ``type_url`` to send; afterwards the client holds
        the current snapshot (``ts.base``). From the last snapshot sent, by the changes
        between the two snapshots (computed once for every stream); else name by name."""
        snapshot = self.snapshot
        assert snapshot is not None
        available = snapshot.names(type_url)
        base, now = ts.base, snapshot.versions_of(type_url)
        changed: frozenset[str]
        if base is now and not force:
            changed, removed = frozenset(), []
        elif base is not None and not force:
            changed_set = snapshot.changed_since(type_url, base)
            gone = snapshot.removed_since(type_url, base)
            if not ts.wildcard:
                changed_set, gone = changed_set & ts.names, gone & ts.names
            changed, removed = changed_set, sorted(gone)
        else:
            known = ts.held()
            wanted = available if ts.wildcard or ts.names is available else ts.names & available
            if not known:  # it holds nothing yet: everything it wants
                changed_set = wanted
            else:
                changed_set = frozenset(n for n in wanted if known.get(n) != now[n] or n in force)
            changed, removed = changed_set, sorted(set(known) - available)
        ts.base, ts.known = now, {}
        return changed, removed

    def send(self, type_url: str, *, force: Set[str]) -> None:
        assert self.snapshot is not None
        ts = self.types[type_url]
        changed, removed = self._delta(ts, type_url, force)
        if not changed and not removed:
            return
        ts.nonce = _nonce()
        version = self.snapshot.versions.get(type_url, "")
        tstatus = self.status.type(type_url)
        tstatus.sent_version, tstatus.sent_nonce = version, ts.nonce
        log.debug(
            "%s <- delta %s: %d changed, %d removed",
            self.node_id,
            resource.short_name(type_url),
            len(changed),
            len(removed),
        )
        self.metrics.pushed(type_url)
        self._sent(type_url, ts.nonce)
        every = self.snapshot.names(type_url)
        names = every if len(changed) == len(every) else changed
        body = self.snapshot.delta_body(type_url, names) if changed else b""
        self.out.put_nowait(
            body
            + discovery_pb2.DeltaDiscoveryResponse(
                system_version_info=version,
                type_url=type_url,
                nonce=ts.nonce,
                removed_resources=removed,
            ).SerializeToString()
        )
        follow = resource.FOLLOW_UP.get(type_url)
        if follow in self.types and changed:
            self.send(follow, force=self._rewarming(type_url, changed))

    def _rewarming(self, type_url: str, changed: frozenset[str]) -> Set[str]:
        """The subscribed EDS (RDS) resources to send again after ``changed`` clusters
        (listeners) of ``type_url`` were sent (:func:`_rewarmed`): delta sends nothing for
        an unchanged subscribed name otherwise, and warming would wait for the 15 s
        initial-fetch timeout."""
        assert self.snapshot is not None
        fts = self.types[resource.FOLLOW_UP[type_url]]
        subscribed = (
            self.snapshot.names(resource.FOLLOW_UP[type_url]) if fts.wildcard else fts.names
        )
        rewarmed = _rewarmed(type_url, changed)
        return subscribed if rewarmed is None else rewarmed & subscribed
