"""Issue #37: the SotW request deserializer reads a repeated name list without parsing it,
and whatever the encoding, what it reads is what protobuf parses."""

from __future__ import annotations

from pathlib import Path

from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.controlplane import ads
from federation.controlplane.ads import read_sotw_request

EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
NAMES = [f"outbound|8080|{c}|svc{i}.demo.svc.clusterset.local" for i in range(50) for c in "ab"]


def _ack(version: str, nonce: str, names: list[str]) -> bytes:
    return discovery_pb2.DiscoveryRequest(
        version_info=version, type_url=EDS, response_nonce=nonce, resource_names=names
    ).SerializeToString()


def _same(raw: bytes) -> None:
    """What :func:`read_sotw_request` reads of ``raw`` is what protobuf parses."""
    read = read_sotw_request(raw)
    full = discovery_pb2.DiscoveryRequest.FromString(raw)
    assert read.names == frozenset(full.resource_names)
    for field in ("version_info", "type_url", "response_nonce"):
        assert getattr(read.message, field) == getattr(full, field), field
    assert read.message.HasField("error_detail") == full.HasField("error_detail")
    assert read.message.error_detail.message == full.error_detail.message
    assert read.message.HasField("node") == full.HasField("node")
    assert read.message.node.id == full.node.id


def test_acks_repeating_a_list_share_its_set_and_read_their_own_fields() -> None:
    first = read_sotw_request(_ack("v1", "1", NAMES))
    again = read_sotw_request(_ack("v2", "22", NAMES))
    assert again.names is first.names and len(again.names) == len(NAMES)
    assert (again.message.version_info, again.message.response_nonce) == ("v2", "22")
    fewer = read_sotw_request(_ack("v3", "3", NAMES[:-1]))  # same length prefix, one less
    assert fewer.names == frozenset(NAMES[:-1])
    empty = read_sotw_request(_ack("v4", "4", []))
    assert empty.names == frozenset()


_PART = st.one_of(
    st.builds(lambda v: discovery_pb2.DiscoveryRequest(version_info=v), st.text(max_size=5)),
    st.builds(lambda t: discovery_pb2.DiscoveryRequest(type_url=t), st.sampled_from([EDS, "x"])),
    st.builds(lambda n: discovery_pb2.DiscoveryRequest(response_nonce=n), st.text(max_size=3)),
    st.builds(
        lambda names: discovery_pb2.DiscoveryRequest(resource_names=names),
        st.lists(st.sampled_from([*NAMES[:4], "", "é"]), max_size=4),
    ),
    st.builds(
        lambda m: discovery_pb2.DiscoveryRequest(error_detail={"message": m}), st.text(max_size=3)
    ),
    st.builds(lambda i: discovery_pb2.DiscoveryRequest(node={"id": i}), st.text(max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_PART, max_size=7), warm=st.booleans())
def test_any_encoding_reads_as_protobuf_parses_it(parts, warm) -> None:
    """Requests made of parts in any order (protobuf merges concatenated messages: fields
    out of order, repeated, names between other fields), after lists were seen or not."""
    raw = b"".join(p.SerializeToString() for p in parts)
    if not warm:
        ads._RECENT_RUNS.clear()
    _same(raw)
    _same(raw)  # the second time its list (if any) is a recent one


def test_a_run_with_anything_but_names_is_not_remembered() -> None:
    """A run between the fields is taken as names only when it is nothing else: a request
    whose middle also holds another field is read the long way, every time."""
    ads._RECENT_RUNS.clear()
    tricky = (
        discovery_pb2.DiscoveryRequest(version_info="v").SerializeToString()
        + discovery_pb2.DiscoveryRequest(resource_names=NAMES[:2]).SerializeToString()
        + discovery_pb2.DiscoveryRequest(version_info="v").SerializeToString()
        + discovery_pb2.DiscoveryRequest(type_url=EDS, response_nonce="1").SerializeToString()
    )
    _same(tricky)
    assert ads._RECENT_RUNS == []


def _rss_kib() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 // 1024


def test_a_read_ack_does_not_hold_the_bytes_of_the_names_it_skipped() -> None:
    """An idle stream holds its last request: an ACK read without parsing its names must
    not keep their bytes (upb allocated them in the parsed message's arena; discarding
    them did not free them: ~190 KiB per stream at 4,000 names). 200 requests held:
    the old reading grew by ~37 MiB, this one by well under 4."""
    names = [f"outbound|8080||svc-{i}.demo.svc.cluster.local" for i in range(4000)]
    read_sotw_request(_ack("v0", "0", names))  # now a list seen lately
    raws = [_ack(f"v{i}", str(i), names) for i in range(200)]
    before = _rss_kib()
    held = [read_sotw_request(raw) for raw in raws]
    grown = _rss_kib() - before
    assert held[-1].message.version_info == "v199" and len(held[-1].names) == 4000
    assert grown < 4 * 1024, f"{grown} KiB for 200 requests"
