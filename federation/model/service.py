"""Exports and imports of services across clusters (Kubernetes Multi-Cluster Services API).

- ``ServiceExport`` (``multicluster.x-k8s.io/v1alpha1``, exactly as Kubernetes users write it;
  or ``meshfed.io/v1alpha1`` with ``spec.cluster`` in universal mode): the service named by
  ``metadata.name``/``namespace`` is reachable from other clusters through this cluster's
  east-west gateway. Unexported services are never reachable through a gateway.
- ``ServiceImport`` (``meshfed.io/v1alpha1``): where an exported service lives elsewhere --
  per remote cluster its gateway address (IP or hostname), network, locality and healthy
  endpoint count. The federation controller writes these into each control plane; until then
  they may be applied by hand.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from federation.model.locality import LOCALITY_PART, LocalityText
from federation.model.workload import DNS_LABEL, ObjectMeta, Port, Protocol, _Strict


class ServiceExportSpec(_Strict):
    """``spec`` of a meshfed-style ServiceExport (empty for the MCS form)."""

    cluster: str | None = Field(default=None, pattern=DNS_LABEL)


class ServiceExport(_Strict):
    """A ``ServiceExport``: export ``metadata.namespace/metadata.name`` from a cluster."""

    api_version: Literal["multicluster.x-k8s.io/v1alpha1", "meshfed.io/v1alpha1"] = Field(
        alias="apiVersion"
    )
    kind: Literal["ServiceExport"]
    metadata: ObjectMeta
    spec: ServiceExportSpec = Field(default_factory=ServiceExportSpec)

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, service)``."""
        return (self.metadata.namespace, self.metadata.name)


class ImportPort(_Strict):
    """A port of an imported service, as its exporters define it."""

    name: str = Field(pattern=DNS_LABEL)
    port: Port
    protocol: Protocol = "http"


class DirectEndpoint(_Strict):
    """An endpoint of a cluster on the caller's network, dialled without the gateway."""

    address: str
    zone: str = ""
    healthy: bool = True
    tls_mode: Literal["mutual", "disabled"] = Field(default="mutual", alias="tlsMode")
    ports: dict[str, Port] = Field(description="service port name -> port to dial")
    weight: int = Field(default=1, ge=1, le=128)


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} must be HOST:PORT")
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]


class _Gateway(_Strict):
    """A model with a ``gateway`` (``HOST:PORT``) and its parts."""

    gateway: HostPort

    @property
    def gateway_host(self) -> str:
        """The gateway's host (IP or hostname)."""
        return self.gateway.rpartition(":")[0].strip("[]")

    @property
    def gateway_port(self) -> int:
        """The gateway's port."""
        return int(self.gateway.rpartition(":")[2])


class ZoneGateway(_Gateway):
    """A zone's own east-west gateway in a remote cluster (``meshfed proxy gateway
    --zone-local``): it forwards to that zone's endpoints, others only when the zone has
    none left, so a caller that picks this zone gets it across the gateway too."""

    zone: str = Field(pattern=LOCALITY_PART.pattern)
    gateway: HostPort = Field(description="host:port of the zone's gateway")
    endpoints: int = Field(ge=0, description="healthy endpoints of the service in the zone")


class RemoteCluster(_Gateway):
    """One cluster that serves an imported service: through its east-west gateway, through
    its zones' own gateways (``zoneGateways``; the cluster's gateway then stands for the
    endpoints of the zones without one), or, on the caller's network, directly."""

    cluster: str = Field(pattern=DNS_LABEL)
    gateway: HostPort = Field(description="host:port of the cluster's east-west gateway")
    network: str = "default"
    locality: LocalityText
    endpoints: int = Field(ge=0, description="healthy endpoints of the service there")
    direct_endpoints: list[DirectEndpoint] | None = Field(
        default=None,
        alias="directEndpoints",
        description="same network only: the endpoints, dialled directly",
    )
    zone_gateways: list[ZoneGateway] = Field(
        default_factory=list,
        alias="zoneGateways",
        description="zones with a gateway of their own, and their healthy endpoints",
    )


class ServiceImportSpec(_Strict):
    """``spec`` of a ServiceImport.

    ``ips``: the service's ClusterSetIPs (MCS ``spec.ips``; one IPv4 address, allocated by
    the controller, :mod:`federation.controller.clusterset_ips`), the same in every cluster;
    empty from a controller that allocates none. ``clusters``: the *other* clusters that
    serve it -- an exporter receives the import of its own service too (as in MCS, where
    every member has the ServiceImport), for its ClusterSetIP.
    """

    ports: list[ImportPort] = Field(min_length=1)
    service_accounts: list[str] = Field(alias="serviceAccounts", min_length=1)
    clusters: list[RemoteCluster] = Field(default_factory=list)
    ips: list[str] = Field(default_factory=list, max_length=2)

    @field_validator("ips")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        for ip in value:
            ipaddress.ip_address(ip)  # ValueError names it
        return value


class ServiceImport(_Strict):
    """A ``ServiceImport`` (``meshfed.io/v1alpha1``): remote clusters serving a service."""

    api_version: Literal["meshfed.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ServiceImport"]
    metadata: ObjectMeta
    spec: ServiceImportSpec

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, service)``."""
        return (self.metadata.namespace, self.metadata.name)


def split_service_name(service: str, namespace: str | None) -> tuple[str, str]:
    """``(service, namespace)`` of ``svc``, ``svc.ns`` or ``svc.ns.svc.clusterset.local``;
    ``namespace`` (else ``default``) when the name has none."""
    name = service.removesuffix(".svc.clusterset.local")
    if "." in name:
        svc, _, ns = name.partition(".")
        return svc, ns
    return name, namespace or "default"
