"""Membership decisions and the SQLite store's schema check (the store contract, on SQLite
and PostgreSQL: tests/integration/test_stores.py)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from federation.controller.membership import cluster_state, validate_member_name
from federation.controller.store import ClusterRecord, SqliteStore, StoreError
from federation.sync.identity import cluster_from_spiffe_path, control_plane_spiffe_path
from federation.sync.join_token import (
    MalformedTokenError,
    join_token_secret,
    new_join_token,
    split_join_token,
    token_digest,
)


def _record(name: str = "east", **kw: object) -> ClusterRecord:
    return ClusterRecord(name, "aws/us-east-1", "net", "127.0.1.1:15443", "local", 0.0, **kw)  # type: ignore[arg-type]


def test_states_follow_join_and_lease() -> None:
    assert cluster_state(_record(), now=100) == "Pending"
    joined = _record(joined_at=10.0, last_heartbeat=90.0)
    assert cluster_state(joined, now=100, lease_s=30) == "Ready"
    assert cluster_state(joined, now=121, lease_s=30) == "Unreachable"
    # a restarted controller gives the cluster one lease from its start
    assert cluster_state(joined, now=121, lease_s=30, since=100) == "Ready"


PIN = "ab" * 32


def test_tokens_and_names() -> None:
    token = new_join_token(PIN)
    assert token.startswith("mfj_") and token.endswith("." + PIN) and token != new_join_token(PIN)
    secret, pin = split_join_token(token)
    assert pin == PIN and len(secret) > 40 and join_token_secret(token) == secret
    assert len(token_digest(secret)) == 64 and secret not in token_digest(secret)
    for bad in ("mfj_abc", f"xyz_abc.{PIN}", "mfj_abc." + "AB" * 32, "mfj_abc.1234"):
        with pytest.raises(MalformedTokenError, match="meshfed cluster token"):
            split_join_token(bad)
    with pytest.raises(ValueError):
        new_join_token("not-a-hash")
    assert validate_member_name("aws-us-east-1") == "aws-us-east-1"
    for bad in ("Upper", "-x", "x" * 64, "a_b", "meshfed-controller", ""):
        with pytest.raises(ValueError):
            validate_member_name(bad)
    path = control_plane_spiffe_path("east")
    assert path == "/ns/meshfed-system/sa/controlplane-east"
    assert cluster_from_spiffe_path(path) == "east"
    assert cluster_from_spiffe_path("/ns/demo/sa/frontend") is None
    assert cluster_from_spiffe_path("/ns/meshfed-system/sa/controlplane-") is None


def test_store_refuses_another_schema_version(tmp_path) -> None:
    path = tmp_path / "c.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(path)


def test_reads_a_recompute_makes_keep_what_is_unchanged_and_see_what_changed(tmp_path) -> None:
    """An unchanged report is the same model object on the next read and a changed one a
    new model; every policy kind comes in one read, by kind in the order asked and each
    oldest first; an apply's comparison reads only the bodies of its own documents."""
    from federation.sync.messages import ClusterReport

    store = SqliteStore(tmp_path / "c.db")
    store.add_cluster(ClusterRecord("a", "aws/us-east-1", "n", "", "local", 0), "a", 1e12)
    store.put_report("a", ClusterReport(cluster="a", exports=[]), 1.0)
    first = store.reports()["a"]
    assert store.reports()["a"] is first
    store.put_report("a", ClusterReport(cluster="a", exports=["demo/echo"]), 2.0)
    assert store.reports()["a"] is not first
    assert store.reports()["a"].exports == ["demo/echo"]

    def doc(kind: str, name: str) -> tuple[tuple[str, str, str, str], dict]:
        body = {"kind": kind, "metadata": {"name": name, "namespace": "demo"}, "spec": {}}
        return (kind, "demo", name, ""), body

    store.put_documents([doc("TrafficPolicy", "t2"), doc("AuthorizationPolicy", "z")], 1.0)
    store.put_documents([doc("TrafficPolicy", "t1")], 2.0)
    texts = store.document_texts(["AuthorizationPolicy", "TrafficPolicy"])
    assert [(k, json.loads(t)["metadata"]["name"]) for k, t in texts] == [
        ("AuthorizationPolicy", "z"),
        ("TrafficPolicy", "t2"),
        ("TrafficPolicy", "t1"),
    ]
    wanted = [("TrafficPolicy", "demo", "t1", ""), ("TrafficPolicy", "demo", "absent", "")]
    assert store.stored_bodies(wanted) == {wanted[0]: doc("TrafficPolicy", "t1")[1]}
    store.close()
