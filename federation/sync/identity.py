"""Names both ends of the sync stream agree on. Pure.

A control plane authenticates to the controller with an SVID for
``spiffe://<td>/ns/meshfed-system/sa/controlplane-<cluster>`` issued by its own intermediate
CA; it dials the controller by the DNS name :data:`CONTROLLER_SERVER_NAME`, which the
controller's server certificate carries.
"""

from __future__ import annotations

from federation.ca.names import SYSTEM_NAMESPACE as CONTROL_PLANE_NAMESPACE
from federation.ca.names import control_plane_service_account
from trust.pki import CONTROLLER_CA_NAME, CONTROLLER_SERVER_NAME

#: The controller's service account: its SVID (the sync server's and the REST API's
#: certificate, the SPIFFE bundle endpoint's for ``https_spiffe``) is
#: ``spiffe://<td>/ns/meshfed-system/sa/controller``.
CONTROLLER_SERVICE_ACCOUNT = "controller"

__all__ = [
    "CONTROLLER_CA_NAME",
    "CONTROLLER_SERVER_NAME",
    "CONTROLLER_SERVICE_ACCOUNT",
    "CONTROL_PLANE_NAMESPACE",
    "cluster_from_spiffe_path",
    "control_plane_service_account",
    "control_plane_spiffe_path",
    "controller_spiffe_id",
]


def controller_spiffe_id(trust_domain: str) -> str:
    """``spiffe://<trust_domain>/ns/meshfed-system/sa/controller``: the controller's SVID."""
    return f"spiffe://{trust_domain}/ns/{CONTROL_PLANE_NAMESPACE}/sa/{CONTROLLER_SERVICE_ACCOUNT}"


def control_plane_spiffe_path(cluster: str) -> str:
    """``/ns/meshfed-system/sa/controlplane-<cluster>``."""
    return f"/ns/{CONTROL_PLANE_NAMESPACE}/sa/{control_plane_service_account(cluster)}"


def cluster_from_spiffe_path(path: str) -> str | None:
    """The cluster named by a control plane's SPIFFE ID path, or None for any other path."""
    prefix = control_plane_spiffe_path("")
    return path[len(prefix) :] if path.startswith(prefix) and len(path) > len(prefix) else None
