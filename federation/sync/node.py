"""The node contract: what a proxy's xDS ``Node`` says, written by one end and read by the other.

The proxy agent (:mod:`federation.agent`: sidecar, east-west gateway, proxyless gRPC bootstrap)
writes these fields into the bootstrap's ``node.metadata`` (keys prefixed ``meshfed.io/``) and
``node.locality``; the control plane reads them back with :meth:`ProxyDescription.from_node`
and checks them (:func:`node_problems`, :func:`identity_problem`) before it generates anything.
The names both ends must agree on beyond the node (the gateway's port, the gRPC bootstrap's
certificate provider and server listener template) live here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from federation.ca.names import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    GATEWAY_SERVICE_ACCOUNT,
    SYSTEM_NAMESPACE,
    workload_spiffe_id,
)
from federation.model.locality import Locality

Role = Literal["sidecar", "gateway", "grpc"]
OutboundTrafficPolicy = Literal["ALLOW_ANY", "REGISTRY_ONLY"]
META_PREFIX = "meshfed.io/"

#: The east-west gateway's default passthrough port (the same as Istio's).
GATEWAY_PORT = 15443
#: The certificate provider instance a gRPC bootstrap names (``certificate_providers``,
#: plugin ``file_watcher`` over the identity directory; gRFC A29).
GRPC_CERT_PROVIDER = "default"
#: The Listener name template a proxyless gRPC server asks for (bootstrap
#: ``server_listener_resource_name_template``, gRFC A36), ``%s`` its listening address.
GRPC_SERVER_LISTENER_TEMPLATE = "grpc/server?xds.resource.listening_address=%s"


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
            log from (:mod:`federation.agent.tap`); "" when the agent counts no traffic.
        working_dir: absolute path of the directory the agent runs Envoy in ("" when not
            said): ``identity_dir`` and ``traffic_log`` inside it are named to Envoy relative
            to it (:meth:`envoy_path`), so the replicas of one workload, each with its own
            directory, get identical resources and share one snapshot.
        upstreams: the TCP service ports the sidecar listens for on loopback
            (:class:`Upstream`).
        capture: the sidecar's pod captures its traffic (``meshfed proxy init``,
            :mod:`federation.agent.capture`): its outbound listener takes every redirected
            connection on ``0.0.0.0:<outbound_port>`` and picks the service by original
            destination (:mod:`federation.controlplane.generate.capture`).
        outbound_traffic_policy: where a captured connection to an address that is no
            service's goes: ``ALLOW_ANY`` (on to that address) or ``REGISTRY_ONLY``
            (closed); Istio's ``outboundTrafficPolicy.mode`` names and default.
        zone_local: a gateway of its zone only (``meshfed proxy gateway --zone-local``):
            it forwards to its zone's endpoints, others only when the zone has none left.
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
    working_dir: str = ""
    upstreams: tuple[Upstream, ...] = ()
    capture: bool = False
    outbound_traffic_policy: OutboundTrafficPolicy = "ALLOW_ANY"
    zone_local: bool = False

    @classmethod
    def from_node(cls, node: base_pb2.Node) -> ProxyDescription:
        """Read a description from an xDS ``Node`` and check every field a generator reads
        (:func:`node_problems`), so a node that passes can always be built.

        Raises:
            ValueError: the first problem found, naming the node and the metadata key.
        """
        if not node.id:
            raise ValueError("the xDS node has no id")
        meta = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}

        def get(key: str, default: str) -> str:
            return meta_text(meta, key, default)

        role = get("role", "grpc" if node.user_agent_name.lower().startswith("grpc") else "sidecar")
        port_text = get("outbound_port", "15001")
        locality = None
        if node.locality.region:
            locality = Locality(node.locality.region, node.locality.zone, node.locality.sub_zone)
        problems = node_problems(node.id, role, port_text, meta)
        if problems:
            raise ValueError(f"node {node.id[:MAX_NODE_ID]!r}: " + "; ".join(problems))
        return cls(
            node_id=node.id,
            role=role,  # type: ignore[arg-type]
            namespace=get("namespace", "default"),
            workload=get("workload", ""),
            service_account=get("service_account", "default"),
            locality=locality,
            outbound_port=int(port_text),
            listen=get("listen", ""),
            identity_dir=get("identity_dir", ""),
            traffic_log=get("traffic_log", ""),
            working_dir=get("working_dir", ""),
            upstreams=tuple(
                Upstream.parse(u) for u in get("upstreams", "").split(",") if u.strip()
            ),
            capture=get("capture", "false") == "true",
            outbound_traffic_policy=get(  # type: ignore[arg-type]
                "outbound_traffic_policy", "ALLOW_ANY"
            ),
            zone_local=role == "gateway" and get("zone_local", "false") == "true",
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
            **({META_PREFIX + "working_dir": self.working_dir} if self.working_dir else {}),
            **(
                {META_PREFIX + "upstreams": ",".join(u.text() for u in self.upstreams)}
                if self.upstreams
                else {}
            ),
            **(
                {
                    META_PREFIX + "capture": "true",
                    META_PREFIX + "outbound_traffic_policy": self.outbound_traffic_policy,
                }
                if self.capture
                else {}
            ),
            **({META_PREFIX + "zone_local": "true"} if self.zone_local else {}),
        }

    def envoy_path(self, path: str) -> str:
        """``path`` (absolute, e.g. ``identity_dir``) as the proxy's resources name it to
        Envoy: relative to ``working_dir`` when inside it (``/h/proxies/x/identity`` ->
        ``identity``), else unchanged. Envoy resolves a relative path against its working
        directory (file-based SDS ``path``, file access log ``path``; Envoy 1.40, tried),
        so the result names the same file; dropping the prefix is textual, so a ``..`` in
        ``path`` means what it meant. Pure."""
        base = self.working_dir.rstrip("/") + "/"
        if self.working_dir and path.startswith(base) and path[len(base) :].strip("/"):
            return path[len(base) :]
        return path

    def expected_spiffe_id(self, trust_domain: str) -> str:
        """The SPIFFE ID this proxy's client certificate must carry: the gateway identity for
        a gateway, else its namespace's service account."""
        if self.role == "gateway":
            return workload_spiffe_id(trust_domain, SYSTEM_NAMESPACE, GATEWAY_SERVICE_ACCOUNT)
        return workload_spiffe_id(trust_domain, self.namespace, self.service_account)


#: The sidecar's user and group in a captured pod (Istio's ``istio-proxy``, 1337): the capture
#: rules exempt its connections (:mod:`federation.agent.capture`), the injector runs it so.
PROXY_UID = 1337
PROXY_GID = 1337
#: Pod annotation prefixes of the capture settings: meshfed's and Istio's spelling.
CAPTURE_ANNOTATIONS = ("traffic.meshfed.io/", "traffic.sidecar.istio.io/")

#: Istio's ``meshConfig.outboundTrafficPolicy.mode`` values (``ProxyDescription``).
OUTBOUND_TRAFFIC_POLICIES = ("ALLOW_ANY", "REGISTRY_ONLY")

#: Longest node id (characters) a control plane accepts.
MAX_NODE_ID = 256
#: Longest path (characters) in ``identity_dir`` / ``traffic_log`` / ``working_dir`` (Linux's
#: PATH_MAX is 4096).
MAX_PATH = 4096
#: Most TCP upstreams one sidecar may declare.
MAX_UPSTREAMS = 256
_NODE_ID = re.compile(r"^[A-Za-z0-9._~:/@+=-]+$")


def meta_text(meta: dict[str, object], key: str, default: str) -> str:
    """Node metadata ``meshfed.io/<key>`` as text (``default`` when absent; a number or a
    structure as its ``str``, which the checks then refuse where a name or path is due)."""
    value = meta.get(META_PREFIX + key, default)
    return value if isinstance(value, str) else str(value)


def _path_problem(key: str, value: str, *, required: bool) -> str | None:
    if not value:
        return (
            f"{META_PREFIX}{key} is required (the absolute path on the proxy's host)"
            if required
            else None
        )
    if not value.startswith("/"):
        return f"{META_PREFIX}{key} must be an absolute path, not {value[:80]!r}"
    if len(value) > MAX_PATH or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        return f"{META_PREFIX}{key} must be at most {MAX_PATH} printable characters"
    return None


def _port_problem(key: str, text: str) -> str | None:
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        return f"{META_PREFIX}{key} must be a port 1-65535, not {text[:20]!r}"
    return None


def node_problems(
    node_id: str, role: str, outbound_port: str, meta: dict[str, object]
) -> list[str]:
    """Everything wrong with a node's id and ``meshfed.io/`` metadata (``meta``, as
    ``json_format.MessageToDict`` gives it), each naming the key and the rule; empty when
    the node can be built. Pure.

    Rules: a node id of at most :data:`MAX_NODE_ID` characters ``[A-Za-z0-9._~:/@+=-]``; a
    role sidecar, gateway or grpc; namespace a DNS label and service account and workload
    RFC 1123 subdomains (Kubernetes' names); a sidecar's ``identity_dir`` an absolute path
    (Envoy reads its SVID there: file-based SDS) and ``outbound_port`` and upstream ports
    1-65535, the listener ports all distinct; ``traffic_log`` and ``working_dir`` empty or
    absolute paths; a
    gateway's ``listen`` ``HOST:PORT``."""

    def text(key: str, default: str) -> str:
        return meta_text(meta, key, default)

    problems: list[str] = []
    if len(node_id) > MAX_NODE_ID or not _NODE_ID.match(node_id):
        problems.append(
            f"the node id must be at most {MAX_NODE_ID} characters of [A-Za-z0-9._~:/@+=-]"
        )
    if role not in ("sidecar", "gateway", "grpc"):
        return [*problems, f"unknown {META_PREFIX}role {role[:40]!r}"]
    namespace = text("namespace", "default")
    if not DNS_LABEL.match(namespace):
        problems.append(f"{META_PREFIX}namespace {namespace[:80]!r} is not a DNS label")
    for key, default in (("service_account", "default"), ("workload", "")):
        value = text(key, default)
        if value and not DNS_SUBDOMAIN.match(value):
            problems.append(f"{META_PREFIX}{key} {value[:80]!r} is not a Kubernetes name")
    for problem in (
        _path_problem("identity_dir", text("identity_dir", ""), required=role == "sidecar"),
        _path_problem("traffic_log", text("traffic_log", ""), required=False),
        _path_problem("working_dir", text("working_dir", ""), required=False),
        _port_problem("outbound_port", outbound_port),
    ):
        if problem:
            problems.append(problem)
    if text("capture", "false") not in ("true", "false"):
        problems.append(f"{META_PREFIX}capture must be true or false")
    if text("outbound_traffic_policy", "ALLOW_ANY") not in OUTBOUND_TRAFFIC_POLICIES:
        problems.append(
            f"{META_PREFIX}outbound_traffic_policy must be one of"
            f" {', '.join(OUTBOUND_TRAFFIC_POLICIES)}"
        )
    if role == "gateway":
        host, _, port = text("listen", "").rpartition(":")
        if not host.strip("[]") or _port_problem("listen", port):
            problems.append(f"{META_PREFIX}listen must be HOST:PORT (a port 1-65535)")
    upstreams = [u for u in text("upstreams", "").split(",") if u.strip()]
    if len(upstreams) > MAX_UPSTREAMS:
        problems.append(f"{META_PREFIX}upstreams: at most {MAX_UPSTREAMS}")
        return problems
    local_ports = [outbound_port]
    for u in upstreams:
        try:
            local_ports.append(str(Upstream.parse(u).local_port))
        except ValueError as err:
            problems.append(f"{META_PREFIX}upstreams: {err}")
    if len(set(local_ports)) != len(local_ports):
        problems.append(
            f"{META_PREFIX}upstreams: every local port must differ from the others and"
            " from the outbound port"
        )
    return problems


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
