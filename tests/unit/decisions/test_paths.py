"""lb.paths: what a path costs and how far it is (one place for price and RTT)."""

from __future__ import annotations

import pytest

from federation.errors import InvalidDocumentError
from federation.lb.paths import (
    egress_usd_per_hour,
    path_facts,
    price_tables,
    rtts_for_decisions,
)
from federation.model.documents import load_documents
from federation.model.locality import Locality

VA_A = Locality.parse("aws/us-east-1/us-east-1a")


def test_a_measurement_beats_the_estimate_and_unknown_regions_stay_unknown() -> None:
    far = Locality.parse("aws/eu-west-1/eu-west-1a")
    estimated = path_facts(VA_A, far)
    assert estimated.rtt_source == "estimated" and 75 < (estimated.rtt_ms or 0) < 90
    assert (estimated.path, estimated.usd_per_gb) == ("cross-continent", 0.02)
    assert "aws.amazon.com" in estimated.price_source
    measured = path_facts(VA_A, far, measured_rtt_ms=71.5)
    assert (measured.rtt_ms, measured.rtt_source) == (71.5, "measured")
    nowhere = path_facts(VA_A, Locality.parse("aws/nowhere-9/x"))
    assert (nowhere.rtt_ms, nowhere.rtt_source) == (None, "unknown")
    other_cloud = path_facts(VA_A, Locality.parse("gcp/us-east4/us-east4-a"))
    assert (other_cloud.path, other_cloud.usd_per_gb) == ("cross-cloud", 0.12)


def test_a_price_table_document_overrides_only_the_rates_it_names() -> None:
    [doc] = load_documents(
        "apiVersion: meshfed.io/v1alpha1\nkind: PriceTable\nmetadata: {name: edp}\n"
        "spec: {cloud: aws, source: contract 2026, usdPerGB: {cross-zone: 0.0}}\n"
    )
    tables = price_tables([doc])  # type: ignore[list-item]
    zone_b = Locality.parse("aws/us-east-1/us-east-1b")
    assert path_facts(VA_A, zone_b, prices=tables).usd_per_gb == 0.0
    assert path_facts(VA_A, zone_b, prices=tables).price_source == "PriceTable edp"
    assert path_facts(VA_A, zone_b).usd_per_gb == 0.02
    far = Locality.parse("aws/eu-west-1/eu-west-1a")
    assert path_facts(VA_A, far, prices=tables).usd_per_gb == 0.02  # not overridden


def test_region_pairs_win_over_path_classes_and_the_discount_applies_to_both() -> None:
    """Issue 42: a PriceTable's ``regionPairs`` price bytes leaving one region for another
    (the same region: across zones; ``internet``: to another cloud); ``discount`` multiplies
    every rate; a pair given twice, or a table without rates, is refused naming the field."""
    [doc] = load_documents(
        "apiVersion: meshfed.io/v1alpha1\nkind: PriceTable\nmetadata: {name: list}\n"
        "spec:\n  cloud: aws\n  source: AWS Price List\n  readOn: '2026-12-06'\n"
        "  discount: 0.5\n  usdPerGB: {cross-region: 0.04}\n  regionPairs:\n"
        "  - {from: eu-west-1, to: us-east-1, usdPerGB: 0.03}\n"
        "  - {from: eu-west-1, to: internet, usdPerGB: 0.09}\n"
        "  - {from: us-east-1, to: us-east-1, usdPerGB: 0.018}\n"
    )
    tables = price_tables([doc])  # type: ignore[list-item]
    eu, ohio = Locality.parse("aws/eu-west-1/eu-west-1a"), Locality.parse("aws/us-east-2/a")
    gcp = Locality.parse("gcp/us-east4/us-east4-a")
    # the response bytes leave the server: eu-west-1 -> us-east-1 is the pair's rate
    assert path_facts(VA_A, eu, prices=tables).usd_per_gb == pytest.approx(0.015)
    assert path_facts(gcp, eu, prices=tables).usd_per_gb == pytest.approx(0.045)
    assert path_facts(VA_A, VA_A.with_zone("us-east-1b"), prices=tables).usd_per_gb == (
        pytest.approx(0.009)
    )
    assert path_facts(VA_A, VA_A, prices=tables).usd_per_gb == 0.0  # same zone: free
    assert path_facts(VA_A, ohio, prices=tables).usd_per_gb == pytest.approx(0.02)  # class
    assert tables["aws"].read_on == "2026-12-06"
    for spec, why in (
        ("{cloud: aws, source: s}", "usdPerGB .* or regionPairs"),
        ("{cloud: aws, source: s, regionPairs: [{from: a, to: b, usdPerGB: 1},"
         " {from: a, to: b, usdPerGB: 2}]}", "a -> b is given twice"),
        ("{cloud: aws, source: s, discount: 0, usdPerGB: {cross-zone: 1}}", "discount"),
    ):  # fmt: skip
        with pytest.raises(InvalidDocumentError, match=why):
            load_documents(f"apiVersion: meshfed.io/v1alpha1\nkind: PriceTable\n"
                           f"metadata: {{name: x}}\nspec: {spec}\n")  # fmt: skip


def test_egress_dollars_per_hour() -> None:
    # 1 MB/s for an hour is 3.6 GB; at $0.02/GB that is $0.072
    assert egress_usd_per_hour(1e6, 0.02) == pytest.approx(0.072)
    assert egress_usd_per_hour(1e6, 0.0) == 0.0


def test_rtts_for_decisions_skip_loopback_and_move_only_past_the_hysteresis() -> None:
    gateways = {"a": "10.0.0.1:15443", "b": "127.0.2.1:15443", "c": "gw.example.com:15443"}
    first = rtts_for_decisions({}, {"a": 80.04, "b": 0.1, "c": 12.0}, gateways)
    assert first == {"a": 80.0, "c": 12.0}  # b's gateway is on loopback: estimate instead
    # within 20 % (and 1 ms): keep the old figure, so proxies are not rebuilt for noise
    assert rtts_for_decisions(first, {"a": 90.0, "c": 12.9}, gateways) == {"a": 80.0, "c": 12.0}
    assert rtts_for_decisions(first, {"a": 120.0, "c": 15.0}, gateways) == {"a": 120.0, "c": 15.0}
