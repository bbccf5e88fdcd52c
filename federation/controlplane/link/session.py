"""The sync stream of a joined control plane (``meshfed.sync.v1.FederationSync/Sync``).

The control plane authenticates with an SVID for
``spiffe://<td>/ns/meshfed-system/sa/controlplane-<cluster>`` that its own intermediate issues
(renewed at half life by :class:`trust.rotation.SvidRotator`, picked up on the next connect)
and checks the controller's certificate against the trust bundle and the name in
``JoinInfo.sync_server_name``. It sends its report (:mod:`federation.controlplane.report`) at
once, after every change and at least every third of the lease; it applies each
``ControllerUpdate`` whole -- imports and centrally applied exports replace the previous ones,
a new trust bundle is written and handed to the identity manager -- and persists it right
after (:class:`federation.controlplane.link.state.UpdateWriter`), so a control plane
restarted while the controller is away serves the same imports. Updates
arrive as deltas (sync protocol 2, :mod:`federation.sync.delta`): the first of a stream is
whole, the rest are merged onto it, validating only the documents they bring; a delta on a
version it does not hold ends the stream, and the next one starts whole (a full resync).

When the stream breaks it reconnects with exponential backoff (0.5 s doubling to 10 s, with
jitter) and keeps serving its last state meanwhile (static stability). When the controller
refuses the cluster itself (``PERMISSION_DENIED`` / ``UNAUTHENTICATED``: removed from the
federation, or its identity is not accepted), or the two speak sync protocols that cannot be
bridged (``FAILED_PRECONDITION`` from the controller, or an update this release cannot
read), retrying cannot help: the link stops, logs why and what to do, and keeps
:attr:`FederationLink.stopped` set to the reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc

from federation.controlplane.link import state
from federation.controlplane.link.export_gate import ExportGate, GatewaysReady
from federation.controlplane.link.join import JoinInfo
from federation.controlplane.registry import RegistryState, ServiceRegistry
from federation.controlplane.report import cluster_report
from federation.controlplane.trace import PropagationTracker
from federation.errors import FederationError, InvalidDocumentError, UnreachableError
from federation.sync import delta
from federation.sync.convert import report_to_proto, trace_to_proto
from federation.sync.identity import CONTROL_PLANE_NAMESPACE, control_plane_service_account
from federation.sync.messages import ChangeTrace, ClusterReport, ControllerUpdate
from federation.sync.proto import sync_pb2, sync_pb2_grpc
from federation.traffic import TrafficTable
from trust.authority import LocalCertificateAuthority, issue_svid
from trust.bundle import TrustBundle
from trust.cluster_ca import ClusterCaDirectory
from trust.errors import TrustError
from trust.rotation import SvidRotator
from trust.svid import X509Svid

log = logging.getLogger(__name__)

SYNC_SVID_TTL = timedelta(hours=24)
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
#: After a registry change, wait this long for more before reporting (one report for an
#: ``apply`` of many documents and the health results that follow it); every ms of it is a
#: ms of cross-cluster propagation.
REPORT_COALESCE_S = 0.01
#: The cluster's traffic table goes with a report this often (s) once there is any.
TRAFFIC_INTERVAL_S = 2.0
#: How often (s) a report loop holding back a new export looks at the gateways again.
GATE_POLL_S = 0.1
#: gRPC status codes that mean "this cluster is refused", not "try later".
REFUSED_CODES = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})


class SyncRefusedError(FederationError):
    """The controller refused this cluster's sync stream (not retryable: removed from the
    federation, or its identity is not accepted)."""


def sync_error(err: grpc.aio.AioRpcError, address: str) -> FederationError:
    """A failed stream as a :class:`FederationError` whose ``retryable`` says whether to
    reconnect: :class:`SyncRefusedError` for :data:`REFUSED_CODES`, else
    :class:`~federation.errors.UnreachableError`."""
    text = f"sync with the controller at {address}: {err.code().name} {err.details()}"
    if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
        return delta.ProtocolError(text)
    if err.code() in REFUSED_CODES:
        return SyncRefusedError(
            text + " -- this cluster is no longer accepted; register it again"
            " (meshfed cluster join) and restart the control plane with a new --join-token"
        )
    return UnreachableError(text, status=0)


def backoff_delays(
    initial_s: float = BACKOFF_INITIAL_S,
    max_s: float = BACKOFF_MAX_S,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Successive reconnect delays (s): doubling from ``initial_s`` up to ``max_s``, each
    drawn uniformly from its upper half (jitter, so clusters do not reconnect in lock step)."""
    r = rng or random.Random()  # noqa: S311 - jitter, not security
    delay = initial_s
    while True:
        yield delay / 2 + r.random() * delay / 2
        delay = min(delay * 2, max_s)


class FederationLink:
    """The sync client of one joined control plane (see the module docstring).

    Args:
        info: from :func:`~federation.controlplane.link.join.join` or ``federation.json``.
        state_dir: holds ``federation.json`` and ``ca/``.
        ca: the cluster's intermediate CA (issues the sync SVID).
        on_bundle: called with the new :class:`TrustBundle` when the controller sends one.
        gateway: this cluster's east-west gateway ``host:port`` as reported ("" if none).
        zone_gateways: zone -> ``host:port`` of that zone's own gateway, as reported.
        rtt_ms: other cluster -> measured RTT (ms), reported as is (owned by the RTT prober).
        crl_pem: returns this cluster CA's current CRL (PEM), sent with every report.
        on_crls: called with every member's CRL (cluster -> PEM) from each update.
        on_cas: called with every member's CA certificate (cluster -> PEM) from each update.
        on_federation: called with the foreign trust domains' bundles (domain -> PEM) and the
            roots' CRLs (PEM) from each update (SPIFFE federation).
        on_ca: called with the new CA after the controller re-signed the intermediate.
        on_update: called after each controller update is applied (metrics).
        on_applied: called with each whole update once applied (the leader of several
            replicas shares it: :mod:`federation.controlplane.kube.replicas`).
        traffic: returns a snapshot of the cluster's traffic table (sent every
            :data:`TRAFFIC_INTERVAL_S` once it has an edge), or None.
        gateways_ready: whether this cluster's gateways hold a registry version (a new
            export is reported once they do: :mod:`~federation.controlplane.link.export_gate`);
            call :meth:`gateway_synced` when one holds a new snapshot.
    """

    def __init__(
        self,
        info: JoinInfo,
        *,
        state_dir: Path,
        registry: ServiceRegistry,
        ca: LocalCertificateAuthority,
        on_bundle: Callable[[TrustBundle], None],
        gateway: str = "",
        zone_gateways: Mapping[str, str] | None = None,
        rtt_ms: dict[str, float] | None = None,
        crl_pem: Callable[[], str] = lambda: "",
        on_crls: Callable[[dict[str, str]], None] = lambda _crls: None,
        on_cas: Callable[[dict[str, str]], None] = lambda _cas: None,
        on_federation: Callable[[dict[str, str], str], None] = lambda _b, _crl: None,
        on_ca: Callable[[LocalCertificateAuthority], None] = lambda _ca: None,
        on_update: Callable[[], None] = lambda: None,
        traffic: Callable[[], TrafficTable | None] = lambda: None,
        tracker: PropagationTracker | None = None,
        on_applied: Callable[[ControllerUpdate], None] = lambda _update: None,
        gateways_ready: GatewaysReady = lambda _version: None,
    ) -> None:
        self._gate = ExportGate(gateways_ready)
        self._on_applied = on_applied
        self._traffic = traffic
        self._tracker = tracker
        self._on_ca = on_ca
        self._on_update = on_update
        self._sync_svid_stale = False
        self._csr = ClusterCaDirectory(state_dir / "ca").renewal_csr(ca.trust_domain, info.cluster)
        self.info = info
        self._crl_pem = crl_pem
        self._on_crls = on_crls
        self._on_cas = on_cas
        self._on_federation = on_federation
        self._state_dir = state_dir
        self._writer = state.UpdateWriter(state_dir)
        self._registry = registry
        self._ca = ca
        self._on_bundle = on_bundle
        self._gateway = gateway
        self._zone_gateways = dict(zone_gateways or {})
        self._changed = asyncio.Event()
        sid = ca.trust_domain.workload_id(
            CONTROL_PLANE_NAMESPACE, control_plane_service_account(info.cluster)
        )

        async def issue() -> X509Svid:
            return issue_svid(self._ca, sid, SYNC_SVID_TTL)

        self._rotator = SvidRotator(issue)
        self.rtt_ms = rtt_ms if rtt_ms is not None else {}
        self.connected = False
        self.stopped: str | None = None
        self.last_update_version = 0
        self._controller_protocol = delta.WHOLE_UPDATES
        registry.subscribe(self._on_registry)

    def gateway_synced(self) -> None:
        """A gateway of this cluster holds a new snapshot: a new export held back for it may
        go out now."""
        if self._gate.deadline() is not None:
            self._changed.set()

    def set_gateway(self, gateway: str) -> None:
        """The east-west gateway's address changed (a load balancer got its address): the
        next report carries it."""
        if gateway != self._gateway:
            log.info("east-west gateway now %s", gateway)
            self._gateway = gateway
            self._changed.set()

    def set_zone_gateway(self, zone: str, gateway: str) -> None:
        """``zone``'s own gateway has this address (its load balancer got one): the next
        report carries it."""
        if self._zone_gateways.get(zone) != gateway:
            log.info("east-west gateway of zone %s now %s", zone, gateway)
            self._zone_gateways[zone] = gateway
            self._changed.set()

    def restore(self) -> None:
        """Install the last persisted update (before the control plane answers proxies).

        Raises:
            InvalidDocumentError: the stored update is invalid.
        """
        update = state.load_last_update(self._state_dir)
        if update is not None:
            self._install(update)
            log.info("restored %d imports from the last controller update", len(update.imports))

    def _install_intermediate(self, chain_pem: bytes) -> None:
        """Keep a re-signed intermediate (same key; verified by the directory) and use it:
        SVIDs are issued with the new chain, the sync SVID is renewed at once."""
        ca_dir = ClusterCaDirectory(self._state_dir / "ca")
        if ca_dir.cert_path.read_bytes() == chain_pem:
            return
        try:
            ca_dir.store(chain_pem, ca_dir.bundle_path.read_bytes())
            self._ca = ca_dir.authority(self._ca.trust_domain)
        except TrustError as err:  # keep serving with the intermediate we have
            log.error("not installing the intermediate the controller sent: %s", err)
            return
        self._sync_svid_stale = True
        log.info("installed the intermediate CA the controller re-signed")
        self._on_ca(self._ca)

    def _install(self, update: ControllerUpdate) -> None:
        self._registry.set_federation(
            update.imports,
            update.exports,
            update.policies,
            update.price_tables,
            update.authorization_policies,
            update.plans,
            update.export_conditions,
            update.peer_authentications,
            update.sidecars,
            update.service_entries,
        )
        self._registry.set_federated_domains(tuple(sorted(update.federated_bundles)))
        self._on_crls(update.cluster_crls)
        self._on_cas(update.cluster_cas)
        self._on_federation(update.federated_bundles, update.root_crl_pem)

    def _on_registry(self, _: RegistryState) -> None:
        self._changed.set()

    async def _identity(self) -> X509Svid:
        svid = self._rotator.current
        if svid is None or self._sync_svid_stale or self._rotator.seconds_until_renewal() <= 0:
            svid = await self._rotator.rotate_once()
            self._sync_svid_stale = False
        return svid

    def report(self) -> ClusterReport:
        """The report for the current registry state."""
        report = cluster_report(
            self._registry.state,
            self.info.cluster,
            self._gateway,
            self.rtt_ms,
            zone_gateways=self._zone_gateways,
        )
        return report.model_copy(
            update={"crl_pem": self._crl_pem(), "intermediate_csr_pem": self._csr.decode()}
        )

    async def _reports(self) -> AsyncIterator[sync_pb2.ClusterReport]:
        last: ClusterReport | None = None
        last_sent = traffic_sent = 0.0
        number = 0  # reports of this stream
        whole: sync_pb2.ClusterReport | None = None  # the last one, whole
        while True:
            self._changed.clear()  # before reading the state: a later change wakes us
            now = time.monotonic()
            body = self._gate.apply(self.report(), self._registry.state.version, now)
            heartbeat_s = max(0.5, self.info.lease_seconds / 3)
            traffic = self._traffic() if now - traffic_sent >= TRAFFIC_INTERVAL_S else None
            if traffic is not None and not (traffic.edges or traffic.hops):
                traffic = None
            if body != last or now - last_sent >= heartbeat_s or traffic is not None:
                # a trace starts at a change of this cluster's services or exports, not at
                # a report that changed for another reason (a new RTT measurement)
                changed = last is not None and (
                    body.services != last.services or body.exports != last.exports
                )
                last, last_sent = body, now
                if traffic is not None:
                    traffic_sent = now
                message = report_to_proto(body, traffic)
                message.protocol = delta.PROTOCOL
                message.acked_version = self.last_update_version
                if changed:  # a change of this cluster: its propagation trace starts here
                    trace = ChangeTrace(
                        self.info.cluster,
                        self._registry.state.version,
                        self._registry.changed_at,
                        time.time(),
                    )
                    message.trace.CopyFrom(trace_to_proto(trace))
                    if self._tracker is not None:
                        self._tracker.reported(trace)
                number += 1
                message.report_version = number
                speaks_delta = self._controller_protocol >= delta.INCREMENTAL
                sent = delta.report_delta(whole, message) if whole and speaks_delta else message
                whole = message
                yield sent
            try:
                timeout = max(
                    0.05,
                    min(heartbeat_s - (time.monotonic() - last_sent), TRAFFIC_INTERVAL_S),
                )
                if self._gate.deadline() is not None:  # a gateway may be ready without a sync
                    timeout = min(timeout, GATE_POLL_S)
                await asyncio.wait_for(self._changed.wait(), timeout)
                await asyncio.sleep(REPORT_COALESCE_S)
            except TimeoutError:
                pass

    def _apply(self, update: ControllerUpdate) -> None:
        if update.trust_bundle_pem:
            ca_dir = ClusterCaDirectory(self._state_dir / "ca")
            if ca_dir.update_bundle(update.trust_bundle_pem):
                bundle = TrustBundle.from_pem(
                    self._ca.trust_domain, update.trust_bundle_pem, source="controller update"
                )
                log.info("new trust bundle from the controller (%d roots)", len(bundle.roots))
                self._on_bundle(bundle)
        if update.intermediate_chain_pem:
            self._install_intermediate(update.intermediate_chain_pem.encode())
        info = self.info
        if update.lease_seconds:
            info = replace(info, lease_seconds=float(update.lease_seconds))
        if update.sync_addresses and update.sync_addresses != info.sync_addresses:
            log.info("controller replicas: %s", ", ".join(update.sync_addresses))
            info = replace(info, sync_addresses=list(update.sync_addresses))
        if info != self.info:
            state.save_join(self._state_dir, info)
            self.info = info
        self._install(update)
        self.last_update_version = update.version
        self._writer.submit(update)  # served first, persisted after (state's docstring)
        self._on_update()
        self._on_applied(update)
        log.info(
            "controller update v%d: %d imports, %d exports, %d policies",
            update.version,
            len(update.imports),
            len(update.exports),
            len(update.policies)
            + len(update.price_tables)
            + len(update.authorization_policies)
            + len(update.peer_authentications)
            + len(update.sidecars)
            + len(update.service_entries),
        )

    def close(self) -> None:
        """Persist what is pending and stop the writer (on stop)."""
        self._writer.close()

    def follow(self, update: ControllerUpdate) -> None:
        """Apply an update the leader replica applied (a follower does not sync itself)."""
        self._apply(update)

    def addresses(self) -> list[str]:
        """The sync addresses to try, the one last in sync first (see
        :attr:`JoinInfo.sync_addresses`)."""
        known = self.info.sync_addresses or [self.info.sync_address]
        return [self.info.sync_address] + [a for a in known if a != self.info.sync_address]

    async def _session(self, on_update: Callable[[], None]) -> None:
        svid = await self._identity()
        bundle_path = ClusterCaDirectory(self._state_dir / "ca").bundle_path
        credentials = grpc.ssl_channel_credentials(
            root_certificates=bundle_path.read_bytes(),
            private_key=svid.private_key_pem(),
            certificate_chain=svid.chain_pem(),
        )
        options = [("grpc.ssl_target_name_override", self.info.sync_server_name)]
        async with grpc.aio.secure_channel(
            self.info.sync_address, credentials, options=options
        ) as channel:
            stub = sync_pb2_grpc.FederationSyncStub(channel)  # type: ignore[no-untyped-call]
            self._controller_protocol = delta.WHOLE_UPDATES  # until its first update says
            call = stub.Sync(self._reports())
            held: delta.HeldUpdate | None = None
            async for message in call:
                self._controller_protocol = delta.spoken(message.protocol)
                refused = delta.control_plane_refuses(message.protocol)
                if refused is not None:
                    call.cancel()
                    raise delta.ProtocolError(refused)
                received_at = time.time()
                held = delta.merge(held, message)
                self._apply(held.update)
                if self._tracker is not None and held.update.trace is not None:
                    self._tracker.applied(
                        held.update.trace, received_at, self._registry.state.version
                    )
                if not self.connected:
                    log.info("in sync with the controller at %s", self.info.sync_address)
                self.connected = True
                on_update()

    async def run(self) -> None:
        """Sync until cancelled, reconnecting with backoff; returns when the controller
        refuses this cluster (see the module docstring). A broken stream moves to the next
        controller replica (:meth:`addresses`) at once; the backoff starts when every
        replica was tried."""
        delays = backoff_delays()
        tried: set[str] = set()
        while True:
            reset = False

            def on_update() -> None:
                nonlocal reset
                reset = True

            try:
                await self._session(on_update)
                log.warning("the controller closed the sync stream")
            except grpc.aio.AioRpcError as err:
                failure = sync_error(err, self.info.sync_address)
                if not failure.retryable:
                    self.connected = False
                    self.stopped = str(failure)
                    log.error("%s; stopped syncing (serving the last state)", failure)
                    return
                log.warning("%s", failure)
            except delta.ProtocolError as err:
                self.connected = False
                self.stopped = str(err)
                log.error("%s; stopped syncing (serving the last state)", err)
                return
            except delta.UpdateGapError as err:
                log.warning("%s", err)
            except (InvalidDocumentError, OSError, FederationError, TrustError) as err:
                log.error("sync with the controller failed: %s", err)
            self.connected = False
            if reset:
                delays = backoff_delays()
                tried.clear()
            tried.add(self.info.sync_address)
            untried = [a for a in self.addresses() if a not in tried]
            if untried:
                log.info("trying controller replica %s", untried[0])
                self.info = replace(self.info, sync_address=untried[0])
                continue
            tried.clear()  # every replica failed: wait, then start over from the next one
            rotation = self.addresses()
            self.info = replace(self.info, sync_address=rotation[1 % len(rotation)])
            await asyncio.sleep(next(delays))
