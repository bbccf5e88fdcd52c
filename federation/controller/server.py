"""Wiring of the federation controller: the one place that creates and connects its parts.

Start order: trust directory (root of trust; created for ``trust_domain`` if missing) ->
the controller's own intermediate CA and sync server certificate -> SQLite state -> sync hub
(first recompute from stored reports) -> gRPC sync server (mTLS, client certificate required)
-> REST API (HTTPS with a certificate from the root of trust, :mod:`.tls`; plain HTTP only
with ``insecure_http`` on loopback) -> lease watcher. Files it writes: the admin token
(0600), the API's key and chain (``controller-api-tls/``, key 0600) and
``$MESHFED_HOME/config.yaml`` (where the CLI finds the controller and its CA).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from aiohttp import web

from federation.controller.api import ControllerContext, make_app
from federation.controller.bundle_endpoint import (
    OperatorCertificate,
    bundle_app,
    spiffe_bundle_body,
)
from federation.controller.config import ControllerConfig
from federation.controller.hub import SyncHub
from federation.controller.intermediates import IntermediateSigner
from federation.controller.roles import Replica, SoleReplica
from federation.controller.service import FederationService
from federation.controller.store import ControllerStore, SqliteStore
from federation.controller.sync import FederationSyncService
from federation.controller.tls import HttpsCertificate, ServerCertificate, certificate_addresses
from federation.controller.trust_federation import BundleRefresher, RootCrls
from federation.errors import FederationError
from federation.netaddr import is_loopback, parse_host_port
from federation.serving import (
    listen_grpc,
    load_or_create_token,
    make_grpc_server,
    serve_until_signalled,
    start_http,
    stop_all,
)
from federation.sync.identity import (
    CONTROLLER_CA_NAME,
    CONTROLLER_SERVER_NAME,
)
from federation.sync.proto import sync_pb2_grpc
from trust.files import KEY_FILE_MODE, write_atomic
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory

if TYPE_CHECKING:
    from federation.controller.replicas import PostgresReplica

log = logging.getLogger(__name__)


def default_replica_name(listen: str) -> str:
    """``<hostname>:<port>`` of ``--listen`` (stable across restarts), or
    ``<hostname>-<pid>`` for port 0."""
    _, port = parse_host_port(listen)
    return f"{socket.gethostname()}:{port}" if port else f"{socket.gethostname()}-{os.getpid()}"


class Controller:
    """A running federation controller (see the module docstring)."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self._runner: web.AppRunner | None = None
        self._bundle_runner: web.AppRunner | None = None
        self.bundle_endpoint_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.api_port = 0
        self.sync_port = 0
        self.token = ""
        self._replicated: PostgresReplica | None = None  # on PostgreSQL

    @property
    def api_url(self) -> str:
        """``https://host:port`` of the REST API (``http://`` with ``insecure_http``)."""
        host, _ = parse_host_port(self.config.listen)
        scheme = "http" if self.config.insecure_http else "https"
        return f"{scheme}://{host}:{self.api_port}"

    @property
    def sync_address(self) -> str:
        """``host:port`` of the sync service as control planes dial it (``advertise_sync``,
        else the listening address)."""
        if self.config.advertise_sync:
            return self.config.advertise_sync
        host, _ = parse_host_port(self.config.sync_listen)
        return f"{host}:{self.sync_port}"

    def _trust(self) -> TrustDirectory:
        trust = TrustDirectory(self.config.trust_dir)
        if not trust.exists():
            trust.init(TrustDomain(self.config.trust_domain))
            log.info("created a root of trust for %s in %s", self.config.trust_domain, trust.path)
        if CONTROLLER_CA_NAME not in trust.clusters():
            trust.create_intermediate(CONTROLLER_CA_NAME)
        return trust

    def _open_store(self, name: str) -> tuple[ControllerStore, Replica]:
        """The store and this controller's place among replicas: SQLite and the only one,
        or PostgreSQL and a :class:`PostgresReplica` (psycopg is imported only then)."""
        if self.config.store_dsn is None:
            store = SqliteStore(self.config.state_path)
            return store, SoleReplica(name, lambda: self.sync_address, lambda: self.api_url)
        from federation.controller.pgstore import PostgresStore
        from federation.controller.replicas import PostgresReplica

        pg = PostgresStore(self.config.store_dsn)
        log.info("state in %s (schema version %d)", pg.where, pg.schema_version)
        pg.notify_as = name
        self._replicated = PostgresReplica(
            pg, name, lambda: self.api_url, lambda: self.sync_address
        )
        return pg, self._replicated

    async def _start_watches(self) -> None:
        """The hub's background work: leases and plans always; with replicas also the
        other replicas' changes and traffic."""
        if self._replicated is not None:
            await asyncio.to_thread(self._replicated.start)
            self._tasks.append(
                asyncio.create_task(
                    self._replicated.listen(self.hub.changed_elsewhere), name="listen"
                )
            )
            self._tasks.append(asyncio.create_task(self.hub.watch_changes(), name="changes"))
            self._tasks.append(asyncio.create_task(self.hub.watch_traffic(), name="traffic"))
        self._tasks.append(asyncio.create_task(self.hub.watch_leases(), name="leases"))
        self._tasks.append(asyncio.create_task(self.hub.watch_plans(), name="plans"))

    async def start(self) -> None:
        """Start serving (see the module docstring).

        Raises:
            trust.errors.TrustError: the trust directory is unusable.
            federation.controller.store.StoreError: the state file or database has another
                schema version, or the connection string does not parse (nothing is
                written then: the store is opened before the trust directory).
            federation.controller.pgstore.UnreachableStoreError: PostgreSQL is unreachable.
            OSError: an address is in use.
        """
        cfg = self.config
        host, _ = parse_host_port(cfg.listen, what="--listen")
        if cfg.insecure_http and not is_loopback(host):
            raise FederationError(
                f"--insecure-http: the REST API carries bearer tokens; plain HTTP is allowed"
                f" only on a loopback address, not {host}"
            )
        name = cfg.replica_name or default_replica_name(cfg.listen)
        self.store, self.replica = self._open_store(name)
        self.store.clusterset_range = cfg.clusterset_ip_range
        trust = self._trust()

        def bundle_pem() -> bytes:
            return trust.bundle().to_pem()

        signer = IntermediateSigner(
            self.store, trust.root_authority, ttl=cfg.intermediate_ttl, clock=time.time
        )
        root_crls = RootCrls(trust.root_crls, lambda: tuple(trust.bundle().fingerprints()))
        self.hub = SyncHub(
            self.store,
            bundle_pem,
            lease_s=cfg.lease_s,
            authz_default=cfg.authz_default,
            signer=signer,
            replica=self.replica,
            root_crl=root_crls.pem,
            root_crl_problem=lambda: root_crls.problem,
            root_crl_retry=root_crls.retry_now,
        )
        self.hub.recompute()

        server_cert = ServerCertificate(trust, "sync server")
        credentials = grpc.dynamic_ssl_server_credentials(
            server_cert.grpc_configuration(),
            server_cert.grpc_fetch,
            require_client_authentication=True,
        )
        self._grpc = make_grpc_server()
        sync_pb2_grpc.add_FederationSyncServicer_to_server(  # type: ignore[no-untyped-call]
            FederationSyncService(self.hub, trust.trust_domain().name), self._grpc
        )
        self.sync_port = listen_grpc(self._grpc, cfg.sync_listen, "--sync-listen", credentials)
        await self._grpc.start()

        await self._start_api(trust, bundle_pem)
        await self._start_watches()
        if cfg.config_path is not None:
            write_cli_config(
                cfg.config_path,
                self.api_url,
                cfg.token_path,
                None if cfg.insecure_http else trust.bundle_pem_path,
            )
        log.info(
            "controller %s serving the API on %s and sync on %s (%d clusters)",
            name,
            self.api_url,
            self.sync_address,
            len(self.store.clusters()),
        )

    async def _start_api(self, trust: TrustDirectory, bundle_pem: Callable[[], bytes]) -> None:
        """The federation's rules behind the REST API (HTTPS unless ``insecure_http``), the
        SPIFFE bundle endpoint(s) and the refresher of foreign trust domains' bundles."""
        cfg = self.config
        self.token = load_or_create_token(cfg.token_path)
        self.service = FederationService(
            self.hub,
            trust.root_authority,
            bundle_pem,
            root_pin=lambda: trust.bundle().fingerprints()[-1],
            intermediate_ttl=cfg.intermediate_ttl,
            trust_domain=trust.trust_domain().name,
        )
        refresher = BundleRefresher(
            self.store,
            lambda: self.replica,
            trust.bundle,
            self.hub.recompute,
            on_result=self.hub.bundle_fetched,
        )
        self._tasks.append(asyncio.create_task(refresher.watch(), name="trust-bundles"))
        hint = cfg.bundle_refresh_hint_s

        def spiffe_bundle() -> bytes:
            return spiffe_bundle_body(trust.bundle(), hint)

        context = ControllerContext(
            service=self.service,
            trust_domain=trust.trust_domain().name,
            admin_token=self.token,
            sync_address=self.sync_address,
            sync_server_name=CONTROLLER_SERVER_NAME,
            spiffe_bundle=spiffe_bundle,
        )
        ssl_context = None
        if not cfg.insecure_http:
            api_host = parse_host_port(cfg.listen, what="--listen")[0]
            https = HttpsCertificate(
                trust, cfg.state_path.parent / "controller-api-tls", certificate_addresses(api_host)
            )
            ssl_context = https.load()
            self._tasks.append(asyncio.create_task(https.renew_forever(), name="api-cert"))
        self._runner, self.api_port = await start_http(
            make_app(context), cfg.listen, "--listen", ssl_context
        )
        if cfg.bundle_endpoint_listen is not None:
            await self._start_bundle_endpoint(trust, cfg.bundle_endpoint_listen, spiffe_bundle)

    async def _start_bundle_endpoint(
        self, trust: TrustDirectory, listen: str, body: Callable[[], bytes]
    ) -> None:
        """The dedicated SPIFFE bundle endpoint listener (:mod:`.bundle_endpoint`): the
        operator's certificate (``https_web``) or the controller's SVID (``https_spiffe``)."""
        cfg = self.config
        tls: OperatorCertificate | HttpsCertificate
        if cfg.bundle_endpoint_cert is not None and cfg.bundle_endpoint_key is not None:
            tls = OperatorCertificate(cfg.bundle_endpoint_cert, cfg.bundle_endpoint_key)
            context, renew = tls.load(), tls.reload_forever()
        else:
            host = parse_host_port(listen, what="--bundle-endpoint-listen")[0]
            tls = HttpsCertificate(
                trust, cfg.state_path.parent / "bundle-endpoint-tls", certificate_addresses(host)
            )
            context, renew = tls.load(), tls.renew_forever()
        self._tasks.append(asyncio.create_task(renew, name="bundle-endpoint-cert"))
        self._bundle_runner, self.bundle_endpoint_port = await start_http(
            bundle_app(body), listen, "--bundle-endpoint-listen", context
        )

    async def stop(self, grace_s: float = 0.5) -> None:
        """Stop serving; control planes keep their last state until it is back (or move to
        another replica). A leader gives up its lease first."""
        if self._replicated is not None:
            await asyncio.to_thread(self._replicated.stop)
        await stop_all(self._tasks, self._runner, self._grpc, grace_s)
        self._tasks.clear()
        if self._bundle_runner is not None:
            await self._bundle_runner.cleanup()
            self._bundle_runner = None
        if hasattr(self, "store"):
            self.store.close()
        log.info("controller stopped")


def write_cli_config(
    path: Path, api_url: str, token_path: Path, ca_file: Path | None = None
) -> None:
    """Write the CLI's config, mode 0600: ``controller`` URL, ``tokenFile``, and for HTTPS
    ``caFile`` (the trust bundle, which the API's certificate chains to) and ``serverName``
    (the DNS name in that certificate)."""
    config: dict[str, str] = {"controller": api_url, "tokenFile": str(token_path.resolve())}
    if ca_file is not None:
        config["caFile"] = str(ca_file.resolve())
        config["serverName"] = CONTROLLER_SERVER_NAME
    from federation.model.documents import to_yaml

    text = to_yaml(config)
    write_atomic(path, text.encode(), KEY_FILE_MODE)


def serve(config: ControllerConfig, started: Callable[[Controller], None]) -> None:
    """Run a controller replica until SIGTERM/SIGINT (blocks; owns the event loop);
    ``started`` is called once it serves (``meshfed controller serve`` prints its addresses)."""
    serve_until_signalled(lambda: Controller(config), started)
