"""``WorkloadEntry`` (``meshfed.io/v1alpha1``): one instance of a service in a cluster.

Shape (Kubernetes style, as Istio's WorkloadEntry)::

    apiVersion: meshfed.io/v1alpha1
    kind: WorkloadEntry
    metadata: {name: echo-1, namespace: demo, labels: {version: v1}}
    spec:
      service: echo                     # DNS label
      address: 127.0.1.10               # IPv4/IPv6 address or hostname the workload is reached at
      serviceAccount: echo              # identity: spiffe://<td>/ns/<namespace>/sa/<serviceAccount>
      locality: aws/us-east-1/us-east-1a
      weight: 1                         # relative capacity, 1-128
      capacity: {rps: 200}              # requests/s it can serve (cost mode optimize plans by it)
      tlsMode: mutual                   # mutual: behind a meshfed sidecar; disabled: no sidecar
      inboundPort: 15006                # the sidecar's inbound port (tlsMode mutual)
      mtlsMode: STRICT                  # inbound: STRICT (mTLS only) | PERMISSIVE | DISABLE
      ports:
      - {name: http, port: 8080, targetPort: 8080, protocol: http}   # http | http2 | grpc | tcp
      healthCheck: {type: tcp}          # tcp | http (path) | none; run by the control plane
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from federation.model.locality import Locality, LocalityText

API_VERSION = "meshfed.io/v1alpha1"
DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
#: A Kubernetes DNS subdomain (RFC 1123; service account names, for instance).
DNS_SUBDOMAIN_PATTERN = (
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)

Port = Annotated[int, Field(ge=1, le=65535)]
Protocol = Literal["http", "http2", "grpc", "tcp"]


def check_address(value: str) -> str:
    """``value`` if it is an IP address (v4 or v6) or a hostname (RFC 1123).

    Raises:
        ValueError: it is neither.
    """
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value):
            raise ValueError(f"{value!r} is neither an IP address nor a hostname") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ObjectMeta(_Strict):
    """``metadata``: name, namespace, labels and annotations of a document."""

    name: str = Field(pattern=DNS_LABEL)
    namespace: str = Field(default="default", pattern=DNS_LABEL)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ServicePort(_Strict):
    """A port of the service: ``port`` is what callers address; ``targetPort`` the app's port."""

    name: str = Field(pattern=DNS_LABEL)
    port: Port
    target_port: Port | None = Field(default=None, alias="targetPort")
    protocol: Protocol = "http"

    @property
    def app_port(self) -> int:
        """The port the application listens on (``targetPort``, default ``port``)."""
        return self.target_port or self.port


class HealthCheck(_Strict):
    """How the control plane probes the workload: TCP connect, HTTP GET (2xx), or not at all."""

    type: Literal["tcp", "http", "none"] = "tcp"
    path: str = Field(default="/", pattern=r"^/")
    interval_ms: int = Field(default=1000, ge=100, le=60_000, alias="intervalMs")
    timeout_ms: int = Field(default=500, ge=50, le=30_000, alias="timeoutMs")
    unhealthy_threshold: int = Field(default=2, ge=1, le=10, alias="unhealthyThreshold")


class Capacity(_Strict):
    """What one workload can serve: ``rps`` requests/s (> 0, at most 10^7). The controller's
    optimizer (cost mode ``optimize``) plans at most ``headroom`` x the sum over a locality's
    healthy workloads; a locality with a workload that declares none is unbounded."""

    rps: float = Field(gt=0, le=1e7)


class WorkloadSpec(_Strict):
    """``spec`` of a ``WorkloadEntry``; see the module docstring."""

    service: str = Field(pattern=DNS_LABEL)
    address: str
    service_account: str = Field(default="default", alias="serviceAccount", pattern=DNS_LABEL)
    locality: LocalityText
    weight: int = Field(default=1, ge=1, le=128)
    capacity: Capacity | None = None
    tls_mode: Literal["mutual", "disabled"] = Field(default="mutual", alias="tlsMode")
    inbound_port: Port = Field(default=15006, alias="inboundPort")
    mtls_mode: Literal["STRICT", "PERMISSIVE", "DISABLE"] = Field(
        default="STRICT", alias="mtlsMode"
    )
    ports: list[ServicePort] = Field(min_length=1)
    health_check: HealthCheck = Field(default_factory=HealthCheck, alias="healthCheck")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_address(value)

    @model_validator(mode="after")
    def _unique_ports(self) -> WorkloadSpec:
        names = [p.name for p in self.ports]
        numbers = [p.port for p in self.ports]
        if len(set(names)) != len(names):
            raise ValueError("port names must be unique")
        if len(set(numbers)) != len(numbers):
            raise ValueError("port numbers must be unique")
        return self


class WorkloadEntry(_Strict):
    """A ``WorkloadEntry`` document (``meshfed.io/v1alpha1``)."""

    api_version: Literal["meshfed.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["WorkloadEntry"]
    metadata: ObjectMeta
    spec: WorkloadSpec

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``: unique within a cluster."""
        return (self.metadata.namespace, self.metadata.name)

    @property
    def locality(self) -> Locality:
        """The parsed locality."""
        return Locality.parse(self.spec.locality)

    @property
    def hostname(self) -> str:
        """The service's global name, ``<svc>.<ns>.svc.clusterset.local``."""
        return global_name(self.spec.service, self.metadata.namespace)


def global_name(service: str, namespace: str) -> str:
    """``<svc>.<ns>.svc.clusterset.local`` (the MCS API's clusterset domain)."""
    return f"{service}.{namespace}.svc.clusterset.local"


_PORT_SPEC = re.compile(r"([a-z0-9-]+)=(\d+):(\d+)/((?i:http|http2|grpc|tcp))")  # Istio: HTTP, TCP


def parse_port_spec(text: str) -> ServicePort:
    """``grpc=9090:19090/grpc`` (NAME=SERVICE_PORT:APP_PORT/PROTOCOL) -> a ServicePort.

    Raises:
        ValueError: any other shape, or a port outside 1-65535.
    """
    m = _PORT_SPEC.fullmatch(text)
    if m is None:
        raise ValueError(
            f"{text!r}: use NAME=SERVICE_PORT:APP_PORT/PROTOCOL, e.g. grpc=9090:19090/grpc"
        )
    name, port, target, protocol = m.groups()
    return ServicePort.model_validate(
        {"name": name, "port": int(port), "targetPort": int(target), "protocol": protocol.lower()}
    )


def sidecar_workload(
    *,
    service: str,
    namespace: str,
    address: str,
    locality: str,
    ports: list[ServicePort],
    inbound_port: int = 15006,
    service_account: str | None = None,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    capacity_rps: float | None = None,
) -> WorkloadEntry:
    """The WorkloadEntry a sidecar registers for its workload (tlsMode ``mutual``), with
    ``spec.capacity.rps`` when ``capacity_rps`` is given.

    ``name`` defaults to ``<service>-<address with - for . and :>-<inbound_port>``;
    ``service_account`` to the service's name. Its labels are ``app: <service>`` (the label
    Istio's workloads carry, which AuthorizationPolicy selectors match) and ``labels``.

    Raises:
        pydantic.ValidationError: a field is invalid (names the field).
    """
    workload = name or f"{service}-{address.replace('.', '-').replace(':', '-')}-{inbound_port}"
    return WorkloadEntry.model_validate(
        {
            "apiVersion": API_VERSION,
            "kind": "WorkloadEntry",
            "metadata": {
                "name": workload,
                "namespace": namespace,
                "labels": {"app": service, **(labels or {})},
            },
            "spec": {
                "service": service,
                "address": address,
                "serviceAccount": service_account or service,
                "locality": locality,
                "inboundPort": inbound_port,
                "tlsMode": "mutual",
                "ports": [p.model_dump(by_alias=True) for p in ports],
                **({"capacity": {"rps": capacity_rps}} if capacity_rps is not None else {}),
            },
        }
    )


def k8s_workload_name(service: str, address: str) -> str:
    """``k8s-<service>-<address>`` as a DNS label (at most 63 characters: a hash ends a
    name that would be longer): the WorkloadEntry name a control plane gives a Kubernetes
    pod's EndpointSlice endpoint, and the one an injected sidecar registers as."""
    name = f"k8s-{service}-{address.replace('.', '-').replace(':', '-')}".lower()
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:52].rstrip('-')}-{digest}"
