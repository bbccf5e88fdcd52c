"""The manifests of ``meshfed controller install``: the replicated federation controller in
Kubernetes, on the user's PostgreSQL (issue 39). Pure but for :func:`trust_files` and
:func:`prepare_trust`.

What it writes, in :data:`NAMESPACE`:

- a ServiceAccount that mounts no API token (the controller calls no Kubernetes API);
- a Deployment of ``replicas`` (default 2) ``meshfed controller serve`` replicas on one
  database (docs/controller-ha.md: any replica serves the API and sync streams; one leader by
  lease re-signs and plans): the database URL and password from the Secret
  :data:`STORE_SECRET` (keys ``url`` and, optionally, ``password``), the root of trust from the
  Secret :data:`TRUST_SECRET` mounted read-only as a trust directory, the admin token from
  :data:`TOKEN_SECRET`; each replica named after its pod; readiness ``/healthz`` (HTTPS),
  spread over zones and nodes, Pod Security "restricted";
- a PodDisruptionBudget (one replica unavailable at a time);
- a Service for the API (15080) and sync (15090): ``LoadBalancer`` by default, since control
  planes in other clusters dial it, with the provider's annotations and
  ``loadBalancerSourceRanges``. Every replica advertises ``sync_address`` (the load
  balancer's name), so a control plane may dial any replica through it.

No Secret holds key material written by meshfed: the admin creates them with ``kubectl``
from files on their own disk (:func:`secret_commands` prints the commands), so the root's key
(when the root is local; none with Vault or AWS Private CA) never passes through meshfed's
output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.controlplane.kube.pod import NAMESPACE
from federation.errors import ConfigError
from federation.install.manifests import (
    LB_ANNOTATIONS,
    PART_OF,
    container_security,
    disruption_budget,
    meta,
    pod_security,
    spread,
)
from trust.pki import CONTROLLER_CA_NAME
from trust.store import TrustDirectory

STORE_SECRET = "meshfed-controller-store"
TRUST_SECRET = "meshfed-controller-trust"
TOKEN_SECRET = "meshfed-controller-token"
TRUST_MOUNT = "/etc/meshfed/trust"
TOKEN_MOUNT = "/etc/meshfed/token"
API_PORT, SYNC_PORT = 15080, 15090
LABELS = {"app.kubernetes.io/name": "meshfed-controller"}


@dataclass(frozen=True, slots=True)
class ControllerInstall:
    """``meshfed controller install`` options.

    Attributes:
        image: the meshfed image, by digest.
        trust_files: the trust directory's files, relative (``trust.json``,
            ``roots/<id>/ca.pem``, ...): mounted from :data:`TRUST_SECRET` at these paths.
        sync_address: ``host:port`` control planes dial for sync (the load balancer's DNS
            name); "" : the Service's in-cluster name (control planes in this cluster only).
        replicas: Deployment replicas (>= 2 for a controller that survives a node).
        provider: ``aws``, ``gcp`` or ``local``: the load balancer's annotations.
        allowed_cidrs: ``loadBalancerSourceRanges`` (the members' egress ranges).
        service_type: ``LoadBalancer`` or ``ClusterIP``.
    """

    image: str
    trust_files: tuple[str, ...]
    sync_address: str = ""
    replicas: int = 2
    provider: str = "local"
    allowed_cidrs: tuple[str, ...] = ()
    service_type: str = "LoadBalancer"


def secret_key(rel: str) -> str:
    """The Secret key of trust file ``rel`` (keys may not hold ``/``): ``roots.ab12.ca.pem``."""
    return rel.replace("/", ".")


def trust_files(trust_dir: Path) -> tuple[str, ...]:
    """The files of a trust directory, relative and sorted (names only: nothing is read)."""
    return tuple(sorted(str(p.relative_to(trust_dir)) for p in trust_dir.rglob("*") if p.is_file()))


def prepare_trust(trust_dir: Path) -> None:
    """Check that ``trust_dir`` holds a root, and create the controller's intermediate CA in
    it when missing (what the first ``controller serve`` would do; the mounted copy is
    read-only).

    Raises:
        ConfigError: no ``trust.json`` there.
    """
    trust = TrustDirectory(trust_dir)
    if not trust.exists():
        raise ConfigError(
            f"--trust-dir {trust_dir}: no root of trust there ('meshfed trust init' makes one)"
        )
    if CONTROLLER_CA_NAME not in trust.clusters():
        trust.create_intermediate(CONTROLLER_CA_NAME)


def secret_commands(trust_dir: Path, files: tuple[str, ...]) -> list[str]:
    """The ``kubectl`` commands that create the Secrets the Deployment mounts."""
    pairs = " ".join(f"--from-file={secret_key(f)}={trust_dir / f}" for f in files)
    return [
        f"kubectl -n {NAMESPACE} create secret generic {TRUST_SECRET} {pairs}",
        f"kubectl -n {NAMESPACE} create secret generic {TOKEN_SECRET}"
        " --from-file=token=$MESHFED_HOME/controller-token",
        f"kubectl -n {NAMESPACE} create secret generic {STORE_SECRET}"
        " --from-literal=url=postgresql://USER@HOST:5432/DB --from-literal=password=...",
    ]


def _container(opts: ControllerInstall) -> dict[str, Any]:
    sync = opts.sync_address or f"meshfed-controller.{NAMESPACE}.svc:{SYNC_PORT}"
    secret_env = [
        ("MESHFED_CONTROLLER_STORE", "url", False),
        ("PGPASSWORD", "password", True),
    ]
    return {
        "name": "controller",
        "image": opts.image,
        "args": [
            "controller",
            "serve",
            "--listen",
            f"0.0.0.0:{API_PORT}",
            "--sync-listen",
            f"0.0.0.0:{SYNC_PORT}",
            "--advertise-sync",
            sync,
            "--replica-name",
            "$(POD_NAME)",
            "--trust-dir",
            TRUST_MOUNT,
            "--token-file",
            f"{TOKEN_MOUNT}/token",
        ],
        "env": [
            {"name": "MESHFED_HOME", "value": "/var/lib/meshfed"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            *(
                {
                    "name": name,
                    "valueFrom": {
                        "secretKeyRef": {"name": STORE_SECRET, "key": key, "optional": optional}
                    },
                }
                for name, key, optional in secret_env
            ),
        ],
        "ports": [
            {"name": "https-api", "containerPort": API_PORT},
            {"name": "grpc-sync", "containerPort": SYNC_PORT},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": API_PORT, "scheme": "HTTPS"},
            "periodSeconds": 5,
        },
        "livenessProbe": {"tcpSocket": {"port": API_PORT}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "trust", "mountPath": TRUST_MOUNT, "readOnly": True},
            {"name": "token", "mountPath": TOKEN_MOUNT, "readOnly": True},
            {"name": "home", "mountPath": "/var/lib/meshfed"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the container's own
        ],
    }


def controller_manifests(opts: ControllerInstall) -> list[dict[str, Any]]:
    """Every object of the controller's installation, in the order to apply them.

    Raises:
        ValueError: ``trust_files`` has no ``trust.json`` or no controller intermediate, or
            ``replicas`` < 1.
    """
    if "trust.json" not in opts.trust_files:
        raise ValueError("the trust directory has no trust.json: run 'meshfed trust init'")
    if not any(f.startswith("intermediates/meshfed-controller/") for f in opts.trust_files):
        raise ValueError("the trust directory has no controller intermediate")
    if opts.replicas < 1:
        raise ValueError(f"--replicas {opts.replicas}: at least 1")
    items = [{"key": secret_key(f), "path": f} for f in opts.trust_files]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("meshfed-controller", **LABELS),
        "spec": {
            "replicas": opts.replicas,
            "strategy": {"rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": {**PART_OF, **LABELS}},
                "spec": {
                    "serviceAccountName": "meshfed-controller",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(),
                    "topologySpreadConstraints": spread(LABELS),
                    "containers": [_container(opts)],
                    "volumes": [
                        {
                            "name": "trust",
                            "secret": {
                                "secretName": TRUST_SECRET,
                                "items": items,
                                "defaultMode": 0o400,
                            },
                        },
                        {
                            "name": "token",
                            "secret": {"secretName": TOKEN_SECRET, "defaultMode": 0o400},
                        },
                        {"name": "home", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            **meta("meshfed-controller", **LABELS),
            "annotations": LB_ANNOTATIONS[opts.provider]
            if opts.service_type == "LoadBalancer"
            else {},
        },
        "spec": {
            "type": opts.service_type,
            "selector": LABELS,
            "ports": [
                {"name": "https-api", "port": API_PORT, "targetPort": API_PORT},
                {"name": "grpc-sync", "port": SYNC_PORT, "targetPort": SYNC_PORT},
            ],
        },
    }
    if opts.allowed_cidrs and opts.service_type == "LoadBalancer":
        service["spec"]["loadBalancerSourceRanges"] = list(opts.allowed_cidrs)
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NAMESPACE, "labels": dict(PART_OF)}}  # fmt: skip
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta("meshfed-controller"),
        "automountServiceAccountToken": False,
    }
    return [
        namespace,
        account,
        deployment,
        disruption_budget("meshfed-controller", LABELS),
        service,
    ]
