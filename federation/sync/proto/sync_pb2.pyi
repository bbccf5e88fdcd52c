from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceRef(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class PortInfo(_message.Message):
    __slots__ = ("name", "port", "protocol")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    name: str
    port: int
    protocol: str
    def __init__(self, name: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class EndpointReport(_message.Message):
    __slots__ = ("address", "zone", "healthy", "tls_mode", "ports", "weight", "capacity_rps")
    class PortsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    TLS_MODE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_RPS_FIELD_NUMBER: _ClassVar[int]
    address: str
    zone: str
    healthy: bool
    tls_mode: str
    ports: _containers.ScalarMap[str, int]
    weight: int
    capacity_rps: float
    def __init__(self, address: _Optional[str] = ..., zone: _Optional[str] = ..., healthy: _Optional[bool] = ..., tls_mode: _Optional[str] = ..., ports: _Optional[_Mapping[str, int]] = ..., weight: _Optional[int] = ..., capacity_rps: _Optional[float] = ...) -> None: ...

class ServiceReport(_message.Message):
    __slots__ = ("namespace", "name", "ports", "service_accounts", "healthy_endpoints_by_zone", "endpoints")
    class HealthyEndpointsByZoneEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_ENDPOINTS_BY_ZONE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    ports: _containers.RepeatedCompositeFieldContainer[PortInfo]
    service_accounts: _containers.RepeatedScalarFieldContainer[str]
    healthy_endpoints_by_zone: _containers.ScalarMap[str, int]
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointReport]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[PortInfo, _Mapping]]] = ..., service_accounts: _Optional[_Iterable[str]] = ..., healthy_endpoints_by_zone: _Optional[_Mapping[str, int]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointReport, _Mapping]]] = ...) -> None: ...

class ClusterReport(_message.Message):
    __slots__ = ("cluster", "services", "gateway", "rtt_ms", "exports", "crl_pem", "intermediate_csr_pem", "traffic", "protocol", "acked_version", "trace", "report_version", "base_report", "removed_services", "zone_gateways")
    class RttMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ZoneGatewaysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATE_CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ACKED_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    REPORT_VERSION_FIELD_NUMBER: _ClassVar[int]
    BASE_REPORT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_SERVICES_FIELD_NUMBER: _ClassVar[int]
    ZONE_GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    services: _containers.RepeatedCompositeFieldContainer[ServiceReport]
    gateway: str
    rtt_ms: _containers.ScalarMap[str, float]
    exports: _containers.RepeatedCompositeFieldContainer[ServiceRef]
    crl_pem: str
    intermediate_csr_pem: str
    traffic: TrafficReport
    protocol: int
    acked_version: int
    trace: ChangeTrace
    report_version: int
    base_report: int
    removed_services: _containers.RepeatedCompositeFieldContainer[ServiceRef]
    zone_gateways: _containers.ScalarMap[str, str]
    def __init__(self, cluster: _Optional[str] = ..., services: _Optional[_Iterable[_Union[ServiceReport, _Mapping]]] = ..., gateway: _Optional[str] = ..., rtt_ms: _Optional[_Mapping[str, float]] = ..., exports: _Optional[_Iterable[_Union[ServiceRef, _Mapping]]] = ..., crl_pem: _Optional[str] = ..., intermediate_csr_pem: _Optional[str] = ..., traffic: _Optional[_Union[TrafficReport, _Mapping]] = ..., protocol: _Optional[int] = ..., acked_version: _Optional[int] = ..., trace: _Optional[_Union[ChangeTrace, _Mapping]] = ..., report_version: _Optional[int] = ..., base_report: _Optional[int] = ..., removed_services: _Optional[_Iterable[_Union[ServiceRef, _Mapping]]] = ..., zone_gateways: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ChangeTrace(_message.Message):
    __slots__ = ("origin_cluster", "origin_version", "changed_at", "reported_at", "received_at", "sent_at")
    ORIGIN_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    origin_cluster: str
    origin_version: int
    changed_at: float
    reported_at: float
    received_at: float
    sent_at: float
    def __init__(self, origin_cluster: _Optional[str] = ..., origin_version: _Optional[int] = ..., changed_at: _Optional[float] = ..., reported_at: _Optional[float] = ..., received_at: _Optional[float] = ..., sent_at: _Optional[float] = ...) -> None: ...

class EdgeTraffic(_message.Message):
    __slots__ = ("source_locality", "destination_service", "destination_cluster", "destination_locality", "path_class", "response_code_class", "requests", "request_bytes", "response_bytes", "egress_usd", "duration_ms_sum", "duration_buckets", "retries")
    SOURCE_LOCALITY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_LOCALITY_FIELD_NUMBER: _ClassVar[int]
    PATH_CLASS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_CLASS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EGRESS_USD_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_SUM_FIELD_NUMBER: _ClassVar[int]
    DURATION_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    source_locality: str
    destination_service: str
    destination_cluster: str
    destination_locality: str
    path_class: str
    response_code_class: str
    requests: int
    request_bytes: int
    response_bytes: int
    egress_usd: float
    duration_ms_sum: float
    duration_buckets: _containers.RepeatedScalarFieldContainer[int]
    retries: int
    def __init__(self, source_locality: _Optional[str] = ..., destination_service: _Optional[str] = ..., destination_cluster: _Optional[str] = ..., destination_locality: _Optional[str] = ..., path_class: _Optional[str] = ..., response_code_class: _Optional[str] = ..., requests: _Optional[int] = ..., request_bytes: _Optional[int] = ..., response_bytes: _Optional[int] = ..., egress_usd: _Optional[float] = ..., duration_ms_sum: _Optional[float] = ..., duration_buckets: _Optional[_Iterable[int]] = ..., retries: _Optional[int] = ...) -> None: ...

class TrafficReport(_message.Message):
    __slots__ = ("started_at", "duration_bounds_ms", "edges", "gateway_hops", "taken_at")
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_BOUNDS_MS_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_HOPS_FIELD_NUMBER: _ClassVar[int]
    TAKEN_AT_FIELD_NUMBER: _ClassVar[int]
    started_at: float
    duration_bounds_ms: _containers.RepeatedScalarFieldContainer[float]
    edges: _containers.RepeatedCompositeFieldContainer[EdgeTraffic]
    gateway_hops: _containers.RepeatedCompositeFieldContainer[GatewayHopTraffic]
    taken_at: float
    def __init__(self, started_at: _Optional[float] = ..., duration_bounds_ms: _Optional[_Iterable[float]] = ..., edges: _Optional[_Iterable[_Union[EdgeTraffic, _Mapping]]] = ..., gateway_hops: _Optional[_Iterable[_Union[GatewayHopTraffic, _Mapping]]] = ..., taken_at: _Optional[float] = ...) -> None: ...

class GatewayHopTraffic(_message.Message):
    __slots__ = ("gateway_locality", "destination_service", "destination_locality", "path_class", "connections", "bytes_to_endpoint", "bytes_from_endpoint", "egress_usd")
    GATEWAY_LOCALITY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_LOCALITY_FIELD_NUMBER: _ClassVar[int]
    PATH_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    BYTES_TO_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FROM_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    EGRESS_USD_FIELD_NUMBER: _ClassVar[int]
    gateway_locality: str
    destination_service: str
    destination_locality: str
    path_class: str
    connections: int
    bytes_to_endpoint: int
    bytes_from_endpoint: int
    egress_usd: float
    def __init__(self, gateway_locality: _Optional[str] = ..., destination_service: _Optional[str] = ..., destination_locality: _Optional[str] = ..., path_class: _Optional[str] = ..., connections: _Optional[int] = ..., bytes_to_endpoint: _Optional[int] = ..., bytes_from_endpoint: _Optional[int] = ..., egress_usd: _Optional[float] = ...) -> None: ...

class RemoteCluster(_message.Message):
    __slots__ = ("cluster", "gateway", "network", "locality", "endpoints", "same_network", "direct_endpoints", "zone_gateways")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    SAME_NETWORK_FIELD_NUMBER: _ClassVar[int]
    DIRECT_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ZONE_GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    gateway: str
    network: str
    locality: str
    endpoints: int
    same_network: bool
    direct_endpoints: _containers.RepeatedCompositeFieldContainer[EndpointReport]
    zone_gateways: _containers.RepeatedCompositeFieldContainer[ZoneGateway]
    def __init__(self, cluster: _Optional[str] = ..., gateway: _Optional[str] = ..., network: _Optional[str] = ..., locality: _Optional[str] = ..., endpoints: _Optional[int] = ..., same_network: _Optional[bool] = ..., direct_endpoints: _Optional[_Iterable[_Union[EndpointReport, _Mapping]]] = ..., zone_gateways: _Optional[_Iterable[_Union[ZoneGateway, _Mapping]]] = ...) -> None: ...

class ZoneGateway(_message.Message):
    __slots__ = ("zone", "gateway", "endpoints")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    zone: str
    gateway: str
    endpoints: int
    def __init__(self, zone: _Optional[str] = ..., gateway: _Optional[str] = ..., endpoints: _Optional[int] = ...) -> None: ...

class ServiceImport(_message.Message):
    __slots__ = ("namespace", "name", "ports", "service_accounts", "clusters", "ips")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    IPS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    ports: _containers.RepeatedCompositeFieldContainer[PortInfo]
    service_accounts: _containers.RepeatedScalarFieldContainer[str]
    clusters: _containers.RepeatedCompositeFieldContainer[RemoteCluster]
    ips: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[PortInfo, _Mapping]]] = ..., service_accounts: _Optional[_Iterable[str]] = ..., clusters: _Optional[_Iterable[_Union[RemoteCluster, _Mapping]]] = ..., ips: _Optional[_Iterable[str]] = ...) -> None: ...

class LocalityShare(_message.Message):
    __slots__ = ("cluster", "locality", "share")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    locality: str
    share: float
    def __init__(self, cluster: _Optional[str] = ..., locality: _Optional[str] = ..., share: _Optional[float] = ...) -> None: ...

class RoutingPlan(_message.Message):
    __slots__ = ("namespace", "name", "caller_locality", "shares", "demand_rps", "usd_per_hour", "failover_usd_per_hour", "round_robin_usd_per_hour", "binding", "solved_at", "capacities", "headrooms")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CALLER_LOCALITY_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    DEMAND_RPS_FIELD_NUMBER: _ClassVar[int]
    USD_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_USD_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    ROUND_ROBIN_USD_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    BINDING_FIELD_NUMBER: _ClassVar[int]
    SOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    CAPACITIES_FIELD_NUMBER: _ClassVar[int]
    HEADROOMS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    caller_locality: str
    shares: _containers.RepeatedCompositeFieldContainer[LocalityShare]
    demand_rps: float
    usd_per_hour: float
    failover_usd_per_hour: float
    round_robin_usd_per_hour: float
    binding: _containers.RepeatedScalarFieldContainer[str]
    solved_at: float
    capacities: _containers.RepeatedCompositeFieldContainer[LocalityShare]
    headrooms: _containers.RepeatedCompositeFieldContainer[LocalityHeadroom]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., caller_locality: _Optional[str] = ..., shares: _Optional[_Iterable[_Union[LocalityShare, _Mapping]]] = ..., demand_rps: _Optional[float] = ..., usd_per_hour: _Optional[float] = ..., failover_usd_per_hour: _Optional[float] = ..., round_robin_usd_per_hour: _Optional[float] = ..., binding: _Optional[_Iterable[str]] = ..., solved_at: _Optional[float] = ..., capacities: _Optional[_Iterable[_Union[LocalityShare, _Mapping]]] = ..., headrooms: _Optional[_Iterable[_Union[LocalityHeadroom, _Mapping]]] = ...) -> None: ...

class LocalityHeadroom(_message.Message):
    __slots__ = ("cluster", "locality", "headroom", "reason")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    HEADROOM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    locality: str
    headroom: float
    reason: str
    def __init__(self, cluster: _Optional[str] = ..., locality: _Optional[str] = ..., headroom: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ControllerUpdate(_message.Message):
    __slots__ = ("version", "trust_bundle_pem", "policies_json", "lease_seconds", "imports", "exports", "cluster_crls", "intermediate_chain_pem", "plans", "sync_addresses", "export_conditions", "cluster_cas", "protocol", "base_version", "removed_policies", "removed_imports", "removed_plans", "trace", "federated_bundles", "root_crl_pem")
    class ClusterCrlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ClusterCasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FederatedBundlesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    POLICIES_JSON_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IMPORTS_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CRLS_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATE_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    SYNC_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    EXPORT_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CAS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REMOVED_POLICIES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_IMPORTS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_PLANS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    FEDERATED_BUNDLES_FIELD_NUMBER: _ClassVar[int]
    ROOT_CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    version: int
    trust_bundle_pem: bytes
    policies_json: _containers.RepeatedScalarFieldContainer[str]
    lease_seconds: int
    imports: _containers.RepeatedCompositeFieldContainer[ServiceImport]
    exports: _containers.RepeatedCompositeFieldContainer[ServiceRef]
    cluster_crls: _containers.ScalarMap[str, str]
    intermediate_chain_pem: str
    plans: _containers.RepeatedCompositeFieldContainer[RoutingPlan]
    sync_addresses: _containers.RepeatedScalarFieldContainer[str]
    export_conditions: _containers.RepeatedCompositeFieldContainer[ExportCondition]
    cluster_cas: _containers.ScalarMap[str, str]
    protocol: int
    base_version: int
    removed_policies: _containers.RepeatedScalarFieldContainer[str]
    removed_imports: _containers.RepeatedCompositeFieldContainer[ServiceRef]
    removed_plans: _containers.RepeatedCompositeFieldContainer[PlanRef]
    trace: ChangeTrace
    federated_bundles: _containers.ScalarMap[str, str]
    root_crl_pem: str
    def __init__(self, version: _Optional[int] = ..., trust_bundle_pem: _Optional[bytes] = ..., policies_json: _Optional[_Iterable[str]] = ..., lease_seconds: _Optional[int] = ..., imports: _Optional[_Iterable[_Union[ServiceImport, _Mapping]]] = ..., exports: _Optional[_Iterable[_Union[ServiceRef, _Mapping]]] = ..., cluster_crls: _Optional[_Mapping[str, str]] = ..., intermediate_chain_pem: _Optional[str] = ..., plans: _Optional[_Iterable[_Union[RoutingPlan, _Mapping]]] = ..., sync_addresses: _Optional[_Iterable[str]] = ..., export_conditions: _Optional[_Iterable[_Union[ExportCondition, _Mapping]]] = ..., cluster_cas: _Optional[_Mapping[str, str]] = ..., protocol: _Optional[int] = ..., base_version: _Optional[int] = ..., removed_policies: _Optional[_Iterable[str]] = ..., removed_imports: _Optional[_Iterable[_Union[ServiceRef, _Mapping]]] = ..., removed_plans: _Optional[_Iterable[_Union[PlanRef, _Mapping]]] = ..., trace: _Optional[_Union[ChangeTrace, _Mapping]] = ..., federated_bundles: _Optional[_Mapping[str, str]] = ..., root_crl_pem: _Optional[str] = ...) -> None: ...

class PlanRef(_message.Message):
    __slots__ = ("namespace", "name", "caller_locality")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CALLER_LOCALITY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    caller_locality: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., caller_locality: _Optional[str] = ...) -> None: ...

class ExportCondition(_message.Message):
    __slots__ = ("namespace", "name", "condition", "message")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    condition: str
    message: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., condition: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
