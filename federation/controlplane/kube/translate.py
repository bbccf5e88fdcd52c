"""Kubernetes objects -> the control plane's WorkloadEntry documents (issue #20). Pure.

A Service in scope and the EndpointSlices labelled ``kubernetes.io/service-name`` with its
name give one WorkloadEntry per ready endpoint address:

- **Ready only.** An endpoint whose ``conditions.ready`` is false -- not ready, or
  terminating -- gives no workload, so it leaves EDS (Kubernetes' own readiness replaces
  meshfed's probes: ``healthCheck.type: none``). ``ready`` unset counts as ready, as the
  EndpointSlice API says consumers should.
- **Ports.** Each Service port whose EndpointSlice has a port of the same name gives a
  ``ServicePort`` (``port``: the Service's, ``targetPort``: the slice's, which is what the
  pod listens on). The protocol is the port's ``appProtocol`` (``http``, ``http2``,
  ``kubernetes.io/h2c``, ``grpc``, ``tcp``) or, as Istio reads it, the port name's prefix
  (``http``, ``http2``, ``grpc``, ``tcp``, e.g. ``http-web``); else ``http``.
- **Locality** ``<cloud>/<region>/<zone>``: the endpoint's node labels
  ``topology.kubernetes.io/region`` and ``zone`` (the cloud from the node's
  ``spec.providerID``: ``aws://``, ``gce://``); else the endpoint's ``zone`` hint within the
  cluster's region; else the cluster's locality.
- **Identity.** The service account of the pod in ``targetRef`` (``spec.serviceAccountName``,
  default ``default``). ``tlsMode`` is ``mutual`` when the pod runs meshfed's sidecar (label
  :data:`SIDECAR_LABEL` ``=true``, set by injection) and ``disabled`` otherwise.
- **Membership.** A namespace in ``namespaces`` (empty: every namespace); when
  ``member_label`` is given, a Service carrying that label (``key`` or ``key=value``); when
  ``pod_label`` is given, only endpoints whose pod carries that label (an endpoint without a
  pod is then left out).

A workload carries its pod's labels (TrafficPolicy ``subsets`` select by them), its Service's
``networking.istio.io/exportTo`` annotation (which namespaces' proxies of this cluster see
the service: :func:`federation.model.istio_sidecar.export_visible`) and the label
:data:`SOURCE_LABEL` ``=kubernetes``: it is the cluster's,
not stored by the control plane (``RegistryState.documents`` leaves it out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from federation.model.istio_sidecar import EXPORT_TO
from federation.model.locality import Locality
from federation.model.workload import k8s_workload_name

#: Label of the workloads this module makes (and value).
SOURCE_LABEL = "meshfed.io/source"
SOURCE_VALUE = "kubernetes"
#: Pod label set by sidecar injection: the pod answers mTLS on the inbound port.
SIDECAR_LABEL = "meshfed.io/sidecar"
#: EndpointSlice label naming its Service (discovery.k8s.io/v1).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
#: ``spec.providerID`` scheme -> meshfed's cloud name.
PROVIDER_CLOUDS = {"aws": "aws", "gce": "gcp", "azure": "azure"}
_APP_PROTOCOLS = {
    "http": "http",
    "http2": "http2",
    "kubernetes.io/h2c": "http2",
    "grpc": "grpc",
    "tcp": "tcp",
}

Obj = Mapping[str, Any]
Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Scope:
    """What the control plane takes from the cluster.

    Attributes:
        locality: the cluster's locality (fallback for endpoints without a node's).
        namespaces: namespaces in the mesh (empty: all).
        member_label: ``key`` or ``key=value`` a Service must carry ("" : any Service).
        pod_label: ``key`` or ``key=value`` an endpoint's pod must carry ("" : any).
    """

    locality: Locality
    namespaces: frozenset[str] = frozenset()
    member_label: str = ""
    pod_label: str = ""

    def in_namespace(self, namespace: str) -> bool:
        """Whether a namespace is in the mesh."""
        return not self.namespaces or namespace in self.namespaces

    def admits(self, service: Obj) -> bool:
        """Whether a Service is in the mesh."""
        meta = service.get("metadata") or {}
        if not self.in_namespace(str(meta.get("namespace", "default"))):
            return False
        return _carries(meta, self.member_label)

    def admits_pod(self, pod: Obj | None) -> bool:
        """Whether an endpoint's pod (None: the endpoint names none) is in the mesh."""
        if not self.pod_label:
            return True
        return pod is not None and _carries(pod.get("metadata") or {}, self.pod_label)


def _carries(meta: Obj, selector: str) -> bool:
    """Whether ``metadata`` has the label ``key`` or ``key=value`` ("" : always)."""
    if not selector:
        return True
    labels = meta.get("labels") or {}
    key, _, value = selector.partition("=")
    return key in labels and (not value or labels[key] == value)


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "default")), str(meta.get("name", "")))


def port_protocol(name: str, app_protocol: str | None) -> str:
    """meshfed's protocol of a port: ``appProtocol`` first, then the name's prefix
    (``grpc-api`` -> grpc), else ``http``."""
    if app_protocol and app_protocol.lower() in _APP_PROTOCOLS:
        return _APP_PROTOCOLS[app_protocol.lower()]
    prefix = name.split("-", 1)[0].lower()
    return _APP_PROTOCOLS.get(prefix, "http")


def node_locality(node: Obj, cluster: Locality) -> Locality | None:
    """A node's locality from its topology labels and provider ID (None without a region)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    region = labels.get(REGION_LABEL)
    if not region:
        return None
    scheme = str((node.get("spec") or {}).get("providerID", "")).split(":", 1)[0]
    cloud = PROVIDER_CLOUDS.get(scheme, cluster.cloud)
    zone = labels.get(ZONE_LABEL, "")
    try:
        return Locality.parse(f"{cloud}/{region}" + (f"/{zone}" if zone else ""))
    except ValueError:
        return None


def _locality_of(endpoint: Obj, nodes: Mapping[str, Obj], cluster: Locality) -> Locality:
    node = nodes.get(str(endpoint.get("nodeName", "")))
    found = node_locality(node, cluster) if node is not None else None
    if found is not None:
        return found
    zone = endpoint.get("zone")
    if zone:
        try:
            return Locality.parse(f"{cluster.region}/{zone}")
        except ValueError:
            pass
    return cluster


def workload_entries(
    services: Iterable[Obj],
    slices: Iterable[Obj],
    nodes: Mapping[str, Obj],
    pods: Mapping[Key, Obj],
    scope: Scope,
) -> list[dict[str, Any]]:
    """WorkloadEntry documents (meshfed.io/v1alpha1, as dicts) for the cluster's ready
    endpoints of the Services in scope, sorted by ``(namespace, name)``; see the module
    docstring. ``nodes`` by name, ``pods`` by ``(namespace, name)``."""
    by_service: dict[Key, list[Obj]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc and s.get("addressType", "IPv4") in ("IPv4", "IPv6"):
            by_service.setdefault((str(meta.get("namespace", "default")), svc), []).append(s)
    out: dict[Key, dict[str, Any]] = {}
    for service in services:
        if not scope.admits(service):
            continue
        ns, name = _key(service)
        service_ports = list((service.get("spec") or {}).get("ports") or [])
        annotations = (service.get("metadata") or {}).get("annotations") or {}
        export_to = {EXPORT_TO: str(annotations[EXPORT_TO])} if EXPORT_TO in annotations else {}
        for s in by_service.get((ns, name), []):
            slice_ports = {str(p.get("name") or ""): p for p in s.get("ports") or []}
            ports = []
            for p in service_ports:
                sp = slice_ports.get(str(p.get("name") or ""))
                if sp is None or sp.get("port") is None:
                    continue
                port_name = str(p.get("name") or f"port-{p['port']}")
                ports.append(
                    {
                        "name": port_name,
                        "port": int(p["port"]),
                        "targetPort": int(sp["port"]),
                        "protocol": port_protocol(
                            port_name, p.get("appProtocol") or sp.get("appProtocol")
                        ),
                    }
                )
            if not ports:
                continue
            for endpoint in s.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                ref = endpoint.get("targetRef") or {}
                pod = pods.get((str(ref.get("namespace", ns)), str(ref.get("name", ""))))
                if not scope.admits_pod(pod):
                    continue
                pod_meta = (pod or {}).get("metadata") or {}
                sidecar = (pod_meta.get("labels") or {}).get(SIDECAR_LABEL) == "true"
                account = str(
                    ((pod or {}).get("spec") or {}).get("serviceAccountName") or "default"
                )
                locality = _locality_of(endpoint, nodes, scope.locality)
                for address in endpoint.get("addresses") or []:
                    wname = k8s_workload_name(name, str(address))
                    out[(ns, wname)] = {
                        "apiVersion": "meshfed.io/v1alpha1",
                        "kind": "WorkloadEntry",
                        "metadata": {
                            "name": wname,
                            "namespace": ns,
                            # the pod's labels (TrafficPolicy subsets select by them)
                            "labels": {
                                **(pod_meta.get("labels") or {}),
                                SOURCE_LABEL: SOURCE_VALUE,
                            },
                            # which namespaces see the service (Istio's annotation)
                            "annotations": export_to,
                        },
                        "spec": {
                            "service": name,
                            "address": str(address),
                            "serviceAccount": account,
                            "locality": str(locality),
                            "tlsMode": "mutual" if sidecar else "disabled",
                            "ports": ports,
                            "healthCheck": {"type": "none"},
                        },
                    }
    return [out[k] for k in sorted(out)]


def load_balancer_address(service: Obj | None, port_name: str = "tls") -> str:
    """``host:port`` of a LoadBalancer Service once its load balancer has an address
    (``status.loadBalancer.ingress[0]``: ``ip``, else ``hostname``, as AWS NLBs give), the
    port named ``port_name`` or the first; "" before it has one."""
    if service is None:
        return ""
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ports = (service.get("spec") or {}).get("ports") or []
    if not ingress or not ports:
        return ""
    host = ingress[0].get("ip") or ingress[0].get("hostname") or ""
    port = next((p for p in ports if p.get("name") == port_name), ports[0]).get("port")
    return f"{host}:{port}" if host and port else ""
