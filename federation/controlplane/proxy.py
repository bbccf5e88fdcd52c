"""What the control plane knows about a connected proxy, read from its xDS ``Node``.

The proxy agent (``eastwest_gateway``) and ``meshfed bootstrap grpc`` write these fields into
the bootstrap's ``node.metadata`` (keys prefixed ``meshfed.io/``) and ``node.locality``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from federation.model.locality import Locality

Role = Literal["sidecar", "gateway", "grpc"]
META_PREFIX = "meshfed.io/"


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
    """

    node_id: str
    role: Role
    namespace: str = "default"
    workload: str = ""
    service_account: str = "default"
    locality: Locality | None = None
    outbound_port: int = 15001
    listen: str = ""

    @classmethod
    def from_node(cls, node: base_pb2.Node) -> ProxyDescription:
        """Read a description from an xDS ``Node``.

        Raises:
            ValueError: no node id, or an unknown role.
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
        }
