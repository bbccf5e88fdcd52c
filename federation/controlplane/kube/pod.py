"""What a meshfed pod in a Kubernetes cluster looks like, at run time and at install time
alike: the system namespace and ports, the control plane's in-cluster name, the label that
turns injection on, how an agent in a pod reaches its control plane and the token it starts
with. Read by the sidecar injector (:mod:`federation.controlplane.kube.inject`,
:mod:`~federation.controlplane.kube.webhook`) and by ``meshfed install``'s manifests
(:mod:`federation.install.manifests`). Pure.
"""

from __future__ import annotations

from typing import Any

#: The namespace meshfed's own objects live in.
NAMESPACE = "meshfed-system"
#: Namespace label whose value ``enabled`` turns sidecar injection on.
INJECT_LABEL = "meshfed.io/inject"
#: The objects control plane replicas share (:mod:`federation.controlplane.kube.replicas`).
IDENTITY_SECRET = "meshfed-controlplane-identity"
FEDERATION_CONFIGMAP = "meshfed-controlplane-federation"
LEADER_LEASE = "meshfed-controlplane-leader"
#: Label of the shared objects (value ``identity`` or ``federation``).
SHARED_LABEL = "meshfed.io/shared-state"
#: The control plane's and gateway's container ports.
PORTS = {"xds": 15010, "ca": 15012, "api": 15014, "webhook": 15017, "gateway": 15443}
#: The control plane's in-cluster DNS name (its ClusterIP Service).
CONTROLPLANE_HOST = f"meshfed-controlplane.{NAMESPACE}.svc"
#: Where the projected service account token (audience meshfed) is mounted in pods.
TOKEN_PATH = "/var/run/secrets/meshfed/token"


def agent_args() -> list[str]:
    """How a proxy agent in the cluster reaches its control plane: xDS, the public
    ``/v1/bootstrap`` and the certificate service, by the control plane's Service name."""
    return [
        "--controlplane", f"{CONTROLPLANE_HOST}:{PORTS['xds']}",
        "--api", f"https://{CONTROLPLANE_HOST}:{PORTS['api']}",
        "--ca", f"{CONTROLPLANE_HOST}:{PORTS['ca']}",
    ]  # fmt: skip


def token_volume() -> dict[str, Any]:
    """A projected service account token for audience ``meshfed`` (1 h, rotated by the
    kubelet), the credential of a first CSR (:mod:`federation.controlplane.kube.tokenreview`)."""
    return {
        "name": "meshfed-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": "meshfed",
                        "expirationSeconds": 3600,
                        "path": TOKEN_PATH.rsplit("/", 1)[1],
                    }
                }
            ]
        },
    }
