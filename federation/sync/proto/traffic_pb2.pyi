from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyTraffic(_message.Message):
    __slots__ = ("upstream_cluster", "served_by", "response_code", "requests", "request_bytes", "response_bytes", "duration_ms_sum", "duration_buckets", "retries")
    UPSTREAM_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_SUM_FIELD_NUMBER: _ClassVar[int]
    DURATION_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    upstream_cluster: str
    served_by: str
    response_code: int
    requests: int
    request_bytes: int
    response_bytes: int
    duration_ms_sum: float
    duration_buckets: _containers.RepeatedScalarFieldContainer[int]
    retries: int
    def __init__(self, upstream_cluster: _Optional[str] = ..., served_by: _Optional[str] = ..., response_code: _Optional[int] = ..., requests: _Optional[int] = ..., request_bytes: _Optional[int] = ..., response_bytes: _Optional[int] = ..., duration_ms_sum: _Optional[float] = ..., duration_buckets: _Optional[_Iterable[int]] = ..., retries: _Optional[int] = ...) -> None: ...

class ProxyTraffic(_message.Message):
    __slots__ = ("node", "started_at", "duration_bounds_ms", "keys")
    NODE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_BOUNDS_MS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    node: bytes
    started_at: float
    duration_bounds_ms: _containers.RepeatedScalarFieldContainer[float]
    keys: _containers.RepeatedCompositeFieldContainer[KeyTraffic]
    def __init__(self, node: _Optional[bytes] = ..., started_at: _Optional[float] = ..., duration_bounds_ms: _Optional[_Iterable[float]] = ..., keys: _Optional[_Iterable[_Union[KeyTraffic, _Mapping]]] = ...) -> None: ...

class ProxyTrafficAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
