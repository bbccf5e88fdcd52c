"""A cluster control plane's link to the federation controller: join once, then stay in sync.

**Join** (once, with a one-time token from ``meshfed cluster join``): generate the cluster's
intermediate CA key here (0600, never sent), send its CSR to ``POST /v1/join``, keep the
signed intermediate and the trust bundle in ``<state_dir>/ca`` and what to dial in
``<state_dir>/federation.json``. Later starts reuse them; the token is not needed again.

**Sync** (``meshfed.sync.v1.FederationSync/Sync``, gRPC over mTLS): the control plane
authenticates with an SVID for ``spiffe://<td>/ns/meshfed-system/sa/controlplane-<cluster>``
that its own intermediate issues (re-issued at half life on reconnect) and checks the
controller's certificate against the trust bundle and the name
``controller.meshfed.internal``. It sends its report (:mod:`federation.controlplane.report`)
at once, after every change and at least every third of the lease; it applies each
``ControllerUpdate`` whole -- imports and centrally applied exports replace the previous ones,
a new trust bundle is written and handed to the identity manager -- and persists the last
update, so a control plane restarted while the controller is away serves the same imports.
When the stream breaks it reconnects with exponential backoff (0.5 s doubling to 10 s, with
jitter) and keeps serving its last state meanwhile (static stability).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from federation.client import request_json
from federation.controller.proto import sync_pb2, sync_pb2_grpc
from federation.controlplane.registry import RegistryState, ServiceKey, ServiceRegistry
from federation.controlplane.report import cluster_report
from federation.errors import FederationError, InvalidDocumentError, UnreachableError
from federation.model.documents import validate_documents
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service import ServiceImport
from federation.netaddr import is_loopback, parse_host_port
from trust import pki
from trust.authority import LocalCertificateAuthority, issue_svid
from trust.bundle import TrustBundle
from trust.cluster_ca import ClusterCaDirectory
from trust.files import CERT_FILE_MODE, write_atomic
from trust.spiffe import TrustDomain
from trust.svid import X509Svid

log = logging.getLogger(__name__)

SYNC_SVID_TTL = timedelta(hours=24)
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
RTT_PROBE_INTERVAL_S = 10.0


class JoinError(FederationError):
    """The control plane could not join (bad token, refused CSR, unreachable controller)."""


@dataclass(frozen=True, slots=True)
class JoinInfo:
    """What a joined control plane remembers (``federation.json`` ``join``)."""

    cluster: str
    trust_domain: str
    controller: str
    sync_address: str
    sync_server_name: str
    lease_seconds: float


def federation_file(state_dir: Path) -> Path:
    """``<state_dir>/federation.json``."""
    return state_dir / "federation.json"


def load_federation_file(state_dir: Path) -> dict[str, Any] | None:
    """The stored join info and last update, or None before the first join.

    Raises:
        InvalidDocumentError: the file is not JSON.
    """
    path = federation_file(state_dir)
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except ValueError as err:
        raise InvalidDocumentError(f"{path}: not JSON ({err})") from err
    return data


def _save_federation_file(state_dir: Path, data: dict[str, Any]) -> None:
    write_atomic(federation_file(state_dir), json.dumps(data, indent=2).encode(), CERT_FILE_MODE)


def _controller_url(controller: str) -> str:
    if controller.startswith(("http://", "https://")):
        return controller.rstrip("/")
    parse_host_port(controller, what="--controller")
    return f"http://{controller}"


async def join(
    state_dir: Path, cluster: str, controller: str, token: str, trust_domain: str | None
) -> JoinInfo:
    """Join the federation (see the module docstring); writes ``ca/`` and ``federation.json``.

    Args:
        controller: the controller's API, ``HOST:PORT`` or ``http://HOST:PORT``.
        trust_domain: asked for in the CSR; None takes the one the controller announces.

    Raises:
        JoinError: the controller refused (the message says why) or cannot be reached.
    """
    url = _controller_url(controller)
    try:
        if trust_domain is None:
            health = await request_json("GET", url + "/healthz", None)
            trust_domain = str(health["trustDomain"])
        ca_dir = ClusterCaDirectory(state_dir / "ca")
        csr = ca_dir.new_csr(TrustDomain(trust_domain), cluster)
        body = json.dumps({"cluster": cluster, "token": token, "csr": csr.decode()})
        answer = await request_json("POST", url + "/v1/join", None, body, token_hint=False)
    except (FederationError, KeyError) as err:
        failure = JoinError(f"joining the federation at {url} failed: {err}")
        failure.retryable = isinstance(err, UnreachableError)
        raise failure from err
    ca_dir.store(answer["certificateChain"].encode(), answer["trustBundle"].encode())
    info = JoinInfo(
        cluster=cluster,
        trust_domain=answer["trustDomain"],
        controller=url,
        sync_address=answer["syncAddress"],
        sync_server_name=answer["syncServerName"],
        lease_seconds=float(answer["leaseSeconds"]),
    )
    _save_federation_file(state_dir, {"join": asdict(info), "lastUpdate": None})
    log.info("joined the federation at %s as %s (trust domain %s)", url, cluster, trust_domain)
    return info


@dataclass(frozen=True, slots=True)
class FederationView:
    """What one ControllerUpdate tells a control plane to serve."""

    imports: list[ServiceImport]
    exports: list[ServiceKey]
    policies: list[TrafficPolicy]
    price_tables: list[PriceTable]


def parse_update(update: dict[str, Any]) -> FederationView:
    """The view in a stored/received update (``ControllerUpdate`` as a dict).

    Raises:
        InvalidDocumentError: an import or policy is not a valid document.
    """
    raws = [json.loads(t) for t in update.get("service_imports_json", [])]
    imports = [
        m
        for m in validate_documents(raws, source="controller update")
        if isinstance(m, ServiceImport)
    ]
    exports: list[ServiceKey] = []
    for text in update.get("exports", []):
        ns, _, svc = str(text).partition("/")
        exports.append((ns, svc))
    policy_docs = validate_documents(
        [json.loads(t) for t in update.get("policies_json", [])], source="controller update"
    )
    return FederationView(
        imports,
        exports,
        [m for m in policy_docs if isinstance(m, TrafficPolicy)],
        [m for m in policy_docs if isinstance(m, PriceTable)],
    )


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
        info: from :func:`join` or ``federation.json``.
        ca: the cluster's intermediate CA (issues the sync SVID).
        on_bundle: called with the new :class:`TrustBundle` when the controller sends one.
        gateway: this cluster's east-west gateway ``host:port`` as reported ("" if none).
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
    ) -> None:
        self.info = info
        self._state_dir = state_dir
        self._registry = registry
        self._ca = ca
        self._on_bundle = on_bundle
        self._gateway = gateway
        self._changed = asyncio.Event()
        self._imports_changed = asyncio.Event()
        self._last_imports = registry.state.imports
        self._svid: X509Svid | None = None
        self.rtt_ms: dict[str, float] = {}
        self.connected = False
        self.last_update_version = 0
        registry.subscribe(self._on_registry)

    def restore(self) -> None:
        """Install the last persisted update (before the control plane answers proxies)."""
        data = load_federation_file(self._state_dir) or {}
        update = data.get("lastUpdate")
        if update:
            view = parse_update(update)
            self._install(view)
            log.info("restored %d imports from the last controller update", len(view.imports))

    def _install(self, view: FederationView) -> None:
        self._registry.set_federation(view.imports, view.exports, view.policies, view.price_tables)

    def _on_registry(self, state: RegistryState) -> None:
        self._changed.set()
        if state.imports is not self._last_imports:
            self._last_imports = state.imports
            self._imports_changed.set()

    def _identity(self) -> X509Svid:
        svid = self._svid
        if svid is not None:
            half = svid.not_before + (svid.not_after - svid.not_before) / 2
            if pki.utcnow() < half:
                return svid
        sid = self._ca.trust_domain.workload_id(
            "meshfed-system", f"controlplane-{self.info.cluster}"
        )
        self._svid = issue_svid(self._ca, sid, SYNC_SVID_TTL)
        return self._svid

    def report(self) -> dict[str, Any]:
        """The report for the current registry state."""
        return cluster_report(self._registry.state, self.info.cluster, self._gateway, self.rtt_ms)

    async def _reports(self) -> AsyncIterator[sync_pb2.ClusterReport]:
        last: dict[str, Any] | None = None
        last_sent = 0.0
        while True:
            self._changed.clear()  # before reading the state: a later change wakes us
            body = self.report()
            heartbeat_s = max(0.5, self.info.lease_seconds / 3)
            if body != last or time.monotonic() - last_sent >= heartbeat_s:
                last, last_sent = body, time.monotonic()
                yield json_format.ParseDict(body, sync_pb2.ClusterReport())
            try:
                timeout = max(0.05, heartbeat_s - (time.monotonic() - last_sent))
                await asyncio.wait_for(self._changed.wait(), timeout)
                await asyncio.sleep(0.05)  # coalesce bursts of registry changes
            except TimeoutError:
                pass

    def _apply(self, update: sync_pb2.ControllerUpdate) -> None:
        data = json_format.MessageToDict(update, preserving_proto_field_name=True)
        view = parse_update(data)
        if update.trust_bundle_pem:
            ca_dir = ClusterCaDirectory(self._state_dir / "ca")
            if ca_dir.update_bundle(update.trust_bundle_pem):
                bundle = TrustBundle.from_pem(
                    self._ca.trust_domain, update.trust_bundle_pem, source="controller update"
                )
                log.info("new trust bundle from the controller (%d roots)", len(bundle.roots))
                self._on_bundle(bundle)
        last = {k: v for k, v in data.items() if k != "trust_bundle_pem"}
        # persist first, then serve it
        _save_federation_file(self._state_dir, {"join": asdict(self.info), "lastUpdate": last})
        self._install(view)
        self.last_update_version = update.version
        if update.lease_seconds:
            self.info = replace(self.info, lease_seconds=float(update.lease_seconds))
        log.info(
            "controller update v%d: %d imports, %d exports, %d policies",
            update.version,
            len(view.imports),
            len(view.exports),
            len(view.policies) + len(view.price_tables),
        )

    async def _session(self, on_update: Callable[[], None]) -> None:
        svid = self._identity()
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
            call = stub.Sync(self._reports())
            async for update in call:
                self._apply(update)
                if not self.connected:
                    log.info("in sync with the controller at %s", self.info.sync_address)
                self.connected = True
                on_update()

    async def run(self) -> None:
        """Sync until cancelled, reconnecting with backoff (see the module docstring)."""
        delays = backoff_delays()
        while True:
            reset = False

            def on_update() -> None:
                nonlocal reset
                reset = True

            try:
                await self._session(on_update)
                log.warning("the controller closed the sync stream")
            except grpc.aio.AioRpcError as err:
                log.warning(
                    "sync with the controller at %s failed: %s %s",
                    self.info.sync_address,
                    err.code().name,
                    err.details(),
                )
            except (InvalidDocumentError, OSError) as err:
                log.error("sync with the controller failed: %s", err)
            self.connected = False
            if reset:
                delays = backoff_delays()
            await asyncio.sleep(next(delays))

    async def probe_rtts(self) -> None:
        """Measure TCP connect time (ms) to every imported cluster's gateway, every 10 s and
        whenever the imports change; until cancelled. Sent with the next report."""
        while True:
            gateways = {
                c.cluster: c.gateway
                for imp in self._registry.state.imports.values()
                for c in imp.spec.clusters
            }
            for cluster, gateway in sorted(gateways.items()):
                host, port = parse_host_port(gateway)
                started = time.perf_counter()
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
                except (OSError, TimeoutError):
                    self.rtt_ms.pop(cluster, None)
                    continue
                self.rtt_ms[cluster] = (time.perf_counter() - started) * 1000
                writer.close()
            for gone in set(self.rtt_ms) - set(gateways):
                del self.rtt_ms[gone]
            self._registry.set_rtts(
                rtts_for_decisions(self._registry.state.rtt_ms, self.rtt_ms, gateways)
            )
            self._imports_changed.clear()
            try:  # next round: after the interval, or at once when the imports change
                await asyncio.wait_for(self._imports_changed.wait(), RTT_PROBE_INTERVAL_S)
            except TimeoutError:
                pass


def rtts_for_decisions(
    current: Mapping[str, float], measured: Mapping[str, float], gateways: Mapping[str, str]
) -> dict[str, float]:
    """The RTTs (ms by cluster) load balancing should use. Pure.

    Gateways on loopback are left out: on one machine (``meshfed up``, tests) the probe
    measures the machine, not the path, and the estimate from the regions' distance is the
    better figure. A value changes only when it moves by more than 20 % and 1 ms (hysteresis:
    every change rebuilds the proxies' configuration).
    """
    out: dict[str, float] = {}
    for cluster, rtt in measured.items():
        host = gateways.get(cluster, "").rpartition(":")[0].strip("[]")
        if not host or is_loopback(host):
            continue
        old = current.get(cluster)
        if old is not None and abs(rtt - old) <= max(1.0, 0.2 * old):
            out[cluster] = old
        else:
            out[cluster] = round(rtt, 1)
    return out


def load_join_info(state_dir: Path) -> JoinInfo | None:
    """The join info stored by :func:`join`, or None when this control plane never joined."""
    data = load_federation_file(state_dir)
    if not data or not data.get("join"):
        return None
    return JoinInfo(**data["join"])
