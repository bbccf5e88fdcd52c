"""How the control plane reaches its cluster's Kubernetes API (issue #20).

In a pod: the service account's token and CA (``load_incluster_config``). Elsewhere: a
kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``), its current
context. Errors become :class:`federation.errors.FederationError` with the reason; nothing
of the credentials is logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from federation.errors import FederationError

if TYPE_CHECKING:  # imported by api_client: a control plane without Kubernetes never pays it
    from kubernetes_asyncio import client as k8s


class KubeConfigError(FederationError):
    """No usable Kubernetes credentials (not in a pod, no readable kubeconfig)."""


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """``controlplane serve --kubernetes`` settings.

    Attributes:
        kubeconfig: a kubeconfig file (None: in-cluster, else the client's defaults).
        namespaces: namespaces in the mesh (empty: every namespace).
        member_label: ``key`` or ``key=value`` a Service must carry to be in the mesh.
        pod_label: ``key`` or ``key=value`` an endpoint's pod must carry to be in the mesh.
        gateway_service: ``(namespace, name)`` of the east-west gateway's LoadBalancer
            Service, whose address is reported to the controller once it has one.
        zone_gateway_services: zone -> ``(namespace, name)`` of that zone's own gateway's
            LoadBalancer Service, reported for the zone likewise.
        webhook_listen: ``host:port`` of the sidecar injector (HTTPS); None: not served.
        sidecar_image: the image of injected sidecars (required with ``webhook_listen``).
        leader_lease_s: how long the leader of several replicas holds its Lease without
            renewing it (s); it renews within 2/3 of that and others retry every 2/15
            (:mod:`federation.controlplane.kube.replicas`; Kubernetes' defaults: 15, 10, 2).
    """

    kubeconfig: Path | None = None
    namespaces: frozenset[str] = field(default_factory=frozenset)
    member_label: str = ""
    pod_label: str = ""
    gateway_service: tuple[str, str] | None = None
    zone_gateway_services: dict[str, tuple[str, str]] = field(default_factory=dict)
    webhook_listen: str | None = None
    sidecar_image: str = ""
    leader_lease_s: int = 15


async def api_client(settings: KubeSettings) -> k8s.ApiClient:
    """A ``kubernetes_asyncio`` ApiClient for the cluster (see the module docstring).

    Raises:
        KubeConfigError: the kubeconfig cannot be read or names no usable context, or (without
            one) this is not a pod and no default kubeconfig exists.
    """
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio.config.config_exception import ConfigException

    conf = k8s.Configuration()
    try:
        if settings.kubeconfig is not None:
            await kconfig.load_kube_config(
                config_file=str(settings.kubeconfig), client_configuration=conf
            )
        else:
            try:
                kconfig.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
            except ConfigException:
                await kconfig.load_kube_config(client_configuration=conf)
    except (ConfigException, OSError, ValueError, TypeError) as err:
        where = settings.kubeconfig or "in-cluster or the default kubeconfig"
        raise KubeConfigError(f"Kubernetes API: no usable credentials ({where}): {err}") from err
    return k8s.ApiClient(conf)
