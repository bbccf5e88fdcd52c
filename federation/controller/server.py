"""Wiring of the federation controller: the one place that creates and connects its parts.

Start order: trust directory (root of trust; created for ``trust_domain`` if missing) ->
the controller's own intermediate CA and sync server certificate -> SQLite state -> sync hub
(first recompute from stored reports) -> gRPC sync server (mTLS, client certificate required)
-> REST API -> lease watcher. Files it writes: the admin token (0600) and
``$MESHFED_HOME/config.yaml`` (where the CLI finds the controller).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import yaml
from aiohttp import web

from federation.controller.api import ControllerContext, make_app
from federation.controller.hub import SyncHub
from federation.controller.membership import DEFAULT_LEASE_S
from federation.controller.service import FederationService
from federation.controller.store import SqliteStore
from federation.controller.sync import FederationSyncService
from federation.netaddr import parse_host_port
from federation.serving import load_or_create_token, start_http, stop_all
from federation.sync.identity import (
    CONTROL_PLANE_NAMESPACE,
    CONTROLLER_CA_NAME,
    CONTROLLER_SERVER_NAME,
)
from federation.sync.proto import sync_pb2_grpc
from trust import pki
from trust.authority import issue_svid
from trust.files import KEY_FILE_MODE, write_atomic
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory
from trust.svid import X509Svid

log = logging.getLogger(__name__)

#: Lifetime of the controller's sync server certificate; renewed at half life.
SERVER_CERT_TTL = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Settings of ``meshfed controller serve``.

    Attributes:
        listen / sync_listen: ``host:port`` of the REST API and the gRPC sync service
            (port 0 picks a free port).
        state_path: the SQLite file.
        trust_dir: the root of trust (a :class:`trust.store.TrustDirectory`).
        trust_domain: used to create the root when ``trust_dir`` has none.
        token_path: the admin bearer token (created 0600 at first start).
        config_path: the CLI config file to write (None: do not write one).
        lease_s: heartbeat lease in seconds (a silent cluster becomes Unreachable).
    """

    listen: str
    sync_listen: str
    state_path: Path
    trust_dir: Path
    token_path: Path
    config_path: Path | None = None
    trust_domain: str = "meshfed.local"
    lease_s: float = DEFAULT_LEASE_S


class _ServerCertificate:
    """The sync server's certificate, renewed at half life on the next TLS handshake."""

    def __init__(self, trust: TrustDirectory) -> None:
        self._trust = trust
        self._svid: X509Svid | None = None

    def _issue(self) -> X509Svid:
        td = self._trust.trust_domain()
        sid = td.workload_id(CONTROL_PLANE_NAMESPACE, "controller")
        return issue_svid(
            self._trust.cluster_authority(CONTROLLER_CA_NAME),
            sid,
            SERVER_CERT_TTL,
            dns_names=[CONTROLLER_SERVER_NAME],
        )

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        self._svid = self._issue()
        assert self._svid is not None
        return grpc.ssl_server_certificate_configuration(
            [(self._svid.private_key_pem(), self._svid.chain_pem())],
            root_certificates=self._trust.bundle().to_pem(),
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration:  # None means 'keep the current'
        """Called by gRPC before every handshake: a new configuration past half life."""
        svid = self._svid
        if svid is None:
            return None  # type: ignore[return-value]
        half = svid.not_before + (svid.not_after - svid.not_before) / 2
        if pki.utcnow() < half:
            return None  # type: ignore[return-value]
        log.info("renewing the sync server certificate")
        return self.configuration()


class Controller:
    """A running federation controller (see the module docstring)."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.api_port = 0
        self.sync_port = 0
        self.token = ""

    @property
    def api_url(self) -> str:
        """``http://host:port`` of the REST API."""
        host, _ = parse_host_port(self.config.listen)
        return f"http://{host}:{self.api_port}"

    @property
    def sync_address(self) -> str:
        """``host:port`` of the sync service."""
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

    async def start(self) -> None:
        """Start serving (see the module docstring).

        Raises:
            trust.errors.TrustError: the trust directory is unusable.
            federation.controller.store.StoreError: the state file has another schema version.
            OSError: an address is in use.
        """
        cfg = self.config
        trust = self._trust()
        self.store = SqliteStore(cfg.state_path)

        def bundle_pem() -> bytes:
            return trust.bundle().to_pem()

        self.hub = SyncHub(self.store, bundle_pem, lease_s=cfg.lease_s)
        self.hub.recompute()

        server_cert = _ServerCertificate(trust)
        credentials = grpc.dynamic_ssl_server_credentials(
            server_cert.configuration(), server_cert.fetch, require_client_authentication=True
        )
        self._grpc = grpc.aio.server()
        sync_pb2_grpc.add_FederationSyncServicer_to_server(  # type: ignore[no-untyped-call]
            FederationSyncService(self.hub, trust.trust_domain().name), self._grpc
        )
        host, port = parse_host_port(cfg.sync_listen, what="--sync-listen")
        self.sync_port = self._grpc.add_secure_port(f"{host}:{port}", credentials)
        await self._grpc.start()

        self.token = load_or_create_token(cfg.token_path)
        self.service = FederationService(
            self.hub,
            trust.root_authority,
            bundle_pem,
            root_pin=lambda: trust.bundle().fingerprints()[-1],
        )
        context = ControllerContext(
            service=self.service,
            trust_domain=trust.trust_domain().name,
            admin_token=self.token,
            sync_address=self.sync_address,
            sync_server_name=CONTROLLER_SERVER_NAME,
        )
        self._runner, self.api_port = await start_http(make_app(context), cfg.listen, "--listen")
        self._tasks.append(asyncio.create_task(self.hub.watch_leases(), name="leases"))
        if cfg.config_path is not None:
            write_cli_config(cfg.config_path, self.api_url, cfg.token_path)
        log.info(
            "controller serving the API on %s and sync on %s (%d clusters)",
            self.api_url,
            self.sync_address,
            len(self.store.clusters()),
        )

    async def stop(self, grace_s: float = 0.5) -> None:
        """Stop serving; control planes keep their last state until it is back."""
        await stop_all(self._tasks, self._runner, self._grpc, grace_s)
        self._tasks.clear()
        if hasattr(self, "store"):
            self.store.close()
        log.info("controller stopped")


def write_cli_config(path: Path, api_url: str, token_path: Path) -> None:
    """Write the CLI's config (``controller`` URL, ``tokenFile``), mode 0600."""
    text = yaml.safe_dump(
        {"controller": api_url, "tokenFile": str(token_path.resolve())}, sort_keys=False
    )
    write_atomic(path, text.encode(), KEY_FILE_MODE)
