"""The control plane's side of federation: its report, installing the controller's view,
reconnect backoff, and how the CLI finds the controller."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from federation.client import controller_target
from federation.controlplane.federation_link import backoff_delays, parse_update
from federation.controlplane.registry import Health, RegistryState, ServiceRegistry, with_federation
from federation.controlplane.report import cluster_report
from federation.errors import ApiError, InvalidDocumentError
from federation.model.documents import load_documents
from federation.model.service import ServiceExport, ServiceImport

WORKLOADS = """
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: echo-1, namespace: demo}
spec: {service: echo, address: 127.0.1.10, locality: aws/us-east-1/us-east-1a, ports: [{name: http, port: 8080}, {name: grpc, port: 9090, protocol: grpc}]}
---
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: echo-2, namespace: demo}
spec: {service: echo, address: 127.0.1.11, locality: aws/us-east-1/us-east-1b, serviceAccount: echo-sa, ports: [{name: http, port: 8080}]}
---
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: secret-1, namespace: demo}
spec: {service: secret, address: 127.0.1.12, locality: aws/us-east-1/us-east-1a, ports: [{name: http, port: 80}]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: echo, namespace: demo}
"""

IMPORT = {
    "apiVersion": "meshfed.io/v1alpha1",
    "kind": "ServiceImport",
    "metadata": {"name": "echo", "namespace": "demo"},
    "spec": {
        "ports": [{"name": "http", "port": 8080, "protocol": "http"}],
        "serviceAccounts": ["echo"],
        "clusters": [
            {
                "cluster": "west",
                "gateway": "127.0.2.1:15443",
                "network": "w",
                "locality": "aws/eu-west-1",
                "endpoints": 2,
            }
        ],
    },
}


def _registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.apply(load_documents(WORKLOADS))  # type: ignore[arg-type]
    return registry


def test_report_lists_local_services_healthy_endpoints_per_zone_and_exports() -> None:
    registry = _registry()
    registry.set_health(("demo", "echo-2"), Health.UNHEALTHY)
    report = cluster_report(registry.state, "east", "127.0.1.1:15443", {"west": 1.23456})
    echo, secret = report["services"]
    endpoints = echo.pop("endpoints")
    assert endpoints[1] == {
        "address": "127.0.1.11",
        "zone": "us-east-1b",
        "healthy": False,
        "tls_mode": "mutual",
        "ports": {"http": 15006},  # the sidecar's inbound port
        "weight": 1,
    }
    assert echo == {
        "namespace": "demo",
        "name": "echo",
        "ports": [
            {"name": "http", "port": 8080, "protocol": "http"},
            {"name": "grpc", "port": 9090, "protocol": "grpc"},
        ],
        "service_accounts": ["default", "echo-sa"],
        "healthy_endpoints_by_zone": {"us-east-1a": 1, "us-east-1b": 0},
    }
    assert secret["name"] == "secret"
    assert report["exports"] == ["demo/echo"]  # never the unexported secret
    assert report["gateway"] == "127.0.1.1:15443" and report["rtt_ms"] == {"west": 1.235}


def test_federated_exports_count_as_exports_and_the_controller_view_replaces_the_old() -> None:
    registry = _registry()
    [imp] = [ServiceImport.model_validate(IMPORT)]
    assert registry.set_federation([imp], [("demo", "secret")])
    state = registry.state
    assert state.exported(("demo", "secret")) and state.exported(("demo", "echo"))
    assert cluster_report(state, "east", "", {})["exports"] == ["demo/echo", "demo/secret"]
    assert not registry.set_federation([imp], [("demo", "secret")])  # same view: no new version
    assert registry.state is state
    registry.set_federation([], [])
    assert dict(registry.state.imports) == {} and not registry.state.exported(("demo", "secret"))
    # federated exports are not persisted as local documents
    assert not any(
        isinstance(d, ServiceExport) and d.metadata.name == "secret"
        for d in registry.state.documents()
    )


def test_with_federation_is_pure() -> None:
    state = RegistryState()
    imp = ServiceImport.model_validate(IMPORT)
    after = with_federation(state, [imp], [])
    assert state.imports == {} and after.version == 1 and after.imports[("demo", "echo")] == imp


def test_parse_update() -> None:
    view = parse_update(
        {"service_imports_json": [json.dumps(IMPORT)], "exports": ["demo/echo", "x/y"]}
    )
    assert [i.key for i in view.imports] == [("demo", "echo")]
    assert view.exports == [("demo", "echo"), ("x", "y")]
    with pytest.raises(InvalidDocumentError):
        parse_update({"service_imports_json": [json.dumps({**IMPORT, "spec": {}})]})


def test_backoff_doubles_to_ten_seconds_with_jitter() -> None:
    delays = list(itertools.islice(backoff_delays(rng=random.Random(1)), 8))
    assert 0.25 <= delays[0] <= 0.5
    assert all(5 <= d <= 10 for d in delays[5:])
    caps = [min(0.5 * 2**i, 10) for i in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, caps, strict=True))


def test_controller_target_flags_then_config_file(tmp_path) -> None:
    with pytest.raises(ApiError, match="no controller"):
        controller_target(None, None, home=tmp_path)
    (tmp_path / "tok").write_text("t0ken\n")
    (tmp_path / "config.yaml").write_text(
        f"controller: http://127.0.0.1:15080\ntokenFile: {tmp_path / 'tok'}\n"
    )
    assert controller_target(None, None, home=tmp_path) == ("http://127.0.0.1:15080", "t0ken")
    assert controller_target(None, "flag", home=tmp_path) == ("http://127.0.0.1:15080", "flag")
    # another controller: the stored token is not sent to it
    assert controller_target("http://10.0.0.1:1", None, home=tmp_path) == (
        "http://10.0.0.1:1",
        None,
    )
