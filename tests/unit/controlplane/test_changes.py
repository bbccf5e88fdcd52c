"""Issue #37: a change rebuilds exactly the proxies whose view includes it, and those get
exactly the resource types it changed.

Each case runs the real :class:`SnapshotBuilder` on a real registry with four proxies (sidecars
of services ``a`` and ``b``, the east-west gateway, a proxyless gRPC client), applies one kind
of change, and records which proxies were generated again and which types of their snapshot
changed. The reference is a build from scratch of every proxy after the change: a proxy that
was not rebuilt must hold exactly what a full rebuild would give it (so a missed dependency
fails here), and one that was rebuilt must have seen something (so a needless wake-up
fails here too).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import federation.controlplane.builder as builder_module
from federation.controlplane import resource
from federation.controlplane.builder import SnapshotBuilder
from federation.controlplane.changes import Change, diff, sees, service_inputs
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.context import PushContext
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import Health, ServiceRegistry
from federation.controlplane.snapshot import Snapshot, SnapshotCache
from federation.model.authz import AuthorizationPolicy
from federation.model.documents import load_documents
from federation.model.locality import Locality
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.workload import WorkloadEntry
from federation.sync.messages import RoutingPlan
from federation.sync.node import ProxyDescription

MESH = MeshContext("east", "example.org", Locality("aws/us-east-1", "us-east-1a"))
CDS, EDS, LDS, RDS = resource.CLUSTER, resource.ENDPOINT, resource.LISTENER, resource.ROUTE


def _workload(name: str, service: str, address: str, protocol: str = "http") -> str:
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
        f"metadata: {{name: {name}, namespace: demo, labels: {{app: {service}}}}}\n"
        f"spec: {{service: {service}, address: {address}, serviceAccount: {service},"
        " locality: aws/us-east-1/us-east-1a,"
        f" ports: [{{name: {protocol}, port: 8080, protocol: {protocol}}}]}}\n"
    )


EXPORT_A = "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: a, namespace: demo}\n"
EXPORT_B = "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: b, namespace: demo}\n"
EXPORT_E = "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: e, namespace: demo}\n"
E_1 = _workload("e-1", "e", "127.0.0.14")
AUTHZ_A = AuthorizationPolicy.model_validate(
    {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "only-b", "namespace": "demo"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["example.org/ns/demo/sa/b"]}}]}],
        },
    }
)
POLICY_B = TrafficPolicy.model_validate(
    {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "b", "namespace": "demo"},
        "spec": {"host": "b.demo.svc.clusterset.local", "retries": {"attempts": 5}},
    }
)
PRICES = PriceTable.model_validate(
    {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "PriceTable",
        "metadata": {"name": "aws-edp"},
        "spec": {"cloud": "aws", "source": "contract 2026", "usdPerGB": {"cross-zone": 0.0}},
    }
)

PROXIES = {
    "sidecar-a": ProxyDescription(
        "sidecar~demo~a-1", "sidecar", "demo", "a-1", "a", identity_dir="/run/a"
    ),
    "sidecar-b": ProxyDescription(
        "sidecar~demo~b-1", "sidecar", "demo", "b-1", "b", identity_dir="/run/b"
    ),
    "gateway": ProxyDescription(
        "gateway~east", "gateway", locality=MESH.locality, listen="127.0.0.1:15443"
    ),
    "grpc": ProxyDescription("grpc~demo~c", "grpc", "demo", service_account="c"),
}


def _registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.apply(
        load_documents(
            "---\n".join(
                [
                    _workload("a-1", "a", "127.0.0.11"),
                    _workload("b-1", "b", "127.0.0.12"),
                    _workload("t-1", "t", "127.0.0.13", "tcp"),
                    E_1,
                    EXPORT_A,
                    EXPORT_E,
                ]
            )
        )
    )
    return registry


def _federation(registry: ServiceRegistry, **kwargs: object) -> None:
    registry.set_federation(imports=[], exports=[], **kwargs)  # type: ignore[arg-type]


CASES = {
    # an endpoint of the exported service a: every sidecar's EDS, the gateway's, gRPC's
    "endpoint of an exported service": (
        lambda r: r.apply(load_documents(_workload("a-2", "a", "127.0.0.21"))),
        {"sidecar-a": {EDS}, "sidecar-b": {EDS}, "gateway": {EDS}, "grpc": {EDS}},
    ),
    # b is not exported: the gateway does not serve it
    "health of a service that is not exported": (
        lambda r: r.set_health(("demo", "b-1"), Health.UNHEALTHY),
        {"sidecar-a": {EDS}, "sidecar-b": {EDS}, "grpc": {EDS}},
    ),
    # t has a TCP port only: proxyless gRPC has nothing of it
    "endpoint of a TCP service": (
        lambda r: r.apply(load_documents(_workload("t-2", "t", "127.0.0.23", "tcp"))),
        {"sidecar-a": {EDS}, "sidecar-b": {EDS}},
    ),
    # only the workload it selects, and only its inbound listener
    "AuthorizationPolicy": (
        lambda r: _federation(r, authorization_policies=[AUTHZ_A]),
        {"sidecar-a": {LDS}},
    ),
    # only the gateway reads exports
    "export": (
        lambda r: r.apply(load_documents(EXPORT_B)),
        {"gateway": {CDS, EDS, LDS}},
    ),
    # retries are a route's: RDS only, of every caller (not the gateway: b is not exported)
    "TrafficPolicy of a service that is not exported": (
        lambda r: _federation(r, policies=[POLICY_B]),
        # gRPC reads the policy too, but its routes carry no retry policy: rebuilt to the
        # same content, so its snapshot object stays and its streams are not woken
        {"sidecar-a": {RDS}, "sidecar-b": {RDS}, "grpc": set()},
    ),
    # prices may move every decision: everyone is rebuilt (what changes depends on prices)
    "price tables": (
        lambda r: _federation(r, price_tables=[PRICES]),
        {"sidecar-a": set(), "sidecar-b": set(), "gateway": set(), "grpc": set()},
    ),
    # e is exported and e-1 is its only workload: the service stays (retained), so every
    # caller and the gateway lose an endpoint, no cluster, route or listener
    "the only endpoint of an exported service goes": (
        lambda r: r.delete(load_documents(E_1)),
        {"sidecar-a": {EDS}, "sidecar-b": {EDS}, "gateway": {EDS}, "grpc": {EDS}},
    ),
    # ... and comes back (PREPARED: gone first): endpoints again, nothing else
    "the only endpoint of an exported service comes back": (
        lambda r: r.apply(load_documents(E_1)),
        {"sidecar-a": {EDS}, "sidecar-b": {EDS}, "gateway": {EDS}, "grpc": {EDS}},
    ),
    # a retained service whose export is withdrawn is gone: clusters, routes, listeners
    "the export of a service without endpoints is withdrawn": (
        lambda r: r.delete(load_documents(EXPORT_E)),
        {
            "sidecar-a": {CDS, EDS, RDS},
            "sidecar-b": {CDS, EDS, RDS},
            "gateway": {CDS, EDS, LDS},
            "grpc": {CDS, EDS, LDS, RDS},
        },
    ),
    # the controller's view of this cluster's exports: no proxy reads it
    "export conditions": (
        lambda r: _federation(r, export_conditions={("demo", "a"): ("Exported", "")}),
        {},
    ),
}


#: What is done to the registry before a case's snapshots are taken.
PREPARED = {
    "the only endpoint of an exported service comes back": lambda r: r.delete(load_documents(E_1)),
    "the export of a service without endpoints is withdrawn": lambda r: r.delete(
        load_documents(E_1)
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_change_rebuilds_exactly_the_proxies_that_see_it(case, monkeypatch) -> None:
    change, expected = CASES[case]
    registry, cache = _registry(), SnapshotCache()
    PREPARED.get(case, lambda r: None)(registry)
    builder = SnapshotBuilder(MESH, registry, cache)
    builder.ready.set()
    for proxy in PROXIES.values():
        await builder.on_stream_open(_node(proxy), _peer(proxy))
    before = {name: cache.get_snapshot(p.node_id) for name, p in PROXIES.items()}
    generated: list[str] = []
    real = builder_module.generate

    def recording(mesh, state, proxy, context=None):
        generated.append(proxy.node_id)
        return real(mesh, state, proxy, context)

    monkeypatch.setattr(builder_module, "generate", recording)
    wakeups = cache.wakeups
    change(registry)
    await builder.rebuild_all()

    names = {p.node_id: name for name, p in PROXIES.items()}
    assert {names[n] for n in generated} == set(expected)
    state = registry.state
    for name, proxy in PROXIES.items():
        now = cache.get_snapshot(proxy.node_id)
        scratch = Snapshot.build(generate(MESH, state, proxy))
        assert now is not None and now.versions == scratch.versions, name
        changed = {t for t in resource.PUSH_ORDER if now.versions[t] != before[name].versions[t]}
        if expected.get(name):
            assert changed == expected[name], name
        elif name not in expected:
            assert now is before[name], f"{name} was woken by a change it does not see"
        if not changed:  # same content: the very same snapshot, no stream is woken
            assert now is before[name], name
    assert cache.wakeups == wakeups  # nobody waits in this test: no stray wake-ups either


def _node(proxy: ProxyDescription):
    from envoy.config.core.v3 import base_pb2

    node = base_pb2.Node(id=proxy.node_id)
    meta = {"meshfed.io/role": proxy.role}
    for field, key in (
        ("namespace", "meshfed.io/namespace"),
        ("workload", "meshfed.io/workload"),
        ("service_account", "meshfed.io/service_account"),
        ("identity_dir", "meshfed.io/identity_dir"),
        ("listen", "meshfed.io/listen"),
    ):
        if getattr(proxy, field):
            meta[key] = getattr(proxy, field)
    node.metadata.update(meta)
    if proxy.locality is not None:
        node.locality.region, node.locality.zone = proxy.locality.region, proxy.locality.zone
    return node


def _peer(proxy: ProxyDescription) -> str:
    if proxy.role == "gateway":
        return "spiffe://example.org/ns/meshfed-system/sa/eastwest-gateway"
    return f"spiffe://example.org/ns/{proxy.namespace}/sa/{proxy.service_account}"


def test_diff_names_what_changed() -> None:
    registry = _registry()
    before = registry.state
    registry.apply(load_documents(_workload("a-2", "a", "127.0.0.21")))
    _federation(registry, authorization_policies=[AUTHZ_A])
    after = registry.state
    change = diff(before, service_inputs(before), after, service_inputs(after))
    assert change == Change(
        services=frozenset({("demo", "a")}),
        workloads=frozenset({("demo", "a-2")}),
        authorized=frozenset({("demo", "a-1"), ("demo", "a-2")}),
    )
    same = diff(after, service_inputs(after), after, service_inputs(after))
    assert same.empty
    assert not sees(PROXIES["gateway"], Change(authorized=frozenset({("demo", "a-1")})), {}, {})


def test_a_push_context_reuses_every_untouched_service() -> None:
    """One endpoint of one service of many: that service is decided and generated again,
    every other one's resources are the very objects of the previous version."""
    registry = ServiceRegistry()
    registry.apply(
        load_documents(
            "---\n".join(_workload(f"s{i}-1", f"s{i}", f"127.0.1.{i}") for i in range(30))
        )
    )
    sidecar = PROXIES["sidecar-a"]
    first = PushContext(MESH, registry.state)
    old = generate(MESH, registry.state, sidecar, first)
    registry.apply(load_documents(_workload("s7-2", "s7", "127.0.2.7")))
    second = PushContext(MESH, registry.state, first)
    new = generate(MESH, registry.state, sidecar, second)
    assert second.change.services == {("demo", "s7")}
    # ports, decisions and resources of each service; the outbound routes, whose inputs
    # (the ports, no policy routes) are equal, are the previous version's object
    assert second.computed == 3 and second.reused == 3 * 29 + 1
    assert new[RDS] == old[RDS] and new[RDS][0] is old[RDS][0]
    changed = [c.cluster_name for c, o in zip(new[EDS], old[EDS], strict=True) if c is not o]
    assert changed == ["outbound|8080||s7.demo.svc.clusterset.local"]
    assert (
        Snapshot.build(new, Snapshot.build(old)).versions[CDS] == Snapshot.build(old).versions[CDS]
    )


async def test_only_the_changed_nodes_streams_are_woken() -> None:
    cache = SnapshotCache()
    one = Snapshot.build({})
    await cache.set_snapshot("a", one)
    await cache.set_snapshot("b", one)
    waiting = {n: asyncio.create_task(cache.wait_for_change(n, one)) for n in ("a", "b")}
    await asyncio.sleep(0)
    two = Snapshot.build({CDS: []})
    await cache.set_snapshot("a", two)
    assert await asyncio.wait_for(waiting["a"], 1) is two
    assert not waiting["b"].done() and cache.wakeups == 1
    waiting["b"].cancel()


def _import(service: str) -> str:
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: ServiceImport\n"
        f"metadata: {{name: {service}, namespace: demo}}\n"
        "spec:\n  ports: [{name: http, port: 8080}]\n  serviceAccounts: [x]\n  clusters:\n"
        "  - {cluster: west, gateway: '10.200.0.1:15443', network: west,"
        " locality: aws/eu-west-1/eu-west-1a, endpoints: 2}\n"
    )


_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["add", "kube", "delete", "health", "policy", "plan", "rtt", "export", "import"]
        ),
        st.integers(0, 2),  # service
        st.integers(0, 1),  # replica
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=250, deadline=None)
@given(ops=_OPS)
def test_inputs_taken_over_from_the_previous_state_are_those_computed_from_scratch(ops) -> None:
    """Issue #37: :func:`service_inputs` computes again only the services of changed
    workloads when the other parts are the same objects; after any sequence of changes its
    result is the one computed from the state alone, key order included. The same for the
    state's index of workloads by service."""
    from federation.controlplane.registry import _index_of

    registry = _registry()
    state, inputs = registry.state, service_inputs(registry.state)
    for op, s, r in ops:
        name, service = f"s{s}-{r}", f"s{s}"
        if op == "add":
            registry.apply(load_documents(_workload(name, service, f"127.0.3.{10 * s + r}")))
        elif op == "kube":  # the Kubernetes source's: not stored
            text = _workload(name, service, f"127.0.4.{10 * s + r}")
            text = text.replace("labels: {", "labels: {meshfed.io/source: kubernetes, ")
            registry.apply(load_documents(text))
        elif op == "delete":
            registry.delete(load_documents(_workload(name, service, f"127.0.3.{10 * s + r}")))
        elif op == "health":
            registry.set_health(("demo", name), Health.UNHEALTHY if r else Health.HEALTHY)
        elif op == "policy":
            _federation(registry, policies=[POLICY_B] if r else [])
        elif op == "plan":
            shares = (("east", "aws/us-east-1/us-east-1a", 1.0),)
            plan = RoutingPlan("demo", service, "aws/us-east-1/us-east-1a", shares)
            _federation(registry, plans=[plan] if r else [])
        elif op == "rtt":
            registry.set_rtts({"west": 10.0 + r})
        elif op == "import":
            registry.apply(load_documents(_import(service)))
        else:
            registry.apply(load_documents(EXPORT_B))
        now = registry.state
        # the index by service and the stored documents, patched from the state before, are
        # the ones made from scratch
        assert dict(now._index()) == _index_of(now.workloads.values())
        stored = [d for d in now.documents() if isinstance(d, WorkloadEntry)]
        assert stored == [
            w
            for _, w in sorted(now.workloads.items())
            if w.metadata.labels.get("meshfed.io/source") != "kubernetes"
        ]
        taken_over = service_inputs(now, (state, inputs))
        scratch = service_inputs(now)
        assert taken_over == scratch
        assert list(taken_over) == list(scratch)
        state, inputs = now, taken_over


def test_a_prepared_state_is_installed_only_on_the_state_it_was_made_from() -> None:
    """The API computes ``with_applied`` once to persist it and hands it to the registry;
    if the registry moved on meanwhile, the documents are applied to the newer state."""
    from federation.controlplane.registry import with_applied, without

    registry = _registry()
    base = registry.state
    docs = load_documents(_workload("a-2", "a", "127.0.0.21"))
    prepared = with_applied(base, docs)
    assert registry.apply(docs, prepared=(base, *prepared)) == prepared[1]
    assert registry.state is prepared[0]
    stale = with_applied(base, load_documents(_workload("a-3", "a", "127.0.0.22")))
    registry.apply(load_documents(_workload("a-3", "a", "127.0.0.22")), prepared=(base, *stale))
    assert registry.state is not stale[0]
    assert {("demo", "a-2"), ("demo", "a-3")} <= set(registry.state.workloads)  # nothing lost
    gone = without(registry.state, docs)
    assert registry.delete(docs, prepared=(registry.state, *gone)) == ["workloadentry/demo/a-2"]
    assert ("demo", "a-2") not in registry.state.workloads
    keys = [
        w.key
        for w in registry.state.documents()
        if hasattr(w, "spec") and hasattr(w.spec, "address")
    ]
    assert keys == sorted(keys)


async def test_a_stream_opening_is_activity_for_the_paced_collector() -> None:
    """A proxy's first push is work a full collection must not stop: the builder says when
    a stream opens (the server points it at QuietCollector.activity), before the build, and
    not for a stream it refuses."""
    registry, cache = _registry(), SnapshotCache()
    builder = SnapshotBuilder(MESH, registry, cache)
    builder.ready.set()
    opened: list[int] = []
    builder.on_stream_opened = lambda: opened.append(1)
    proxy = PROXIES["sidecar-a"]
    await builder.on_stream_open(_node(proxy), _peer(proxy))
    assert opened == [1]
    with pytest.raises(PermissionError):  # another identity's certificate: refused first
        await builder.on_stream_open(_node(proxy), _peer(PROXIES["sidecar-b"]))
    assert opened == [1]
