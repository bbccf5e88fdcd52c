"""What the control plane knows about a connected proxy, read from its xDS ``Node``.

The proxy agent (``eastwest_gateway``) and ``meshfed bootstrap grpc`` write these fields into
the bootstrap's ``node.metadata`` (keys prefixed ``meshfed.io/``) and ``node.locality``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from federation.ca.names import GATEWAY_SERVICE_ACCOUNT, SYSTEM_NAMESPACE, workload_spiffe_id
from federation.model.locality import Locality

Role = Literal["sidecar", "gateway", "grpc"]
META_PREFIX = "meshfed.io/"


@dataclass(frozen=True, slots=True)
class Upstream:
    """A TCP service port a sidecar's app reaches on ``127.0.0.1:<local_port>`` (as Consul's
    upstreams with ``local_bind_port``: without traffic interception a plain TCP client
    cannot name its destination); the sidecar originates mTLS for it."""

    service: str
    namespace: str
    port: int
    local_port: int

    def text(self) -> str:
        """``<svc>.<ns>:<port>=<local port>`` (the ``--upstream`` and metadata form)."""
        return f"{self.service}.{self.namespace}:{self.port}={self.local_port}"

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """Read ``<svc>.<ns>:<port>=<local port>``.

        Raises:
            ValueError: another shape, or a port outside 1-65535.
        """
        target, sep, local = text.strip().partition("=")
        name, colon, port = target.rpartition(":")
        service, dot, namespace = name.partition(".")
        if not (sep and colon and dot and service and namespace and "." not in namespace):
            raise ValueError(f"{text!r}: use SERVICE.NAMESPACE:PORT=LOCAL_PORT")
        if not (port.isdigit() and local.isdigit()):
            raise ValueError(f"{text!r}: PORT and LOCAL_PORT must be numbers")
        if not (0 < int(port) < 65536 and 0 < int(local) < 65536):
            raise ValueError(f"{text!r}: ports must be 1-65535")
        return cls(service, namespace, int(port), int(local))


@dataclass(frozen=True, slots=True)
class ProxyDescription:
    """A proxy as generators see it.

    Attributes:
        node_id: the xDS node id (unique per proxy).
        role: sidecar (Envoy next to a workload), gateway (east-west gateway), grpc (proxyless).
        namespace: the workload's namespace (sidecar, grpc).
        workload: the WorkloadEntry name the sidecar fronts ("" for gateway / grpc clients).
        service_account: the identity the proxy's SVID is issued for.
        locality: where the proxy runs (its EDS priorities are computed from it).
        outbound_port: the sidecar's outbound HTTP listener port on 127.0.0.1.
        listen: ``host:port`` of an east-west gateway's passthrough listener.
        identity_dir: absolute path of the proxy's identity directory
            (:mod:`federation.ca.files`): Envoy reads its SVID and the trust bundle there as
            file-based SDS; no xDS response carries key material.
        traffic_log: absolute path of the FIFO the sidecar's agent reads its Envoy's traffic
            log from (:mod:`federation.sync.tap`); "" when the agent counts no traffic.
        upstreams: the TCP service ports the sidecar listens for on loopback
            (:class:`Upstream`).
    """

    node_id: str
    role: Role
    namespace: str = "default"
    workload: str = ""
    service_account: str = "default"
    locality: Locality | None = None
    outbound_port: int = 15001
    listen: str = ""
    identity_dir: str = ""
    traffic_log: str = ""
    upstreams: tuple[Upstream, ...] = ()

    @classmethod
    def from_node(cls, node: base_pb2.Node) -> ProxyDescription:
        """Read a description from an xDS ``Node``.

        Raises:
            ValueError: no node id, an unknown role, or a malformed upstream.
        """
        if not node.id:
            raise ValueError("the xDS node has no id")
        meta = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}

        def get(key: str, default: str) -> str:
            value = meta.get(META_PREFIX + key, default)
            return str(value)

        role = get("role", "grpc" if node.user_agent_name.lower().startswith("grpc") else "sidecar")
        if role not in ("sidecar", "gateway", "grpc"):
            raise ValueError(f"node {node.id}: unknown meshfed.io/role {role!r}")
        locality = None
        if node.locality.region:
            locality = Locality(node.locality.region, node.locality.zone, node.locality.sub_zone)
        return cls(
            node_id=node.id,
            role=role,  # type: ignore[arg-type]
            namespace=get("namespace", "default"),
            workload=get("workload", ""),
            service_account=get("service_account", "default"),
            locality=locality,
            outbound_port=int(get("outbound_port", "15001")),
            listen=get("listen", ""),
            identity_dir=get("identity_dir", ""),
            traffic_log=get("traffic_log", ""),
            upstreams=tuple(
                Upstream.parse(u) for u in get("upstreams", "").split(",") if u.strip()
            ),
        )

    def metadata(self) -> dict[str, str]:
        """The ``node.metadata`` fields that :meth:`from_node` reads back."""
        return {
            META_PREFIX + "role": self.role,
            META_PREFIX + "namespace": self.namespace,
            META_PREFIX + "workload": self.workload,
            META_PREFIX + "service_account": self.service_account,
            META_PREFIX + "outbound_port": str(self.outbound_port),
            META_PREFIX + "listen": self.listen,
            META_PREFIX + "identity_dir": self.identity_dir,
            **({META_PREFIX + "traffic_log": self.traffic_log} if self.traffic_log else {}),
            **(
                {META_PREFIX + "upstreams": ",".join(u.text() for u in self.upstreams)}
                if self.upstreams
                else {}
            ),
        }

    def expected_spiffe_id(self, trust_domain: str) -> str:
        """The SPIFFE ID this proxy's client certificate must carry: the gateway identity for
        a gateway, else its namespace's service account."""
        if self.role == "gateway":
            return workload_spiffe_id(trust_domain, SYSTEM_NAMESPACE, GATEWAY_SERVICE_ACCOUNT)
        return workload_spiffe_id(trust_domain, self.namespace, self.service_account)


def identity_problem(proxy: ProxyDescription, peer: str | None, trust_domain: str) -> str | None:
    """Why ``proxy`` may not get configuration over a stream authenticated as ``peer`` (the
    client certificate's SPIFFE ID), or None when it may.

    The node's metadata is the proxy's claim; the certificate is the proof. Istio likewise
    takes a proxy's identity from its certificate, not from its node metadata."""
    if peer is None:
        return f"node {proxy.node_id}: no client certificate"
    expected = proxy.expected_spiffe_id(trust_domain)
    if peer != expected:
        return (
            f"node {proxy.node_id} claims {expected} in its metadata,"
            f" but its certificate is for {peer}"
        )
    return None
