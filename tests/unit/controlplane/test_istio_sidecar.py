"""Istio's Sidecar resource (issue #40): a Sidecar limiting egress to two hosts shrinks the
proxy's CDS to those hosts; which Sidecar applies; refusals."""

from __future__ import annotations

import pytest

from federation.controlplane import resource
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import ServiceRegistry
from federation.errors import InvalidDocumentError
from federation.model.documents import load_documents
from federation.model.istio_sidecar import IstioSidecar, in_scope, sidecar_for
from tests.unit.controlplane.test_generators import MESH, _doc, _sidecar

SERVICES = ["echo", "db", "cache", "search", "auth"]


def _sidecar_doc(name: str, namespace: str, spec: str) -> IstioSidecar:
    [doc] = load_documents(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )
    assert isinstance(doc, IstioSidecar)
    return doc


def _registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    docs = [_doc(f"{s}-1", "us-east-1a", service=s, sa=s) for s in SERVICES]
    docs.append(_doc("shared-db-1", "us-east-1a", service="db", sa="db", ns="shared"))
    registry.apply(load_documents("---".join(docs)))
    return registry


def _clusters(registry: ServiceRegistry) -> list[str]:
    out = generate(MESH, registry.state, _sidecar(ns="demo"))
    return sorted(c.name for c in out[resource.CLUSTER] if c.name.startswith("outbound|"))


def test_a_sidecar_limiting_egress_to_two_hosts_shrinks_cds_to_them() -> None:
    registry = _registry()
    everything = _clusters(registry)
    assert len(everything) == 6  # five services in demo, one in shared
    two = _sidecar_doc(
        "default",
        "demo",
        "{egress: [{hosts: [./echo.demo.svc.cluster.local, shared/db.shared.svc.cluster.local]}]}",
    )
    registry.set_federation([], [], sidecars=[two])
    scoped = _clusters(registry)
    assert scoped == [
        "outbound|8080||db.shared.svc.clusterset.local",
        "outbound|8080||echo.demo.svc.clusterset.local",
    ]
    out = generate(MESH, registry.state, _sidecar(ns="demo"))
    assert len(out[resource.ENDPOINT]) == 2
    [routes] = out[resource.ROUTE]
    assert {v.name.split(":")[0] for v in routes.virtual_hosts} <= {
        "echo.demo.svc.clusterset.local",
        "db.shared.svc.clusterset.local",
    }
    print(f"CDS: {len(everything)} clusters without the Sidecar, {len(scoped)} with it")


def test_which_sidecar_applies_selector_then_namespace_then_root() -> None:
    root = _sidecar_doc("default", "meshfed-system", "{egress: [{hosts: ['./*']}]}")
    ns = _sidecar_doc("default", "demo", "{egress: [{hosts: ['*/*']}]}")
    chosen = _sidecar_doc(
        "echo", "demo", "{workloadSelector: {labels: {app: echo}}, egress: [{hosts: ['./*']}]}"
    )
    assert sidecar_for([root, ns, chosen], "demo", {"app": "echo"}) is chosen
    assert sidecar_for([root, ns, chosen], "demo", {"app": "db"}) is ns
    assert sidecar_for([root, chosen], "prod", {}) is root
    assert sidecar_for([chosen], "prod", {}) is None
    # "." in the root namespace's Sidecar is the proxy's own namespace
    assert in_scope(root, "prod", ("prod", "x")) and not in_scope(root, "prod", ("demo", "x"))
    assert in_scope(None, "prod", ("demo", "x"))  # no Sidecar: everything
    wildcard = _sidecar_doc("w", "demo", "{egress: [{hosts: ['prod/*.prod.svc.cluster.local']}]}")
    assert in_scope(wildcard, "demo", ("prod", "db"))
    assert not in_scope(wildcard, "demo", ("demo", "db"))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{egress: [{hosts: [echo]}]}", "write <namespace>/<dns name>"),
        ("{egress: [{hosts: ['./*'], port: {number: 80}}]}", "spec.egress.0.port: not supported by meshfed yet"),
        ("{egress: [{hosts: ['./*']}], outboundTrafficPolicy: {mode: REGISTRY_ONLY}}",
         "spec.outboundTrafficPolicy: not supported by meshfed: set it per sidecar"),
        ("{ingress: [], egress: [{hosts: ['./*']}]}", "spec.ingress: not supported by meshfed yet"),
    ],
)  # fmt: skip
def test_what_meshfed_cannot_honour_is_refused_by_field(spec, expected) -> None:
    with pytest.raises(InvalidDocumentError) as err:
        _sidecar_doc("s", "demo", spec)
    assert expected in "\n".join(err.value.problems)
