"""PeerAuthentication (issue #40): which mode holds for each port of a workload (Istio's
precedence), the inbound chains it makes, and the proxies a change rebuilds."""

from __future__ import annotations

import pytest

from federation.controlplane import resource
from federation.controlplane.changes import diff, service_inputs
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import ServiceRegistry, with_federation
from federation.errors import InvalidDocumentError
from federation.model.documents import load_documents
from federation.model.peer_authentication import PeerAuthentication, mtls_modes
from federation.model.workload import WorkloadEntry
from tests.unit.controlplane.test_generators import MESH, _sidecar

LEGACY = """
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: legacy-1, namespace: demo, labels: {app: legacy}}
spec:
  service: legacy
  address: 127.0.1.20
  serviceAccount: legacy
  locality: aws/us-east-1/us-east-1a
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: admin, port: 81, targetPort: 8081}
"""


def _pa(name: str, namespace: str, spec: str) -> PeerAuthentication:
    [doc] = load_documents(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )
    assert isinstance(doc, PeerAuthentication)
    return doc


def _workload(text: str = LEGACY) -> WorkloadEntry:
    [w] = load_documents(text)
    assert isinstance(w, WorkloadEntry)
    return w


MESH_STRICT = _pa("default", "meshfed-system", "{mtls: {mode: STRICT}}")
MESH_PERMISSIVE = _pa("default", "meshfed-system", "{mtls: {mode: PERMISSIVE}}")
NS_PERMISSIVE = _pa("default", "demo", "{mtls: {mode: PERMISSIVE}}")
NS_UNSET = _pa("default", "demo", "{mtls: {mode: UNSET}}")
WORKLOAD_STRICT_8080_PERMISSIVE = _pa(
    "legacy",
    "demo",
    "{selector: {matchLabels: {app: legacy}}, mtls: {mode: STRICT},"
    " portLevelMtls: {8080: {mode: PERMISSIVE}}}",
)
OTHER_NS = _pa("default", "prod", "{mtls: {mode: DISABLE}}")


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        ([], {8080: "STRICT", 8081: "STRICT"}),  # meshfed's default: the WorkloadEntry's
        ([MESH_PERMISSIVE], {8080: "PERMISSIVE", 8081: "PERMISSIVE"}),
        ([MESH_PERMISSIVE, NS_UNSET], {8080: "PERMISSIVE", 8081: "PERMISSIVE"}),  # UNSET defers
        ([MESH_STRICT, NS_PERMISSIVE], {8080: "PERMISSIVE", 8081: "PERMISSIVE"}),
        (
            [MESH_PERMISSIVE, NS_PERMISSIVE, WORKLOAD_STRICT_8080_PERMISSIVE],
            {8080: "PERMISSIVE", 8081: "STRICT"},
        ),
        ([OTHER_NS], {8080: "STRICT", 8081: "STRICT"}),  # another namespace's
    ],
)
def test_the_most_specific_policy_that_sets_a_mode_holds_per_port(policies, expected) -> None:
    assert mtls_modes(policies, _workload()) == expected


def test_of_two_workload_policies_the_first_by_name_counts_and_unset_defers_upwards() -> None:
    unset = _pa("a-first", "demo", "{selector: {matchLabels: {app: legacy}}, mtls: {mode: UNSET}}")
    strict = _pa(
        "b-second", "demo", "{selector: {matchLabels: {app: legacy}}, mtls: {mode: STRICT}}"
    )
    assert mtls_modes([unset, strict, NS_PERMISSIVE], _workload()) == {
        8080: "PERMISSIVE",
        8081: "PERMISSIVE",
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{portLevelMtls: {8080: {mode: DISABLE}}}", "portLevelMtls needs a selector"),
        ("{mtls: {mode: OPTIONAL}}", "spec.mtls.mode"),
        ("{targetRef: {kind: Service, name: x}}", "spec.targetRef: not supported by meshfed"),
    ],
)
def test_bad_peer_authentications_are_refused_naming_the_field(spec, expected) -> None:
    with pytest.raises(InvalidDocumentError) as err:
        _pa("p", "demo", spec)
    assert expected in "\n".join(err.value.problems)


def _inbound_chains(registry: ServiceRegistry) -> list[tuple[str, str]]:
    out = generate(MESH, registry.state, _sidecar("legacy-1", sa="legacy"))
    [inbound] = [x for x in out[resource.LISTENER] if x.name == "inbound"]
    return [(c.name, c.filter_chain_match.transport_protocol) for c in inbound.filter_chains]


def test_the_inbound_listener_follows_each_ports_mode() -> None:
    registry = ServiceRegistry()
    registry.apply(load_documents(LEGACY))
    strict = _inbound_chains(registry)
    assert [t for _, t in strict] == ["tls", "tls", "tls"]  # two ports and the authority chain
    registry.set_federation([], [], peer_authentications=[WORKLOAD_STRICT_8080_PERMISSIVE])
    chains = _inbound_chains(registry)
    assert chains[-1] == ("plaintext", "raw_buffer")  # 8080 takes plain text, 8081 does not
    assert [t for _, t in chains[:-1]] == ["tls", "tls", "tls"]
    disable = _pa(
        "legacy", "demo", "{selector: {matchLabels: {app: legacy}}, mtls: {mode: DISABLE}}"
    )
    registry.set_federation([], [], peer_authentications=[disable])
    assert _inbound_chains(registry) == [("plaintext", "raw_buffer")]


def test_a_changed_peer_authentication_rebuilds_the_workloads_it_selects_only() -> None:
    registry = ServiceRegistry()
    other = LEGACY.replace("legacy-1", "other-1").replace("app: legacy", "app: other")
    registry.apply(load_documents(LEGACY + "---" + other.replace("127.0.1.20", "127.0.1.21")))
    before = registry.state
    after = with_federation(before, [], [], peer_authentications=[WORKLOAD_STRICT_8080_PERMISSIVE])
    change = diff(before, service_inputs(before), after, service_inputs(after))
    assert change.authorized == frozenset({("demo", "legacy-1")})
    mesh_wide = with_federation(before, [], [], peer_authentications=[MESH_PERMISSIVE])
    change = diff(before, service_inputs(before), mesh_wide, service_inputs(mesh_wide))
    assert change.authorized == frozenset({("demo", "legacy-1"), ("demo", "other-1")})
