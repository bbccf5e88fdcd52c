"""Price tables, path classes and RTT estimates (providers.pricing)."""

from __future__ import annotations

import pytest

from providers.errors import PricingError
from providers.pricing import (
    PriceTable,
    Site,
    builtin_tables,
    estimate_rtt_ms,
    path_class,
    path_price,
    with_rates,
)

VA = Site("aws", "us-east-1", "us-east-1a")


def test_tables_name_their_source_and_date() -> None:
    for cloud in ("aws", "gcp"):
        table = builtin_tables()[cloud]
        assert table.source.startswith("https://") and table.read_on == "2026-11-21"


@pytest.mark.parametrize(
    ("server", "path", "price"),
    [
        (Site("aws", "us-east-1", "us-east-1a"), "same-zone", 0.0),
        (Site("aws", "us-east-1", "us-east-1b"), "cross-zone", 0.02),
        (Site("aws", "us-west-2", "us-west-2a"), "cross-region", 0.02),
        (Site("aws", "eu-west-1", "eu-west-1a"), "cross-continent", 0.02),
        (Site("aws", "ap-southeast-1", "ap-southeast-1a"), "cross-continent", 0.09),
        (Site("gcp", "us-east4", "us-east4-a"), "cross-cloud", 0.12),
        (Site("local", "lab", "a"), "cross-cloud", 0.0),
    ],
)
def test_path_prices(server: Site, path: str, price: float) -> None:
    got = path_price(server, VA)
    assert (got.path, got.usd_per_gb) == (path, price)


def test_gcp_continents_and_unknown_regions() -> None:
    be = Site("gcp", "europe-west1", "b")
    assert path_price(Site("gcp", "europe-west4", "a"), be).usd_per_gb == 0.02
    assert path_price(Site("gcp", "us-east4", "a"), be).usd_per_gb == 0.05
    assert path_class(Site("gcp", "mars-1", "a"), be) == "cross-continent"  # unknown: dearer guess


def test_overrides_win() -> None:
    cheap = with_rates(builtin_tables()["aws"], {"cross-zone": 0.0}, "PriceTable edp")
    got = path_price(Site("aws", "us-east-1", "us-east-1b"), VA, {"aws": cheap})
    assert (got.usd_per_gb, got.source) == (0.0, "PriceTable edp")


def test_rtt_estimates() -> None:
    assert estimate_rtt_ms(VA, VA) == 0.2
    assert estimate_rtt_ms(VA, Site("aws", "us-east-1", "us-east-1b")) == 1.0
    assert 75 < (estimate_rtt_ms(VA, Site("aws", "eu-west-1", "")) or 0) < 90
    assert (estimate_rtt_ms(VA, Site("gcp", "us-east4", "")) or 99) < 3
    assert estimate_rtt_ms(VA, Site("aws", "nowhere-1", "")) is None


def test_bad_table_is_refused_with_the_field() -> None:
    with pytest.raises(PricingError, match="cross_zone: must be a number >= 0"):
        PriceTable.from_mapping(
            {
                "same_zone": 0,
                "cross_zone": -1,
                "cross_region_same_continent": 0,
                "cross_region_other_continent": 0,
                "internet": 0,
            },
            where="t.yaml",
        )


def test_local_provider_lists_the_local_federations_clusters(tmp_path) -> None:
    import json as _json

    from click.testing import CliRunner

    from federation.cli.main import cli
    from providers.errors import ClusterNotFoundError
    from providers.local import LocalProvider

    result = CliRunner().invoke(
        cli,
        ["cluster", "discover", "--provider", "local", "-o", "json"],
        env={"MESHFED_HOME": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    rows = _json.loads(result.output)
    assert [r["locality"] for r in rows] == [
        "aws/eu-west-1/eu-west-1a",
        "aws/us-east-1/us-east-1a",
        "gcp/europe-west1/europe-west1-b",
    ]
    provider = LocalProvider([])
    with pytest.raises(ClusterNotFoundError):
        provider.describe_cluster("x")
