from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
    __slots__ = ("address", "zone", "healthy", "tls_mode", "ports", "weight")
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
    address: str
    zone: str
    healthy: bool
    tls_mode: str
    ports: _containers.ScalarMap[str, int]
    weight: int
    def __init__(self, address: _Optional[str] = ..., zone: _Optional[str] = ..., healthy: _Optional[bool] = ..., tls_mode: _Optional[str] = ..., ports: _Optional[_Mapping[str, int]] = ..., weight: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("cluster", "services", "exports", "gateway", "rtt_ms")
    class RttMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    services: _containers.RepeatedCompositeFieldContainer[ServiceReport]
    exports: _containers.RepeatedScalarFieldContainer[str]
    gateway: str
    rtt_ms: _containers.ScalarMap[str, float]
    def __init__(self, cluster: _Optional[str] = ..., services: _Optional[_Iterable[_Union[ServiceReport, _Mapping]]] = ..., exports: _Optional[_Iterable[str]] = ..., gateway: _Optional[str] = ..., rtt_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ControllerUpdate(_message.Message):
    __slots__ = ("version", "service_imports_json", "trust_bundle_pem", "policies_json", "lease_seconds", "exports")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVICE_IMPORTS_JSON_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    POLICIES_JSON_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    version: int
    service_imports_json: _containers.RepeatedScalarFieldContainer[str]
    trust_bundle_pem: bytes
    policies_json: _containers.RepeatedScalarFieldContainer[str]
    lease_seconds: int
    exports: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., service_imports_json: _Optional[_Iterable[str]] = ..., trust_bundle_pem: _Optional[bytes] = ..., policies_json: _Optional[_Iterable[str]] = ..., lease_seconds: _Optional[int] = ..., exports: _Optional[_Iterable[str]] = ...) -> None: ...
