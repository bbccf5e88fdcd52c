"""Golden files (as Istio's and Kuma's generator tests): what users and Envoy read, compared
with reviewed files in ``tests/golden/`` instead of hand-written asserts.

- ``install/<provider>.yaml`` -- ``meshfed install``'s manifests per provider;
- ``bootstrap/{sidecar,gateway}.envoy.json`` and ``bootstrap/grpc.json`` -- the Envoy
  bootstraps the agent writes and the proxyless gRPC bootstrap;
- ``xds/<role>.yaml`` -- ``generate()`` for a sidecar, the east-west gateway and proxyless gRPC
  clients and servers, from the fixed registry ``registry.yaml`` + ``federation.yaml``.

A change that alters one fails here with a diff; when the change is meant, regenerate them
all with ``make golden`` (``MESHFED_UPDATE_GOLDEN=1``) and review the diff in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from federation.agent.config import AgentConfig, GrpcBootstrapConfig, SidecarConfig
from federation.agent.grpc_bootstrap import grpc_bootstrap
from federation.agent.prepare import agent_settings
from federation.agent.sidecar import sidecar_description, sidecar_entry
from federation.controlplane import resource
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import ServiceRegistry
from federation.install.manifests import InstallOptions, install
from federation.model.authz import AuthorizationPolicy
from federation.model.documents import load_documents, to_yaml
from federation.model.locality import Locality
from federation.model.policy import TrafficPolicy
from federation.model.service import ServiceImport
from federation.sync.node import ProxyDescription, Upstream
from tests.golden_files import GOLDEN, check_golden

HOME = "/var/lib/meshfed"
INFO = {"trust_domain": "example.org", "serverName": "controlplane.east.cluster.meshfed.internal"}
MESH = MeshContext("east", "example.org", Locality("aws/us-east-1", "us-east-1a"))
LOCALITY = Locality("aws/us-east-1", "us-east-1a")


def _yaml(data: Any) -> str:
    # through JSON: MessageToDict gives OrderedDicts inside Any fields
    return yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False, width=100)


@pytest.mark.parametrize("provider", ["aws", "gcp", "local"])
def test_install_manifests(provider: str) -> None:
    options = InstallOptions(
        cluster="east",
        locality="aws/us-east-1",
        controller="https://ctl.example.com:15080",
        join_token="mfj_secret.0123",
        image="ghcr.io/meshfed/meshfed@sha256:" + "0" * 64,
        provider=provider,
        mesh_namespaces=("demo",),
        gateway_allowed_cidrs=("198.51.100.0/24",),
        # the official Istio and Gateway API CRDs (27,000 lines) are checked against their
        # releases instead (tests/unit/install/test_kube_manifests.py)
        ecosystem_crds=(),
    )
    check_golden(f"install/{provider}.yaml", to_yaml(install(options), documents=True))


def _agent() -> AgentConfig:
    return AgentConfig(cluster="east", controlplane="controlplane.east:15010", admin_port=15000)


def test_sidecar_envoy_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHFED_HOME", HOME)
    config = SidecarConfig(
        agent=_agent(), service="frontend", namespace="demo", app_port=8080,
        address="10.0.1.31", labels=(("version", "v1"),), upstreams=("db.demo:5432=15432",),
    )  # fmt: skip
    entry = sidecar_entry(config, LOCALITY)
    desc = sidecar_description(config, entry, LOCALITY)
    settings = agent_settings(desc, config.agent, INFO)
    check_golden("bootstrap/sidecar.envoy.json", json.dumps(settings.bootstrap, indent=2) + "\n")
    check_golden(
        "bootstrap/sidecar.workloadentry.yaml",
        _yaml(entry.model_dump(by_alias=True, mode="json", exclude_none=True)),
    )


def test_gateway_envoy_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHFED_HOME", HOME)
    desc = ProxyDescription(
        "gateway~east", "gateway", locality=LOCALITY, listen="0.0.0.0:15443",
        identity_dir=f"{HOME}/proxies/gateway_east/identity",
    )  # fmt: skip
    settings = agent_settings(desc, _agent(), INFO, propagation_s=0.0)
    check_golden("bootstrap/gateway.envoy.json", json.dumps(settings.bootstrap, indent=2) + "\n")


def test_grpc_bootstrap() -> None:
    config = GrpcBootstrapConfig(
        controlplane="controlplane.east:15010", node_id="grpc~demo~frontend",
        service="frontend", namespace="demo", locality="aws/us-east-1/us-east-1a",
        identity_dir=Path(f"{HOME}/identities/demo/frontend"), workload="frontend-1",
    )  # fmt: skip
    check_golden("bootstrap/grpc.json", json.dumps(grpc_bootstrap(config), indent=2) + "\n")


def _registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.apply(load_documents((GOLDEN / "registry.yaml").read_text()))
    docs = load_documents((GOLDEN / "federation.yaml").read_text())
    registry.set_federation(
        [d for d in docs if isinstance(d, ServiceImport)],
        [],
        [d for d in docs if isinstance(d, TrafficPolicy)],
        authorization_policies=[d for d in docs if isinstance(d, AuthorizationPolicy)],
    )
    return registry


PROXIES = {
    "sidecar-client": ProxyDescription(
        "sidecar~demo~frontend-1", "sidecar", "demo", "", "frontend", LOCALITY,
        identity_dir=f"{HOME}/proxies/sidecar_demo_frontend-1/identity",
        traffic_log=f"{HOME}/proxies/sidecar_demo_frontend-1/traffic.fifo",
        upstreams=(Upstream("db", "demo", 5432, 15432),),
    ),
    "sidecar-echo": ProxyDescription(
        "sidecar~demo~echo-1", "sidecar", "demo", "echo-1", "echo", LOCALITY,
        identity_dir=f"{HOME}/proxies/sidecar_demo_echo-1/identity",
    ),
    "gateway": ProxyDescription(
        "gateway~east", "gateway", locality=LOCALITY, listen="0.0.0.0:15443",
        identity_dir=f"{HOME}/proxies/gateway_east/identity",
    ),
    "grpc-client": ProxyDescription(
        "grpc~demo~frontend", "grpc", "demo", "", "frontend", LOCALITY
    ),
}  # fmt: skip


@pytest.mark.parametrize("role", sorted(PROXIES))
def test_generated_xds(role: str) -> None:
    out = generate(MESH, _registry().state, PROXIES[role])
    doc: dict[str, list[Any]] = {}
    for type_url in sorted(out):
        messages = sorted(out[type_url], key=lambda m: getattr(m, "name", "") or "")
        doc[type_url.rsplit("/", 1)[-1]] = [
            json_format.MessageToDict(m, preserving_proto_field_name=True) for m in messages
        ]
    check_golden(f"xds/{role}.yaml", _yaml(doc))
    # the ADS server resends a re-warmed cluster's EDS by the cluster's name (ads._rewarming)
    eds = [c for c in out.get(resource.CLUSTER, []) if c.HasField("eds_cluster_config")]
    assert eds and all(c.eds_cluster_config.service_name == c.name for c in eds)
