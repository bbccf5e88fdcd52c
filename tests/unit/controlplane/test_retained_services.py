"""An exported service whose last workload is gone stays a service (MCS: the ServiceImport
outlives its pods; Istio: a Service scaled to zero keeps its cluster), with no endpoint, for
as long as it is exported here; a service that is not exported is gone with its workloads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from federation.controlplane.registry import ServiceRegistry, ServiceShape
from federation.controlplane.report import cluster_report
from federation.model.documents import load_documents


def _workload(name: str, service: str, address: str, account: str = "") -> str:
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
        f"metadata: {{name: {name}, namespace: demo,"
        " annotations: {networking.istio.io/exportTo: '.'}}\n"
        f"spec: {{service: {service}, address: {address},"
        f" serviceAccount: {account or service}, locality: aws/us-east-1/us-east-1a,"
        " ports: [{name: http, port: 8080, protocol: http}, {name: tcp, port: 9000,"
        " protocol: tcp}]}\n"
    )


def _export(service: str) -> str:
    return (
        "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n"
        f"metadata: {{name: {service}, namespace: demo}}\n"
    )


E_1, E_2 = _workload("e-1", "e", "10.0.0.1"), _workload("e-2", "e", "10.0.0.2", "e-admin")
L_1 = _workload("l-1", "l", "10.0.0.3")


def _registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.apply(load_documents("---\n".join([E_1, E_2, L_1, _export("e")])))
    return registry


def test_an_exported_service_without_workloads_stays_reported_with_no_endpoint() -> None:
    registry = _registry()
    registry.delete(load_documents(E_1 + "---\n" + E_2 + "---\n" + L_1))
    state = registry.state
    assert state.services() == [("demo", "e")]  # l was not exported: gone
    assert state.retained == {
        ("demo", "e"): ServiceShape(
            ports=(("http", 8080, "http"), ("tcp", 9000, "tcp")),
            service_accounts=("e", "e-admin"),
            tls_modes=frozenset({"mutual"}),
            export_to=".",
        )
    }
    assert not state.visible_to(("demo", "e"), "other")  # its exportTo still holds
    report = cluster_report(state, "east", "127.0.0.1:15443", {})
    [service] = report.services
    assert (service.namespace, service.name) == ("demo", "e")
    assert [(p.name, p.port, p.protocol) for p in service.ports] == [
        ("http", 8080, "http"),
        ("tcp", 9000, "tcp"),
    ]
    assert service.service_accounts == ["e", "e-admin"]
    assert service.endpoints == [] and service.healthy_endpoints == 0
    assert [str(e) for e in report.exports] == ["demo/e"]


def test_a_workload_back_ends_the_retention_and_an_unexport_ends_the_service() -> None:
    registry = _registry()
    registry.delete(load_documents(E_1 + "---\n" + E_2))
    assert ("demo", "e") in registry.state.retained
    registry.apply(load_documents(E_1))
    assert registry.state.retained == {}
    assert registry.state.by_service("demo", "e")[0].metadata.name == "e-1"
    registry.delete(load_documents(E_1))
    assert ("demo", "e") in registry.state.retained
    registry.delete(load_documents(_export("e")))
    assert registry.state.retained == {} and ("demo", "e") not in registry.state.services()
    assert cluster_report(registry.state, "east", "", {}).services[0].name == "l"


def test_exports_of_the_controller_and_of_the_cluster_retain_too_and_withdrawing_ends_it() -> None:
    registry = ServiceRegistry()
    registry.apply(load_documents(E_1))
    registry.set_federation(imports=[], exports=[("demo", "e")])
    registry.delete(load_documents(E_1))
    assert ("demo", "e") in registry.state.retained
    registry.set_federation(imports=[], exports=[])
    assert registry.state.retained == {}

    registry.apply(load_documents(E_1))
    registry.set_cluster_exports([("demo", "e")])
    registry.delete(load_documents(E_1))
    assert ("demo", "e") in registry.state.retained
    registry.set_cluster_exports([])
    assert registry.state.retained == {}


def test_a_change_that_retains_nothing_new_keeps_the_retained_mapping_object() -> None:
    registry = _registry()
    registry.delete(load_documents(E_1 + "---\n" + E_2))
    retained = registry.state.retained
    registry.apply(load_documents(_workload("l-2", "l", "10.0.0.4")))
    registry.set_federation(imports=[], exports=[])  # the local export still stands
    assert registry.state.retained is retained  # what compares parts by identity sees no change


OPS = st.lists(
    st.tuples(
        st.sampled_from(["apply", "delete"]),
        st.sampled_from([E_1, E_2, L_1, _export("e"), _export("l")]),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_retained_services_are_exactly_the_exported_ones_that_had_workloads(ops) -> None:
    """Against a model: a service is retained when it is exported, has no workload, and
    had one since the last time it was not exported."""
    registry = ServiceRegistry()
    had: set[tuple[str, str]] = set()  # the model
    for op, doc in ops:
        getattr(registry, op)(load_documents(doc))
        state = registry.state
        had = {k for k in had if state.exported(k)}
        had |= {k for k in [("demo", "e"), ("demo", "l")] if state.by_service(*k)}
        expected = {k for k in had if state.exported(k) and not state.by_service(*k)}
        assert set(state.retained) == expected
        reported = {(s.namespace, s.name) for s in cluster_report(state, "c", "", {}).services}
        assert reported == {k for k in had if state.by_service(*k)} | expected
