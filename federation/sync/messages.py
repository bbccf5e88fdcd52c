"""Typed messages of the sync protocol (``meshfed.sync.v1``); pure values, no I/O.

``ClusterReport`` (control plane -> controller) says what a cluster serves; its
``model_dump()`` is the JSON the controller stores (snake_case, the proto's field names).
``ControllerUpdate`` (controller -> control plane) is the cluster's whole federated view:
the ServiceImports it must serve, the services it must export, the policies and the trust
bundle. Conversions to and from the wire are in :mod:`federation.sync.convert`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from federation.ca.names import DNS_LABEL as _DNS_LABEL
from federation.ca.names import DNS_SUBDOMAIN as _DNS_SUBDOMAIN
from federation.model.authz import AuthorizationPolicy
from federation.model.istio_sidecar import IstioSidecar
from federation.model.locality import LOCALITY_PART
from federation.model.peer_authentication import PeerAuthentication
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service import ServiceImport
from federation.model.service_entry import ServiceEntry
from federation.model.workload import DNS_LABEL, Port, Protocol, check_address
from federation.netaddr import parse_host_port

#: ``(namespace, service)``.
ServiceKey = tuple[str, str]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _gateway(value: str) -> str:
    if value:
        host, port = parse_host_port(value, what="gateway")
        check_address(host)
        if port == 0:
            raise ValueError(f"gateway {value!r}: port must be 1-65535")
    return value


Gateway = Annotated[str, AfterValidator(_gateway)]


def _zone_name(value: str) -> str:
    """A zone's name (one locality part, ``us-east-1a``)."""
    if not LOCALITY_PART.match(value):
        raise ValueError(f"{value!r} is not a zone name")
    return value


def _zone_key(value: str) -> str:
    """A key of ``healthy_endpoints_by_zone``: a zone, or a region where the workload's
    locality has none (``aws/us-east-1``)."""
    if not all(LOCALITY_PART.match(part) for part in value.split("/")) or value.count("/") > 1:
        raise ValueError(f"{value!r} is neither a zone nor a region")
    return value


def _service_ref(value: str) -> str:
    namespace, sep, name = value.partition("/")
    if not sep or not _DNS_LABEL.match(namespace) or not _DNS_LABEL.match(name):
        raise ValueError(f"{value!r} must be <namespace>/<service>, both DNS labels")
    return value


DnsLabel = Annotated[str, Field(pattern=DNS_LABEL)]


def _account(value: str) -> str:
    if not _DNS_SUBDOMAIN.match(value):
        raise ValueError(f"service account {value!r} must be a DNS subdomain (RFC 1123)")
    return value


#: A service account: a DNS subdomain, as Kubernetes names them.
AccountName = Annotated[str, AfterValidator(_account)]
#: A zone (``us-east-1a``), or "" where a workload's locality names none.
ZoneName = Annotated[str, Field(pattern=r"^([a-z0-9][a-z0-9._-]{0,62})?$")]
#: A finite, non-negative number (NaN and infinities are refused).
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class PortInfo(_Message):
    """A service port as its workloads define it."""

    name: DnsLabel
    port: Port
    protocol: Protocol = "http"


class EndpointReport(_Message):
    """One endpoint of a local service (passed on only to clusters on the same network).

    ``ports``: service port name -> port to dial (the sidecar's inbound port for tlsMode
    mutual, else the app's port).
    """

    address: Annotated[str, AfterValidator(check_address)]
    zone: ZoneName = ""
    healthy: bool = False
    tls_mode: Literal["mutual", "disabled"] = "mutual"
    ports: dict[DnsLabel, Port] = Field(default_factory=dict)
    weight: int = Field(default=1, ge=1, le=128)
    #: requests/s the workload declares it can serve (``spec.capacity.rps``, at most 10^7);
    #: 0: undeclared
    capacity_rps: float = Field(default=0.0, ge=0, le=1e7, allow_inf_nan=False)


class ServiceReport(_Message):
    """One local service: ports, serving service accounts, healthy endpoints per zone (or
    per region, for workloads whose locality names no zone)."""

    namespace: DnsLabel
    name: DnsLabel
    ports: list[PortInfo] = Field(min_length=1)
    service_accounts: list[AccountName] = Field(default_factory=list)
    healthy_endpoints_by_zone: dict[Annotated[str, AfterValidator(_zone_key)], int] = Field(
        default_factory=dict
    )
    endpoints: list[EndpointReport] = Field(default_factory=list)

    @property
    def key(self) -> ServiceKey:
        """``(namespace, name)``."""
        return (self.namespace, self.name)

    @property
    def healthy_endpoints(self) -> int:
        """Healthy endpoints in every zone together."""
        return sum(self.healthy_endpoints_by_zone.values())


class ClusterReport(_Message):
    """What a control plane tells the controller (sent on change and every lease/3).

    Every field is checked as strictly as what it becomes in other clusters' configuration
    (names are DNS labels, addresses IPs or hostnames, numbers finite): a report is what a
    member says to every other member, and one that would not survive there is refused
    whole (``INVALID_ARGUMENT``), before anything of it is stored.

    Attributes:
        exports: ``"<namespace>/<service>"`` of every exported service (as stored and shown).
        gateway: ``host:port`` of the cluster's east-west gateway, "" if none.
        rtt_ms: other cluster -> measured RTT (ms) to its gateway.
        crl_pem: the cluster CA's current CRL (PEM; :mod:`trust.revocation`).
        intermediate_csr_pem: a CSR for the cluster's current intermediate key (PEM), for
            re-signing (:mod:`federation.controller.intermediates`).
        zone_gateways: zone -> ``host:port`` of that zone's own east-west gateway
            (``meshfed controlplane serve --zone-gateway``).
    """

    cluster: DnsLabel
    services: list[ServiceReport] = Field(default_factory=list)
    exports: list[Annotated[str, AfterValidator(_service_ref)]] = Field(default_factory=list)
    gateway: Gateway = ""
    rtt_ms: dict[DnsLabel, NonNegative] = Field(default_factory=dict)
    crl_pem: str = ""
    intermediate_csr_pem: str = ""
    zone_gateways: dict[Annotated[str, AfterValidator(_zone_name)], Gateway] = Field(
        default_factory=dict
    )

    def service(self, key: ServiceKey) -> ServiceReport | None:
        """The reported service ``(namespace, name)``, or None."""
        return next((s for s in self.services if s.key == key), None)

    def export_keys(self) -> list[ServiceKey]:
        """``exports`` as ``(namespace, service)`` pairs."""
        return [split_service_ref(e) for e in self.exports]


def split_service_ref(text: str) -> ServiceKey:
    """``"demo/echo"`` -> ``("demo", "echo")``; a bare name is in ``default``."""
    ns, sep, name = text.partition("/")
    return (ns, name) if sep else ("default", ns)


@dataclass(frozen=True, slots=True)
class RoutingPlan:
    """The controller's split of one service for the callers of one locality (cost mode
    ``optimize``; :mod:`federation.lb.optimizer`).

    Attributes:
        namespace / service: the service.
        caller_locality: the callers' locality (``<cloud>/<region>/<zone>``).
        shares: ``(cluster, locality, share)`` per serving locality (shares 0-1, sum 1).
        demand_rps: the callers' measured demand (requests/s, smoothed).
        usd_per_hour: predicted egress US$/hour of the demand under the plan;
            failover_usd_per_hour / round_robin_usd_per_hour: under locality failover and
            round robin.
        binding: the constraints that bind, in words.
        solved_at: when the program was solved (Unix s).
        capacities: ``(cluster, locality, requests/s)`` of every serving locality the
            program saw (0: undeclared, unbounded).
        headrooms: ``(cluster, locality, headroom, why)`` of every serving locality with a
            declared capacity, as the program was solved with (:mod:`federation.lb.headroom`).
    """

    namespace: str
    service: str
    caller_locality: str
    shares: tuple[tuple[str, str, float], ...]
    demand_rps: float = 0.0
    usd_per_hour: float = 0.0
    failover_usd_per_hour: float = 0.0
    round_robin_usd_per_hour: float = 0.0
    binding: tuple[str, ...] = ()
    solved_at: float = 0.0
    capacities: tuple[tuple[str, str, float], ...] = ()
    headrooms: tuple[tuple[str, str, float, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ChangeTrace:
    """One change's way through the federation (issue 37), stamped hop by hop.

    Attributes:
        origin_cluster / origin_version: the cluster whose registry changed, and its
            registry version after the change.
        changed_at: when the origin's registry changed (Unix s, the origin's clock).
        reported_at: when the origin sent the report carrying the change.
        received_at: when the controller received that report (the controller's clock; 0:
            not yet).
        sent_at: when the controller queued the update carrying it (0: not yet).
    """

    origin_cluster: str
    origin_version: int
    changed_at: float
    reported_at: float
    received_at: float = 0.0
    sent_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ControllerUpdate:
    """One cluster's federated view, whole, made whenever any part of it changes (sync
    protocol 2 carries it as a delta on the stream's previous one: :mod:`federation.sync.delta`).

    Attributes:
        version: increases with every update the controller sends (any cluster).
        imports: the ServiceImports the cluster serves (replace the previous ones).
        exports: services the cluster must export besides its own ServiceExports.
        policies / price_tables / authorization_policies / peer_authentications / sidecars
            / service_entries: every TrafficPolicy, PriceTable, AuthorizationPolicy,
            PeerAuthentication, (Istio) Sidecar and ServiceEntry of the federation.
        trust_bundle_pem: the federation's trust bundle (PEM); empty keeps the current one.
        lease_seconds: the controller's heartbeat lease (s); 0 keeps the current one.
        cluster_crls: member cluster -> its CA's CRL (PEM), every member of the federation;
            SVIDs of a cluster left out are refused by every proxy (revocation).
        intermediate_chain_pem: the cluster's intermediate as the controller recorded it
            (PEM); installed by the control plane when it differs from its own.
        plans: the optimizer's splits for this cluster's caller localities (cost mode
            ``optimize``).
        sync_addresses: ``host:port`` of the sync service of every live controller replica,
            the sender's first (empty keeps the addresses the control plane knows).
        export_conditions: ``(namespace, service) -> (Exported|Conflict, message)`` of this
            cluster's exports.
        cluster_cas: member cluster -> its intermediate CA certificate (PEM), for the same
            members as ``cluster_crls``: the trust anchors of proxyless gRPC workloads.
        trace: the change that caused this update, for its propagation trace (not part of
            the view: two updates that differ only by it are equal).
        federated_bundles: foreign trust domain -> its unexpired roots (PEM), one bundle per
            domain (:mod:`federation.controller.trust_federation`).
        root_crl_pem: with ``federated_bundles``, the roots' CRLs (PEM,
            :class:`federation.controller.trust_federation.RootCrls`).
    """

    version: int = 0
    imports: list[ServiceImport] = field(default_factory=list)
    exports: list[ServiceKey] = field(default_factory=list)
    policies: list[TrafficPolicy] = field(default_factory=list)
    price_tables: list[PriceTable] = field(default_factory=list)
    authorization_policies: list[AuthorizationPolicy] = field(default_factory=list)
    peer_authentications: list[PeerAuthentication] = field(default_factory=list)
    sidecars: list[IstioSidecar] = field(default_factory=list)
    service_entries: list[ServiceEntry] = field(default_factory=list)
    trust_bundle_pem: bytes = b""
    lease_seconds: int = 0
    cluster_crls: dict[str, str] = field(default_factory=dict)
    intermediate_chain_pem: str = ""
    plans: list[RoutingPlan] = field(default_factory=list)
    sync_addresses: list[str] = field(default_factory=list)
    export_conditions: dict[ServiceKey, tuple[str, str]] = field(default_factory=dict)
    cluster_cas: dict[str, str] = field(default_factory=dict)
    trace: ChangeTrace | None = field(default=None, compare=False)
    federated_bundles: dict[str, str] = field(default_factory=dict)
    root_crl_pem: str = ""
