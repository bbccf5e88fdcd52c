"""Issue 42, price lists: ``meshfed prices update --from aws`` reads the AWS Price List Query
API through boto3's real ``pricing`` client (against tests/integration/fake_aws_pricing.py,
paged and filtered as the API does) into a PriceTable with its source, date, region pairs,
internet tiers and the user's discount; a controller takes it and prices its paths by it."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from federation.lb.paths import price_tables
from federation.model.policy import PriceTable
from providers.pricing import Site, path_price
from tests.integration.fake_aws_pricing import FakePricing
from tests.integration.harness import MESHFED, ControllerHandle, meshfed_env

pytestmark = [pytest.mark.integration]


def _prices(home, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        meshfed_env(home),
        AWS_ENDPOINT_URL_PRICING=url,
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="example",
    )
    return subprocess.run(
        [MESHFED, "prices", "update", "--from", "aws", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_an_aws_price_list_becomes_a_price_table_the_controller_prices_by(procs, tmp_path):
    home = tmp_path / "home"
    with FakePricing() as fake:
        done = _prices(home, fake.url, "--discount", "0.8", "--monthly-internet-gb", "20000")
        assert done.returncode == 0, done.stderr
        assert "8 products, 8 region pairs" in done.stderr
        # one filtered, paged query per transfer type; the inbound product never asked for
        types = {c["Filters"][0]["Value"] for c in fake.calls}
        assert types == {"InterRegion Outbound", "IntraRegion", "AWS Outbound"}
        assert len(fake.calls) == 5  # 5 between regions in 3 pages, 2 zones, 1 to the internet
    doc = yaml.safe_load(done.stdout)
    table = PriceTable.model_validate(doc)  # a valid document, as apply will check
    spec = table.spec
    assert spec.source.startswith("AWS Price List Query API") and spec.discount == 0.8
    pairs = {(p.from_region, p.to): p for p in spec.region_pairs}
    assert pairs[("us-east-1", "us-east-1")].usd_per_gb == pytest.approx(0.02)  # 2 x $0.01
    assert pairs[("ap-northeast-1", "us-east-1")].usd_per_gb == pytest.approx(0.09)
    internet = pairs[("us-east-1", "internet")]
    assert internet.usd_per_gb == pytest.approx(0.085)  # 20,000 GB/month: the second tier
    assert [t.up_to_gb for t in internet.tiers] == [10240, 51200, 153600, None]
    assert spec.usd_per_gb["cross-continent"] == pytest.approx(0.02)  # the most common
    assert ("eu-west-1", "internet") not in pairs

    # the controller accepts it, and paths are priced by pair, discounted
    controller = ControllerHandle(procs, home)
    controller.start()
    path = tmp_path / "prices.yaml"
    path.write_text(done.stdout)
    applied = subprocess.run(
        [MESHFED, "apply", "-f", str(path)], env=meshfed_env(home), capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    stored = controller.api("GET", "/v1/policies")
    assert json.dumps(stored).count("aws-price-list") >= 1
    tables = price_tables([table])
    tokyo, virginia = Site("aws", "ap-northeast-1", "ap-northeast-1a"), Site("aws", "us-east-1")
    assert path_price(tokyo, virginia, tables).usd_per_gb == pytest.approx(0.09 * 0.8)
    frankfurt = Site("aws", "eu-central-1", "eu-central-1a")
    assert path_price(Site("aws", "us-east-1", "a"), frankfurt, tables).usd_per_gb == (
        pytest.approx(0.015 * 0.8)
    )
    # a pair the list does not name: the path class's rate, discounted too
    assert path_price(frankfurt, tokyo, tables).usd_per_gb == pytest.approx(0.02 * 0.8)


def test_a_denied_or_unreachable_price_list_is_one_line_and_prints_no_table(tmp_path) -> None:
    home = tmp_path / "home"
    with FakePricing(deny=True) as fake:
        denied = _prices(home, fake.url)
    assert denied.returncode == 2 and denied.stdout == ""
    assert "access denied" in denied.stderr and "pricing:GetProducts" in denied.stderr
    assert len(denied.stderr.strip().splitlines()) == 1
    gone = _prices(home, fake.url)  # the server is stopped
    assert gone.returncode == 1 and "unreachable" in gone.stderr and gone.stdout == ""
    region = _prices(home, fake.url, "--region", "eu-west-1")
    assert region.returncode == 2 and "answers only in" in region.stderr
