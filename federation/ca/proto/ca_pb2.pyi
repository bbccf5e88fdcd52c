from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CreateCertificateRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class CreateCertificateResponse(_message.Message):
    __slots__ = ("cert_chain_pem", "trust_bundle_pem", "crl_pem", "member_cas_pem", "federated_bundles")
    class FederatedBundlesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    CERT_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    MEMBER_CAS_PEM_FIELD_NUMBER: _ClassVar[int]
    FEDERATED_BUNDLES_FIELD_NUMBER: _ClassVar[int]
    cert_chain_pem: bytes
    trust_bundle_pem: bytes
    crl_pem: bytes
    member_cas_pem: bytes
    federated_bundles: _containers.ScalarMap[str, bytes]
    def __init__(self, cert_chain_pem: _Optional[bytes] = ..., trust_bundle_pem: _Optional[bytes] = ..., crl_pem: _Optional[bytes] = ..., member_cas_pem: _Optional[bytes] = ..., federated_bundles: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class GetTrustBundleRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrustBundle(_message.Message):
    __slots__ = ("pem", "crl_pem", "ca_chain_pem", "member_cas_pem", "federated_bundles")
    class FederatedBundlesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    PEM_FIELD_NUMBER: _ClassVar[int]
    CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    MEMBER_CAS_PEM_FIELD_NUMBER: _ClassVar[int]
    FEDERATED_BUNDLES_FIELD_NUMBER: _ClassVar[int]
    pem: bytes
    crl_pem: bytes
    ca_chain_pem: bytes
    member_cas_pem: bytes
    federated_bundles: _containers.ScalarMap[str, bytes]
    def __init__(self, pem: _Optional[bytes] = ..., crl_pem: _Optional[bytes] = ..., ca_chain_pem: _Optional[bytes] = ..., member_cas_pem: _Optional[bytes] = ..., federated_bundles: _Optional[_Mapping[str, bytes]] = ...) -> None: ...
