"""Kubernetes objects -> WorkloadEntry documents (federation.controlplane.kube.translate)."""

from __future__ import annotations

from typing import Any

from federation.controlplane.kube.translate import (
    Scope,
    node_locality,
    port_protocol,
    workload_entries,
)
from federation.model.documents import validate_documents
from federation.model.locality import Locality
from federation.model.workload import k8s_workload_name

CLUSTER = Locality.parse("gcp/us-east4/us-east4-a")


def _service(ports: list[dict[str, Any]], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "api", "namespace": "shop", "labels": labels or {}},
        "spec": {"ports": ports},
    }


def _slice(endpoints: list[dict[str, Any]], ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "api-x1",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "api"},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }


PORTS = [
    {"name": "grpc-api", "port": 9090},
    {"name": "web", "port": 80, "appProtocol": "kubernetes.io/h2c"},
    {"name": "metrics", "port": 9100},  # no such port in the slice: left out
]
SLICE_PORTS = [{"name": "grpc-api", "port": 50051}, {"name": "web", "port": 8080}]


def test_ready_endpoints_become_workloads_with_ports_identity_and_locality() -> None:
    endpoints = [
        {"addresses": ["10.1.0.5"], "conditions": {"ready": True}, "nodeName": "n1",
         "targetRef": {"kind": "Pod", "namespace": "shop", "name": "api-1"}},
        {"addresses": ["10.1.0.6"], "conditions": {"ready": False}, "nodeName": "n1"},
        # terminating (still serving): ready is false, as the API sets it
        {"addresses": ["10.1.0.7"],
         "conditions": {"ready": False, "serving": True, "terminating": True}},
        {"addresses": ["10.1.0.8"], "zone": "us-east4-c"},  # ready unset: ready
    ]  # fmt: skip
    nodes = {
        "n1": {
            "metadata": {"labels": {"topology.kubernetes.io/region": "us-east1",
                                    "topology.kubernetes.io/zone": "us-east1-b"}},
            "spec": {"providerID": "gce://proj/us-east1-b/n1"},
        }
    }  # fmt: skip
    pods = {
        ("shop", "api-1"): {
            "metadata": {"labels": {"meshfed.io/sidecar": "true"}},
            "spec": {"serviceAccountName": "api-sa"},
        }
    }
    docs = workload_entries(
        [_service(PORTS)], [_slice(endpoints, SLICE_PORTS)], nodes, pods, Scope(CLUSTER)
    )
    assert [d["spec"]["address"] for d in docs] == ["10.1.0.5", "10.1.0.8"]
    first, last = docs
    assert first["spec"]["ports"] == [
        {"name": "grpc-api", "port": 9090, "targetPort": 50051, "protocol": "grpc"},
        {"name": "web", "port": 80, "targetPort": 8080, "protocol": "http2"},
    ]
    assert first["spec"]["locality"] == "gcp/us-east1/us-east1-b"  # the node's
    assert first["spec"]["serviceAccount"] == "api-sa" and first["spec"]["tlsMode"] == "mutual"
    assert last["spec"]["locality"] == "gcp/us-east4/us-east4-c"  # the zone hint
    assert last["spec"]["serviceAccount"] == "default" and last["spec"]["tlsMode"] == "disabled"
    nowhere = workload_entries(
        [_service(PORTS)], [_slice([{"addresses": ["10.1.0.9"]}], SLICE_PORTS)], {}, {},
        Scope(CLUSTER),
    )  # fmt: skip
    assert nowhere[0]["spec"]["locality"] == str(CLUSTER)
    assert first["metadata"]["labels"] == {
        "meshfed.io/sidecar": "true",  # the pod's labels, for TrafficPolicy subsets
        "meshfed.io/source": "kubernetes",
    }
    assert last["metadata"]["labels"] == {"meshfed.io/source": "kubernetes"}  # no pod
    assert len(validate_documents(docs, source="test")) == 2  # valid WorkloadEntries


def test_scope_by_namespace_and_member_label() -> None:
    svc = _service([{"name": "http", "port": 80}], {"mesh": "on"})
    sl = _slice([{"addresses": ["10.0.0.1"]}], [{"name": "http", "port": 8080}])
    assert workload_entries([svc], [sl], {}, {}, Scope(CLUSTER, frozenset({"other"}))) == []
    assert len(workload_entries([svc], [sl], {}, {}, Scope(CLUSTER, member_label="mesh=on"))) == 1
    assert workload_entries([svc], [sl], {}, {}, Scope(CLUSTER, member_label="mesh=off")) == []
    assert len(workload_entries([svc], [sl], {}, {}, Scope(CLUSTER, member_label="mesh"))) == 1


def test_scope_by_pod_label_keeps_only_endpoints_of_labelled_pods() -> None:
    svc = _service([{"name": "http", "port": 80}])
    endpoints = [
        {"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "in-1"}},
        {"addresses": ["10.0.0.2"], "targetRef": {"kind": "Pod", "name": "out-1"}},
        {"addresses": ["10.0.0.3"]},  # no pod: not known to carry the label
    ]
    sl = _slice(endpoints, [{"name": "http", "port": 8080}])
    pods = {
        ("shop", "in-1"): {"metadata": {"labels": {"mesh": "on"}}, "spec": {}},
        ("shop", "out-1"): {"metadata": {"labels": {"mesh": "off"}}, "spec": {}},
    }
    scoped = workload_entries([svc], [sl], {}, pods, Scope(CLUSTER, pod_label="mesh=on"))
    assert [d["spec"]["address"] for d in scoped] == ["10.0.0.1"]
    keyed = workload_entries([svc], [sl], {}, pods, Scope(CLUSTER, pod_label="mesh"))
    assert [d["spec"]["address"] for d in keyed] == ["10.0.0.1", "10.0.0.2"]
    assert len(workload_entries([svc], [sl], {}, pods, Scope(CLUSTER))) == 3


def test_protocols_localities_and_names() -> None:
    assert port_protocol("http-web", None) == "http"
    assert port_protocol("tcp-db", None) == "tcp"
    assert port_protocol("anything", "GRPC") == "grpc"
    assert port_protocol("redis", None) == "http"  # meshfed's default
    aws = {"metadata": {"labels": {"topology.kubernetes.io/region": "eu-west-1"}},
           "spec": {"providerID": "aws:///eu-west-1a/i-1"}}  # fmt: skip
    assert str(node_locality(aws, CLUSTER)) == "aws/eu-west-1"
    assert node_locality({"metadata": {}}, CLUSTER) is None
    assert k8s_workload_name("api", "10.1.0.5") == "k8s-api-10-1-0-5"
    long = k8s_workload_name("a" * 60, "fd00::1234:5678")
    assert len(long) <= 63 and long != k8s_workload_name("a" * 60, "fd00::1234:5679")


def test_prefer_close_is_a_same_zone_preference_as_every_service_gets() -> None:
    """Issue #40, 4: a Service with ``spec.trafficDistribution: PreferClose`` (and its newer
    spelling ``PreferSameZone``) in Kubernetes mode: a caller in zone a gets zone a's
    endpoints at priority 0 and zone b's as failover -- what meshfed gives every service
    without a TrafficPolicy, so the field asks for nothing more (and one without it gets the
    same: Kubernetes would spread it over zones; meshfed keeps callers close)."""
    from federation.controlplane import resource
    from federation.controlplane.generate.proxy_config import generate
    from federation.controlplane.registry import ServiceRegistry
    from tests.unit.controlplane.test_generators import MESH, _sidecar

    zone_of = {"10.1.0.5": "us-east-1a", "10.1.0.6": "us-east-1b"}
    endpoints = [{"addresses": [a], "zone": z} for a, z in zone_of.items()]
    slice_ = {**_slice(endpoints, [{"name": "http", "port": 8080}]),
              "metadata": {"name": "echo-x1", "namespace": "demo",
                           "labels": {"kubernetes.io/service-name": "echo"}}}  # fmt: skip
    for distribution in ("PreferClose", "PreferSameZone", None):
        service = {
            "metadata": {"name": "echo", "namespace": "demo"},
            "spec": {"ports": [{"name": "http", "port": 8080}]},
        }
        if distribution:
            service["spec"]["trafficDistribution"] = distribution
        docs = workload_entries([service], [slice_], {}, {}, Scope(MESH.locality))
        registry = ServiceRegistry()
        registry.apply(validate_documents(docs))
        (cla,) = generate(MESH, registry.state, _sidecar())[resource.ENDPOINT]
        assert [(e.locality.zone, e.priority) for e in cla.endpoints] == [
            ("us-east-1a", 0),
            ("us-east-1b", 1),
        ], distribution


def test_istio_export_to_on_a_service_limits_the_namespaces_whose_proxies_see_it() -> None:
    """Istio's ``networking.istio.io/exportTo`` annotation on a Kubernetes Service: ``.``
    keeps the service to its namespace's proxies (a proxy elsewhere gets no cluster for it),
    names list namespaces, ``*`` or none is everyone, ``~`` no one."""
    from federation.controlplane import resource
    from federation.controlplane.generate.proxy_config import generate
    from federation.controlplane.registry import ServiceRegistry
    from federation.model.istio_sidecar import export_visible
    from tests.unit.controlplane.test_generators import MESH, _sidecar

    def clusters_seen(export_to: str | None, proxy_ns: str) -> list[str]:
        service = {"metadata": {"name": "echo", "namespace": "demo"},
                   "spec": {"ports": [{"name": "http", "port": 8080}]}}  # fmt: skip
        if export_to is not None:
            service["metadata"]["annotations"] = {"networking.istio.io/exportTo": export_to}
        slice_ = {**_slice([{"addresses": ["10.1.0.5"]}], [{"name": "http", "port": 8080}]),
                  "metadata": {"name": "echo-x1", "namespace": "demo",
                               "labels": {"kubernetes.io/service-name": "echo"}}}  # fmt: skip
        registry = ServiceRegistry()
        docs = workload_entries([service], [slice_], {}, {}, Scope(MESH.locality))
        registry.apply(validate_documents(docs))
        out = generate(MESH, registry.state, _sidecar(ns=proxy_ns))
        return [c.name for c in out[resource.CLUSTER] if c.name.startswith("outbound|8080")]

    echo = "outbound|8080||echo.demo.svc.clusterset.local"
    assert clusters_seen(None, "shop") == [echo]
    assert clusters_seen(".", "demo") == [echo] and clusters_seen(".", "shop") == []
    assert clusters_seen("shop, ops", "shop") == [echo] and clusters_seen("ops", "shop") == []
    assert clusters_seen("~", "demo") == []
    assert export_visible("*", "demo", "x") and export_visible("", "demo", "x")


def test_a_control_plane_without_kubernetes_does_not_import_the_kubernetes_client() -> None:
    """``kubernetes_asyncio`` (and the JSON-schema stack it pulls in) costs 0.3-1.7 s of CPU
    to import: a control plane started without ``--kubernetes`` -- every one of ``meshfed
    up`` -- must not pay it at start."""
    import subprocess
    import sys

    probe = (
        "import sys, federation.controlplane.server, federation.cli.controlplane_commands\n"
        "print(sorted(m for m in ('kubernetes_asyncio', 'jsonschema') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
