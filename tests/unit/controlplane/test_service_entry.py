"""Istio ServiceEntry (issue #40): the clusters and virtual hosts a sidecar gets for a
service outside the mesh, a Sidecar's scope over them, and refusals by field."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from federation.controlplane import resource
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import ServiceRegistry
from federation.errors import InvalidDocumentError
from federation.model.documents import load_documents
from federation.model.service_entry import ServiceEntry
from tests.unit.controlplane.test_generators import MESH, _sidecar

HEAD = "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\n"


def _entry(spec: str, name: str = "e") -> ServiceEntry:
    [doc] = load_documents(HEAD + f"metadata: {{name: {name}, namespace: demo}}\nspec: {spec}\n")
    assert isinstance(doc, ServiceEntry)
    return doc


def _out(*entries: ServiceEntry, sidecars=()):
    registry = ServiceRegistry()
    registry.set_federation([], [], service_entries=list(entries), sidecars=list(sidecars))
    return generate(MESH, registry.state, _sidecar(ns="demo"))


def test_dns_and_static_entries_become_plain_text_clusters_and_virtual_hosts() -> None:
    dns = _entry(
        "{hosts: [api.example.com], ports: [{number: 443, name: h2, protocol: HTTP2},"
        " {number: 80, name: http, protocol: HTTP, targetPort: 8080}], resolution: DNS}"
    )
    static = _entry(
        "{hosts: [db.example.com], ports: [{number: 80, name: http}], resolution: STATIC,"
        " endpoints: [{address: 10.0.0.7, ports: {http: 9090}}, {address: 10.0.0.8}]}",
        name="db",
    )
    out = _out(dns, static)
    clusters = {c.name: c for c in out[resource.CLUSTER]}
    h2 = clusters["outbound|443||api.example.com"]
    assert h2.type == cluster_pb2.Cluster.DiscoveryType.STRICT_DNS
    assert not h2.HasField("transport_socket") and not h2.transport_socket_matches  # no mTLS
    assert (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        in h2.typed_extension_protocol_options
    )
    plain = clusters["outbound|80||api.example.com"]
    [ep] = plain.load_assignment.endpoints[0].lb_endpoints
    assert (
        ep.endpoint.address.socket_address.address,
        ep.endpoint.address.socket_address.port_value,
    ) == ("api.example.com", 8080)
    db = clusters["outbound|80||db.example.com"]
    assert db.type == cluster_pb2.Cluster.DiscoveryType.STATIC
    assert [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for e in db.load_assignment.endpoints[0].lb_endpoints
    ] == [("10.0.0.7", 9090), ("10.0.0.8", 80)]
    [routes] = out[resource.ROUTE]
    vhosts = {v.name: list(v.domains) for v in routes.virtual_hosts}
    assert vhosts["api.example.com:443"] == ["api.example.com:443", "api.example.com"]
    assert vhosts["api.example.com:80"] == ["api.example.com:80"]


def test_another_mesh_s_service_is_called_over_mtls_naming_who_must_answer() -> None:
    from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

    entry = _entry(
        "{hosts: [echo.demo.svc.clusterset.local], location: MESH_INTERNAL, resolution: STATIC,"
        " ports: [{number: 8080, name: http}], endpoints: [{address: 10.9.0.1, ports: {http: 15443}}],"
        " subjectAltNames: [spiffe://a.example/ns/demo/sa/echo]}"
    )
    clusters = {c.name: c for c in _out(entry)[resource.CLUSTER]}
    cluster = clusters["outbound|8080||echo.demo.svc.clusterset.local"]
    context = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(context)
    assert context.sni == "outbound_.8080_._.echo.demo.svc.clusterset.local"  # gateways route by it
    common = context.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]  # our SVID
    validation = common.combined_validation_context
    assert [
        m.matcher.exact for m in validation.default_validation_context.match_typed_subject_alt_names
    ] == ["spiffe://a.example/ns/demo/sa/echo"]
    assert validation.validation_context_sds_secret_config.name == "ROOTCA"


def test_a_sidecar_scope_leaves_out_entries_it_does_not_name() -> None:
    [scope] = load_documents(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s, namespace: demo}\n"
        "spec: {egress: [{hosts: ['./db.example.com']}]}\n"
    )
    entry = _entry(
        "{hosts: [api.example.com, db.example.com], ports: [{number: 80, name: http}], resolution: DNS}"
    )
    names = [
        c.name
        for c in _out(entry, sidecars=[scope])[resource.CLUSTER]
        if c.name.startswith("outbound|")
    ]
    assert names == ["outbound|80||db.example.com"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{hosts: [a.example], ports: [{number: 80, name: http}]}", "resolution: not supported by meshfed yet: NONE"),
        ("{hosts: [a.example], ports: [{number: 80, name: http}], resolution: DNS, location: MESH_INTERNAL}",
         "subjectAltNames: required with location MESH_INTERNAL"),
        ("{hosts: [a.example], ports: [{number: 80, name: http}], resolution: DNS, subjectAltNames: [spiffe://b.example/ns/x/sa/y]}",
         "subjectAltNames: not supported by meshfed with MESH_EXTERNAL"),
        ("{hosts: [a.example], ports: [{number: 80, name: http}], resolution: DNS, location: MESH_INTERNAL, subjectAltNames: [web.example]}",
         "meshfed checks SPIFFE IDs only"),
        ("{hosts: ['*.example'], ports: [{number: 80, name: http}], resolution: DNS}", "a DNS name without wildcards"),
        ("{hosts: [a.example], ports: [{number: 5432, name: pg, protocol: TCP}], resolution: DNS}",
         "spec.ports.0.protocol: not supported by meshfed yet: protocol 'TCP'"),
        ("{hosts: [a.example], ports: [{number: 80, name: http}], resolution: STATIC}", "endpoints: required with resolution STATIC"),
        ("{hosts: [a.example], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: a.example}]}",
         "must be an IP address with resolution STATIC"),
        ("{hosts: [a.example], addresses: [10.0.0.1/32], ports: [{number: 80, name: http}], resolution: DNS}",
         "spec.addresses: not supported by meshfed yet"),
        ("{hosts: [echo.demo.svc.cluster.local], ports: [{number: 80, name: http}], resolution: DNS}",
         "is a service of the mesh"),
    ],
)  # fmt: skip
def test_what_meshfed_cannot_honour_is_refused_by_field(spec, expected) -> None:
    with pytest.raises(InvalidDocumentError) as err:
        _entry(spec)
    assert expected in "\n".join(err.value.problems)


def test_with_capture_an_entrys_hosts_get_addresses_the_dns_and_the_listener_agree_on() -> None:
    """An unchanged app reaches an entry by name: the pod's DNS answers the host with an
    address of 240.240.0.0/16 (Istio's auto-allocation range), and the capture listener
    sends that address, on the entry's ports, to the HTTP manager (routes by Host)."""
    import dataclasses
    import ipaddress

    from federation.controlplane.names import name_table
    from federation.model.service_entry import ENTRY_ADDRESS_RANGE, entry_addresses

    entry = _entry(
        "{hosts: [api.example.com, api2.example.com], ports: [{number: 80, name: http},"
        " {number: 8443, name: h2, protocol: HTTP2}], resolution: DNS}"
    )
    registry = ServiceRegistry()
    registry.set_federation([], [], service_entries=[entry])
    table = name_table(registry.state)
    addresses = entry_addresses([entry])
    assert set(addresses) == {"api.example.com", "api2.example.com"}
    assert table["api.example.com"] == (addresses["api.example.com"],)
    assert all(ipaddress.ip_address(a) in ENTRY_ADDRESS_RANGE for a in addresses.values())
    assert len(set(addresses.values())) == 2

    proxy = dataclasses.replace(_sidecar(ns="demo"), capture=True)
    [listener] = [
        x for x in generate(MESH, registry.state, proxy)[resource.LISTENER]
        if x.name == "outbound_http"
    ]  # fmt: skip
    chains = {
        c.name: sorted(r.address_prefix for r in c.filter_chain_match.prefix_ranges)
        for c in listener.filter_chains
    }
    both = sorted(addresses.values())
    assert chains["http|80"] == both and chains["http|8443"] == both
    assert all(
        c.filters[0].name == "envoy.filters.network.http_connection_manager"
        for c in listener.filter_chains
        if c.name.startswith("http|")
    )


def test_an_entrys_address_depends_on_its_host_not_on_the_others() -> None:
    """Entries come and go; the addresses of the hosts that stay do not move (cached DNS
    answers and open connections keep working). A collision takes the next free address."""
    from federation.model.service_entry import entry_addresses

    def entries(*hosts: str) -> list[ServiceEntry]:
        return [
            _entry(
                f"{{hosts: [{h}], ports: [{{number: 80, name: http}}], resolution: DNS}}", f"e{i}"
            )
            for i, h in enumerate(hosts)
        ]

    some = entry_addresses(entries(*(f"h{i}.example.com" for i in range(50))))
    fewer = entry_addresses(entries(*(f"h{i}.example.com" for i in range(0, 50, 3))))
    assert all(fewer[h] == some[h] for h in fewer)
    many = entry_addresses(entries(*(f"s{i}.test" for i in range(2000))))
    assert len(set(many.values())) == 2000  # collisions (birthday: ~30 expected) resolved


async def test_the_name_table_follows_entries_and_imports_and_skips_what_it_does_not_read() -> None:
    """A policy-only update leaves the state's imports and entries the same objects, so the
    name service neither rebuilds nor wakes its watchers; an update that adds only a
    ServiceEntry (imports unchanged) still reaches the table."""
    from federation.controlplane.names import NameServicer

    [policy] = load_documents(
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: p, namespace: demo}\n"
        "spec: {host: echo.demo.svc.clusterset.local, retries: {attempts: 2}}\n"
    )
    registry = ServiceRegistry()
    names = NameServicer(registry)
    before = registry.state
    assert registry.set_federation([], [], policies=[policy])
    after = registry.state
    assert after.version > before.version
    assert after.imports is before.imports and after.service_entries is before.service_entries
    assert after.sidecars is before.sidecars and after.policies is not before.policies
    assert names.version == 1  # not rebuilt, nobody woken
    entry = _entry("{hosts: [api.example.com], ports: [{number: 80, name: http}], resolution: DNS}")
    assert registry.set_federation([], [], policies=[policy], service_entries=[entry])
    assert registry.state.imports is before.imports  # still
    assert names.version == 2 and "api.example.com" in names.table


def test_the_routes_of_a_later_version_have_the_entries_of_that_version() -> None:
    """Issue #37: the outbound routes are taken over from the previous version only when
    everything they are made from is equal; a ServiceEntry added or edited is not."""
    from federation.controlplane.generate.context import PushContext

    registry = ServiceRegistry()
    first = PushContext(MESH, registry.state)
    before = generate(MESH, registry.state, _sidecar(ns="demo"), first)[resource.ROUTE]
    entry = _entry("{hosts: [api.example.com], ports: [{number: 80, name: http}], resolution: DNS}")
    registry.set_federation([], [], service_entries=[entry])
    second = PushContext(MESH, registry.state, first)
    after = generate(MESH, registry.state, _sidecar(ns="demo"), second)[resource.ROUTE]
    hosts = {v.name for v in after[0].virtual_hosts}
    assert "api.example.com:80" in hosts and after[0] is not before[0]
    edited = _entry(
        "{hosts: [web.example.com], ports: [{number: 80, name: http}], resolution: DNS}"
    )
    registry.set_federation([], [], service_entries=[edited])
    third = PushContext(MESH, registry.state, second)
    last = generate(MESH, registry.state, _sidecar(ns="demo"), third)[resource.ROUTE]
    assert {v.name for v in last[0].virtual_hosts} >= {"web.example.com:80"}
    assert "api.example.com:80" not in {v.name for v in last[0].virtual_hosts}
