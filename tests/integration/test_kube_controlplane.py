"""``meshfed controlplane serve --kubernetes`` against the Kubernetes API server fake
(tests/kube_fake.py), with real Envoy sidecars (issue #20, proof 2 end to end): the
endpoints of a Service's EndpointSlices are what a client sidecar calls; an endpoint marked
not ready stops getting requests within 1 s with none failing; a deleted Service's route is
gone."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from federation.ca.client import IdentityError
from federation.client import call
from federation.controlplane.kube.pod import CONTROLPLANE_HOST
from federation.install.manifests import webhook
from tests.integration.harness import (
    ControlPlaneHandle,
    LoadLoop,
    free_port,
    get,
    provision,
    start_echo,
    start_sidecar,
    wait_until,
)
from tests.kube_fake import FakeKube, fake_kube

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "echo.demo.svc.clusterset.local"
ZONE_A = "aws/us-east-1/us-east-1a"


def _objects(i: int, address: str, app_port: int, ready: bool = True) -> list[dict[str, Any]]:
    """Pod echo-<i> (sidecar injected) on node-a and its own EndpointSlice (each test app
    has its own port on 127.0.0.1, so each endpoint gets a slice of its own)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"echo-{i}", "namespace": "demo",
                     "labels": {"app": "echo", "meshfed.io/sidecar": "true"}},
        "spec": {"serviceAccountName": "echo", "nodeName": "node-a"},
    }  # fmt: skip
    return [pod, _slice(i, address, app_port, ready)]


def _slice(i: int, address: str, app_port: int, ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"echo-{i}", "namespace": "demo",
                     "labels": {"kubernetes.io/service-name": "echo"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": app_port, "protocol": "TCP"}],
        "endpoints": [{
            "addresses": [address], "conditions": {"ready": ready}, "nodeName": "node-a",
            "targetRef": {"kind": "Pod", "namespace": "demo", "name": f"echo-{i}"},
        }],
    }  # fmt: skip


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "echo", "namespace": "demo"},
    "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 8080}]},
}
NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/region": "us-east-1",
                                              "topology.kubernetes.io/zone": "us-east-1a"}},
    "spec": {"providerID": "aws:///us-east-1a/i-0a"},
}  # fmt: skip


@pytest.fixture
def kube() -> Any:
    with fake_kube(bookmark_s=0.5) as k:
        yield k


def test_a_client_sidecar_calls_the_clusters_endpoints_and_follows_readiness(
    procs, mesh_home: Path, kube: FakeKube, tmp_path: Path
) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    cp = ControlPlaneHandle(
        procs, mesh_home, "east", ZONE_A,
        extra_args=["--kubernetes", "--kubeconfig", str(kubeconfig),
                    "--kube-namespaces", "demo"],
    )  # fmt: skip
    kube.create(NODE)
    kube.create(SERVICE)
    apps = {}
    for i in (1, 2):
        address, app_port = f"127.0.1.{10 + i}", free_port()
        apps[i] = (address, app_port)
        start_echo(procs, f"echo-{i}", app_port, "east")
        for obj in _objects(i, address, app_port):
            kube.create(obj)
    cp.start()
    workloads = {w["name"]: w for w in cp_workloads(cp)}
    assert set(workloads) == {"k8s-echo-127-0-1-11", "k8s-echo-127-0-1-12"}  # before xDS
    assert workloads["k8s-echo-127-0-1-11"]["locality"] == ZONE_A
    sidecars = [
        start_sidecar(procs, cp, name=f"echo-{i}", workload=f"k8s-echo-127-0-1-1{i}",
                      service_account="echo", locality=ZONE_A)
        for i in (1, 2)
    ]  # fmt: skip
    port = free_port()
    client = start_sidecar(
        procs, cp, name="client", service_account="frontend", locality=ZONE_A, outbound_port=port
    )
    for envoy in [client, *sidecars]:
        envoy.wait_ready(30)
    seen: set[str] = set()

    def both() -> bool:
        status, data, _ = get(port, HOST)
        if status == 200:
            seen.add(data["name"])
        return seen == {"echo-1", "echo-2"}

    wait_until(both, 30, "requests reaching both endpoints")

    with LoadLoop(port, HOST, interval_s=0.005, max_requests=8000, max_seconds=60) as load:
        load.wait_tail({"echo-1", "echo-2"}, 20, 10)
        changed = time.monotonic()
        kube.replace(_slice(2, *apps[2], ready=False))
        load.wait_tail({"echo-1"}, 100, 10)
    last_2 = max(s.at for s in load.samples if s.name == "echo-2")
    assert load.failures() == [], load.failures()[:5]
    print(f"echo-2's last response {last_2 - changed:.3f} s after it was marked not ready")
    assert last_2 - changed < 1.0, f"echo-2 served {last_2 - changed:.2f} s after not ready"

    kube.delete("Service", "demo", "echo")
    wait_until(lambda: get(port, HOST)[0] == 404, 10, "no route once the Service is gone")
    assert cp_workloads(cp) == []


HEADER_ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "echo-canary-testers", "namespace": "demo"},
    "spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "echo"}],
        "rules": [
            {"matches": [{"headers": [{"name": "x-tester", "value": "yes"}]}],
             "backendRefs": [{"name": "echo-canary", "port": 8080}]},
            {"backendRefs": [{"name": "echo", "port": 8080}]},
        ],
    },
}  # fmt: skip


def test_an_httproute_in_the_cluster_routes_its_callers_and_gets_its_status(
    procs, mesh_home: Path, kube: FakeKube, tmp_path: Path
) -> None:
    """Issue #40 in Kubernetes mode, end to end with real Envoy: the official Gateway API CRDs
    (as ``meshfed install`` ships them) in the cluster; an HTTPRoute on Service echo sends
    callers with ``x-tester: yes`` to echo-canary, the rest to echo; its status says
    Accepted; deleting it sends everyone to echo again."""
    from federation.install.ecosystem_crds import ecosystem_crds

    for crd in ecosystem_crds(("gateway-api",)):
        kube.create(crd)
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    cp = ControlPlaneHandle(
        procs, mesh_home, "east", ZONE_A,
        extra_args=["--kubernetes", "--kubeconfig", str(kubeconfig),
                    "--kube-namespaces", "demo"],
    )  # fmt: skip
    kube.create(NODE)
    kube.create(SERVICE)
    kube.create({**SERVICE, "metadata": {"name": "echo-canary", "namespace": "demo"},
                 "spec": {"selector": {"app": "echo-canary"}, "ports": SERVICE["spec"]["ports"]}})  # fmt: skip
    sidecars = []
    for i, service in ((1, "echo"), (2, "echo-canary")):
        address, app_port = f"127.0.1.{10 + i}", free_port()
        start_echo(procs, service, app_port, "east")
        pod, endpoints = _objects(i, address, app_port)
        pod["metadata"]["labels"]["app"] = service
        endpoints["metadata"]["labels"]["kubernetes.io/service-name"] = service
        kube.create(pod)
        kube.create(endpoints)
        sidecars.append((f"echo-{i}", f"k8s-{service}-127-0-1-1{i}"))
    kube.create(HEADER_ROUTE)
    cp.start()
    envoys = [
        start_sidecar(procs, cp, name=name, workload=workload, service_account="echo",
                      locality=ZONE_A)
        for name, workload in sidecars
    ]  # fmt: skip
    port = free_port()
    client = start_sidecar(
        procs, cp, name="client", service_account="frontend", locality=ZONE_A, outbound_port=port
    )
    for envoy in [client, *envoys]:
        envoy.wait_ready(30)

    def answered(headers: dict[str, str] | None = None) -> str:
        status, data, _ = get(port, HOST, headers=headers)
        return str(data["name"]) if status == 200 else f"status {status}"

    wait_until(lambda: answered({"x-tester": "yes"}) == "echo-canary", 30, "the tester route")
    assert {answered() for _ in range(20)} == {"echo"}
    assert {answered({"x-tester": "yes"}) for _ in range(20)} == {"echo-canary"}

    def accepted() -> list[tuple[str, str]]:
        route = kube.get("HTTPRoute", "demo", "echo-canary-testers") or {}
        return [
            (c["type"], c["status"])
            for p in (route.get("status") or {}).get("parents") or []
            for c in p["conditions"]
        ]

    wait_until(lambda: accepted() == [("Accepted", "True"), ("ResolvedRefs", "True")], 10,
               "the route's status")  # fmt: skip
    kube.delete("HTTPRoute", "demo", "echo-canary-testers")
    wait_until(lambda: answered({"x-tester": "yes"}) == "echo", 10, "the route withdrawn")


def cp_workloads(cp: ControlPlaneHandle) -> list[dict[str, Any]]:
    return list(call("GET", cp.api_url, "/v1/workloads", home=cp.home)["workloads"])


def _first_svid(cp: ControlPlaneHandle, namespace: str, account: str, token: str, where: Path):
    """Ask the CA port for a first SVID with ``token`` as a workload agent would."""
    return provision(cp, namespace, account, where, token)


def test_a_first_certificate_needs_a_service_account_token_the_tokenreview_api_accepts(
    procs, mesh_home: Path, kube: FakeKube, tmp_path: Path
) -> None:
    """Proof 5: a CSR with a token TokenReview rejects is refused, and so are a token for
    another audience and a token for another service account; the token of demo/echo for
    audience meshfed gets demo/echo's SVID."""
    kube.tokens = {
        "sa-echo": ("system:serviceaccount:demo:echo", ["meshfed"]),
        "sa-echo-other-audience": ("system:serviceaccount:demo:echo", ["vault"]),
        "user-token": ("alice", ["meshfed"]),
    }
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    cp = ControlPlaneHandle(procs, mesh_home, "east", ZONE_A,
                            extra_args=["--kubernetes", "--kubeconfig", str(kubeconfig)])  # fmt: skip
    cp.start()
    refusals = {
        ("echo", "forged"): "refused by TokenReview",
        ("echo", "sa-echo-other-audience"): "refused by TokenReview",
        ("echo", "user-token"): "not a service account",
        ("admin", "sa-echo"): "is for demo/echo, not demo/admin",
    }
    for (account, token), reason in refusals.items():
        where = tmp_path / f"id-{account}-{token}"
        with pytest.raises(IdentityError, match=reason):
            _first_svid(cp, "demo", account, token, where)
        assert not list(where.glob("*.pem"))  # nothing signed, nothing written
    svid = _first_svid(cp, "demo", "echo", "sa-echo", tmp_path / "id-echo")
    assert str(svid.spiffe_id).endswith("/ns/demo/sa/echo")
    log = cp.procs.log(f"controlplane-east-{cp.starts}")
    assert "issued an SVID for spiffe://example.org/ns/demo/sa/echo (service account token)" in log
    assert "sa-echo" not in log  # no token in the log


def test_the_injector_adds_the_sidecar_in_labelled_namespaces_only(
    procs, mesh_home: Path, kube: FakeKube, tmp_path: Path
) -> None:
    """Proof 4 with a real control plane: AdmissionReview v1 in over HTTPS (verified with the
    injector's CA, as the API server does with caBundle, and the in-cluster name), JSONPatch out for a pod in a namespace labelled
    meshfed.io/inject=enabled, none elsewhere; the webhook configuration's caBundle is set."""
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"meshfed.io/inject": "enabled"}},
        }
    )
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}})
    kube.create(webhook())  # as meshfed install applies it, caBundle empty
    webhook_port = free_port()
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    cp = ControlPlaneHandle(
        procs, mesh_home, "east", ZONE_A,
        extra_args=["--kubernetes", "--kubeconfig", str(kubeconfig),
                    "--webhook-listen", f"127.0.0.1:{webhook_port}",
                    "--sidecar-image", "meshfed:test"],
    )  # fmt: skip
    cp.start()
    injector_ca = (cp.home / "controlplanes" / "east" / "webhook-tls" / "ca.pem").read_text()
    context = ssl.create_default_context(cadata=injector_ca)

    def review(namespace: str) -> dict[str, Any]:
        body = json.dumps({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": f"uid-{namespace}", "kind": {"group": "", "version": "v1",
                        "kind": "Pod"}, "operation": "CREATE", "namespace": namespace,
                        "object": {**POD, "metadata": {**POD["metadata"],
                                                       "namespace": namespace}}},
        }).encode()  # fmt: skip
        conn = http.client.HTTPSConnection(
            "127.0.0.1", webhook_port, context=_named(context), timeout=10
        )
        try:
            conn.request("POST", "/inject", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200
            return json.loads(resp.read())["response"]
        finally:
            conn.close()

    wait_until(lambda: kube.get("Namespace", "", "shop") and cp_workloads(cp) == [], 10, "up")
    shop = review("shop")
    assert shop["uid"] == "uid-shop" and shop["allowed"] and shop["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(shop["patch"]))
    added = next(op["value"] for op in ops if op["path"] == "/spec/containers/-")
    assert added["name"] == "meshfed-sidecar" and added["image"] == "meshfed:test"
    plain = review("plain")
    assert plain["allowed"] and "patch" not in plain
    wait_until(
        lambda: (
            (kube.get("MutatingWebhookConfiguration", "", "meshfed-sidecar-injector") or {})[
                "webhooks"
            ][0]["clientConfig"].get("caBundle")
            == base64.b64encode(injector_ca.encode()).decode()
        ),
        30,  # the leader writes it once elected (retries every 2 s): 10 s missed once in CI
        "caBundle set to the injector's CA",
    )


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "api-1", "labels": {"app": "api"}},
    "spec": {"containers": [{"name": "api", "image": "api:1", "ports": [{"containerPort": 80}]}]},
}


class _named(ssl.SSLContext):
    """Verify the injector by its in-cluster DNS name while dialling 127.0.0.1."""

    def __new__(cls, inner: ssl.SSLContext) -> ssl.SSLContext:  # type: ignore[misc]
        original = inner.wrap_socket

        def wrap(sock: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs["server_hostname"] = CONTROLPLANE_HOST
            return original(sock, *args, **kwargs)

        inner.wrap_socket = wrap  # type: ignore[method-assign]
        return inner
