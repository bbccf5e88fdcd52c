"""The ADS server over real gRPC with mutual TLS (grpc.aio on loopback), driven by a grpcio
client stub -- including the attacks of issue #15: no client certificate, a certificate from
another root, and a valid SVID whose node metadata claims another identity -- and the
traffic reports beside it (issue #17), attacked the same way."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from datetime import timedelta

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from federation.agent.tap import TrafficTap
from federation.ca.names import control_plane_server_name
from federation.controlplane import resource
from federation.controlplane.ads import AggregatedDiscoveryService
from federation.controlplane.builder import SnapshotBuilder
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.identities import ClusterAuthority
from federation.controlplane.peers import OwnClusterOnly
from federation.controlplane.registry import ServiceRegistry
from federation.controlplane.snapshot import SnapshotCache
from federation.controlplane.status import StatusRegistry
from federation.controlplane.telemetry import TrafficCounter, TrafficServicer
from federation.model.locality import Locality
from federation.model.workload import WorkloadEntry
from federation.sync.proto import traffic_pb2_grpc
from tests.waiting import until
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory

pytestmark = pytest.mark.integration

#: Generated inputs of the fuzz pass: 100 in CI; MESHFED_FUZZ_EXAMPLES=N gives N x 5
#: (a longer pass: ``MESHFED_FUZZ_EXAMPLES=500 pytest tests/integration/test_ads_grpc.py -k fuzz``).
ADS_STREAMS = int(os.environ.get("MESHFED_FUZZ_EXAMPLES", "20")) * 5


TD = TrustDomain("example.org")


class Server:
    def __init__(self, trust: TrustDirectory) -> None:
        self.trust = trust
        self.cache = SnapshotCache()
        self.status = StatusRegistry()
        self.authority = ClusterAuthority(trust.cluster_authority("east"), "east")
        mesh = MeshContext("east", TD.name, Locality("aws/us-east-1", "us-east-1a"))
        registry = self.registry = ServiceRegistry()
        self.builder = SnapshotBuilder(mesh, registry, self.cache)
        self.traffic = TrafficCounter(mesh, registry, 1.0)
        self.server = grpc.aio.server(interceptors=[OwnClusterOnly(self.authority.authority)])
        AggregatedDiscoveryService(self.cache, self.builder, self.status).add_to_server(self.server)
        TrafficServicer(self.traffic).add_to_server(self.server)
        self.port = self.server.add_secure_port(
            "127.0.0.1:0", self.authority.server_credentials(require_client_auth=True)
        )

    def credentials(
        self, namespace: str | None, account: str = "default", trust=None, cluster="east"
    ):
        """Client credentials: an SVID for ``namespace``/``account`` (none when namespace is
        None) from ``cluster``'s CA in ``trust`` (default: this server's trust directory)."""
        bundle = self.trust.bundle().to_pem()
        if namespace is None:
            return grpc.ssl_channel_credentials(bundle)
        svid = (trust or self.trust).issue_svid(
            cluster, TD.workload_id(namespace, account), ttl=timedelta(hours=1)
        )
        return grpc.ssl_channel_credentials(bundle, svid.private_key_pem(), svid.chain_pem())

    @contextlib.asynccontextmanager
    async def channel(self, creds):
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.port}",
            creds,
            options=[("grpc.ssl_target_name_override", control_plane_server_name("east"))],
        ) as channel:
            yield ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)

    @contextlib.asynccontextmanager
    async def traffic_stub(self, creds):
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.port}",
            creds,
            options=[("grpc.ssl_target_name_override", control_plane_server_name("east"))],
        ) as channel:
            yield traffic_pb2_grpc.TrafficServiceStub(channel)

    def nothing_served(self) -> bool:
        return self.builder.proxies() == {} and self.status.get("sidecar~demo~client") is None


@pytest.fixture
async def server(trust_dir):
    s = Server(trust_dir)
    await s.server.start()
    worker = s.builder.start()
    yield s
    worker.cancel()
    await s.server.stop(0)


def _node(**meta: str) -> base_pb2.Node:
    node = base_pb2.Node(id="sidecar~demo~client")
    node.metadata.update(
        {
            "meshfed.io/role": "sidecar",
            "meshfed.io/namespace": "demo",
            "meshfed.io/service_account": "frontend",
            "meshfed.io/identity_dir": "/run/meshfed/identity",
            **{f"meshfed.io/{k}": v for k, v in meta.items()},
        }
    )
    return node


async def _first_answer(stub, node: base_pb2.Node):
    async def one():
        yield discovery_pb2.DiscoveryRequest(node=node, type_url=resource.CLUSTER)
        await asyncio.sleep(5)

    call = stub.StreamAggregatedResources(one())
    try:
        return await asyncio.wait_for(call.read(), 5)
    except grpc.aio.AioRpcError as err:
        # a server that refuses the stream at once may end it before the request went out:
        # the failed send surfaces as INTERNAL ("execute_batch"); the call's status is the
        # server's answer
        status = await asyncio.wait_for(call.code(), 5)
        if status == err.code():
            raise
        raise grpc.aio.AioRpcError(
            status, err.initial_metadata(), err.trailing_metadata(), await call.details()
        ) from err
    finally:
        call.cancel()


async def test_no_answer_before_state_is_loaded_then_full_config(server) -> None:
    requests: asyncio.Queue = asyncio.Queue()

    async def gen():
        while True:
            yield await requests.get()

    async with server.channel(server.credentials("demo", "frontend")) as stub:
        call = stub.StreamAggregatedResources(gen())
        await requests.put(discovery_pb2.DiscoveryRequest(node=_node(), type_url=resource.LISTENER))
        first = asyncio.ensure_future(call.read())
        done, _ = await asyncio.wait({first}, timeout=0.5)
        assert not done  # state not loaded: no answer
        server.builder.ready.set()
        resp = await asyncio.wait_for(first, 5)
        assert resp.type_url == resource.LISTENER
        assert [r.type_url for r in resp.resources] == [resource.LISTENER]
        assert server.status.get("sidecar~demo~client") is not None
        call.cancel()


async def test_unusable_node_is_refused(server) -> None:
    server.builder.ready.set()
    async with server.channel(server.credentials("demo", "frontend")) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _first_answer(stub, _node(role="toaster"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown meshfed.io/role 'toaster'" in info.value.details()


@pytest.mark.parametrize("how", ["plaintext", "tls-without-certificate", "foreign-root"])
async def test_attack_ads_without_a_valid_client_certificate_fails_the_handshake(
    server, tmp_path, how
) -> None:
    """Attack 1: a plaintext stream, TLS without a client certificate, and a certificate for
    the right SPIFFE ID from an attacker's own root: the handshake fails, nothing is sent."""
    server.builder.ready.set()
    if how == "plaintext":
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _first_answer(stub, _node())
        await channel.close()
    else:
        if how == "foreign-root":
            forged = TrustDirectory(tmp_path / "attacker")
            forged.init(TD)  # same trust domain name, another key
            forged.create_intermediate("east")
            creds = server.credentials("demo", "frontend", trust=forged)
        else:
            creds = server.credentials(None)
        async with server.channel(creds) as stub:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _first_answer(stub, _node())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert server.nothing_served()


async def test_attack_node_metadata_claiming_another_identity_is_permission_denied(
    server,
) -> None:
    """Attack 2: a valid SVID for sa/a whose node claims sa/b -- and a sidecar's SVID
    claiming to be the east-west gateway: PERMISSION_DENIED, nothing sent."""
    server.builder.ready.set()
    async with server.channel(server.credentials("demo", "a")) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _first_answer(stub, _node(service_account="b"))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "spiffe://example.org/ns/demo/sa/b" in info.value.details()
        assert "spiffe://example.org/ns/demo/sa/a" in info.value.details()
        gateway = base_pb2.Node(id="gateway~east")
        gateway.metadata.update({"meshfed.io/role": "gateway", "meshfed.io/listen": "1.2.3.4:1"})
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _first_answer(stub, gateway)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert server.nothing_served()
    # the same stream with a matching claim is served
    async with server.channel(server.credentials("demo", "b")) as stub:
        answer = await _first_answer(stub, _node(service_account="b"))
    assert answer.type_url == resource.CLUSTER


def _report(node: base_pb2.Node, tmp_path):  # type: ignore[no-untyped-def]
    tap = TrafficTap(tmp_path / "traffic.fifo", node.SerializeToString())
    # a forged gigabyte, "served" in this cluster
    tap.feed(b"outbound|8080||echo.demo.svc.clusterset.local east/us-east-1a 200 1000000000 1 1\n")
    return tap.message()


async def test_attack_traffic_reports_claiming_another_identity_are_refused_and_not_counted(
    server, tmp_path
) -> None:
    """Issue #17: a workload that reports traffic to run up another caller's bill (its SVID
    is sa/a, its node claims sa/b; or a certificate from an attacker's root) is refused:
    nothing counted. With its own identity its counts are for its own node's locality."""
    node = _node(service_account="b")
    node.locality.region, node.locality.zone = "aws/us-east-1", "us-east-1b"
    async with server.traffic_stub(server.credentials("demo", "a")) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Report(_report(node, tmp_path))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    forged = TrustDirectory(tmp_path / "attacker")
    forged.init(TD)
    forged.create_intermediate("east")
    async with server.traffic_stub(server.credentials("demo", "b", trust=forged)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Report(_report(node, tmp_path))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert server.traffic.table.edges == {}

    async with server.traffic_stub(server.credentials("demo", "b")) as stub:
        bad = _report(node, tmp_path)
        bad.duration_bounds_ms.append(1e9)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Report(bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await stub.Report(_report(node, tmp_path))
    [(edge, counters)] = server.traffic.table.edges.items()
    assert (edge.source_cluster, edge.source_locality) == ("east", "aws/us-east-1/us-east-1b")
    assert (edge.destination_cluster, edge.path_class) == ("east", "cross-zone")
    assert counters.requests == 1


def _workload(name: str, address: str) -> WorkloadEntry:
    return WorkloadEntry.model_validate(
        {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "WorkloadEntry",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {
                "service": "echo",
                "address": address,
                "locality": "aws/us-east-1/us-east-1a",
                "ports": [{"name": "http", "port": 8080}],
            },
        }
    )


def _endpoint_addresses(resp) -> set[str]:
    addresses = set()
    for any_msg in resp.resources:
        cla = endpoint_pb2.ClusterLoadAssignment()
        any_msg.Unpack(cla)
        for locality in cla.endpoints:
            for lb in locality.lb_endpoints:
                addresses.add(lb.endpoint.address.socket_address.address)
    return addresses


@pytest.mark.parametrize(
    "meta",
    [
        {"identity_dir": "relative/identity"},
        {"identity_dir": "/ok", "outbound_port": "99999"},
        {"identity_dir": "/ok", "traffic_log": "fifo"},
        {"identity_dir": "/ok", "workload": "Not_A_Name"},
        {"identity_dir": "/ok", "upstreams": "db.demo:5432=15001"},
    ],
    ids=["relative-identity-dir", "port", "relative-traffic-log", "workload-name", "upstream"],
)
async def test_attack_an_unbuildable_node_does_not_stop_configuration_for_others(
    server, meta
) -> None:
    """Issue #35 (1): a workload with its own valid SVID opens ADS with node metadata the
    generators cannot use. It is refused (INVALID_ARGUMENT) and registered nowhere -- and the
    control plane keeps configuring everyone else: an endpoint added afterwards reaches a
    well-behaved proxy's EDS. Before the fix the bad node was registered first, its build
    raised inside the rebuild worker, and that worker died: no proxy got any change again."""
    server.builder.ready.set()
    async with server.channel(server.credentials("demo", "frontend")) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _first_answer(stub, _node(**meta))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "meshfed.io/" in info.value.details()
        assert server.builder.proxies() == {}

        requests: asyncio.Queue = asyncio.Queue()

        async def gen():
            while True:
                yield await requests.get()

        call = stub.StreamAggregatedResources(gen())
        try:
            await requests.put(
                discovery_pb2.DiscoveryRequest(node=_node(), type_url=resource.CLUSTER)
            )
            cds = await asyncio.wait_for(call.read(), 5)
            await requests.put(
                discovery_pb2.DiscoveryRequest(
                    type_url=resource.CLUSTER,
                    version_info=cds.version_info,
                    response_nonce=cds.nonce,
                )
            )
            await requests.put(discovery_pb2.DiscoveryRequest(type_url=resource.ENDPOINT))
            eds = await asyncio.wait_for(call.read(), 5)
            assert eds.type_url == resource.ENDPOINT
            # the bad node again, now that a good one is registered
            with pytest.raises(grpc.aio.AioRpcError):
                await _first_answer(stub, _node(**meta))
            server.registry.apply([_workload("echo-1", "127.0.0.9")])

            async def endpoint_arrives():
                echo = ["outbound|8080||echo.demo.svc.clusterset.local"]
                last_eds = eds
                while True:
                    resp = await call.read()
                    if resp.type_url == resource.ENDPOINT and "127.0.0.9" in _endpoint_addresses(
                        resp
                    ):
                        return
                    cds = resp.type_url == resource.CLUSTER
                    last_eds = last_eds if cds else resp
                    await requests.put(
                        discovery_pb2.DiscoveryRequest(
                            type_url=resp.type_url,
                            version_info=resp.version_info,
                            response_nonce=resp.nonce,
                            resource_names=[] if cds else echo,
                        )
                    )
                    if cds:  # as Envoy does: EDS of the clusters it now has
                        await requests.put(
                            discovery_pb2.DiscoveryRequest(
                                type_url=resource.ENDPOINT,
                                version_info=last_eds.version_info,
                                response_nonce=last_eds.nonce,
                                resource_names=echo,
                            )
                        )

            await asyncio.wait_for(endpoint_arrives(), 10)
        finally:
            call.cancel()
    assert server.builder.health_problem() is None
    assert list(server.builder.proxies()) == ["sidecar~demo~client"]


async def test_attack_another_clusters_svid_is_refused_on_the_xds_port(
    server, trust_dir, tmp_path
) -> None:
    """Issue #35 (1, decided): a control plane serves only its own cluster's proxies. A
    valid SVID of member cluster west (same root: the TLS handshake succeeds) gets
    PERMISSION_DENIED for ADS and for traffic reports, before any handler runs."""
    server.builder.ready.set()
    trust_dir.create_intermediate("west")
    west = server.credentials("demo", "frontend", cluster="west")
    async with server.channel(west) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _first_answer(stub, _node())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not issued by this cluster's CA" in info.value.details()
    async with server.traffic_stub(west) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Report(_report(_node(service_account="frontend"), tmp_path))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert server.nothing_served()
    assert server.traffic.table.edges == {}


async def test_attack_svid_of_a_rejoined_clusters_old_key_is_refused(server, trust_dir) -> None:
    """Issue #35 (3): cluster east is removed and joins again under the same name with a new
    intermediate key. An SVID signed by the old key still chains to the root, and names the
    same issuer -- but the control plane checks the key, and refuses it."""
    server.builder.ready.set()
    old = server.credentials("demo", "frontend")
    trust_dir.create_intermediate("east", force=True)
    server.authority.set_authority(trust_dir.cluster_authority("east"))
    server.authority._previous = None  # no re-sign grace: a new key is not a re-sign
    for _ in range(3):  # INTERNAL: the refusal raced the client's send (_first_answer)
        async with server.channel(old) as stub:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _first_answer(stub, _node())
        if info.value.code() != grpc.StatusCode.INTERNAL:
            break
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with server.channel(server.credentials("demo", "frontend")) as stub:
        answer = await _first_answer(stub, _node())
    assert answer.type_url == resource.CLUSTER


def _fuzzed_streams():
    """Hypothesis strategies of hostile ADS streams from a client holding a valid SVID for
    demo/frontend: arbitrary node metadata (well-formed keys with odd values, odd keys,
    nested values), localities and user agents, then a few requests with arbitrary type
    URLs, names, nonces, versions and NACKs, SotW or delta."""
    from hypothesis import strategies as st

    # no lone surrogates: protobuf strings are UTF-8, and the client could not send them
    text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
    values = st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | text,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3),
        max_leaves=8,
    )
    keys = st.sampled_from(
        ["role", "namespace", "service_account", "workload", "identity_dir", "outbound_port",
         "listen", "traffic_log", "upstreams"]
    )  # fmt: skip
    good = {
        "role": "sidecar",
        "namespace": "demo",
        "service_account": "frontend",
        "identity_dir": "/run/x",
    }
    meta = st.builds(
        lambda changed, extra: {
            **{f"meshfed.io/{k}": v for k, v in {**good, **changed}.items()},
            **extra,
        },
        st.just({}) | st.dictionaries(keys, values | st.sampled_from(["", "/", "..", "a:1"])),
        st.just({}) | st.dictionaries(text, values, max_size=2),
    )
    type_urls = st.sampled_from([*resource.PUSH_ORDER, "", "type.googleapis.com/x"]) | text
    requests = st.lists(
        st.fixed_dictionaries(
            {
                "type_url": type_urls,
                "names": st.lists(text, max_size=3),
                "nonce": st.sampled_from(["", "1", "999999"]) | text,
                "version": text,
                "nack": st.booleans(),
            }
        ),
        min_size=1,
        max_size=4,
    )
    return st.fixed_dictionaries(
        {
            "node_id": st.just("sidecar~demo~fuzz") | text,
            "meta": meta,
            "region": st.sampled_from(["", "aws/us-east-1"]) | text,
            "agent": st.sampled_from(["envoy", "envoy"]) | text,
            "requests": requests,
            "delta": st.booleans(),
        }
    )


async def _send(stub, stream) -> str:
    """Play one fuzzed stream; the status it ended with (``OK`` when it stayed open)."""
    node = base_pb2.Node(id=stream["node_id"], user_agent_name=stream["agent"])
    node.metadata.update(stream["meta"])
    node.locality.region = stream["region"]

    def request(i: int, r):
        detail = {"error_detail": status_pb2.Status(code=3, message="x")} if r["nack"] else {}
        if stream["delta"]:
            return discovery_pb2.DeltaDiscoveryRequest(
                node=node if i == 0 else None,
                type_url=r["type_url"],
                resource_names_subscribe=r["names"],
                response_nonce=r["nonce"],
                **detail,
            )
        return discovery_pb2.DiscoveryRequest(
            node=node if i == 0 else None,
            type_url=r["type_url"],
            resource_names=r["names"],
            response_nonce=r["nonce"],
            version_info=r["version"],
            **detail,
        )

    async def gen():
        for i, r in enumerate(stream["requests"]):
            yield request(i, r)
        await asyncio.sleep(0.3)

    method = stub.DeltaAggregatedResources if stream["delta"] else stub.StreamAggregatedResources
    call = method(gen())
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as err:
        if "execute_batch" in (err.debug_error_string() or ""):
            return "CLOSED"  # this client wrote on after the server had ended the stream
        return err.code().name
    finally:
        call.cancel()
    return "OK"


async def test_fuzz_hostile_ads_streams_never_stop_the_builder(server) -> None:
    """Issue #35: a hundred generated hostile ADS streams from a client with a valid SVID.
    None may end in UNKNOWN (an unhandled error in the server), the snapshot builder stays
    up, and a well-behaved proxy still gets an endpoint added at the end."""
    from hypothesis import HealthCheck, Phase, given, settings

    server.builder.ready.set()
    ended: Counter[str] = Counter()
    async with server.channel(server.credentials("demo", "frontend")) as stub:
        loop = asyncio.get_running_loop()

        @settings(
            max_examples=ADS_STREAMS,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(stream=_fuzzed_streams())
        def play(stream) -> None:
            code = asyncio.run_coroutine_threadsafe(_send(stub, stream), loop).result(10)
            ended[code] += 1
            assert code != "UNKNOWN", stream

        await asyncio.to_thread(play)
        assert server.builder.health_problem() is None
        # every stream has ended: none of the node ids it made up is kept
        assert server.builder.proxies() == {}
        assert server.cache.node_ids() == []
        # a good proxy is still configured, and still gets changes
        good = await _first_answer(stub, _node())
        assert good.type_url == resource.CLUSTER
    assert server.builder.health_problem() is None
    print(dict(ended))


def _services(registry: ServiceRegistry, count: int, extra: str = "") -> None:
    registry.apply(
        WorkloadEntry.model_validate(
            {
                "apiVersion": "meshfed.io/v1alpha1",
                "kind": "WorkloadEntry",
                "metadata": {"name": f"svc{i}-1{extra}", "namespace": "demo"},
                "spec": {
                    "service": f"svc{i}",
                    "address": f"127.0.2.{i + 1}" if not extra else f"127.0.3.{i + 1}",
                    "tlsMode": "disabled",
                    "locality": "aws/us-east-1/us-east-1a",
                    "healthCheck": {"type": "none"},
                    "ports": [{"name": "http", "port": 8080}],
                },
            }
        )
        for i in range(count)
    )


class _Client:
    """An Envoy-like ADS client of either kind: wildcard CDS/LDS, EDS of every cluster and
    RDS ``outbound`` once it has them, ACKs everything; ``got`` records each response as
    ``(type, resource names)``."""

    def __init__(self, stub, kind: str, node_id: str) -> None:
        self.kind, self.requests = kind, asyncio.Queue()
        self.node = _node()
        self.node.id = node_id
        self.got: list[tuple[str, list[str]]] = []
        self.call = (
            stub.StreamAggregatedResources(self._gen())
            if kind == "sotw"
            else stub.DeltaAggregatedResources(self._gen())
        )

    async def _gen(self):
        while True:
            yield await self.requests.get()

    def request(self, type_url: str, names: list[str] | None = None, first: bool = False):
        if self.kind == "sotw":
            req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names or [])
        else:
            req = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_subscribe=names or []
            )
        if first:
            req.node.CopyFrom(self.node)
        self.requests.put_nowait(req)

    async def run(self) -> None:
        self.request(resource.CLUSTER, first=True)
        self.request(resource.LISTENER)
        subscribed: set[str] = set()
        async for resp in self.call:
            items = resp.resources
            names = [_resource_name(resp.type_url, r) for r in items]
            self.got.append((resp.type_url, names))
            if self.kind == "sotw":
                ack = discovery_pb2.DiscoveryRequest(
                    type_url=resp.type_url,
                    version_info=resp.version_info,
                    response_nonce=resp.nonce,
                    resource_names=(
                        sorted(subscribed)
                        if resp.type_url == resource.ENDPOINT
                        else ["outbound"]
                        if resp.type_url == resource.ROUTE
                        else []
                    ),
                )
            else:
                ack = discovery_pb2.DeltaDiscoveryRequest(
                    type_url=resp.type_url, response_nonce=resp.nonce
                )
            self.requests.put_nowait(ack)
            if resp.type_url == resource.CLUSTER and not subscribed:
                subscribed = set(names)
                self.request(resource.ENDPOINT, sorted(subscribed))
            if resp.type_url == resource.LISTENER and len(self.got) <= 4:
                self.request(resource.ROUTE, ["outbound"])

    def eds_of(self, cluster: str) -> bool:
        return any(t == resource.ENDPOINT and cluster in names for t, names in self.got)


def _resource_name(type_url: str, item) -> str:
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.listener.v3 import listener_pb2
    from envoy.config.route.v3 import route_pb2

    if isinstance(item, discovery_pb2.Resource):
        return item.name
    message = {
        resource.CLUSTER: cluster_pb2.Cluster,
        resource.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        resource.LISTENER: listener_pb2.Listener,
        resource.ROUTE: route_pb2.RouteConfiguration,
    }[type_url]()
    item.Unpack(message)
    return getattr(message, "cluster_name", "") or message.name


async def test_a_change_sends_only_the_changed_resources_of_the_changed_type(server) -> None:
    """Issue #37: with 20 services, one new endpoint of svc3 reaches a delta client as the one
    changed ClusterLoadAssignment and a SotW client as one EDS response holding only it
    (EDS is incremental in SotW too); neither gets CDS, LDS or RDS again. A second change,
    to svc7, closes the window, so nothing sent in between goes uncounted."""
    _services(server.registry, 20)
    server.builder.ready.set()
    svc3 = "outbound|8080||svc3.demo.svc.clusterset.local"
    svc7 = "outbound|8080||svc7.demo.svc.clusterset.local"
    async with server.channel(server.credentials("demo", "frontend")) as stub:
        clients = [
            _Client(stub, "delta", "sidecar~demo~d"),
            _Client(stub, "sotw", "sidecar~demo~s"),
        ]
        tasks = [asyncio.create_task(c.run()) for c in clients]
        try:
            await until(
                lambda: all(
                    {t for t, _ in c.got} == set(resource.PUSH_ORDER) - {resource.SECRET}
                    for c in clients
                ),
                "every type at both clients",
                timeout_s=10,
            )
            await until(
                lambda: all(len(c.got[-1][1]) in (1, 20) for c in clients), "settled", timeout_s=10
            )
            settled = [len(c.got) for c in clients]
            _services(server.registry, 4, extra="b")  # svc0..svc3 get a second endpoint
            await until(
                lambda: all(
                    c.eds_of(svc3) and len(c.got) > n for c, n in zip(clients, settled, strict=True)
                ),
                "the change",
                timeout_s=10,
            )
            # close the window: a change to svc7 only
            server.registry.apply(
                [
                    WorkloadEntry.model_validate(
                        {
                            "apiVersion": "meshfed.io/v1alpha1",
                            "kind": "WorkloadEntry",
                            "metadata": {"name": "svc7-2", "namespace": "demo"},
                            "spec": {
                                "service": "svc7",
                                "address": "127.0.4.7",
                                "tlsMode": "disabled",
                                "locality": "aws/us-east-1/us-east-1a",
                                "healthCheck": {"type": "none"},
                                "ports": [{"name": "http", "port": 8080}],
                            },
                        }
                    )
                ]
            )
            await until(
                lambda: all(c.got[-1] == (resource.ENDPOINT, [svc7]) for c in clients),
                "the closing change",
                timeout_s=10,
            )
        finally:
            for task in tasks:
                task.cancel()
            for c in clients:
                c.call.cancel()
    changed = {f"outbound|8080||svc{i}.demo.svc.clusterset.local" for i in range(4)}
    for c, n in zip(clients, settled, strict=True):
        window = c.got[n:-1]
        assert {t for t, _ in window} == {resource.ENDPOINT}, c.kind
        assert sorted(name for _, names in window for name in names) == sorted(changed), c.kind
