"""Issue 42, price lists: ``meshfed prices update --from aws`` reads the AWS Price List Query
API through boto3's real ``pricing`` client (against tests/integration/fake_aws_pricing.py,
paged and filtered as the API does), and ``--from gcp`` the Cloud Billing Catalog through
google-cloud-billing's real ``CloudCatalogClient`` (against a local
``google.cloud.billing.v1.CloudCatalog`` gRPC server: ListSkus with the library's own
messages, paged; it does not model filters by time or currency, other services, or
authentication beyond PERMISSION_DENIED), into a PriceTable with its source, date, region
pairs, internet tiers and the user's discount; a controller takes it and prices its paths
by it."""

from __future__ import annotations

import json
import subprocess
from concurrent import futures

import grpc
import pytest
import yaml
from google.cloud.billing_v1.types import cloud_catalog as cc
from google.type import money_pb2

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


def _sku(sku_id: str, description: str, group: str, regions: list[str], tiers: list[tuple]):
    rates = [
        cc.PricingExpression.TierRate(
            start_usage_amount=start,
            unit_price=money_pb2.Money(
                currency_code="USD", units=int(usd), nanos=round(usd % 1 * 1e9)
            ),
        )
        for start, usd in tiers
    ]
    return cc.Sku(
        name=f"services/6F81-5844-456A/skus/{sku_id}", sku_id=sku_id, description=description,
        category=cc.Category(service_display_name="Compute Engine", resource_family="Network",
                             resource_group=group, usage_type="OnDemand"),
        service_regions=regions,
        pricing_info=[cc.PricingInfo(pricing_expression=cc.PricingExpression(
            usage_unit="GiBy", tiered_rates=rates))],
    )  # fmt: skip


SKUS = [
    _sku("A1", "Network Inter Zone Data Transfer Out", "InterzoneEgress",
         ["europe-west1", "us-central1"], [(0, 0.01)]),
    _sku("A2", "Network Inter Region Data Transfer Out from Europe to Europe",
         "InterregionEgress", ["europe-west1"], [(0, 0.02)]),
    _sku("A3", "Network Inter Region Data Transfer Out from Europe to Northern America",
         "InterregionEgress", ["europe-west1"], [(0, 0.05)]),
    _sku("A4", "Network Internet Data Transfer Out from Europe to Europe",
         "PremiumInternetEgress", ["europe-west1"], [(0, 0.0), (1, 0.12), (1024, 0.11), (10240, 0.08)]),
    _sku("A5", "Network Internet Data Transfer Out from Europe to China",
         "PremiumInternetEgress", ["europe-west1"], [(0, 0.0), (1, 0.23), (1024, 0.22)]),
    _sku("A6", "N1 Predefined Instance Core running in Belgium", "N1Standard",
         ["europe-west1"], [(0, 0.03)]),
]  # fmt: skip


@pytest.fixture
def catalog():
    """ListSkus of google.cloud.billing.v1.CloudCatalog, two SKUs a page."""
    state = {"deny": False, "parents": []}

    def list_skus(request: cc.ListSkusRequest, context: grpc.ServicerContext):
        state["parents"].append(request.parent)
        if state["deny"]:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "Permission denied on billing")
        if request.parent != "services/6F81-5844-456A":
            context.abort(grpc.StatusCode.NOT_FOUND, f"{request.parent} not found")
        start = int(request.page_token or 0)
        page = SKUS[start : start + 2]
        token = str(start + 2) if start + 2 < len(SKUS) else ""
        return cc.ListSkusResponse(skus=page, next_page_token=token)

    handler = grpc.method_handlers_generic_handler(
        "google.cloud.billing.v1.CloudCatalog",
        {
            "ListSkus": grpc.unary_unary_rpc_method_handler(
                list_skus,
                request_deserializer=cc.ListSkusRequest.deserialize,
                response_serializer=cc.ListSkusResponse.serialize,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", state
    finally:
        server.stop(0)


def test_the_gcp_catalog_becomes_region_pairs_by_area_and_internet_tiers(catalog, tmp_path):
    endpoint, state = catalog
    env = dict(meshfed_env(tmp_path / "home"), MESHFED_GCP_BILLING_ENDPOINT=endpoint)
    run = [MESHFED, "prices", "update", "--from", "gcp", "-o", "json",
           "--monthly-internet-gb", "2000"]  # fmt: skip
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert len(state["parents"]) == 3  # 6 SKUs, 2 a page: the client's pager followed
    spec = PriceTable.model_validate(json.loads(done.stdout)).spec
    assert spec.cloud == "gcp" and "Cloud Billing Catalog" in spec.source
    pairs = {(p.from_region, p.to): p.usd_per_gb for p in spec.region_pairs}
    assert pairs[("europe-west1", "europe-west1")] == pytest.approx(0.01)  # across zones
    assert pairs[("us-central1", "us-central1")] == pytest.approx(0.01)
    assert pairs[("europe-west1", "europe-west4")] == pytest.approx(0.02)  # same area
    assert pairs[("europe-west1", "us-central1")] == pytest.approx(0.05)  # Northern America
    # the dearest internet destination at 2,000 GiB a month: China's second tier
    assert pairs[("europe-west1", "internet")] == pytest.approx(0.22)
    tables = price_tables([PriceTable.model_validate(json.loads(done.stdout))])
    belgium, iowa = Site("gcp", "europe-west1", "europe-west1-b"), Site("gcp", "us-central1", "a")
    assert path_price(belgium, iowa, tables).usd_per_gb == pytest.approx(0.05)
    state["deny"] = True
    denied = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert denied.returncode == 2 and "access denied" in denied.stderr and not denied.stdout
