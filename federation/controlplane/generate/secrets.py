"""SDS: the proxy's X.509-SVID (secret ``default``) and the trust bundle (``ROOTCA``)."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from federation.controlplane.generate.common import SECRET_ROOTCA, SECRET_SVID


@dataclass(frozen=True, slots=True, repr=False)
class IdentityMaterial:
    """PEM bytes of a proxy's identity. ``repr`` hides the key.

    Attributes:
        spiffe_id: the SVID's SPIFFE ID.
        chain_pem: leaf then intermediates.
        key_pem: the private key (secret).
        bundle_pem: the trust bundle (every trusted root).
    """

    spiffe_id: str
    chain_pem: bytes
    key_pem: bytes
    bundle_pem: bytes

    def __repr__(self) -> str:
        return f"IdentityMaterial({self.spiffe_id})"


def svid_secret(identity: IdentityMaterial) -> secret_pb2.Secret:
    """Secret ``default``: certificate chain and private key, inline."""
    return secret_pb2.Secret(
        name=SECRET_SVID,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=identity.chain_pem),
            private_key=base_pb2.DataSource(inline_bytes=identity.key_pem),
        ),
    )


def rootca_secret(identity: IdentityMaterial) -> secret_pb2.Secret:
    """Secret ``ROOTCA``: the trust bundle as ``trusted_ca``."""
    return secret_pb2.Secret(
        name=SECRET_ROOTCA,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=identity.bundle_pem)
        ),
    )
