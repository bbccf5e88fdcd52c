"""Control plane replicas of one cluster share their state through the cluster's API server
(issue #39), as istiod's replicas do: every replica serves xDS, certificates, the API and the
sidecar injector; one of them, the leader, also talks to the federation controller and
writes into the cluster.

Three objects in :data:`~federation.controlplane.kube.pod.NAMESPACE` (``meshfed install``
creates them empty; a control plane creates a missing one):

- **Secret** :data:`IDENTITY_SECRET`: what makes every replica the same control plane to the
  federation and to the cluster -- the join info, the cluster's intermediate CA (its key, its
  chain, the trust bundle), the sidecar injector's CA and the API token
  (:data:`IDENTITY_FILES`). Written by the replica that joined, again by the leader when one
  of them changes (an intermediate re-signed after a root rotation, a renewed injector CA),
  and read by every replica at start into its own state directory (keys 0600). The
  intermediate's key leaves the pod only for the API server, over TLS, into a Secret only the
  control plane's ServiceAccount may read (a Role naming it): the place Istio
  (``cacerts``) and Linkerd (``linkerd-identity-issuer``) keep theirs. Encrypt Secrets at
  rest (the Terraform EKS module turns on KMS envelope encryption).
- **Lease** :data:`LEADER_LEASE` (``coordination.k8s.io/v1``, kubernetes_asyncio's leader
  election, Kubernetes' defaults: 15 s lease, 10 s renew deadline, 2 s retry): its holder
  joins the federation when no identity exists yet (a join token is good once), holds the
  sync stream to the controller (reports and updates), probes RTTs, writes ServiceExport
  conditions and ServiceImports, and keeps the injector's ``caBundle``. A replica that stops
  gives the Lease up, so another takes over within one retry; one that dies is replaced when
  its lease runs out.
- **ConfigMap** :data:`FEDERATION_CONFIGMAP`: the controller's last update as the leader
  applied it (the ``ControllerUpdate`` protobuf, gzip, in ``binaryData``); the other replicas
  watch it and apply it as the leader did, so all serve the same imports, policies, trust
  bundle and CRLs. A ConfigMap holds at most 1 MiB: an update larger than that compressed is
  not shared (logged; followers keep the last one that fitted).

What is not shared: documents applied to one replica's own API (``/v1/apply``) and the
workload tokens it issued -- in Kubernetes, workloads come from the API server and
authenticate with ServiceAccount tokens (TokenReview), and documents go to the controller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from google.protobuf.message import DecodeError
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection.electionconfig import Config as ElectionConfig
from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from federation.controlplane.kube.pod import (
    FEDERATION_CONFIGMAP,
    IDENTITY_SECRET,
    LEADER_LEASE,
    NAMESPACE,
    SHARED_LABEL,
)
from federation.controlplane.link import state as link_state
from federation.controlplane.link.join import JoinInfo
from federation.errors import FederationError, InvalidDocumentError
from federation.sync.convert import update_from_proto, update_to_proto
from federation.sync.messages import ControllerUpdate
from federation.sync.proto import sync_pb2
from trust.files import CERT_FILE_MODE, KEY_FILE_MODE, ensure_dir, write_atomic

log = logging.getLogger(__name__)

#: ConfigMap key of the last update (gzip of the ``ControllerUpdate`` protobuf).
UPDATE_KEY = "update.pb.gz"
#: A ConfigMap's size limit (bytes), as the API server enforces it.
CONFIGMAP_MAX_BYTES = 1024 * 1024
#: Secret key -> (path under the state directory, file mode). The join info is the ``join``
#: part of ``federation.json`` (:mod:`federation.controlplane.link.state`), stored as JSON.
IDENTITY_FILES: dict[str, tuple[str, int]] = {
    "join.json": ("federation.json", CERT_FILE_MODE),
    "ca-key.pem": ("ca/ca-key.pem", KEY_FILE_MODE),
    "ca.pem": ("ca/ca.pem", CERT_FILE_MODE),
    "bundle.pem": ("ca/bundle.pem", CERT_FILE_MODE),
    "webhook-ca-key.pem": ("webhook-tls/ca-key.pem", KEY_FILE_MODE),
    "webhook-ca.pem": ("webhook-tls/ca.pem", CERT_FILE_MODE),
    "api-token": ("api-token", KEY_FILE_MODE),
}
#: Kubernetes' leader election defaults (s): lease, renew deadline, retry period.
LEASE_S, RENEW_DEADLINE_S, RETRY_S = 15, 10.0, 2.0
#: How often a replica waiting for the identity looks for it (s).
IDENTITY_POLL_S = 0.5
#: How often the leader compares its identity files with the Secret's (s).
IDENTITY_REFRESH_S = 10.0
#: The Secret keys of the injector's CA (a follower re-reads them before re-issuing).
WEBHOOK_CA = frozenset({"webhook-ca-key.pem", "webhook-ca.pem"})


class SharedStateError(FederationError):
    """The shared objects cannot be read or written (RBAC, an API server away), or hold
    something unreadable."""


def read_identity(state_dir: Path) -> dict[str, bytes]:
    """The identity files of ``state_dir`` present on disk, by Secret key
    (:data:`IDENTITY_FILES`); the join info as its JSON.

    Raises:
        InvalidDocumentError: ``federation.json`` is corrupt.
    """
    found: dict[str, bytes] = {}
    for key, (relative, _mode) in IDENTITY_FILES.items():
        if key == "join.json":
            info = link_state.load_join_info(state_dir)
            if info is not None:
                found[key] = json.dumps(asdict(info), sort_keys=True).encode()
            continue
        path = state_dir / relative
        if path.exists():
            found[key] = path.read_bytes()
    return found


def write_identity(state_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write the identity files (from the Secret) into ``state_dir``, keys 0600; the join
    info replaces ``federation.json``'s ``join`` and keeps a stored last update of the same
    cluster.

    Raises:
        InvalidDocumentError: the join info is not a JoinInfo.
    """
    for key, data in files.items():
        if key not in IDENTITY_FILES:
            continue
        relative, mode = IDENTITY_FILES[key]
        if key == "join.json":
            try:
                info = JoinInfo(**json.loads(data))
            except (ValueError, TypeError) as err:
                raise InvalidDocumentError(f"Secret {IDENTITY_SECRET}: join.json: {err}") from err
            try:
                last = link_state.load_last_update(state_dir)
            except InvalidDocumentError:
                last = None
            link_state.save(state_dir, info, last)
            continue
        path = state_dir / relative
        ensure_dir(path.parent)
        write_atomic(path, data, mode)


def encode_update(update: ControllerUpdate) -> bytes:
    """An update as the ConfigMap holds it (gzip of the protobuf; mtime 0: one update, one
    byte string)."""
    return gzip.compress(update_to_proto(update).SerializeToString(), mtime=0)


def decode_update(data: bytes) -> ControllerUpdate:
    """The inverse of :func:`encode_update`.

    Raises:
        InvalidDocumentError: not gzip, not the protobuf, or not a valid update.
    """
    try:
        message = sync_pb2.ControllerUpdate.FromString(gzip.decompress(data))
    except (OSError, EOFError, DecodeError) as err:
        raise InvalidDocumentError(f"ConfigMap {FEDERATION_CONFIGMAP}: {err}") from err
    return update_from_proto(message)


def _labels(value: str) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "meshfed", SHARED_LABEL: value}


def _decoded(data: Mapping[str, str] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (data or {}).items()}


def _encoded(files: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in sorted(files.items())}


API_ERRORS = (ApiException, aiohttp.ClientError, OSError, asyncio.TimeoutError)


def _reason(err: BaseException) -> str:
    if isinstance(err, ApiException):
        return f"{err.status} {err.reason}"
    return str(err) or err.__class__.__name__


class SharedState:
    """The identity Secret and the federation ConfigMap (see the module docstring).

    Args:
        api: the cluster's ApiClient.
        namespace: where the objects live.
    """

    def __init__(self, api: k8s.ApiClient, namespace: str = NAMESPACE) -> None:
        self._api = api
        self._core = k8s.CoreV1Api(api)
        self.namespace = namespace
        self._published_identity: dict[str, bytes] = {}
        self._published_update = b""
        self._update: bytes | None = None
        self._update_ready = asyncio.Event()

    async def identity(self) -> dict[str, bytes]:
        """The identity files in the Secret ({} when it is missing or empty).

        Raises:
            SharedStateError: the API server refused or is away.
        """
        try:
            secret = await self._core.read_namespaced_secret(IDENTITY_SECRET, self.namespace)
        except ApiException as err:
            if err.status == 404:
                return {}
            raise SharedStateError(f"Secret {IDENTITY_SECRET}: {_reason(err)}") from err
        except API_ERRORS as err:
            raise SharedStateError(f"Secret {IDENTITY_SECRET}: {_reason(err)}") from err
        files = _decoded(secret.data)
        if files:
            self._published_identity = files
        return files

    async def publish_identity(self, files: Mapping[str, bytes]) -> bool:
        """Write ``files`` into the Secret (created when missing) unless it holds them
        already; True when written.

        Raises:
            SharedStateError: the API server refused or is away.
        """
        if dict(files) == self._published_identity:
            return False
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": IDENTITY_SECRET, "labels": _labels("identity")},
            "type": "Opaque",
            "data": _encoded(files),
        }
        await self._put(
            "Secret",
            self._core.read_namespaced_secret,
            self._core.replace_namespaced_secret,
            self._core.create_namespaced_secret,
            body,
        )
        self._published_identity = dict(files)
        log.info("shared this cluster's identity in Secret %s/%s", self.namespace, IDENTITY_SECRET)
        return True

    async def _put(
        self,
        kind: str,
        read: Callable[..., Awaitable[Any]],
        replace: Callable[..., Awaitable[Any]],
        create: Callable[..., Awaitable[Any]],
        body: dict[str, Any],
    ) -> None:
        """Replace the object (keeping what others wrote into its metadata), or create it."""
        name = body["metadata"]["name"]
        try:
            try:
                old = self._api.sanitize_for_serialization(await read(name, self.namespace))
            except ApiException as err:
                if err.status != 404:
                    raise
                await create(self.namespace, body)
                return
            meta = old.get("metadata") or {}
            body["metadata"] = {
                **meta,
                "labels": {**(meta.get("labels") or {}), **body["metadata"]["labels"]},
            }
            await replace(name, self.namespace, body)
        except API_ERRORS as err:
            raise SharedStateError(f"{kind} {self.namespace}/{name}: {_reason(err)}") from err

    async def last_update(self) -> ControllerUpdate | None:
        """The update in the ConfigMap (None when there is none yet).

        Raises:
            SharedStateError: the API server refused or is away.
            InvalidDocumentError: the ConfigMap holds no valid update.
        """
        try:
            found = self._api.sanitize_for_serialization(
                await self._core.read_namespaced_config_map(FEDERATION_CONFIGMAP, self.namespace)
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise SharedStateError(f"ConfigMap {FEDERATION_CONFIGMAP}: {_reason(err)}") from err
        except API_ERRORS as err:
            raise SharedStateError(f"ConfigMap {FEDERATION_CONFIGMAP}: {_reason(err)}") from err
        return update_of(found)

    def share_update(self, update: ControllerUpdate) -> None:
        """Queue ``update`` for the ConfigMap (:meth:`write_updates` writes the latest)."""
        self._update = encode_update(update)
        self._update_ready.set()

    async def write_updates(self) -> None:
        """Write queued updates into the ConfigMap until cancelled (only the latest of a
        burst; a failed write is retried after :data:`RETRY_S`)."""
        while True:
            await self._update_ready.wait()
            self._update_ready.clear()
            data = self._update
            if data is None or data == self._published_update:
                continue
            if len(data) * 4 / 3 > CONFIGMAP_MAX_BYTES:
                log.error(
                    "the controller's update is %d bytes compressed: too large for ConfigMap"
                    " %s (1 MiB); the other replicas keep the last one that fitted",
                    len(data),
                    FEDERATION_CONFIGMAP,
                )
                continue
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": FEDERATION_CONFIGMAP, "labels": _labels("federation")},
                "binaryData": {UPDATE_KEY: base64.b64encode(data).decode()},
            }
            try:
                await self._put(
                    "ConfigMap",
                    self._core.read_namespaced_config_map,
                    self._core.replace_namespaced_config_map,
                    self._core.create_namespaced_config_map,
                    body,
                )
                self._published_update = data
            except SharedStateError as err:
                log.warning("sharing the controller's update: %s", err)
                await asyncio.sleep(RETRY_S)
                self._update_ready.set()

    def list_federation(self) -> Callable[..., Awaitable[Any]]:
        """The list function a :class:`~federation.controlplane.kube.source.Reflector`
        watches the ConfigMap with."""

        def list_fn(**kwargs: Any) -> Awaitable[Any]:
            return self._core.list_namespaced_config_map(
                self.namespace, label_selector=f"{SHARED_LABEL}=federation", **kwargs
            )

        return list_fn


def update_of(config_map: Mapping[str, Any]) -> ControllerUpdate | None:
    """The update a ConfigMap (as the API's JSON) holds, or None.

    Raises:
        InvalidDocumentError: its data is not an update.
    """
    binary = config_map.get("binaryData") or {}
    if UPDATE_KEY not in binary:
        return None
    try:
        data = base64.b64decode(binary[UPDATE_KEY])
    except ValueError as err:
        raise InvalidDocumentError(f"ConfigMap {FEDERATION_CONFIGMAP}: {err}") from err
    return decode_update(data)


@dataclass
class Leadership:
    """This replica's part in the leader election (see the module docstring).

    Args:
        api: the cluster's ApiClient.
        lead: what only the leader runs; cancelled when the lease is lost.
        lease_s / renew_deadline_s / retry_s: the election's timing (s).
        namespace: the Lease's namespace.
    """

    api: k8s.ApiClient
    lead: Callable[[], Awaitable[None]]
    lease_s: int = LEASE_S
    renew_deadline_s: float = RENEW_DEADLINE_S
    retry_s: float = RETRY_S
    namespace: str = NAMESPACE

    def __post_init__(self) -> None:
        self.identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.became_leader = asyncio.Event()
        self._lead_task: asyncio.Task[Any] | None = None
        self._lock = LeaseLock(LEADER_LEASE, self.namespace, self.identity, self.api)

    @property
    def leading(self) -> bool:
        """Whether this replica holds the Lease (and runs ``lead``)."""
        return self.became_leader.is_set()

    async def _leading(self) -> None:
        self._lead_task = asyncio.current_task()
        self.became_leader.set()
        log.info("leader of the control plane replicas (%s)", self.identity)
        try:
            await self.lead()
        finally:
            self.became_leader.clear()

    async def stop(self) -> None:
        """Give the Lease up (:meth:`release`) and stop leading."""
        await self.release()
        task = self._lead_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _stopped_leading(self) -> None:
        log.warning("no longer the leader of the control plane replicas (%s)", self.identity)

    async def run(self) -> None:
        """Stand for election until cancelled: lead while holding the Lease, then stand
        again."""
        while True:
            config = ElectionConfig(
                self._lock,
                lease_duration=self.lease_s,
                renew_deadline=self.renew_deadline_s,
                retry_period=self.retry_s,
                onstarted_leading=self._leading,
                onstopped_leading=self._stopped_leading,
            )
            try:
                await LeaderElection(config).run()
            # the library logs and retries API errors itself; a connection error, or an error
            # body it cannot parse (json.loads, an assert on the body), ends its run
            except (*API_ERRORS, ValueError, KeyError, AssertionError) as err:
                log.warning("leader election: %s", _reason(err))
            await asyncio.sleep(self.retry_s)

    async def release(self) -> None:
        """Give the Lease up if this replica holds it (at stop: another replica takes over
        within one retry instead of one lease)."""
        if not self.leading:
            return
        coordination = k8s.CoordinationV1Api(self.api)
        with contextlib.suppress(*API_ERRORS):
            lease = await coordination.read_namespaced_lease(LEADER_LEASE, self.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec = k8s.V1LeaseSpec(lease_duration_seconds=1)
                await coordination.replace_namespaced_lease(LEADER_LEASE, self.namespace, lease)
                log.info("gave up the leader Lease")
