"""Issue #37: incremental controller updates (sync protocol 2).

A delta applied to the update it was made from gives exactly the whole update, for every
kind of change; a control plane validates only the documents a delta brings; a delta on a
version it does not hold is a gap (resync); and both ends refuse a newer protocol with a
message naming the side to upgrade.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import federation.sync.delta as delta_module
from federation.model.documents import load_documents
from federation.model.service import ServiceImport
from federation.sync.convert import update_from_proto, update_to_proto
from federation.sync.delta import (
    PROTOCOL,
    HeldUpdate,
    UpdateGapError,
    control_plane_refuses,
    controller_refuses,
    delta,
    merge,
)
from federation.sync.messages import ControllerUpdate, RoutingPlan


def _policy(host: str, attempts: int) -> object:
    [doc] = load_documents(
        json.dumps(
            {
                "apiVersion": "meshfed.io/v1alpha1",
                "kind": "TrafficPolicy",
                "metadata": {"name": host, "namespace": "demo"},
                "spec": {
                    "host": f"{host}.demo.svc.clusterset.local",
                    "retries": {"attempts": attempts},
                },
            }
        )
    )
    return doc


def _import(name: str, endpoints: int) -> ServiceImport:
    return ServiceImport.model_validate(
        {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "ServiceImport",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {
                "ports": [{"name": "http", "port": 8080}],
                "serviceAccounts": [name],
                "clusters": [
                    {
                        "cluster": "west",
                        "gateway": "10.0.0.1:15443",
                        "locality": "aws/eu-west-1/eu-west-1a",
                        "endpoints": endpoints,
                    }
                ],
            },
        }
    )


def _plan(service: str, share: float) -> RoutingPlan:
    return RoutingPlan(
        "demo",
        service,
        "aws/us-east-1/us-east-1a",
        (("west", "aws/eu-west-1/eu-west-1a", share),),
    )


BASE = ControllerUpdate(
    version=10,
    imports=[_import(f"s{i}", 3) for i in range(5)],
    exports=[("demo", "s0")],
    policies=[_policy(f"s{i}", 2) for i in range(30)],  # type: ignore[misc]
    plans=[_plan("s1", 1.0), _plan("s2", 1.0)],
    lease_seconds=30,
    cluster_crls={"west": "CRL"},
)

CHANGES = {
    "nothing": lambda u: u,
    "one policy edited": lambda u: replace(
        u, policies=[*u.policies[:7], _policy("s7", 5), *u.policies[8:]]
    ),
    "policies added and removed": lambda u: replace(
        u, policies=[*u.policies[3:], _policy("new", 1)]
    ),
    "an import changed, one removed, one added": lambda u: replace(
        u, imports=[_import("s0", 9), *u.imports[2:], _import("s9", 1)]
    ),
    "plans changed and removed": lambda u: replace(u, plans=[_plan("s1", 0.5)]),
    "small fields": lambda u: replace(
        u, exports=[], cluster_crls={"west": "CRL2", "gcp": "C"}, lease_seconds=0
    ),
}


def _wire(update: ControllerUpdate):
    message = update_to_proto(update)
    message.protocol = PROTOCOL
    return message


def _same(a: ControllerUpdate, b: ControllerUpdate) -> None:
    assert sorted(a.imports, key=lambda i: i.key) == sorted(b.imports, key=lambda i: i.key)
    assert sorted(map(repr, a.policies)) == sorted(map(repr, b.policies))
    key = lambda p: (p.namespace, p.service, p.caller_locality)  # noqa: E731
    assert sorted(a.plans, key=key) == sorted(b.plans, key=key)
    assert replace(a, imports=[], policies=[], plans=[]) == replace(
        b, imports=[], policies=[], plans=[]
    )


@pytest.mark.parametrize("case", list(CHANGES))
def test_a_delta_merged_onto_its_base_is_the_whole_update(case) -> None:
    after = replace(CHANGES[case](BASE), version=11)
    held = merge(None, _wire(BASE))
    message = delta(_wire(BASE), _wire(after))
    assert message.base_version == 10
    merged = merge(held, message)
    _same(merged.update, update_from_proto(_wire(after)))
    # only what changed travels
    assert len(message.policies_json) == len(
        set(_wire(after).policies_json) - set(_wire(BASE).policies_json)
    )
    if case == "nothing":
        assert not (message.imports or message.policies_json or message.plans)
        assert message.ByteSize() < _wire(after).ByteSize() / 10
    if not (message.policies_json or message.removed_policies):  # the held lists themselves
        assert merged.update.policies is held.update.policies
        assert merged.update.price_tables is held.update.price_tables


def test_a_merged_update_sorts_every_policy_kind_into_its_field_and_drops_other_kinds() -> None:
    """Each policy document lands in its kind's field, as the update's own conversion puts
    it, and a document of no policy kind (a ServiceExport) is left out by both."""
    import json

    from federation.model.authz import AuthorizationPolicy
    from federation.model.policy import PriceTable

    prices = PriceTable.model_validate({
        "apiVersion": "meshfed.io/v1alpha1", "kind": "PriceTable",
        "metadata": {"name": "aws-edp"},
        "spec": {"cloud": "aws", "source": "contract 2026", "usdPerGB": {"cross-zone": 0.0}},
    })  # fmt: skip
    authz = AuthorizationPolicy.model_validate({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "deny-all", "namespace": "demo"}, "spec": {},
    })  # fmt: skip
    whole = replace(BASE, price_tables=[prices], authorization_policies=[authz])
    message = _wire(whole)
    message.policies_json.append(json.dumps({
        "apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
        "metadata": {"name": "echo", "namespace": "demo"},
    }))  # fmt: skip
    merged = merge(None, message).update
    reference = update_from_proto(message)
    assert merged.price_tables == reference.price_tables == [prices]
    assert merged.authorization_policies == reference.authorization_policies == [authz]
    _same(merged, reference)


def test_a_control_plane_validates_only_the_policies_a_delta_brings(monkeypatch) -> None:
    held = merge(None, _wire(BASE))
    seen: list[int] = []
    real = delta_module.validate_documents

    def counting(raws, source):
        seen.append(len(raws))
        return real(raws, source=source)

    monkeypatch.setattr(delta_module, "validate_documents", counting)
    after = replace(CHANGES["one policy edited"](BASE), version=11)
    merged = merge(held, delta(_wire(BASE), _wire(after)))
    assert seen == [1]  # the edited one, not the 30
    assert len(merged.update.policies) == 30


def test_a_delta_on_a_version_not_held_is_a_gap() -> None:
    after = replace(BASE, version=12)
    message = delta(_wire(replace(BASE, version=11)), _wire(after))
    with pytest.raises(UpdateGapError, match="delta on v11, this control plane holds v10"):
        merge(merge(None, _wire(BASE)), message)
    with pytest.raises(UpdateGapError, match="holds nothing"):
        merge(None, message)
    assert isinstance(merge(None, _wire(after)), HeldUpdate)  # a whole update always applies


def test_each_end_refuses_a_newer_protocol_naming_the_side_to_upgrade() -> None:
    assert controller_refuses("east", 0) is None  # a release before versions: whole updates
    assert controller_refuses("east", PROTOCOL) is None
    refused = controller_refuses("east", PROTOCOL + 1)
    assert refused is not None and "upgrade the controller" in refused and "'east'" in refused
    assert control_plane_refuses(0) is None and control_plane_refuses(PROTOCOL) is None
    refused = control_plane_refuses(PROTOCOL + 1)
    assert refused is not None and "upgrade the control plane" in refused


def test_a_protocol_2_control_plane_gets_its_protocol_without_the_kinds_it_cannot_read() -> None:
    """A controller of this release and a control plane of the last one understand each
    other: its updates say protocol 2 and leave out PeerAuthentication, Sidecar and
    ServiceEntry (named, so the controller can log them); a protocol-3 one gets them."""
    from federation.model.peer_authentication import PeerAuthentication

    [peer_authn] = load_documents(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: demo}\nspec: {mtls: {mode: STRICT}}\n"
    )
    assert isinstance(peer_authn, PeerAuthentication)
    update = replace(BASE, peer_authentications=[peer_authn])
    old, dropped = delta_module.for_peer(update_to_proto(update), 2)
    assert old.protocol == 2 and dropped == ["PeerAuthentication/demo/default"]
    assert update_from_proto(old).peer_authentications == []
    assert update_from_proto(old).policies == BASE.policies  # the rest is all there
    new, dropped = delta_module.for_peer(update_to_proto(update), PROTOCOL)
    assert new.protocol == PROTOCOL == 3 and dropped == []
    assert update_from_proto(new).peer_authentications == [peer_authn]


def _report(services: dict[str, int], version: int):
    from federation.sync.proto import sync_pb2

    message = sync_pb2.ClusterReport(
        cluster="east", gateway="10.0.0.1:15443", report_version=version
    )
    for name, healthy in services.items():
        message.services.append(
            sync_pb2.ServiceReport(
                namespace="demo",
                name=name,
                ports=[sync_pb2.PortInfo(name="http", port=8080, protocol="http")],
                healthy_endpoints_by_zone={"us-east-1a": healthy},
            )
        )
    return message


def test_a_report_delta_merged_onto_its_base_is_the_whole_report(monkeypatch) -> None:
    from federation.sync.convert import report_from_proto
    from federation.sync.delta import merge_report, report_delta

    first = _report({f"s{i}": 1 for i in range(50)}, 1)
    held = merge_report(None, first)
    after = _report({**{f"s{i}": 1 for i in range(1, 50)}, "s7": 3, "new": 1}, 2)
    message = report_delta(first, after)
    assert sorted(s.name for s in message.services) == ["new", "s7"]
    assert [r.name for r in message.removed_services] == ["s0"]
    seen: list[int] = []
    real = delta_module.convert.report_from_proto
    monkeypatch.setattr(
        delta_module.convert,
        "report_from_proto",
        lambda m: seen.append(len(m.services)) or real(m),
    )
    merged = merge_report(held, message)
    assert seen == [2]  # only the services the delta brings are validated
    whole = report_from_proto(after)
    assert sorted(merged.report.services, key=lambda s: s.key) == sorted(
        whole.services, key=lambda s: s.key
    )
    assert merged.report.model_copy(update={"services": []}) == whole.model_copy(
        update={"services": []}
    )
    heartbeat = report_delta(
        after, _report({**{f"s{i}": 1 for i in range(1, 50)}, "s7": 3, "new": 1}, 3)
    )
    assert not heartbeat.services and not heartbeat.removed_services
    assert heartbeat.ByteSize() < after.ByteSize() / 20
    with pytest.raises(UpdateGapError, match="delta on report 2, the controller holds report 1"):
        merge_report(held, heartbeat)


def test_the_control_plane_state_files_keep_the_update_it_served(tmp_path) -> None:
    """What a control plane persists of an update reads back as that update (without the
    trust bundle, a file of its own), the join info beside it; an earlier release's file
    (the update in federation.json, as JSON or base64) is still read and moved to the new
    file when the join info is next written; a damaged one is refused naming the file."""
    from federation.controlplane.link import state
    from federation.controlplane.link.join import JoinInfo
    from federation.errors import InvalidDocumentError
    from federation.sync.convert import update_to_json

    info = JoinInfo("east", "example.org", "https://c:1", "c:2", "sync.example", 9.0, ["c:2"])
    update = replace(BASE, trust_bundle_pem=b"BUNDLE")
    state.save(tmp_path, info, update)
    loaded = state.load_last_update(tmp_path)
    assert loaded is not None
    _same(loaded, replace(update, trust_bundle_pem=b""))
    assert state.load_join_info(tmp_path) == info
    assert b"BUNDLE" not in state.update_file(tmp_path).read_bytes()
    state.update_file(tmp_path).unlink()
    legacy = {"join": json.loads(state.federation_file(tmp_path).read_text())["join"],
              "lastUpdate": update_to_json(BASE)}  # fmt: skip
    state.federation_file(tmp_path).write_text(json.dumps(legacy))
    old = state.load_last_update(tmp_path)
    assert old is not None
    _same(old, BASE)
    state.save_join(tmp_path, replace(info, lease_seconds=12.0))  # moves the legacy update
    assert "lastUpdate" not in state.federation_file(tmp_path).read_text()
    moved = state.load_last_update(tmp_path)
    assert moved is not None
    _same(moved, BASE)
    state.update_file(tmp_path).write_bytes(b"\xff\xff not a message")
    with pytest.raises(InvalidDocumentError, match=r"last-update\.pb: not a ControllerUpdate"):
        state.load_last_update(tmp_path)
    state.update_file(tmp_path).unlink()
    state.federation_file(tmp_path).write_text(json.dumps({"lastUpdateProto": "bm90IHByb3Rv!"}))
    with pytest.raises(InvalidDocumentError, match=r"federation\.json: lastUpdateProto"):
        state.load_last_update(tmp_path)


def test_the_update_writer_keeps_the_newest_update_and_never_an_older_one(tmp_path) -> None:
    """Updates handed over faster than they are written: what is on disk after a flush is
    the last one handed over; a write that fails is logged and the next one is written."""
    import threading

    from federation.controlplane.link import state

    writer = state.UpdateWriter(tmp_path)
    gate = threading.Event()
    writer._executor.submit(gate.wait)  # hold the writer's thread: the updates queue up
    for version in range(1, 6):
        writer.submit(replace(BASE, version=version))
    assert writer._pending is not None and writer._pending.version == 5
    gate.set()
    writer.flush()
    stored = state.load_last_update(tmp_path)
    assert stored is not None and stored.version == 5
    (tmp_path / "blocked").mkdir()
    blocked = state.UpdateWriter(tmp_path / "blocked" / "file-not-dir")
    (tmp_path / "blocked" / "file-not-dir").write_text("")  # a file where the dir must be
    blocked.submit(replace(BASE, version=6))
    blocked.close()  # the failure is logged, nothing raised
    writer.submit(replace(BASE, version=7))
    writer.close()
    stored = state.load_last_update(tmp_path)
    assert stored is not None and stored.version == 7


def test_an_import_is_converted_once_and_forgotten_with_its_model() -> None:
    """The wire form of an import is made once per model object (every stream with that
    view gets the same object) and its cache entry goes when the model does."""
    import gc

    from federation.sync import convert

    imp = _import("cached", 2)
    first = convert.update_to_proto(ControllerUpdate(imports=[imp]))
    assert id(imp) in convert._IMPORT_PROTO
    again = convert.update_to_proto(ControllerUpdate(imports=[imp]))
    assert again == first
    key = id(imp)
    del imp
    gc.collect()
    assert key not in convert._IMPORT_PROTO


def test_the_writer_waits_out_its_delay_and_writes_a_burst_once(tmp_path, monkeypatch) -> None:
    """An update is persisted ``delay_s`` after it was handed over, not at once (the write
    would compete with every other control plane's apply of the same change); updates handed
    over meanwhile are written once, the newest; flush and close write without waiting."""
    from federation.controlplane.link import state

    written: list[int] = []
    save = state.save_update
    monkeypatch.setattr(
        state, "save_update", lambda d, u: (written.append(u.version), save(d, u))[1]
    )
    writer = state.UpdateWriter(tmp_path, delay_s=600)
    for version in range(1, 4):
        writer.submit(replace(BASE, version=version))
    assert state.load_last_update(tmp_path) is None and written == []  # waiting out 600 s
    writer.flush()  # now, not in 600 s (a test that waited would hit pytest's timeout)
    assert written == [3]
    writer.submit(replace(BASE, version=4))
    writer.close()
    assert written == [3, 4]
    stored = state.load_last_update(tmp_path)
    assert stored is not None and stored.version == 4
