"""Issue #35 (6): authenticated hostile input to the real controller's and control plane's
``apply``: nesting 100,000 deep, bytes that are not UTF-8, 10,001 documents, an alias bomb and
an oversized body each get a 4xx naming the problem -- never a 500 -- and change nothing.
Before the fix the first two got a 500 and the third held the controller's loop for 6 s."""

from __future__ import annotations

import http.client
import json

import pytest

from federation.client import call, find_token, tls_for
from tests.fuzzing import FuzzTarget, fuzz_cases, fuzz_documents, fuzz_operation
from tests.integration.harness import ControllerHandle, ControlPlaneHandle

pytestmark = pytest.mark.integration

LAUGHS = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1},"
    f" *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n"
    for i in range(1, 9)
)
POLICY = (
    "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: echo,"
    " namespace: demo}\nspec: {host: echo.demo.svc.clusterset.local}\n"
)

#: body -> (status, words the error must contain)
HOSTILE: dict[str, tuple[bytes, int, str]] = {
    "deep": (b"[" * 100_000 + b"]" * 100_000, 400, "nested deeper than 64 levels"),
    "deep-block": (
        b"".join(b" " * i + b"k:\n" for i in range(1_000)) + b" " * 1_000 + b"v\n",
        400,
        "nested deeper than 64 levels",
    ),
    "not-utf8": (b"apiVersion: meshfed.io/v1alpha1\nkind: \xff\xfe\n", 400, "not UTF-8"),
    "10001-documents": (
        b"---\n{kind: x}\n" * 10_001,
        400,
        "more than 1000 documents",
    ),
    "alias-bomb": (LAUGHS.encode(), 400, "more than 1000000 YAML nodes"),
    "policy-then-junk": ((POLICY + "---\nkey: [unclosed\n").encode(), 400, "not valid YAML"),
    "too-large": (b"# " + b"x" * (3 * 1024 * 1024), 413, ""),
}


def _post(host: str, port: int, token: str, body: bytes, context=None) -> tuple[int, str]:
    conn = (
        http.client.HTTPSConnection(host, port, context=context, timeout=30)
        if context
        else http.client.HTTPConnection(host, port, timeout=30)
    )
    try:
        conn.request(
            "POST",
            "/v1/apply",
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
        )
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture
def controller(procs, mesh_home):
    c = ControllerHandle(procs, mesh_home)
    c.start()
    return c


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_attack_hostile_documents_at_the_controller(controller, case) -> None:
    body, status, words = HOSTILE[case]
    before = controller.api("GET", "/v1/policies")
    code, text = _post(
        "127.0.0.1", controller.api_port, controller.token(), body, controller.ssl_context()
    )
    assert (code, words in text) == (status, True), text[:300]
    if status == 400:
        assert json.loads(text)["error"].startswith("request body")
    assert controller.api("GET", "/v1/policies") == before
    assert controller.proc is not None and controller.proc.poll() is None
    # and it still applies a good document
    assert controller.api("POST", "/v1/apply", POLICY)["applied"] == ["trafficpolicy/demo/echo"]


def test_attack_hostile_documents_at_a_control_plane(procs, mesh_home) -> None:
    cp = ControlPlaneHandle(procs, mesh_home, "east", "aws/us-east-1/us-east-1a")
    cp.start()
    token = find_token(cp.api_url, home=mesh_home)
    assert token
    before = call("GET", cp.api_url, "/v1/workloads", home=mesh_home)
    tls = tls_for(cp.api_url, mesh_home)
    assert tls is not None and tls.server_hostname == "controlplane.east.cluster.meshfed.internal"
    context = tls.context
    context.check_hostname = False  # http.client cannot ask for the name; the CA is checked
    for case, (body, status, words) in sorted(HOSTILE.items()):
        code, text = _post("127.0.0.1", cp.api_port, token, body, context)
        assert (code, words in text) == (status, True), f"{case}: {text[:300]}"
    assert cp.proc is not None and cp.proc.poll() is None
    assert call("GET", cp.api_url, "/v1/workloads", home=mesh_home) == before


def test_fuzz_documents_at_a_control_plane(procs, mesh_home) -> None:
    """Issue #35: generated WorkloadEntry, ServiceExport and ServiceImport documents with
    arbitrary metadata and spec, applied to and deleted from a real control plane over its
    HTTPS API: never a 5xx, and a refused stream leaves its workloads as they were."""
    cp = ControlPlaneHandle(procs, mesh_home, "east", "aws/us-east-1/us-east-1a")
    cp.start()
    kinds = [
        ("meshfed.io/v1alpha1", "WorkloadEntry"),
        ("meshfed.io/v1alpha1", "ServiceExport"),
        ("multicluster.x-k8s.io/v1alpha1", "ServiceExport"),
        ("meshfed.io/v1alpha1", "ServiceImport"),
    ]
    target = FuzzTarget.for_control_plane(cp.api_url, mesh_home)
    fuzz_documents(target, 150, kinds)
    assert cp.proc is not None and cp.proc.poll() is None


def test_fuzz_the_control_plane_api(procs, mesh_home) -> None:
    """Issue #35: every operation of a control plane's OpenAPI document fuzzed (schemathesis:
    valid and invalid requests, 15 each) against a real control plane over HTTPS with its
    token: never a 5xx, a refused request changes no workload, the process stays up."""
    cp = ControlPlaneHandle(procs, mesh_home, "east", "aws/us-east-1/us-east-1a")
    cp.start()
    target = FuzzTarget.for_control_plane(cp.api_url, mesh_home)
    assert target.openapi is not None
    for mode, label in fuzz_cases(target.openapi):
        fuzz_operation(target, label, mode, 15)
    assert cp.proc is not None and cp.proc.poll() is None
