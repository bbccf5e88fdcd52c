"""The cluster's Kubernetes API as a control plane's registry (issue #20, proof 2), through the
real ``kubernetes_asyncio`` client against the API server fake of ``tests/kube_fake.py``:
a Service with an EndpointSlice becomes workloads; an endpoint marked not ready leaves
within 1 s; a deleted Service takes its workloads; a watch broken by 410 Gone re-lists
without losing or duplicating an endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from federation.controlplane.kube.source import KubeSource
from federation.controlplane.kube.translate import Scope
from federation.controlplane.registry import ServiceRegistry
from federation.model.locality import Locality
from tests.kube_fake import FakeKube, fake_kube


def service(name: str, ns: str = "demo") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": 9000}]},
    }


def endpoint_slice(
    svc: str, addresses: list[str], ready: dict[str, bool] | None = None, ns: str = "demo"
) -> dict[str, Any]:
    ready = ready or {}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc}-abc12",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 9000, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [a],
                "conditions": {"ready": ready.get(a, True)},
                "nodeName": "node-a",
                "targetRef": {"kind": "Pod", "namespace": ns, "name": f"pod-{a[-1]}"},
            }
            for a in addresses
        ],
    }


NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "node-a",
        "labels": {
            "topology.kubernetes.io/region": "us-east-1",
            "topology.kubernetes.io/zone": "us-east-1b",
        },
    },
    "spec": {"providerID": "aws:///us-east-1b/i-0123456789"},
}


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with fake_kube(bookmark_s=0.2) as k:
        yield k


@pytest.fixture
async def source(kube: FakeKube) -> AsyncIterator[KubeSource]:
    api = k8s.ApiClient(k8s.Configuration(host=kube.url))
    src = KubeSource(
        api,
        ServiceRegistry(),
        Scope(Locality.parse("aws/us-east-1/us-east-1a"), frozenset({"demo"})),
        watch_timeout_s=2,
    )
    task = asyncio.create_task(src.run())
    yield src
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await api.close()


async def until(predicate: Any, timeout_s: float, what: str) -> float:
    """Seconds until ``predicate()`` holds (polled every 10 ms); fails after ``timeout_s``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def addresses(src: KubeSource, svc: str = "echo") -> list[str]:
    return sorted(
        w.spec.address for w in src.registry.state.workloads.values() if w.spec.service == svc
    )


async def test_endpoints_follow_readiness_and_the_service(kube: FakeKube, source) -> None:
    kube.create(NODE)
    kube.create(service("echo"))
    kube.create(endpoint_slice("echo", ["10.0.0.1", "10.0.0.2"]))
    kube.create(service("other", ns="elsewhere"))  # not in scope
    kube.create(endpoint_slice("other", ["10.9.0.1"], ns="elsewhere"))
    await until(lambda: addresses(source) == ["10.0.0.1", "10.0.0.2"], 5, "both endpoints")
    [w, _] = sorted(source.registry.state.workloads.values(), key=lambda w: w.spec.address)
    assert str(w.locality) == "aws/us-east-1/us-east-1b"  # the node's, not the cluster's
    assert [(p.name, p.port, p.target_port, p.protocol) for p in w.spec.ports] == [
        ("http", 8080, 9000, "http")
    ]
    assert addresses(source, "other") == []
    assert source.registry.state.documents() == []  # the cluster's, not stored

    kube.replace(endpoint_slice("echo", ["10.0.0.1", "10.0.0.2"], {"10.0.0.2": False}))
    took = await until(lambda: addresses(source) == ["10.0.0.1"], 5, "10.0.0.2 gone")
    assert took < 1.0, f"a not-ready endpoint left after {took:.2f} s"

    kube.delete("Service", "demo", "echo")
    await until(lambda: addresses(source) == [], 5, "the service's workloads gone")


async def test_a_watch_broken_by_410_gone_relists_without_loss_or_duplicates(
    kube: FakeKube, source
) -> None:
    kube.create(service("echo"))
    kube.create(endpoint_slice("echo", ["10.0.0.1", "10.0.0.2"]))
    await until(lambda: addresses(source) == ["10.0.0.1", "10.0.0.2"], 5, "both endpoints")
    slices = source.reflectors["endpointslices"]
    lists = slices.relists
    # a change the watch misses while cut off; history compacted meanwhile: resuming from
    # its last version gets 410 Gone
    with kube.disconnected():
        kube.replace(endpoint_slice("echo", ["10.0.0.1", "10.0.0.3"]))
        await asyncio.sleep(0.3)  # a scenario step: bookmarks would have come by now
        assert addresses(source) == ["10.0.0.1", "10.0.0.2"]
    await until(lambda: slices.relists > lists, 10, "a re-list after 410 Gone")
    await until(lambda: addresses(source) == ["10.0.0.1", "10.0.0.3"], 5, "the new set")
    names = [w.metadata.name for w in source.registry.state.workloads.values()]
    assert len(names) == len(set(names)) == 2


async def test_a_list_the_server_refuses_keeps_what_was_known_and_is_retried(
    kube: FakeKube, source
) -> None:
    """A re-list answered 403 (RBAC changed) or 500 is an error, not an empty list: the
    endpoints stay until a list succeeds (the client does not raise for an error status of
    an unpreloaded response: found when a missing CRD's 404 read as "no objects")."""
    kube.create(service("echo"))
    kube.create(endpoint_slice("echo", ["10.0.0.1"]))
    await until(lambda: addresses(source) == ["10.0.0.1"], 5, "the endpoint")
    slices = source.reflectors["endpointslices"]
    kube.refuse_lists["endpointslices"] = 403
    with kube.disconnected():  # a change missed, history compacted: 410 Gone, a re-list
        kube.create(endpoint_slice("other", ["10.0.0.9"]))
    await until(lambda: kube.refused >= 2, 10, "two refused lists (a retry after backing off)")
    assert addresses(source) == ["10.0.0.1"] and not slices.synced
    del kube.refuse_lists["endpointslices"]
    await until(lambda: slices.synced, 10, "listed again")
    assert addresses(source) == ["10.0.0.1"]


#: The ServiceExport of the MCS project's demo (kubernetes-sigs/mcs-api, demo/demo.sh:
#: "kubectl apply" of this object for its demo/serve Service), verbatim.
MCS_DEMO_EXPORT = """\
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: serve
  namespace: demo
"""
MCS_DEMO_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: serve
  namespace: demo
spec:
  ports:
  - port: 80
    targetPort: 8080
  selector:
    app: serve
"""


def conditions(kube: FakeKube, name: str = "serve") -> dict[str, tuple[str, str]]:
    found = kube.get("ServiceExport", "demo", name) or {}
    return {
        c["type"]: (c["status"], c["reason"])
        for c in (found.get("status") or {}).get("conditions") or []
    }


async def test_serviceexports_are_exports_with_conditions_and_imports_are_written(
    kube: FakeKube, source
) -> None:
    import yaml

    from federation.model.documents import load_documents
    from federation.model.service import ServiceImport

    kube.create(yaml.safe_load(MCS_DEMO_EXPORT))  # before its Service: not valid
    await until(lambda: conditions(kube).get("Valid") == ("False", "NoService"), 5, "Valid=False")
    kube.create(yaml.safe_load(MCS_DEMO_SERVICE))
    await until(lambda: conditions(kube).get("Valid") == ("True", "Valid"), 5, "Valid=True")
    assert source.registry.state.exported(("demo", "serve"))
    assert conditions(kube)["Ready"] == ("False", "Pending")  # no word from the controller
    assert conditions(kube)["Conflict"] == ("False", "NoConflicts")

    # what the controller says arrives through the registry
    [imp] = load_documents(
        "apiVersion: meshfed.io/v1alpha1\nkind: ServiceImport\n"
        "metadata: {name: api, namespace: demo}\n"
        "spec:\n  ports: [{name: grpc, port: 9090, protocol: grpc}]\n  serviceAccounts: [api]\n"
        "  clusters: [{cluster: west, gateway: '10.0.0.1:15443', locality: aws/us-west-2,"
        " endpoints: 2}]\n"
    )
    assert isinstance(imp, ServiceImport)
    source.registry.set_federation(
        [imp], [], export_conditions={("demo", "serve"): ("Exported", "")}
    )
    await until(lambda: conditions(kube).get("Ready") == ("True", "Exported"), 5, "Ready=True")
    await until(
        lambda: "status" in (kube.get("ServiceImport", "demo", "api") or {}),
        5,
        "ServiceImport with its status (a subresource: written second)",
    )
    written = kube.get("ServiceImport", "demo", "api") or {}
    assert written["spec"] == {
        "type": "ClusterSetIP",
        "ports": [{"name": "grpc", "port": 9090, "protocol": "TCP", "appProtocol": "grpc"}],
    }
    assert written["status"] == {"clusters": [{"cluster": "west"}]}
    assert written["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "meshfed"}

    message = "ports differ from the oldest export (cluster east): port http is 8080 there"
    source.registry.set_federation(
        [imp], [], export_conditions={("demo", "serve"): ("Conflict", message)}
    )
    await until(lambda: conditions(kube).get("Conflict") == ("True", "PortConflict"), 5, "Conflict")
    assert conditions(kube)["Ready"] == ("False", "Conflict")
    status = (kube.get("ServiceExport", "demo", "serve") or {})["status"]["conditions"]
    assert next(c for c in status if c["type"] == "Conflict")["message"] == message

    source.registry.set_federation([], [])  # the import withdrawn
    await until(lambda: kube.get("ServiceImport", "demo", "api") is None, 5, "import deleted")
    kube.delete("ServiceExport", "demo", "serve")
    await until(lambda: not source.registry.state.exported(("demo", "serve")), 5, "unexported")


@pytest.fixture
async def gateway_source(kube: FakeKube) -> AsyncIterator[tuple[KubeSource, list[str]]]:
    seen: list[str] = []
    api = k8s.ApiClient(k8s.Configuration(host=kube.url))
    src = KubeSource(
        api,
        ServiceRegistry(),
        Scope(Locality.parse("aws/us-east-1/us-east-1a")),
        watch_timeout_s=2,
        gateway_service=("meshfed-system", "meshfed-gateway"),
        on_gateway=seen.append,
        zone_gateway_services={"us-east-1b": ("meshfed-system", "meshfed-gateway-us-east-1b")},
        on_zone_gateway=lambda zone, address: seen.append(f"{zone}={address}"),
    )
    task = asyncio.create_task(src.run())
    yield src, seen
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await api.close()


async def test_the_gateway_services_load_balancer_address_is_reported_once_it_has_one(
    kube: FakeKube, gateway_source
) -> None:
    src, seen = gateway_source
    lb = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "meshfed-gateway", "namespace": "meshfed-system"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "tls", "port": 15443}]},
    }
    kube.create(lb)
    await until(lambda: src.synced and src.reflectors["services"].objects, 5, "listed")
    await asyncio.sleep(0.3)  # a scenario step: no address yet, nothing reported
    assert seen == []
    host = "k8s-meshfed-gw-0123.elb.us-east-1.amazonaws.com"  # an NLB gives a hostname
    kube.set_status({**lb, "status": {"loadBalancer": {"ingress": [{"hostname": host}]}}})
    await until(lambda: bool(seen) and seen[-1] == f"{host}:15443", 5, "the NLB's address")
    # a zone's own gateway (meshfed install --zone-gateways): reported for its zone
    zone_lb = {**lb, "metadata": {**lb["metadata"], "name": "meshfed-gateway-us-east-1b"}}
    kube.create(zone_lb)
    kube.set_status({**zone_lb, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}})
    await until(lambda: "us-east-1b=203.0.113.7:15443" in seen, 5, "the zone gateway's address")


@pytest.fixture
async def documents_source(kube: FakeKube) -> AsyncIterator[KubeSource]:
    api = k8s.ApiClient(k8s.Configuration(host=kube.url))
    src = KubeSource(
        api,
        ServiceRegistry(),
        Scope(Locality.parse("aws/us-east-1/us-east-1a"), frozenset({"demo"})),
        watch_timeout_s=2,
        cluster="east",
        absent_retry_s=0.2,
    )
    task = asyncio.create_task(src.run())
    yield src
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await api.close()


ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-split, namespace: demo}
spec:
  parentRefs: [{name: echo, kind: Service, group: ""}]
  rules:
  - backendRefs: [{name: echo, port: 8080, weight: 90}, {name: echo-canary, port: 8080, weight: 10}]
"""
GATEWAY_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  parentRefs: [{name: public-gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
"""
UNSUPPORTED_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: demo}
spec:
  hosts: [ratings]
  gateways: [bookinfo-gateway]
  http: [{route: [{destination: {host: ratings}}]}]
"""


def accepted(obj: dict[str, Any] | None) -> tuple[str, str] | None:
    """``(status, message)`` of meshfed's Accepted condition on a route or an Istio document."""
    status = (obj or {}).get("status") or {}
    conditions = status.get("conditions") or next(
        (p["conditions"] for p in status.get("parents") or []
         if p["controllerName"] == "meshfed.io/federation-controller"),
        [],
    )  # fmt: skip
    found = next((c for c in conditions if c["type"] == "Accepted"), None)
    return (found["status"], found["message"]) if found else None


async def test_istio_and_gateway_api_documents_of_the_cluster_are_in_force_with_status(
    kube: FakeKube, documents_source: KubeSource
) -> None:
    """Issue #40 in Kubernetes mode: without the CRDs the control plane syncs (none read);
    once ``meshfed install`` has created them, an HTTPRoute on a Service is in force for
    the cluster's proxies and says so in its status; a VirtualService meshfed cannot honour
    is refused in its status, naming the field; a Gateway's route is not touched; deleting
    the route withdraws its policy."""
    import yaml

    from federation.install.ecosystem_crds import ecosystem_crds

    src = documents_source
    await until(lambda: src.synced, 5, "synced without the CRDs")
    assert src.reflectors["httproutes"].absent
    for crd in ecosystem_crds(("gateway-api", "istio")):
        kube.create(crd)
    kube.create(yaml.safe_load(ROUTE))
    kube.create(yaml.safe_load(GATEWAY_ROUTE))
    kube.create(yaml.safe_load(UNSUPPORTED_VS))
    await until(lambda: ("demo", "echo") in src.registry.state.policies, 10, "the route in force")
    policy = src.registry.state.policies[("demo", "echo")]
    assert [d.weight for d in policy.spec.http[0].route] == [90, 10]
    await until(
        lambda: accepted(kube.get("HTTPRoute", "demo", "echo-split")) is not None, 5, "status"
    )
    assert accepted(kube.get("HTTPRoute", "demo", "echo-split")) == (
        "True",
        "the route is in force for cluster east's callers",
    )
    await until(
        lambda: accepted(kube.get("VirtualService", "demo", "ratings")) is not None, 5, "refusal"
    )
    state, message = accepted(kube.get("VirtualService", "demo", "ratings")) or ("", "")
    assert state == "False" and "spec.gateways" in message, message
    assert ("demo", "ratings") not in src.registry.state.policies
    assert "status" not in (kube.get("HTTPRoute", "demo", "web") or {})  # a Gateway's route
    # one write per document given a status; the fake stores a status before its answer
    # reaches the writer, so the count can trail what kube.get shows by one
    await until(lambda: src.status_writer.writes >= 2, 5, "both writes counted")
    await asyncio.sleep(0.5)  # a scenario step: nothing changes, so nothing is rewritten
    assert src.status_writer.writes == 2

    kube.delete("HTTPRoute", "demo", "echo-split")
    await until(lambda: ("demo", "echo") not in src.registry.state.policies, 5, "withdrawn")

    # mesh-wide documents live in the root namespace, read whatever --kube-namespaces says;
    # other namespaces outside the mesh are not read
    strict = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
              "metadata": {"name": "default", "namespace": "meshfed-system"},
              "spec": {"mtls": {"mode": "STRICT"}}}  # fmt: skip
    kube.create(strict)
    kube.create({**strict, "metadata": {"name": "default", "namespace": "elsewhere"}})
    root = ("meshfed-system", "default")
    await until(lambda: root in src.registry.state.peer_authentications, 5, "the mesh-wide PA")
    assert list(src.registry.state.peer_authentications) == [root]
