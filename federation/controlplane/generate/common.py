"""Names, config sources and small proto helpers shared by the generators."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from federation.ca.files import ROOTCA_SDS_FILE, ROOTCA_SECRET, SVID_SDS_FILE, SVID_SECRET
from federation.model.locality import Locality
from federation.model.workload import global_name
from federation.sync.node import GRPC_CERT_PROVIDER

#: SDS secret names (as Istio): the proxy's own SVID and the trust bundle.
SECRET_SVID = SVID_SECRET
SECRET_ROOTCA = ROOTCA_SECRET
#: The sidecar's outbound RouteConfiguration name.
OUTBOUND_ROUTE = "outbound"
SERVED_BY_HEADER = "x-meshfed-served-by"


@dataclass(frozen=True, slots=True)
class MeshContext:
    """The cluster-wide facts generators need.

    Attributes:
        cluster: this member cluster's name.
        trust_domain: e.g. ``example.org``; peers' SPIFFE IDs must be in it.
        locality: the cluster's default locality (region and zone).
        network: the cluster's network name.
        otlp_collector: ``host:port`` of an OpenTelemetry collector (OTLP over gRPC) that
            every sidecar sends its spans to; None: no spans (``traceparent`` headers still
            pass through untouched).
        telemetry: sidecars whose agent reads a traffic log (``meshfed.io/traffic_log``) get
            one on their outbound listener; the agents report to the control plane, which
            counts traffic per edge (:mod:`federation.controlplane.telemetry`); False: no
            traffic log (``meshfed controlplane serve --no-telemetry``).
    """

    cluster: str
    trust_domain: str
    locality: Locality
    network: str = "default"
    otlp_collector: str | None = None
    telemetry: bool = True


@dataclass(frozen=True, slots=True)
class ProxyTls:
    """Where a proxy's TLS material comes from, and the trust domain of its peers.

    Attributes:
        trust_domain: peers' SPIFFE IDs must be in it.
        federated: foreign trust domains whose SVIDs inbound connections may present too
            (SPIFFE federation; the ROOTCA secret validates each with its own bundle).
        identity_dir: the proxy's identity directory (node metadata
            ``meshfed.io/identity_dir``, absolute on the proxy's host, or relative to Envoy's
            working directory: :meth:`~federation.sync.node.ProxyDescription.envoy_path`); its
            agent keeps ``svid.json`` and ``rootca.json`` there (:mod:`federation.ca.files`).
    """

    trust_domain: str
    identity_dir: str
    federated: tuple[str, ...] = ()

    def _file(self, secret: str, filename: str) -> secret_pb2.SdsSecretConfig:
        return secret_pb2.SdsSecretConfig(
            name=secret,
            sds_config=config_source_pb2.ConfigSource(
                path_config_source=config_source_pb2.PathConfigSource(
                    path=f"{self.identity_dir.rstrip('/')}/{filename}"
                ),
                resource_api_version=config_source_pb2.ApiVersion.V3,
            ),
        )

    def svid(self) -> secret_pb2.SdsSecretConfig:
        """File-based SDS of secret ``default`` (the proxy's SVID and key)."""
        return self._file(SECRET_SVID, SVID_SDS_FILE)

    def rootca(self) -> secret_pb2.SdsSecretConfig:
        """File-based SDS of secret ``ROOTCA`` (the trust bundle)."""
        return self._file(SECRET_ROOTCA, ROOTCA_SDS_FILE)


def grpc_tls_context(match_sans: Sequence[str] = ()) -> tls_pb2.CommonTlsContext:
    """A proxyless gRPC TLS context (gRFC A29): its SVID and the trust bundle from the
    bootstrap's certificate provider :data:`GRPC_CERT_PROVIDER`; ``match_sans``: the peer's
    SAN must equal one of them (``match_subject_alt_names``, the field gRPC reads)."""
    return tls_pb2.CommonTlsContext(
        tls_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(
            instance_name=GRPC_CERT_PROVIDER, certificate_name="default"
        ),
        validation_context=common_pb2.CertificateValidationContext(
            ca_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(
                instance_name=GRPC_CERT_PROVIDER, certificate_name="ROOTCA"
            ),
            match_subject_alt_names=[string_pb2.StringMatcher(exact=san) for san in match_sans],
        ),
    )


def tls_transport_socket(
    context: tls_pb2.UpstreamTlsContext | tls_pb2.DownstreamTlsContext,
) -> base_pb2.TransportSocket:
    """``envoy.transport_sockets.tls`` with ``context``."""
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=pack(context))


def outbound_cluster_name(service: str, namespace: str, port: int) -> str:
    """``outbound|<port>||<svc>.<ns>.svc.clusterset.local`` (Istio's naming)."""
    return f"outbound|{port}||{global_name(service, namespace)}"


def inbound_cluster_name(port_name: str, target_port: int) -> str:
    """``inbound|<targetPort>|<portName>``: the local app behind a sidecar."""
    return f"inbound|{target_port}|{port_name}"


def sni(service: str, namespace: str, port: int, subset: str = "") -> str:
    """The SNI naming a service port across clusters (Istio AUTO_PASSTHROUGH form):
    ``outbound_.<port>_._.<svc>.<ns>.svc.clusterset.local``, or with a TrafficPolicy subset
    ``outbound_.<port>_.<subset>_.<svc>...``: the subset's workloads (their cluster's gateway
    and sidecars pick them by its labels)."""
    return f"outbound_.{port}_.{subset + '_' if subset else '_'}.{global_name(service, namespace)}"


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """``spiffe://<td>/ns/<ns>/sa/<sa>``."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def ads() -> config_source_pb2.ConfigSource:
    """A ConfigSource pointing at the ADS stream (``ads: {}``, resource API v3)."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def pack(message: Message) -> any_pb2.Any:
    """Wrap a message in ``google.protobuf.Any``."""
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def duration_ms(ms: int) -> duration_pb2.Duration:
    """A protobuf Duration of ``ms`` milliseconds."""
    d = duration_pb2.Duration()
    d.FromMilliseconds(ms)
    return d
