"""Two Kubernetes clusters (API server fakes, tests/kube_fake.py) federated by a real
controller, with real control planes, an east-west gateway and Envoy sidecars (issue #20,
proofs 1 and 3):

1. A Service, its EndpointSlice and a ServiceExport in cluster ``a``: a sidecar in cluster
   ``b`` reaches ``echo.demo.svc.clusterset.local`` through ``a``'s gateway, served by
   ``a``'s endpoint; ``b``'s control plane writes the ServiceImport into ``b``; ``a``'s
   ServiceExport gets Valid, Ready and no Conflict.
3. The same service exported later by ``b`` with another port: ``b``'s (the newer) export
   gets Conflict, ``a``'s does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.controlplane.kube.pod import NAMESPACE
from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    free_port,
    get,
    run_meshfed,
    start_echo,
    start_gateway,
    start_sidecar,
    wait_until,
)
from tests.kube_fake import FakeKube

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "echo.demo.svc.clusterset.local"
LOCALITY = {"a": "aws/us-east-1/us-east-1a", "b": "aws/us-west-2/us-west-2a"}
EXPORT = """\
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: echo
  namespace: demo
"""


def service(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo", "namespace": "demo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": port}]},
    }


def endpoint(cluster: str, address: str, app_port: int, sidecar: bool) -> list[dict[str, Any]]:
    region, zone = LOCALITY[cluster].split("/")[1:]
    node = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": f"node-{cluster}",
                     "labels": {"topology.kubernetes.io/region": region,
                                "topology.kubernetes.io/zone": zone}},
        "spec": {"providerID": f"aws:///{zone}/i-{cluster}"},
    }  # fmt: skip
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "echo-1", "namespace": "demo",
                     "labels": {"app": "echo", "meshfed.io/sidecar": str(sidecar).lower()}},
        "spec": {"serviceAccountName": "echo", "nodeName": f"node-{cluster}"},
    }  # fmt: skip
    eps = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "echo-x1", "namespace": "demo",
                     "labels": {"kubernetes.io/service-name": "echo"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": app_port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True},
                       "nodeName": f"node-{cluster}",
                       "targetRef": {"kind": "Pod", "namespace": "demo", "name": "echo-1"}}],
    }  # fmt: skip
    return [node, pod, eps]


def gateway_service(port: int) -> dict[str, Any]:
    """The gateway Service as meshfed install makes it (a LoadBalancer, port ``tls``)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "meshfed-gateway", "namespace": NAMESPACE},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "tls", "port": port}]},
    }


def conditions(kube: FakeKube) -> dict[str, str]:
    found = kube.get("ServiceExport", "demo", "echo") or {}
    return {c["type"]: c["status"] for c in (found.get("status") or {}).get("conditions") or []}


def test_a_kubernetes_service_exported_in_one_cluster_is_called_from_the_other(
    procs, tmp_path: Path, kubes: dict[str, FakeKube]
) -> None:
    home = tmp_path / "home"
    controller = ControllerHandle(procs, home, lease_s=10)
    controller.start()
    cps: dict[str, ControlPlaneHandle] = {}
    gateways: dict[str, str] = {}
    for n, name in enumerate(("a", "b"), start=1):
        gateways[name] = f"127.0.{n}.1:{free_port(f'127.0.{n}.1')}"
        # registered without --gateway, as meshfed install's hint says: the control plane
        # reports its gateway Service's load balancer address once the "cloud" gives one
        out = run_meshfed(
            home, "cluster", "join", name, "--locality", LOCALITY[name],
            "--network", f"net-{name}", "-o", "json",
        ).stdout  # fmt: skip
        kubeconfig = kubes[name].write_kubeconfig(tmp_path / f"kubeconfig-{name}")
        kubes[name].create(gateway_service(int(gateways[name].rsplit(":", 1)[1])))
        cps[name] = ControlPlaneHandle(
            procs, home, name, LOCALITY[name],
            extra_args=["--network", f"net-{name}",
                        "--controller", f"127.0.0.1:{controller.api_port}",
                        "--join-token", json.loads(out)["token"],
                        "--gateway-service", f"{NAMESPACE}/meshfed-gateway",
                        "--kubernetes", "--kubeconfig", str(kubeconfig),
                        "--kube-namespaces", "demo"],
        )  # fmt: skip
        cps[name].start()
    start_gateway(procs, home, cps["a"], gateways["a"])

    # cluster a: the echo app behind its (injected) sidecar, as Kubernetes describes it
    app_port = free_port()
    start_echo(procs, "echo-1", app_port, "a")
    kube_a = kubes["a"]
    for obj in [service(8080), *endpoint("a", "127.0.1.11", app_port, sidecar=True)]:
        kube_a.create(obj)
    kube_a.create(yaml.safe_load(EXPORT))
    server = start_sidecar(procs, cps["a"], name="echo-1", workload="k8s-echo-127-0-1-11",
                           service_account="echo", locality=LOCALITY["a"])  # fmt: skip
    port = free_port()
    client = start_sidecar(procs, cps["b"], name="client", service_account="frontend",
                           locality=LOCALITY["b"], outbound_port=port)  # fmt: skip
    server.wait_ready(30)
    client.wait_ready(30)

    # a's load balancer has no address yet: its export waits and says why; b imports nothing
    def ready_condition() -> dict[str, str]:
        found = kube_a.get("ServiceExport", "demo", "echo") or {}
        return next(
            (
                c
                for c in (found.get("status") or {}).get("conditions") or []
                if c["type"] == "Ready"
            ),
            {},
        )

    wait_until(lambda: "no gateway address" in ready_condition().get("message", ""), 20,
               "a's export Pending for want of a gateway address")  # fmt: skip
    assert ready_condition()["status"] == "False" and ready_condition()["reason"] == "Pending"
    assert kubes["b"].get("ServiceImport", "demo", "echo") is None
    [a_member] = [c for c in controller.api("GET", "/v1/clusters")["clusters"] if c["name"] == "a"]
    assert a_member["gateway"] == ""
    # the cloud gives the load balancer its address: a's control plane reports it
    lb = kube_a.get("Service", NAMESPACE, "meshfed-gateway") or {}
    host = gateways["a"].rsplit(":", 1)[0]
    kube_a.set_status({**lb, "status": {"loadBalancer": {"ingress": [{"ip": host}]}}})

    def served_by_a() -> bool:
        status, data, _headers = get(port, HOST)
        return status == 200 and data["cluster"] == "a" and data["name"] == "echo-1"

    wait_until(served_by_a, 45, "b's sidecar served by a's endpoint through a's gateway")
    _status, data, _ = get(port, HOST)
    assert "URI=spiffe://example.org/ns/demo/sa/frontend" in data["xfcc"]  # mTLS end to end
    wait_until(
        lambda: conditions(kube_a) == {"Valid": "True", "Ready": "True", "Conflict": "False"},
        15,
        "a's ServiceExport Valid and Ready",
    )
    wait_until(lambda: kubes["b"].get("ServiceImport", "demo", "echo"), 15, "b's ServiceImport")
    imported = kubes["b"].get("ServiceImport", "demo", "echo") or {}
    assert imported["status"] == {"clusters": [{"cluster": "a"}]}
    assert imported["spec"]["ports"][0]["port"] == 8080
    [a_member] = [c for c in controller.api("GET", "/v1/clusters")["clusters"] if c["name"] == "a"]
    assert a_member["gateway"] == gateways["a"] and a_member["registeredGateway"] == ""

    # -- 3: b exports the same service later, with another port: b's export conflicts -------
    kube_b = kubes["b"]
    for obj in [service(9090), *endpoint("b", "127.0.2.11", free_port(), sidecar=False)]:
        kube_b.create(obj)
    kube_b.create(yaml.safe_load(EXPORT))
    wait_until(lambda: conditions(kube_b).get("Conflict") == "True", 20, "b's export in conflict")
    assert conditions(kube_a) == {"Valid": "True", "Ready": "True", "Conflict": "False"}
    conflict = next(
        c for c in kube_b.get("ServiceExport", "demo", "echo")["status"]["conditions"]
        if c["type"] == "Conflict"
    )  # fmt: skip
    print("b's Conflict condition:", conflict["message"])
    assert conflict["message"]
