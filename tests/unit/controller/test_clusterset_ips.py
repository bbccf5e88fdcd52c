"""ClusterSetIPs: allocated once per exported service, the same from any store holding the
same table, kept while any cluster exports the service (:mod:`federation.controller.clusterset_ips`,
:meth:`federation.controller.store.SqlStore.put_report`)."""

from __future__ import annotations

import ipaddress

import pytest

from federation.controller.clusterset_ips import ClusterSetRangeError, allocate, parse_range
from federation.controller.store import ClusterRecord, SqliteStore
from federation.sync.messages import ClusterReport


def test_allocation_is_deterministic_inside_the_range_and_skips_taken_addresses() -> None:
    net = parse_range("240.241.0.0/28")
    first = allocate("demo", "echo", net, [])
    assert first == allocate("demo", "echo", net, [])
    assert ipaddress.ip_address(first) in net
    assert first not in (str(net.network_address), str(net.broadcast_address))
    second = allocate("demo", "echo", net, [first])
    assert second != first
    taken = [str(h) for h in net.hosts()]
    with pytest.raises(ClusterSetRangeError, match="is full"):
        allocate("demo", "echo", net, taken)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("240.241.0.0/29", "at most /28"),
        ("127.0.0.0/16", "overlaps 127.0.0.0/8"),
        ("fd00::/64", "must be IPv4"),
        ("240.241.0.1/16", "host bits"),
    ],
)
def test_a_bad_range_is_refused_by_its_flag(text: str, why: str) -> None:
    with pytest.raises(ClusterSetRangeError, match=why) as err:
        parse_range(text)
    assert "--clusterset-ip-range" in str(err.value)


def _report(cluster: str, *exports: str) -> ClusterReport:
    return ClusterReport.model_validate(
        {
            "cluster": cluster,
            "services": [
                {
                    "namespace": "demo",
                    "name": name,
                    "ports": [{"name": "http", "port": 8080, "protocol": "http"}],
                }
                for name in ("echo", "db")
            ],
            "exports": list(exports),
        }
    )


def test_the_store_keeps_one_address_per_service_while_any_cluster_exports_it(tmp_path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    for name in ("a", "b"):
        store.add_cluster(ClusterRecord(name, "aws/us-east-1", "n", "", "local", 0), name, 1e12)
    store.put_report("a", _report("a", "demo/echo", "demo/db"), 1.0)
    ips = store.clusterset_ips()
    assert set(ips) == {("demo", "echo"), ("demo", "db")}
    assert len(set(ips.values())) == 2
    store.put_report("b", _report("b", "demo/echo"), 2.0)
    store.put_report("a", _report("a", "demo/db"), 3.0)  # a stops exporting echo; b still does
    assert store.clusterset_ips() == ips
    store.put_report("b", _report("b"), 4.0)  # nobody exports echo any more
    assert store.clusterset_ips() == {("demo", "db"): ips[("demo", "db")]}
    store.close()
    reopened = SqliteStore(tmp_path / "c.db")  # a restart keeps them
    assert reopened.clusterset_ips() == {("demo", "db"): ips[("demo", "db")]}
    reopened.close()
