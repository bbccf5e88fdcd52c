"""The ``LocalFederation`` document: what ``meshfed up`` starts. Validated whole before
anything starts; every problem names its field.

Shape (``federation/local/default-federation.yaml`` is the default; every field documented in
``docs/local-federation.md``)::

    apiVersion: meshfed.io/v1alpha1
    kind: LocalFederation
    metadata: {name: demo}
    spec:
      trustDomain: meshfed.local
      controller: {listen: "127.0.0.1:15080", syncListen: "127.0.0.1:15090"}
      clusters:
      - {name: aws-us-east-1, provider: aws, region: aws/us-east-1,
         zones: [us-east-1a, us-east-1b], addressRange: 127.0.1.0/24}
      echo: {namespace: demo, replicasPerCluster: 2}
      frontend: {cluster: aws-us-east-1, namespace: demo,
                 target: echo.demo.svc.clusterset.local, rps: 20}
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from federation.errors import InvalidDocumentError
from federation.local.latency import parse_loss, parse_pair, parse_rtt_ms
from federation.model.documents import invalid, yaml_error
from federation.model.locality import Locality
from federation.model.workload import DNS_LABEL, ObjectMeta, _Strict
from federation.netaddr import is_loopback, parse_host_port
from providers.base import ClusterInfo

DEFAULT_FILE = "default-federation.yaml"


def _loopback_address(value: str) -> str:
    host, port = parse_host_port(value)
    if not is_loopback(host):
        raise ValueError(f"{value!r}: meshfed up listens on loopback only (127.0.0.0/8)")
    if port == 0:
        raise ValueError(f"{value!r}: give a port")
    return value


class ControllerSpec(_Strict):
    """Where the controller listens (loopback only; with ``--isolate`` the same ports on its
    own namespace's address), and its lease: a cluster silent for ``leaseSeconds`` is
    withdrawn."""

    listen: str = "127.0.0.1:15080"
    sync_listen: str = Field(default="127.0.0.1:15090", alias="syncListen")
    lease_seconds: float = Field(default=30, ge=2, le=3600, alias="leaseSeconds")

    @field_validator("listen", "sync_listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        return _loopback_address(value)


class ClusterSpec(_Strict):
    """One member cluster: its region and zones, and the loopback /24 its processes use
    (``.1`` the east-west gateway, ``.2`` the control plane, ``.10`` on the workloads)."""

    name: str = Field(pattern=DNS_LABEL)
    provider: Literal["aws", "gcp", "local"] = "local"
    region: str = Field(description="<cloud>/<region>, e.g. aws/us-east-1")
    zones: list[str] = Field(min_length=1)
    address_range: str = Field(alias="addressRange")
    network: str | None = Field(default=None, description="default: the cluster's name")
    zone_gateways: bool = Field(
        default=False,
        alias="zoneGateways",
        description="a zone-local east-west gateway per zone too (``proxy gateway"
        " --zone-local``), each on the gateway's host at port 15444, 15445, ... in zone order",
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        loc = Locality.parse(value)
        if loc.zone:
            raise ValueError(f"{value!r}: give <cloud>/<region> here and the zones in zones")
        return value

    @field_validator("address_range")
    @classmethod
    def _range(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=True)
        if not net.is_loopback or net.prefixlen != 24 or net.version != 4:
            raise ValueError(f"{value!r} must be a /24 inside 127.0.0.0/8")
        if net.network_address == ipaddress.ip_address("127.0.0.0"):
            raise ValueError(f"{value!r}: 127.0.0.0/24 is the host's own; use 127.0.N.0/24")
        return value

    def address(self, host: int) -> str:
        """``.host`` in the cluster's range."""
        return str(ipaddress.ip_network(self.address_range).network_address + host)

    def locality(self, zone_index: int) -> Locality:
        """The locality of the ``zone_index``-th zone (wrapping)."""
        return Locality.parse(f"{self.region}/{self.zones[zone_index % len(self.zones)]}")


class EchoSpec(_Strict):
    """The demo ``echo`` service, exported from every cluster."""

    namespace: str = Field(default="demo", pattern=DNS_LABEL)
    replicas_per_cluster: int = Field(default=2, ge=1, le=16, alias="replicasPerCluster")
    #: requests/s each replica serves (declared as its WorkloadEntry's spec.capacity.rps and
    #: enforced: beyond it the replica answers 503); None: unlimited, undeclared
    capacity_rps: float | None = Field(default=None, gt=0, le=100000, alias="capacityRps")


class FrontendSpec(_Strict):
    """The demo caller: requests to ``target`` at ``rps``, counted by destination."""

    cluster: str
    namespace: str = Field(default="demo", pattern=DNS_LABEL)
    target: str = "echo.demo.svc.clusterset.local"
    rps: float = Field(default=20, gt=0, le=500)


def _pairs(value: object, parse: Callable[[object], float]) -> object:
    """Check ``{"<region> -> <region>": value}`` (each key and value) and normalise the
    values to numbers; a problem names the key."""
    if not isinstance(value, dict):
        return value
    out: dict[str, float] = {}
    seen: dict[frozenset[str], str] = {}
    for key, raw in value.items():
        pair = parse_pair(str(key))
        try:
            number = parse(raw)
        except ValueError as err:
            raise ValueError(f"{key!r}: {err}") from None
        if pair in seen:
            raise ValueError(f"{key!r} and {seen[pair]!r} name the same pair")
        seen[pair] = str(key)
        out[str(key)] = number
    return out


class LocalFederationSpec(_Strict):
    """``spec`` of a LocalFederation."""

    trust_domain: str = Field(default="meshfed.local", alias="trustDomain")
    controller: ControllerSpec = Field(default_factory=ControllerSpec)
    clusters: list[ClusterSpec] = Field(min_length=1, max_length=20)
    echo: EchoSpec = Field(default_factory=EchoSpec)
    frontend: FrontendSpec
    latency: dict[str, float] = Field(
        default_factory=dict,
        description="--isolate: round trip by pair of regions, e.g."
        ' {"aws/us-east-1 -> gcp/europe-west1": 85ms}',
    )
    loss: dict[str, float] = Field(
        default_factory=dict,
        description='--isolate: packet loss by pair of regions, e.g. {"a/x -> b/y": 0.5%}',
    )
    otlp_collector: str | None = Field(
        default=None,
        alias="otlpCollector",
        description="HOST:PORT of an OpenTelemetry collector (OTLP/gRPC): every sidecar"
        " traces HTTP requests and sends its spans there",
    )

    @field_validator("otlp_collector")
    @classmethod
    def _collector(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value, what="otlpCollector")
        return value

    @field_validator("latency", mode="before")
    @classmethod
    def _latency(cls, value: object) -> object:
        return _pairs(value, parse_rtt_ms)

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, value: object) -> object:
        return _pairs(value, parse_loss)

    @model_validator(mode="after")
    def _consistent(self) -> LocalFederationSpec:
        names = [c.name for c in self.clusters]
        if len(set(names)) != len(names):
            raise ValueError(f"clusters: names must be unique, got {names}")
        ranges = [c.address_range for c in self.clusters]
        if len(set(ranges)) != len(ranges):
            raise ValueError(f"clusters: addressRange must differ per cluster, got {ranges}")
        if self.frontend.cluster not in names:
            raise ValueError(f"frontend.cluster: {self.frontend.cluster!r} is not in clusters")
        return self


class LocalFederation(_Strict):
    """A ``LocalFederation`` document."""

    api_version: Literal["meshfed.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["LocalFederation"]
    metadata: ObjectMeta
    spec: LocalFederationSpec

    def cluster(self, name: str) -> ClusterSpec:
        """The cluster called ``name``.

        Raises:
            KeyError: no such cluster.
        """
        for c in self.spec.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def pairs(self, which: Literal["latency", "loss"]) -> dict[frozenset[str], float]:
        """``spec.latency`` (ms) or ``spec.loss`` (0-1) by pair of regions."""
        return {parse_pair(k): v for k, v in getattr(self.spec, which).items()}

    def cluster_infos(self) -> list[ClusterInfo]:
        """The clusters as the ``local`` provider describes them (``meshfed cluster
        discover --provider local``): control-plane API at ``.2:15014``."""
        return [
            ClusterInfo(
                name=c.name,
                cloud=c.region.split("/")[0],
                region=c.region.split("/")[1],
                zones=tuple(c.zones),
                endpoint=f"https://{c.address(2)}:15014",
                ca_data="",
                network=c.network or c.name,
                status="LOCAL",
            )
            for c in self.spec.clusters
        ]


def default_text() -> str:
    """The shipped default federation (YAML)."""
    return resources.files(__package__).joinpath(DEFAULT_FILE).read_text()


def load(path: Path | None) -> LocalFederation:
    """Parse and validate a federation file (the default when ``path`` is None).

    Raises:
        InvalidDocumentError: unreadable, not YAML, or invalid; ``problems`` names each field.
    """
    source = str(path) if path else f"(default) {DEFAULT_FILE}"
    try:
        text = path.read_text() if path else default_text()
    except OSError as err:
        raise InvalidDocumentError(f"{source}: {err.strerror}") from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidDocumentError(yaml_error(source, err)) from err
    try:
        return LocalFederation.model_validate(raw)
    except ValidationError as err:
        raise invalid(err, source) from err
