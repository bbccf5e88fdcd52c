"""YAML documents: all or nothing, errors naming the document, field path and reason."""

from __future__ import annotations

import pytest

from federation.errors import InvalidDocumentError
from federation.model.documents import decode_text, load_documents, parse_yaml
from federation.model.locality import Locality
from federation.model.workload import WorkloadEntry

GOOD = """
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: echo-1, namespace: demo}
spec:
  service: echo
  address: 127.0.1.10
  locality: aws/us-east-1/us-east-1a
  ports: [{name: http, port: 8080}]
"""


def test_good_document_defaults() -> None:
    (w,) = load_documents(GOOD)
    assert isinstance(w, WorkloadEntry)
    assert w.spec.tls_mode == "mutual" and w.spec.mtls_mode == "STRICT"
    assert w.spec.inbound_port == 15006 and w.spec.ports[0].app_port == 8080
    assert w.hostname == "echo.demo.svc.clusterset.local"
    assert w.locality == Locality("aws/us-east-1", "us-east-1a")


@pytest.mark.parametrize(
    ("mutation", "path", "reason"),
    [
        (("port: 8080", "port: 80800"), "spec.ports.0.port", "less than or equal to 65535"),
        (
            ("locality: aws/us-east-1/us-east-1a", "locality: useast"),
            "spec.locality",
            "<cloud>/<region>",
        ),
        (("address: 127.0.1.10", "address: 'not an address!'"), "spec.address", "neither an IP"),
        (("service: echo", "service: Echo_1"), "spec.service", "should match pattern"),
        (("name: echo-1", "name: echo-1, bogus: 1"), "metadata.bogus", "unknown field"),
    ],
)
def test_one_bad_document_refuses_all(mutation, path, reason) -> None:
    bad = GOOD.replace(*mutation)
    text = GOOD + "---" + bad.replace("echo-1", "echo-2")
    with pytest.raises(InvalidDocumentError) as info:
        load_documents(text, source="workloads.yaml")
    message = str(info.value)
    assert message.startswith("workloads.yaml: document 2 (WorkloadEntry demo/echo-2)")
    assert path in message and reason in message


def test_unknown_kind_and_bad_yaml() -> None:
    with pytest.raises(InvalidDocumentError, match="apiVersion/kind v1/Pod unknown"):
        load_documents("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
    with pytest.raises(InvalidDocumentError, match="not valid YAML"):
        load_documents("a: [")
    with pytest.raises(InvalidDocumentError, match="must be a mapping"):
        load_documents("- 1\n- 2\n")


def test_duplicate_ports_refused() -> None:
    text = GOOD.replace(
        "[{name: http, port: 8080}]", "[{name: http, port: 8080}, {name: http, port: 9090}]"
    )
    with pytest.raises(InvalidDocumentError, match="port names must be unique"):
        load_documents(text)


@pytest.mark.parametrize("text", ["aws", "aws/", "a/b/c/d/e", "AWS/us-east-1"])
def test_bad_localities(text) -> None:
    with pytest.raises(ValueError, match="locality"):
        Locality.parse(text)


def test_locality_parts() -> None:
    loc = Locality.parse("gcp/europe-west1/europe-west1-b/rack7")
    assert (loc.cloud, loc.region, loc.zone, loc.sub_zone) == (
        "gcp",
        "gcp/europe-west1",
        "europe-west1-b",
        "rack7",
    )
    assert str(loc) == "gcp/europe-west1/europe-west1-b/rack7"


def test_capacity_and_headroom_are_checked_where_they_are_written() -> None:
    """Issue #18: ``spec.capacity.rps`` > 0; ``cost.headroom`` in (0, 1] and only with mode
    optimize -- each refusal names the document and the field."""
    [entry] = load_documents(GOOD.replace("ports:", "capacity: {rps: 200}\n  ports:", 1))
    assert entry.spec.capacity is not None and entry.spec.capacity.rps == 200
    with pytest.raises(InvalidDocumentError, match=r"spec\.capacity\.rps"):
        load_documents(GOOD.replace("ports:", "capacity: {rps: 0}\n  ports:", 1))
    policy = (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: p, namespace: d}\n"
        "spec: {host: echo.demo.svc.clusterset.local, cost: COST}\n"
    )
    load_documents(policy.replace("COST", "{mode: optimize, headroom: 0.9}"))
    for cost, reason in (
        ("{mode: optimize, headroom: 1.5}", "less than or equal to 1"),
        ("{mode: prefer-cheaper, headroom: 0.9}", "headroom applies to mode optimize only"),
    ):
        with pytest.raises(InvalidDocumentError, match=reason) as info:
            load_documents(policy.replace("COST", cost))
        assert "spec.cost" in str(info.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
        ("a: " + "[" * 64 + "]" * 64, "nested deeper than 64 levels"),
        ("---\n{}\n" * 1001, "more than 1000 documents"),
        (
            "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7)),
            "more than 1000000 YAML nodes",
        ),
    ],
    ids=["flow-100000", "flow-65", "1001-documents", "alias-bomb"],
)
def test_hostile_yaml_is_refused_before_it_is_built(text, words) -> None:
    """Issue #35 (6): limits on depth, document count and expanded size."""
    with pytest.raises(InvalidDocumentError) as info:
        parse_yaml(text, source="f.yaml")
    assert words in str(info.value)
    assert str(info.value).startswith("f.yaml: ")


def test_limits_leave_ordinary_documents_alone() -> None:
    deep_enough = "a: " + "[" * 63 + "]" * 63  # 64 levels with the mapping
    assert parse_yaml(deep_enough) == [{"a": parse_yaml("[" * 63 + "]" * 63)[0]}]
    assert len(parse_yaml("---\n{a: 1}\n" * 1000)) == 1000
    assert parse_yaml("base: &b {x: 1}\nuse: *b\n") == [{"base": {"x": 1}, "use": {"x": 1}}]


def test_bytes_that_are_not_utf8_name_the_offset() -> None:
    with pytest.raises(InvalidDocumentError) as info:
        decode_text(b"kind: \xff\n", source="f.yaml")
    assert str(info.value) == "f.yaml: not UTF-8 text (byte 6: b'\\xff')"
    assert decode_text("kind: é".encode()) == "kind: é"


def test_a_yaml_syntax_error_names_file_line_and_column() -> None:
    """Issue #41: PyYAML's message named the file ``"<unicode string>"``."""
    text = "apiVersion: v1\nkind: X\nmetadata: {name: x\n  bad: [\n"
    with pytest.raises(InvalidDocumentError) as err:
        parse_yaml(text, source="policy.yaml")
    message = str(err.value)
    assert message.startswith("policy.yaml:4:6: not valid YAML: did not find expected ',' or '}'")
    assert "(while parsing a flow mapping at 3:11)" in message
    assert "<unicode string>" not in message


def test_a_delete_names_what_was_not_there() -> None:
    """Issue 41: ``delete -f`` of an absent document printed nothing and exited 0."""
    from federation.model.documents import load_documents, not_deleted

    docs = load_documents(
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
        "metadata: {name: a, namespace: demo}\nspec: {host: a.demo.svc.clusterset.local}\n"
        "---\napiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
        "metadata: {name: echo, namespace: demo}\nspec: {cluster: east}\n"
    )
    assert not_deleted(docs, ["serviceexport/demo/echo (cluster east)"]) == ["trafficpolicy/demo/a"]
    assert not_deleted(docs, ["trafficpolicy/demo/a", "serviceexport/demo/echo"]) == []
