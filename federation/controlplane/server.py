"""Wiring of the cluster control plane: the one place that creates and connects the parts.

Start order (a proxy is never answered before the state is loaded): trust material ->
persisted workloads -> registry -> cluster authority -> snapshot cache and builder -> gRPC
servers -> HTTP API -> health checks. Stop order is the reverse.

Two gRPC servers, both TLS with the control plane's own SVID
(:mod:`federation.controlplane.identities`):

- the **xDS port**: mutual TLS only (a client without an SVID of the trust domain fails the
  handshake); ADS, and certificate renewals authenticated by the caller's SVID;
- the **CA port**: server TLS; first certificates, authenticated by workload tokens
  (:mod:`federation.ca.service`), and the trust bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import grpc
from aiohttp import web

from federation.ca.service import CertificateServicer
from federation.ca.tokens import TokenStore
from federation.controlplane.ads import AggregatedDiscoveryService
from federation.controlplane.api import make_app
from federation.controlplane.builder import SnapshotBuilder
from federation.controlplane.config import KUBE_SYNC_WAIT_S, ControlPlaneConfig
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.health import HealthChecker
from federation.controlplane.identities import ClusterAuthority, HttpsTls
from federation.controlplane.kube.config import KubeSettings
from federation.controlplane.link import state as link_state
from federation.controlplane.link.join import JoinError, JoinInfo, join
from federation.controlplane.link.rtt import RttProber
from federation.controlplane.link.session import FederationLink
from federation.controlplane.metrics import ControlPlaneMetrics
from federation.controlplane.names import NameServicer
from federation.controlplane.peers import OwnClusterOnly
from federation.controlplane.registry import Health, ServiceRegistry
from federation.controlplane.snapshot import SnapshotCache
from federation.controlplane.state_store import StateFile
from federation.controlplane.status import StatusRegistry
from federation.controlplane.telemetry import TrafficCounter, TrafficServicer
from federation.controlplane.trace import PropagationTracker
from federation.errors import InvalidDocumentError
from federation.gc_pacing import QuietCollector
from federation.netaddr import listen_ips, parse_host_port
from federation.serving import (
    listen_grpc,
    load_or_create_token,
    make_grpc_server,
    serve_until_signalled,
    start_http,
    stop_all,
)
from federation.sync.messages import ControllerUpdate
from federation.traffic import TrafficCollector
from trust.bundle import TrustBundle
from trust.cluster_ca import ClusterCaDirectory
from trust.files import CERT_FILE_MODE, ensure_dir, write_atomic
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory

if TYPE_CHECKING:  # Kubernetes modules are imported when --kubernetes is given (below):
    # kubernetes_asyncio's import costs a control plane without Kubernetes 0.3-1.7 s of CPU
    from federation.controlplane.kube import replicas
    from federation.controlplane.kube.source import KubeSource
    from federation.controlplane.kube.tokenreview import TokenReviewer

log = logging.getLogger(__name__)

#: How often the injector's caBundle is compared with the trust bundle (s).
WEBHOOK_BUNDLE_CHECK_S = 30


class ControlPlane:
    """A running cluster control plane (see the module docstring)."""

    def __init__(self, config: ControlPlaneConfig, *, paced_gc: bool = False) -> None:
        """``paced_gc``: take CPython's full garbage collections over for the process
        (:class:`~federation.gc_pacing.QuietCollector`; its activity: registry changes,
        streams opening, proxies syncing): for a process of its own (``serve``), not for one
        that hosts other things (tests)."""
        self.config = config
        self.gc = QuietCollector() if paced_gc else None
        self.registry = ServiceRegistry()
        self.cache = SnapshotCache()
        self.status = StatusRegistry()
        self.metrics = ControlPlaneMetrics()
        self.tracker = PropagationTracker(self.metrics)
        self._tasks: list[asyncio.Task[None]] = []
        self._grpc: grpc.aio.Server | None = None
        self._ca_grpc: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None
        self.xds_port = 0
        self.api_port = 0
        self.ca_port = 0
        self.token = ""
        self.link: FederationLink | None = None
        self._reviewer: TokenReviewer | None = None
        self._webhook_runner: web.AppRunner | None = None
        self.webhook_port = 0
        self.rtt: RttProber | None = None
        self.traffic: TrafficCounter | None = None
        self._kube_api: Any = None
        #: In Kubernetes: the state replicas share, and this replica's part in the leader
        #: election (:mod:`federation.controlplane.kube.replicas`).
        self.shared: replicas.SharedState | None = None
        self.leadership: replicas.Leadership | None = None
        self._started = asyncio.Event()
        self._followed = ""  # the shared update a follower applied last (base64)
        self.kube: KubeSource | None = None

    @property
    def api_url(self) -> str:
        """``https://host:port`` of the HTTP API (HTTPS with the control plane's server
        certificate: :class:`~federation.controlplane.identities.HttpsTls`)."""
        host, _ = parse_host_port(self.config.api_listen)
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.api_port}"

    @property
    def xds_address(self) -> str:
        """``host:port`` of the ADS server."""
        host, _ = parse_host_port(self.config.xds_listen)
        return f"{host}:{self.xds_port}"

    @property
    def ca_address(self) -> str:
        """``host:port`` of the certificate service (workload tokens)."""
        host, _ = parse_host_port(self.config.ca_listen)
        return f"{host}:{self.ca_port}"

    @property
    def bundle_file(self) -> Path:
        """The trust bundle (PEM), kept current for agents on this host."""
        return self.config.state_dir / "bundle.pem"

    def _identity(self) -> dict[str, Any]:
        return {
            "caAddress": self.ca_address,
            "xdsAddress": self.xds_address,
            "serverName": self.authority.server_name,
            "trustBundle": self.authority.bundle_pem().decode(),
        }

    def _certificate_service(self, mode: Literal["token", "svid"]) -> CertificateServicer:
        a = self.authority
        return CertificateServicer(
            a.authority,
            mode,
            tokens=self.tokens if mode == "token" else None,
            ttl=self.config.svid_ttl,
            crls=a.crl_bundle,
            ca_chain=a.ca_chain_pem,
            member_cas=a.member_cas_pem,
            federated=a.federated_bundles,
            on_issued=self.metrics.issued,
            review=self._reviewer.review if mode == "token" and self._reviewer else None,
        )

    def _write_bundle(self, pem: bytes) -> None:
        write_atomic(self.bundle_file, pem, CERT_FILE_MODE)

    async def start(self) -> None:
        """Load state, then start serving (see the module docstring).

        Raises:
            trust.errors.TrustError: the CA directory has no intermediate for this cluster.
            federation.controlplane.link.join.JoinError: joining was asked for and failed.
            federation.errors.InvalidDocumentError: the persisted state is corrupt.
        """
        cfg = self.config
        ensure_dir(cfg.state_dir)
        if cfg.kubernetes is not None:
            await self._share_state(cfg.kubernetes)
        info = await self._join_info()
        if info is not None and self.leadership is not None and self.leadership.leading:
            await self._publish_identity(info.trust_domain)
        if info is not None:
            ca = ClusterCaDirectory(cfg.state_dir / "ca").authority(TrustDomain(info.trust_domain))
        else:
            ca = TrustDirectory(cfg.ca_dir).cluster_authority(cfg.cluster)
        state_file = StateFile(cfg.state_dir)
        self.registry.set_trust_domain(ca.trust_domain.name)
        self.registry.apply(state_file.load())
        self.authority = ClusterAuthority(
            ca,
            cfg.cluster,
            on_bundle=self._write_bundle,
            addresses=listen_ips(cfg.xds_listen, cfg.ca_listen, cfg.api_listen),
            revocation=info is not None,
        )
        if info is not None:
            self._link(info, ca)
        self.mesh = MeshContext(
            cfg.cluster,
            ca.trust_domain.name,
            cfg.locality,
            cfg.network,
            cfg.otlp_collector,
            cfg.telemetry,
        )
        if cfg.telemetry:
            self._count_traffic()
        self._write_bundle(self.authority.bundle_pem())
        self.tokens = TokenStore(cfg.state_dir / "workload-tokens.json")
        if cfg.kubernetes is not None:
            await self._start_kubernetes(cfg.kubernetes)
        self.builder = SnapshotBuilder(
            self.mesh, self.registry, self.cache, self.metrics, self.tracker
        )
        if self.link is not None:
            self.builder.on_gateway_synced = self.link.gateway_synced
        self._gauges()
        self.builder.ready.set()
        self._tasks.append(self.builder.start())
        if self.gc is not None:
            self.gc.install()
            collector = self.gc
            self.registry.subscribe(lambda _state: collector.activity())
            self.builder.on_stream_opened = collector.activity  # initial pushes are activity
            self._tasks.append(asyncio.create_task(collector.run(), name="paced-gc"))

        await self._start_grpc()
        await self._start_api(state_file)

        if cfg.health_checks:
            self._tasks.append(
                asyncio.create_task(HealthChecker(self.registry).run(), name="health")
            )
        if self.link is not None and self.rtt is not None and self.leadership is None:
            self._tasks.append(asyncio.create_task(self.link.run(), name="federation-sync"))
            self._tasks.append(asyncio.create_task(self.rtt.run(), name="rtt-probes"))
        self._write_endpoint()
        self._started.set()
        log.info(
            "control plane for %s serving xDS (mTLS) on %s, certificates on %s, API on %s"
            " (%d workloads loaded)",
            cfg.cluster,
            self.xds_address,
            self.ca_address,
            self.api_url,
            len(self.registry.state.workloads),
        )

    async def _start_grpc(self) -> None:
        """Serve ADS, SVID renewals, traffic reports and cluster-set names on the xDS port
        (mutual TLS, this cluster's identities only) and first certificates on the CA port
        (TLS)."""
        cfg = self.config
        self.renewals = self._certificate_service("svid")
        self.first_certificates = self._certificate_service("token")
        self._grpc = make_grpc_server(OwnClusterOnly(self.authority.authority))
        AggregatedDiscoveryService(
            self.cache, self.builder, self.status, self.metrics, self._synced
        ).add_to_server(self._grpc)
        self.renewals.add_to_server(self._grpc)
        if self.traffic is not None:
            TrafficServicer(self.traffic).add_to_server(self._grpc)
        NameServicer(self.registry).add_to_server(self._grpc)
        self.xds_port = listen_grpc(
            self._grpc,
            cfg.xds_listen,
            "--xds-listen",
            self.authority.server_credentials(require_client_auth=True),
        )
        self._ca_grpc = make_grpc_server()
        self.first_certificates.add_to_server(self._ca_grpc)
        self.ca_port = listen_grpc(
            self._ca_grpc,
            cfg.ca_listen,
            "--ca-listen",
            self.authority.server_credentials(require_client_auth=False),
        )
        await self._grpc.start()
        await self._ca_grpc.start()

    def _write_endpoint(self) -> None:
        """``<state_dir>/endpoint.json``: where this control plane serves, for the CLI and
        agents on this host."""
        cfg = self.config
        write_atomic(
            cfg.state_dir / "endpoint.json",
            json.dumps(
                {
                    "cluster": cfg.cluster,
                    "api": self.api_url,
                    "xds": self.xds_address,
                    "ca": self.ca_address,
                    "server_name": self.authority.server_name,
                    "bundle_file": str(self.bundle_file.resolve()),
                    "token_file": str((cfg.state_dir / "api-token").resolve()),
                },
                indent=2,
            ).encode(),
            CERT_FILE_MODE,
        )

    async def _start_api(self, state_file: StateFile) -> None:
        """The HTTP API over HTTPS (:class:`HttpsTls`), its token, its certificate's renewal."""
        cfg = self.config
        self.token = load_or_create_token(cfg.state_dir / "api-token")
        app = make_app(
            registry=self.registry,
            state_file=state_file,
            status=self.status,
            cache=self.cache,
            builder=self.builder,
            token=self.token,
            workload_tokens=self.tokens,
            identity=self._identity,
            federation=self._federation_state,
            metrics=self.metrics,
        )
        https = HttpsTls(self.authority, cfg.state_dir / "api-tls")
        self._runner, self.api_port = await start_http(
            app, cfg.api_listen, "--api-listen", https.load()
        )
        self._tasks.append(asyncio.create_task(https.renew_forever(), name="api-cert"))

    def _link(self, info: JoinInfo, ca: Any) -> None:
        """The federation link (and its RTT prober), with the last update restored."""
        self.rtt = RttProber(self.registry)
        self.link = FederationLink(
            info,
            state_dir=self.config.state_dir,
            registry=self.registry,
            ca=ca,
            on_bundle=self._on_bundle,
            gateway=self.config.gateway,
            zone_gateways=self.config.zone_gateways,
            rtt_ms=self.rtt.rtt_ms,
            crl_pem=lambda: self.authority.own_crl().decode(),
            on_crls=self.authority.set_member_crls,
            on_cas=self.authority.set_member_cas,
            on_federation=self.authority.set_federation,
            on_ca=self.authority.set_authority,
            on_update=self.metrics.update_received,
            traffic=lambda: self.traffic.table.copy(time.time()) if self.traffic else None,
            tracker=self.tracker,
            on_applied=self._applied,
            gateways_ready=self._gateways_hold,
        )
        self.link.restore()

    async def _share_state(self, settings: KubeSettings) -> None:
        """Stand for leader and take this cluster's identity from the shared Secret
        (:mod:`federation.controlplane.kube.replicas`); a replica that is to join waits
        until it leads (and joins) or another replica has shared the identity.

        Raises:
            replicas.SharedStateError: the Secret or ConfigMap cannot be read.
        """
        from federation.controlplane.kube import replicas
        from federation.controlplane.kube.config import api_client

        cfg = self.config
        self._kube_api = await api_client(settings)
        self.shared = replicas.SharedState(self._kube_api)
        lease = settings.leader_lease_s
        self.leadership = replicas.Leadership(
            self._kube_api, self._lead, lease, lease * 2 / 3, lease * 2 / 15
        )
        self._tasks.append(asyncio.create_task(self.leadership.run(), name="leader-election"))
        while True:
            files = await self.shared.identity()
            if files:
                replicas.write_identity(cfg.state_dir, files)
                await self._restore_shared_update()
                log.info("took this cluster's identity from the shared Secret")
                return
            if cfg.controller is None or link_state.load_join_info(cfg.state_dir) is not None:
                return  # nothing to share yet, or a state of our own to share once we lead
            if self.leadership.leading:
                return  # the leader joins, then shares
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.leadership.became_leader.wait(), replicas.IDENTITY_POLL_S
                )

    async def _restore_shared_update(self) -> None:
        """Store the shared update as this replica's last one (restored before serving)."""
        assert self.shared is not None
        info = link_state.load_join_info(self.config.state_dir)
        try:
            update = await self.shared.last_update()
        except InvalidDocumentError as err:
            log.warning("not restoring the shared update: %s", err)
            return
        if info is not None and update is not None:
            link_state.save(self.config.state_dir, info, update)

    async def _publish_identity(self, trust_domain: str) -> None:
        """Share this replica's identity files, made complete first (the injector's CA, the
        API token), when they differ from the Secret's."""
        from federation.controlplane.kube import replicas
        from federation.controlplane.kube.webhook import WebhookCertificate

        assert self.shared is not None
        cfg = self.config
        WebhookCertificate(TrustDomain(trust_domain), cfg.state_dir / "webhook-tls").ca()
        load_or_create_token(cfg.state_dir / "api-token")
        await self.shared.publish_identity(replicas.read_identity(cfg.state_dir))

    async def _lead(self) -> None:
        """What the leader of several replicas does: sync with the controller and share its
        updates, probe RTTs, write into the cluster, keep the identity Secret current."""
        await self._started.wait()
        assert self.shared is not None
        if self.kube is not None:
            self.kube.writer.changed.set()
            self.kube.status_writer.changed.set()
        work = [self.shared.write_updates(), self._publish_identity_forever()]
        if self.link is not None and self.rtt is not None:
            work += [self.link.run(), self.rtt.run()]
        try:
            await asyncio.gather(*work)
        finally:
            if self.link is not None:
                self.link.connected = False

    async def _publish_identity_forever(self) -> None:
        """Keep the Secret equal to the leader's identity files (made complete at start: the
        injector's CA by its first certificate, the token by the API)."""
        from federation.controlplane.kube import replicas

        assert self.shared is not None
        while True:
            if link_state.load_join_info(self.config.state_dir) is not None:
                try:
                    await self.shared.publish_identity(
                        replicas.read_identity(self.config.state_dir)
                    )
                except replicas.SharedStateError as err:
                    log.warning("sharing this cluster's identity: %s", err)
            await asyncio.sleep(replicas.IDENTITY_REFRESH_S)

    def _synced(self, node_id: str, serial: int) -> None:
        """A proxy holds a snapshot (every type ACKed): its propagation traces end, a
        gateway's may release a new export (:mod:`federation.controlplane.link.export_gate`),
        and pushes are going on: the paced collector waits for calm (a thousand proxies'
        initial pushes take seconds; a full collection in their middle stopped the event
        loop ~1 s at 1,000 services, bench/xds_scale.py --profile-initial)."""
        self.tracker.synced(node_id, serial)
        self.builder.synced(node_id, serial)
        if self.gc is not None:
            self.gc.activity()

    def _gateways_hold(self, version: int) -> bool | None:
        """:meth:`SnapshotBuilder.gateways_hold` (the link is made before the builder)."""
        return self.builder.gateways_hold(version)

    def _applied(self, update: ControllerUpdate) -> None:
        """A controller update was applied: the leader shares it with the other replicas."""
        if self.shared is not None and self.leadership is not None and self.leadership.leading:
            self.shared.share_update(update)

    def _follow(self, objects: dict[Any, dict[str, Any]]) -> None:
        """The shared ConfigMap changed: a follower applies the leader's update."""
        from federation.controlplane.kube import replicas

        if self.link is None or self.leadership is None or self.leadership.leading:
            return
        for config_map in objects.values():
            raw = str((config_map.get("binaryData") or {}).get(replicas.UPDATE_KEY, ""))
            if not raw or raw == self._followed:
                continue
            try:
                update = replicas.update_of(config_map)
            except InvalidDocumentError as err:
                log.error("not following the shared update: %s", err)
                continue
            if update is not None:
                self._followed = raw
                self.link.follow(update)

    async def _start_kubernetes(self, settings: KubeSettings) -> None:
        """Reflect the cluster into the registry; return once every kind was listed, or
        after :data:`KUBE_SYNC_WAIT_S` (logged: the API server is slow or away; the
        reflectors keep trying and proxies get the endpoints when they come)."""
        from federation.controlplane.kube.config import api_client
        from federation.controlplane.kube.source import KubeSource, Reflector
        from federation.controlplane.kube.tokenreview import TokenReviewer
        from federation.controlplane.kube.translate import Scope

        if self._kube_api is None:
            self._kube_api = await api_client(settings)
        self._reviewer = TokenReviewer(self._kube_api)
        self.kube = KubeSource(
            self._kube_api,
            self.registry,
            Scope(
                self.config.locality,
                settings.namespaces,
                settings.member_label,
                settings.pod_label,
            ),
            gateway_service=settings.gateway_service,
            on_gateway=lambda address: self.link.set_gateway(address) if self.link else None,
            zone_gateway_services=settings.zone_gateway_services,
            on_zone_gateway=lambda zone, address: (
                self.link.set_zone_gateway(zone, address) if self.link else None
            ),
            cluster=self.config.cluster,
        )
        if self.leadership is not None:
            leadership = self.leadership
            self.kube.writer.enabled = lambda: leadership.leading
            self.kube.status_writer.enabled = lambda: leadership.leading
        if self.shared is not None:
            shared_update = Reflector(
                "shared-update",
                self.shared.list_federation(),
                lambda: self._follow(shared_update.objects),
            )
            self._tasks.append(asyncio.create_task(shared_update.run(), name="shared-update"))
        self._tasks.append(asyncio.create_task(self.kube.run(), name="kubernetes"))
        deadline = time.monotonic() + KUBE_SYNC_WAIT_S
        while not self.kube.synced and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.kube.synced:
            self.kube.reconcile()
            log.info("kubernetes: %d workloads from the cluster", len(self.kube.own()))
        else:
            log.warning("kubernetes: not every kind listed within %ds", KUBE_SYNC_WAIT_S)
        if settings.webhook_listen is not None:
            await self._start_injector(settings)

    async def _start_injector(self, settings: KubeSettings) -> None:
        """Serve the sidecar injector (:mod:`federation.controlplane.kube.webhook`) and keep
        its configuration's caBundle equal to the trust bundle."""
        from kubernetes_asyncio.client.exceptions import ApiException

        from federation.controlplane.kube.webhook import (
            WebhookCertificate,
            namespace_labels_of,
            sync_ca_bundle,
        )
        from federation.controlplane.kube.webhook import make_app as make_webhook_app

        assert settings.webhook_listen is not None and self.kube is not None
        cert = WebhookCertificate(
            TrustDomain(self.mesh.trust_domain), self.config.state_dir / "webhook-tls"
        )
        leadership = self.leadership
        if leadership is not None:
            cert.may_make_ca = lambda: leadership.leading
        cert.issue()
        app = make_webhook_app(
            self.config.cluster,
            settings.sidecar_image,
            namespace_labels_of(self.kube.reflectors["namespaces"].objects),
        )
        self._webhook_runner, self.webhook_port = await start_http(
            app, settings.webhook_listen, "--webhook-listen", cert.context
        )
        self._tasks.append(
            asyncio.create_task(cert.renew_forever(self._shared_webhook_ca), name="webhook-cert")
        )

        async def ca_bundle() -> None:
            while True:
                try:
                    if leadership is None or leadership.leading:
                        await sync_ca_bundle(self._kube_api, cert.ca_pem)
                except (ApiException, OSError, aiohttp.ClientError) as err:
                    log.warning("webhook caBundle not updated: %s", getattr(err, "reason", err))
                await asyncio.sleep(WEBHOOK_BUNDLE_CHECK_S)

        self._tasks.append(asyncio.create_task(ca_bundle(), name="webhook-ca-bundle"))

    async def _shared_webhook_ca(self) -> None:
        """A follower takes the injector's CA from the shared Secret (the leader renews it)."""
        from federation.controlplane.kube import replicas

        if self.shared is None or self.leadership is None or self.leadership.leading:
            return
        try:
            files = await self.shared.identity()
        except replicas.SharedStateError as err:
            log.warning("reading the shared injector CA: %s", err)
            return
        replicas.write_identity(
            self.config.state_dir, {k: v for k, v in files.items() if k in replicas.WEBHOOK_CA}
        )

    def _count_traffic(self) -> None:
        """Count the sidecars' traffic (:mod:`federation.controlplane.telemetry`) and expose
        it at ``/metrics``; the access-log service is added to the xDS server."""
        counter = self.traffic = TrafficCounter(self.mesh, self.registry, time.time())
        self.metrics.registry.register(TrafficCollector(lambda: [counter.table], counter.prices))

    def _gauges(self) -> None:
        """The gauges read at scrape time (:mod:`federation.controlplane.metrics`)."""
        m = self.metrics

        def proxies() -> dict[str, float]:
            roles = [p.role or "unknown" for p in self.status.proxies() if p.connected]
            return {role: float(roles.count(role)) for role in set(roles)}

        def workloads() -> dict[str, float]:
            state = self.registry.state
            health = [state.health_of(key).value for key in state.workloads]
            return {h.value: float(health.count(h.value)) for h in Health}

        def ca_expiry() -> float:  # read each time: the intermediate is re-signed in place
            return self.authority.authority().certificate.not_valid_after_utc.timestamp()

        m.gauge("meshfed_xds_connected_proxies", "Open ADS streams by proxy role", proxies, "role")
        m.gauge("meshfed_workloads", "Local workloads by probed health", workloads, "health")
        m.gauge(
            "meshfed_ca_certificate_expiry_timestamp_seconds",
            "Unix time when this cluster's intermediate CA certificate expires",
            ca_expiry,
        )
        m.gauge(
            "meshfed_snapshot_builder_up",
            "1 while the snapshot builder runs (0: configuration changes reach no proxy)",
            lambda: float(self.builder.health_problem() is None),
        )
        m.gauge(
            "meshfed_sync_stream_up",
            "1 while the sync stream to the federation controller is open",
            lambda: None if self.link is None else float(self.link.connected),
        )

    async def _join_info(self) -> JoinInfo | None:
        """The federation this control plane joined (joining now if asked), or None."""
        cfg = self.config
        info = link_state.load_join_info(cfg.state_dir)
        if info is not None:
            if info.cluster != cfg.cluster:
                raise JoinError(
                    f"{cfg.state_dir} belongs to cluster {info.cluster!r}, not {cfg.cluster!r}"
                )
            if cfg.join_token:
                log.info(
                    "already joined the federation at %s; --join-token ignored", info.controller
                )
            return info
        if cfg.controller is None:
            return None
        if not cfg.join_token:
            raise JoinError(
                f"cluster {cfg.cluster!r} has not joined the federation yet: pass --join-token"
                f" (printed by 'meshfed cluster join {cfg.cluster}')"
            )
        info = await join(
            cfg.state_dir, cfg.cluster, cfg.controller, cfg.join_token, cfg.trust_domain
        )
        link_state.save(cfg.state_dir, info, None)
        return info

    def _federation_state(self) -> dict[str, Any] | None:
        link = self.link
        if link is None:
            return None
        return {
            "controller": link.info.controller,
            "syncAddress": link.info.sync_address,
            "connected": link.connected,
            "lastUpdateVersion": link.last_update_version,
            "stopped": link.stopped,
            # several replicas: only the leader syncs, the others follow its updates
            "role": None
            if self.leadership is None
            else ("leader" if self.leadership.leading else "follower"),
        }

    def _on_bundle(self, bundle: TrustBundle) -> None:
        self.authority.set_trust_bundle(bundle)

    async def stop(self, grace_s: float = 0.5) -> None:
        """Stop serving; proxies keep their last configuration. The leader of several
        replicas gives its Lease up first."""
        if self.leadership is not None:
            await self.leadership.stop()
        if self._ca_grpc is not None:
            await self._ca_grpc.stop(grace_s)
        await stop_all(self._tasks, self._runner, self._grpc, grace_s)
        self._tasks.clear()
        if self.link is not None:
            await asyncio.to_thread(self.link.close)
        if self._webhook_runner is not None:
            await self._webhook_runner.cleanup()
        if self._kube_api is not None:
            await self._kube_api.close()
        if self.gc is not None:
            self.gc.uninstall()
        log.info("control plane for %s stopped", self.config.cluster)


def serve(config: ControlPlaneConfig, started: Callable[[ControlPlane], None]) -> None:
    """Run a control plane until SIGTERM/SIGINT (blocks; owns the event loop); ``started``
    is called once it serves (``meshfed controlplane serve`` prints its addresses)."""
    serve_until_signalled(lambda: ControlPlane(config, paced_gc=True), started)
