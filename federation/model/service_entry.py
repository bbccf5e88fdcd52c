"""Istio's ``ServiceEntry`` (``networking.istio.io`` ``v1``, ``v1beta1``, ``v1alpha3``): a
service outside the mesh that sidecars may call by name (issue #40)::

    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: payments-api, namespace: demo}
    spec:
      hosts: [api.payments.example]
      location: MESH_EXTERNAL
      ports: [{number: 80, name: http, protocol: HTTP}]
      resolution: DNS                      # or STATIC with endpoints' IP addresses
      endpoints: [{address: 10.1.2.3}]     # optional for DNS: the host itself is resolved

Applied to the controller, every member cluster's sidecars get, per host and port, a
cluster ``outbound|<port>||<host>`` -- Envoy ``STRICT_DNS`` (``DNS``), ``LOGICAL_DNS``
(``DNS_ROUND_ROBIN``) or ``STATIC`` (``STATIC``), plain text, as Istio makes it -- and a
route by ``Host`` (``<host>``, ``<host>:<port>``) on their outbound listener, so an app that
sends its request through the sidecar (``http_proxy``, or ``Host`` on the outbound port)
reaches it; with ``--outbound-traffic-policy REGISTRY_ONLY`` nothing else outside the mesh
is. ``location: MESH_INTERNAL`` with ``subjectAltNames`` (SPIFFE IDs) is another mesh's
service (SPIFFE federation, issue 43): sidecars call its endpoints -- that mesh's east-west
gateway -- over mutual TLS with SNI ``outbound_.<port>_._.<host>`` and accept only those
identities (:mod:`federation.controlplane.generate.external`); its host may then be a
``.svc.clusterset.local`` name, unless this mesh has a service of that name (the mesh's own
wins). Refused, by field (not yet): ``resolution: NONE``, protocols other than HTTP, HTTP2
and GRPC, wildcard hosts, ``addresses``, ``workloadSelector``, ``exportTo`` other than
``*``; ``subjectAltNames`` without MESH_INTERNAL, MESH_INTERNAL without them.

With traffic capture an unchanged app reaches an entry by name: every host gets an address
in :data:`ENTRY_ADDRESS_RANGE` (:func:`entry_addresses`, as Istio's DNS auto-allocation
does), the pod's DNS answers the host with it, and the capture listener sends connections to
it, on the entry's ports, to the route by ``Host``. A connection to the host's real address
(resolved elsewhere) follows the sidecar's outbound traffic policy instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from ipaddress import ip_address, ip_network
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from federation.model.istio_networking import NetworkingVersion, not_supported
from federation.model.workload import ObjectMeta, _Strict

_NotYet = Annotated[Any, not_supported()]
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
#: Where the hosts of ServiceEntries get addresses: Istio's auto-allocation range (class E,
#: which no real network routes; the ClusterSetIPs are in 240.241.0.0/16).
ENTRY_ADDRESS_RANGE = ip_network("240.240.0.0/16")
#: Protocols meshfed routes for an entry (by ``Host``, on the outbound HTTP listener).
HTTP_PROTOCOLS = ("HTTP", "HTTP2", "GRPC")


class EntryPort(_Strict):
    """``ports[]``."""

    number: int = Field(ge=1, le=65535)
    protocol: str = "HTTP"
    name: str = Field(min_length=1)
    target_port: int | None = Field(default=None, ge=1, le=65535, alias="targetPort")

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        if value.upper() not in HTTP_PROTOCOLS:
            raise ValueError(
                f"not supported by meshfed yet: protocol {value!r} (HTTP, HTTP2 and GRPC are)"
            )
        return value.upper()


class EntryEndpoint(_Strict):
    """``endpoints[]`` (Istio ``WorkloadEntry`` fields)."""

    address: str = Field(min_length=1)
    ports: dict[str, int] | None = None
    labels: dict[str, str] | None = None
    locality: str | None = None
    weight: int | None = Field(default=None, ge=1, le=128)
    network: _NotYet = None
    service_account: _NotYet = Field(default=None, alias="serviceAccount")


class ServiceEntrySpec(_Strict):
    """``spec`` of a ServiceEntry."""

    hosts: list[str] = Field(min_length=1)
    ports: list[EntryPort] = Field(min_length=1)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] = "MESH_EXTERNAL"
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"] = "NONE"
    endpoints: list[EntryEndpoint] | None = None
    addresses: _NotYet = None
    workload_selector: _NotYet = Field(default=None, alias="workloadSelector")
    subject_alt_names: list[str] | None = Field(default=None, alias="subjectAltNames")
    export_to: list[str] | None = Field(default=None, alias="exportTo")

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not _HOSTNAME.match(host):
                raise ValueError(
                    f"{host!r}: not supported by meshfed yet: a DNS name without wildcards"
                )
        return value

    @field_validator("subject_alt_names")
    @classmethod
    def _sans(cls, value: list[str] | None) -> list[str] | None:
        for i, san in enumerate(value or []):
            if not san.startswith("spiffe://") or san.count("/") < 3:
                raise ValueError(
                    f"{i}: {san!r}: meshfed checks SPIFFE IDs only"
                    " (spiffe://<trust domain>/ns/<namespace>/sa/<account>)"
                )
        return value

    @field_validator("export_to")
    @classmethod
    def _export_to(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and value != ["*"]:
            raise ValueError(
                f"not supported by meshfed: {value!r}: an entry applied to the controller is"
                " visible in every namespace of every cluster (exportTo: ['*'])"
            )
        return value

    @model_validator(mode="after")
    def _supported(self) -> ServiceEntrySpec:
        mesh_host = [
            h for h in self.hosts if h.endswith((".svc.cluster.local", ".svc.clusterset.local"))
        ]
        if self.location == "MESH_INTERNAL" and not self.subject_alt_names:
            raise ValueError(
                "subjectAltNames: required with location MESH_INTERNAL (the SPIFFE IDs of the"
                " other mesh's workloads: meshfed calls them over mTLS and checks who answers)"
            )
        if self.location == "MESH_EXTERNAL" and self.subject_alt_names:
            raise ValueError("subjectAltNames: not supported by meshfed with MESH_EXTERNAL")
        if self.location == "MESH_EXTERNAL" and mesh_host:
            raise ValueError(f"hosts: {mesh_host[0]!r} is a service of the mesh, not outside it")
        if self.resolution == "NONE":
            raise ValueError(
                "resolution: not supported by meshfed yet: NONE (passthrough to the address"
                " the app dialled; with capture that is the host's allocated address); use"
                " DNS or STATIC"
            )
        if self.resolution == "STATIC":
            if not self.endpoints:
                raise ValueError("endpoints: required with resolution STATIC")
            for i, e in enumerate(self.endpoints):
                try:
                    ip_address(e.address)
                except ValueError as err:
                    raise ValueError(
                        f"endpoints.{i}.address: {e.address!r} must be an IP address with"
                        " resolution STATIC"
                    ) from err
        names = [p.name for p in self.ports]
        if len(set(names)) != len(names):
            raise ValueError("ports: two ports have one name")
        return self


class ServiceEntry(_Strict):
    """A ``ServiceEntry`` document (see the module docstring)."""

    api_version: NetworkingVersion = Field(alias="apiVersion")
    kind: Literal["ServiceEntry"]
    metadata: ObjectMeta
    spec: ServiceEntrySpec

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``."""
        return (self.metadata.namespace, self.metadata.name)

    def endpoints_for(self, port: EntryPort) -> list[tuple[str, int]]:
        """``(address, port)`` of each endpoint for ``port`` (an endpoint's ``ports[name]``,
        else ``targetPort``, else the number); the host itself under DNS without
        endpoints -- the caller substitutes each host."""
        default = port.target_port or port.number
        return [
            (e.address, (e.ports or {}).get(port.name, default)) for e in self.spec.endpoints or []
        ]


def entry_addresses(entries: Iterable[ServiceEntry]) -> dict[str, str]:
    """``host -> IPv4 address`` in :data:`ENTRY_ADDRESS_RANGE` for every host of ``entries``
    (hosts are lowercase; one address per host however many entries name it).

    A host's address is the SHA-256 of its name, modulo the range's usable size, taken in
    sorted order of hosts; on a collision, the next free one. So an address depends only on
    the host (and, rarely, on a colliding host sorted before it): it stays while entries
    come and go, as clients and cached DNS answers need. Pure.
    """
    hosts = sorted({h.lower() for e in entries for h in e.spec.hosts})
    first = int(ENTRY_ADDRESS_RANGE.network_address) + 1
    size = ENTRY_ADDRESS_RANGE.num_addresses - 2  # neither the network nor the broadcast
    taken: set[int] = set()
    out: dict[str, str] = {}
    for host in hosts:
        offset = int.from_bytes(hashlib.sha256(host.encode()).digest()[:8], "big") % size
        while offset in taken:
            offset = (offset + 1) % size
        taken.add(offset)
        out[host] = str(ip_address(first + offset))
    return out
