"""AWS provider paths moto cannot serve, with botocore's Stubber (no network): the Price List
API (not implemented by moto) and error translation (throttling, access denied)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from providers.aws import AwsProvider
from providers.errors import AccessDeniedError, ThrottledError


def _client(service: str):
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )


def _product(transfer_type: str, usd: str, begin: str = "0") -> str:
    return json.dumps(
        {
            "product": {"attributes": {"transferType": transfer_type}},
            "terms": {
                "OnDemand": {
                    "t": {
                        "priceDimensions": {
                            "free": {"beginRange": "0", "pricePerUnit": {"USD": "0.0000000000"}},
                            "paid": {"beginRange": begin, "pricePerUnit": {"USD": usd}},
                        }
                    }
                }
            },
        }
    )


def test_prices_come_from_the_price_list_api_when_it_answers() -> None:
    pricing = _client("pricing")
    stub = Stubber(pricing)
    stub.add_response(
        "get_products",
        {
            "PriceList": [
                _product("IntraRegion", "0.0100000000"),
                _product("InterRegion Outbound", "0.0200000000"),
                _product("InterRegion Outbound", "0.0900000000"),
                _product("AWS Outbound", "0.0900000000", begin="1"),
            ],
            "FormatVersion": "aws_v1",
        },
        {
            "ServiceCode": "AWSDataTransfer",
            "Filters": [{"Type": "TERM_MATCH", "Field": "fromRegionCode", "Value": "us-east-1"}],
        },
    )
    with stub:
        source = AwsProvider("us-east-1", client=lambda _s: pricing).egress_prices()
    assert source.origin == "api"
    rates = source.table.usd_per_gb
    assert rates["cross-zone"] == 0.02  # 0.01 out + 0.01 in
    assert (rates["cross-region"], rates["cross-continent"], rates["cross-cloud"]) == (
        0.02,
        0.09,
        0.09,
    )
    assert "Price List API" in source.table.source


def test_prices_fall_back_to_the_shipped_table_and_say_so() -> None:
    pricing = _client("pricing")
    stub = Stubber(pricing)
    stub.add_client_error("get_products", "AccessDeniedException", "not allowed")
    with stub:
        source = AwsProvider("us-east-1", client=lambda _s: pricing).egress_prices()
    assert source.origin.startswith("shipped table (https://aws.amazon.com/ec2/pricing/on-demand/")
    assert "access denied" in source.origin
    assert source.table.usd_per_gb["cross-cloud"] == 0.09


@pytest.mark.parametrize(
    ("code", "error"),
    [("ThrottlingException", ThrottledError), ("AccessDeniedException", AccessDeniedError)],
)
def test_sdk_errors_are_translated(code: str, error: type) -> None:
    eks = _client("eks")
    stub = Stubber(eks)
    stub.add_client_error("describe_cluster", code, "no")
    with stub, pytest.raises(error) as raised:
        AwsProvider("us-east-1", client=lambda _s: eks).describe_cluster("c")
    assert raised.value.provider == "aws"
    assert raised.value.retryable == (error is ThrottledError)
