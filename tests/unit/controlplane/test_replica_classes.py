"""Issue #37: the replicas of one workload share one snapshot.

Sixteen replicas of a workload differ only in their WorkloadEntry's name and address and in
their own directories (identity, traffic log). A proxy's class (:func:`proxy_class`) leaves
those out when its resources cannot depend on them -- paths inside Envoy's working
directory are named relative to it, a captured pod's inbound listener binds the wildcard --
so one change costs one build for all of them. The property that must hold whatever the
proxies: two proxies of one class get byte-identical resources."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import json_format, struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.agent.config import AgentConfig, SidecarConfig
from federation.agent.prepare import agent_settings
from federation.agent.sidecar import sidecar_description, sidecar_entry
from federation.controlplane import resource
from federation.controlplane.builder import SnapshotBuilder, proxy_class
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.listeners import TRAFFIC_LOG_FORMAT
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import RegistryState, ServiceRegistry
from federation.controlplane.snapshot import SnapshotCache
from federation.model.authz import AuthorizationPolicy
from federation.model.documents import load_documents
from federation.model.locality import Locality
from federation.model.peer_authentication import PeerAuthentication
from federation.model.policy import TrafficPolicy
from federation.model.workload import WorkloadEntry
from federation.sync.node import META_PREFIX, ProxyDescription, node_problems

MESH = MeshContext("east", "example.org", Locality("aws/us-east-1", "us-east-1a"))
SPIFFE = "spiffe://example.org/ns/demo/sa/echo"

# the policies a replica's labels could be selected by
POLICIES = [
    {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "v2-only", "namespace": "demo"},
        "spec": {
            "selector": {"matchLabels": {"version": "v2"}},
            "rules": [{"from": [{"source": {"principals": ["example.org/ns/demo/sa/x"]}}]}],
        },
    },
    {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "v1-permissive", "namespace": "demo"},
        "spec": {
            "selector": {"matchLabels": {"version": "v1"}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"18081": {"mode": "PERMISSIVE"}},
        },
    },
    {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "echo", "namespace": "demo"},
        "spec": {
            "host": "echo.demo.svc.clusterset.local",
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    },
]


def _entry(
    name: str,
    address: str,
    *,
    labels: dict[str, str] | None = None,
    zone: str = "us-east-1a",
    sa: str = "echo",
    app_port: int = 18080,
) -> dict:
    return {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "WorkloadEntry",
        "metadata": {"name": name, "namespace": "demo", "labels": labels or {}},
        "spec": {
            "service": "echo",
            "address": address,
            "serviceAccount": sa,
            "locality": f"aws/us-east-1/{zone}",
            "ports": [{"name": "http", "port": 8080, "targetPort": app_port}],
        },
    }


def _state(*entries: dict) -> RegistryState:
    registry = ServiceRegistry()
    registry.apply(load_documents(yaml.safe_dump_all(entries)))
    policies = load_documents(yaml.safe_dump_all(POLICIES))
    registry.set_federation(
        [],
        [],
        policies=[p for p in policies if isinstance(p, TrafficPolicy)],
        authorization_policies=[p for p in policies if isinstance(p, AuthorizationPolicy)],
        peer_authentications=[p for p in policies if isinstance(p, PeerAuthentication)],
    )
    return registry.state


def _replica(name: str, *, capture: bool = True, home: str = "/h") -> ProxyDescription:
    """A sidecar as ``meshfed proxy sidecar`` describes it: its own directory under
    ``<home>/proxies``, Envoy running there."""
    workdir = f"{home}/proxies/sidecar_demo_{name}"
    return ProxyDescription(
        f"sidecar~demo~{name}",
        "sidecar",
        "demo",
        name,
        "echo",
        Locality("aws/us-east-1", "us-east-1a"),
        identity_dir=f"{workdir}/identity",
        traffic_log=f"{workdir}/traffic.fifo",
        working_dir=workdir,
        capture=capture,
    )


def _wire(resources: dict) -> dict[str, list[bytes]]:
    return {
        t: sorted(m.SerializeToString(deterministic=True) for m in items)
        for t, items in resources.items()
    }


def _inbound_address(resources: dict) -> str:
    (inbound,) = [x for x in resources[resource.LISTENER] if x.name == "inbound"]
    return str(inbound.address.socket_address.address)


def test_captured_replicas_are_one_class_with_identical_resources() -> None:
    names = [f"echo-{i}" for i in range(4)]
    state = _state(*(_entry(n, f"198.19.1.{10 + i}") for i, n in enumerate(names)))
    proxies = [_replica(n) for n in names]
    assert len({proxy_class(p, state) for p in proxies}) == 1
    built = [generate(MESH, state, p) for p in proxies]
    assert all(_wire(b) == _wire(built[0]) for b in built[1:])
    assert _inbound_address(built[0]) == "0.0.0.0"
    # Envoy is told its files relative to its working directory
    wire = b"".join(c.SerializeToString() for c in built[0][resource.CLUSTER])
    assert b"identity/svid.json" in wire and b"/h/proxies" not in wire
    (outbound,) = [x for x in built[0][resource.LISTENER] if x.name == "outbound_capture"] or [
        x for x in built[0][resource.LISTENER] if x.name.startswith("outbound")
    ]
    assert b"traffic.fifo" in outbound.SerializeToString()
    assert b"/h/proxies" not in outbound.SerializeToString()


def test_what_tells_replicas_apart_makes_classes_of_their_own() -> None:
    state = _state(
        _entry("echo-0", "198.19.1.10", labels={"version": "v1"}),
        _entry("echo-1", "198.19.1.11", labels={"version": "v1"}),
        _entry("echo-2", "198.19.1.12", labels={"version": "v2"}),
        _entry("echo-3", "198.19.1.13", labels={"version": "v1"}, zone="us-east-1b"),
    )
    same, twin, v2, elsewhere = (_replica(f"echo-{i}") for i in range(4))
    assert proxy_class(same, state) == proxy_class(twin, state)
    # selected by an AuthorizationPolicy and another subset: its inbound listener differs
    assert proxy_class(v2, state) != proxy_class(same, state)
    assert _wire(generate(MESH, state, v2)) != _wire(generate(MESH, state, same))
    # its workload's locality (the caller's, when the node gives none)
    elsewhere = replace(elsewhere, locality=None)
    assert proxy_class(elsewhere, state) != proxy_class(replace(same, locality=None), state)
    # not captured: the inbound listener binds the workload's own address
    apart = [replace(p, capture=False) for p in (same, twin)]
    assert proxy_class(apart[0], state) != proxy_class(apart[1], state)
    assert [_inbound_address(generate(MESH, state, p)) for p in apart] == [
        "198.19.1.10",
        "198.19.1.11",
    ]
    # files outside the working directory (or none said) keep their absolute paths
    for lone in (replace(same, working_dir=""), replace(same, working_dir="/elsewhere")):
        assert proxy_class(lone, state) != proxy_class(replace(twin, working_dir=""), state)
        wire = b"".join(
            c.SerializeToString() for c in generate(MESH, state, lone)[resource.CLUSTER]
        )
        assert f"{same.identity_dir}/svid.json".encode() in wire


def test_envoy_path_is_relative_to_the_working_directory_only_inside_it() -> None:
    proxy = ProxyDescription("n", "sidecar", working_dir="/h/p/")
    assert proxy.envoy_path("/h/p/identity") == "identity"
    assert proxy.envoy_path("/h/p/a/traffic.fifo") == "a/traffic.fifo"
    assert proxy.envoy_path("/h/px/identity") == "/h/px/identity"  # a sibling, not inside
    assert proxy.envoy_path("/h/p/") == "/h/p/"  # the directory itself
    assert proxy.envoy_path("/h/p/../q") == "../q"  # the same file from /h/p
    assert ProxyDescription("n", "sidecar").envoy_path("/h/p/identity") == "/h/p/identity"
    # a relative working directory is refused like any other path that is not absolute
    meta = {"meshfed.io/identity_dir": "/h/p/identity", "meshfed.io/working_dir": "h/p"}
    assert node_problems("n", "sidecar", "15001", meta) == [
        "meshfed.io/working_dir must be an absolute path, not 'h/p'"
    ]


def test_the_traffic_log_is_named_relative_to_the_working_directory() -> None:
    state = _state(_entry("echo-0", "198.19.1.10"))
    out = generate(MESH, state, _replica("echo-0", capture=False))
    (listener,) = [x for x in out[resource.LISTENER] if x.name == "outbound_http"]
    manager = hcm.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    log = file_pb2.FileAccessLog()
    manager.access_log[1].typed_config.Unpack(log)
    assert (log.path, log.log_format.text_format_source.inline_string) == (
        "traffic.fifo",
        TRAFFIC_LOG_FORMAT,
    )


async def test_sixteen_replicas_cost_one_build_per_change() -> None:
    registry = ServiceRegistry()
    names = [f"echo-{i}" for i in range(16)]
    entries = [WorkloadEntry.model_validate(_entry(n, f"198.19.1.{10 + i}")) for i, n in
               enumerate(names)]  # fmt: skip
    registry.apply(entries)
    cache = SnapshotCache()
    builder = SnapshotBuilder(MESH, registry, cache)
    builder.ready.set()
    for name in names:
        proxy = _replica(name)
        meta = struct_pb2.Struct()
        meta.update(proxy.metadata())
        node = base_pb2.Node(id=proxy.node_id, metadata=meta)
        node.locality.region, node.locality.zone = "aws/us-east-1", "us-east-1a"
        assert META_PREFIX + "working_dir" in proxy.metadata()
        await builder.on_stream_open(node, SPIFFE)
    assert builder.metrics.builds._value.get() == 1  # the first stream's; 15 memo hits
    (first,) = {id(cache.get_snapshot(f"sidecar~demo~{n}")) for n in names}
    worker = builder.start()
    try:
        extra = _entry("echo-remote", "198.19.1.99", zone="us-east-1b")
        registry.apply([WorkloadEntry.model_validate(extra)])

        async def rebuilt() -> None:
            while any(id(cache.get_snapshot(f"sidecar~demo~{n}")) == first for n in names):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(rebuilt(), 10)
        assert builder.metrics.builds._value.get() == 2
        assert len({id(cache.get_snapshot(f"sidecar~demo~{n}")) for n in names}) == 1
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker


_ADDRESSES = st.sampled_from(["198.19.1.10", "198.19.1.11"])
_WORKLOADS = st.fixed_dictionaries(
    {
        "address": _ADDRESSES,
        "labels": st.sampled_from([{}, {"version": "v1"}, {"version": "v2"}]),
        "zone": st.sampled_from(["us-east-1a", "us-east-1b"]),
        "sa": st.sampled_from(["echo", "other"]),
        "app_port": st.sampled_from([18080, 18081]),
    }
)
_WORKLOAD_FIELDS = ("address", "labels", "zone", "sa", "app_port")
_PROXY_FIELDS = ("capture", "home", "working_dir", "locality", "traffic_log")
_PROXIES = st.fixed_dictionaries(
    {
        "capture": st.booleans(),
        "home": st.sampled_from(["/h", "/g"]),
        "working_dir": st.sampled_from(["own", "", "/h"]),
        "locality": st.sampled_from([None, "us-east-1a", "us-east-1b"]),
        "traffic_log": st.booleans(),
    }
)


def _proxy(name: str, how: dict) -> ProxyDescription:
    proxy = _replica(name, capture=how["capture"], home=how["home"])
    if how["working_dir"] != "own":
        proxy = replace(proxy, working_dir=how["working_dir"])
    if not how["traffic_log"]:
        proxy = replace(proxy, traffic_log="")
    zone = how["locality"]
    return replace(proxy, locality=Locality("aws/us-east-1", zone) if zone else None)


@settings(max_examples=300, deadline=None)
@given(
    _WORKLOADS,
    _PROXIES,
    _WORKLOADS,
    _PROXIES,
    st.lists(st.sampled_from([*_WORKLOAD_FIELDS, *_PROXY_FIELDS]), max_size=2, unique=True),
)
def test_two_proxies_of_one_class_get_identical_resources(
    w1: dict, p1: dict, w_alt: dict, p_alt: dict, changed: list[str]
) -> None:
    """Two replicas (``echo-1``, ``echo-2``) alike but for up to two fields redrawn: the
    pairs a class must tell apart are those whose one difference shows in the resources."""
    w2 = {k: w_alt[k] if k in changed else v for k, v in w1.items()}
    p2 = {k: p_alt[k] if k in changed else v for k, v in p1.items()}
    # a third replica elsewhere: the callers' localities order the endpoints
    fixed = _entry("echo-9", "198.19.1.99", zone="us-east-1b", labels={"version": "v2"})
    state = _state(_entry("echo-1", **w1), _entry("echo-2", **w2), fixed)
    a, b = _proxy("echo-1", p1), _proxy("echo-2", p2)
    if proxy_class(a, state) == proxy_class(b, state):
        assert _wire(generate(MESH, state, a)) == _wire(generate(MESH, state, b))


def _sds_paths(data: object) -> set[str]:
    """Every ``path_config_source.path`` in a JSON-like tree (either field spelling)."""
    if isinstance(data, dict):
        found = set()
        for key, value in data.items():
            if key in ("path_config_source", "pathConfigSource") and isinstance(value, dict):
                found.add(str(value["path"]))
            found |= _sds_paths(value)
        return found
    if isinstance(data, list):
        return set().union(*(_sds_paths(v) for v in data)) if data else set()
    return set()


def test_the_bootstrap_and_the_resources_spell_each_identity_file_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Envoy subscribes once per spelling of a file-based SDS path, each with an inotify
    instance of its own: the bootstrap's absolute path beside the resources' relative one
    doubled them (8 per sidecar) and 54 Envoys on the bed's host ran out of
    ``fs.inotify.max_user_instances`` (Envoy aborts). One spelling per file."""
    monkeypatch.setenv("MESHFED_HOME", "/var/lib/meshfed")
    config = SidecarConfig(
        agent=AgentConfig(cluster="east", controlplane="cp.east:15010", admin_port=15000),
        service="echo", namespace="demo", app_port=8080, address="198.19.1.10",
        service_account="echo",
    )  # fmt: skip
    loc = Locality("aws/us-east-1", "us-east-1a")
    entry = sidecar_entry(config, loc)
    desc = sidecar_description(config, entry, loc)
    info = {"trust_domain": "example.org", "serverName": "controlplane.east"}
    bootstrap = agent_settings(desc, config.agent, info).bootstrap
    registry = ServiceRegistry()
    registry.apply([entry])
    resources = generate(MESH, registry.state, desc)
    generated = {
        p
        for items in resources.values()
        for m in items
        for p in _sds_paths(json_format.MessageToDict(m, preserving_proto_field_name=True))
    }
    assert _sds_paths(bootstrap) == generated == {"identity/svid.json", "identity/rootca.json"}
