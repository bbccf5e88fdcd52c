"""The AWS Price List Query API through boto3 (``meshfed prices update --from aws``); the
answer becomes a PriceTable in :func:`providers.price_lists.aws_price_table`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from providers.aws import translate
from providers.errors import ProviderConfigError
from providers.price_lists import AWS_TRANSFER_TYPES, aws_price_table

#: Seconds to connect and to wait for an answer, and attempts per call (botocore's own
#: defaults, 60 s and 60 s, leave a user without a route waiting for minutes).
CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=10, read_timeout=30, retries={"max_attempts": 4, "mode": "standard"}
)
#: The Price List Query API's endpoint regions (it answers only in these).
AWS_PRICING_REGIONS = ("us-east-1", "ap-south-1", "eu-central-1")


def aws_products(client: Any) -> Iterator[dict[str, Any]]:
    """Every ``AWSDataTransfer`` product of :data:`AWS_TRANSFER_TYPES` (parsed price list
    items), through ``client`` (a boto3 ``pricing`` client; its paginator).

    Raises:
        botocore's errors, untranslated (the caller translates them).
    """
    pages = client.get_paginator("get_products")
    for kind in AWS_TRANSFER_TYPES:
        for page in pages.paginate(
            ServiceCode="AWSDataTransfer",
            FormatVersion="aws_v1",
            Filters=[{"Type": "TERM_MATCH", "Field": "transferType", "Value": kind}],
        ):
            for item in page.get("PriceList", []):
                yield json.loads(item) if isinstance(item, str) else item


def fetch_aws_price_table(
    *,
    name: str,
    read_on: str,
    region: str = "us-east-1",
    profile: str | None = None,
    monthly_internet_gb: float = 0.0,
    discount: float = 1.0,
    on_product: Any = None,
) -> dict[str, Any]:
    """:func:`aws_price_table` of the live Price List Query API in ``region`` (one of
    :data:`AWS_PRICING_REGIONS`), with boto3's credential chain (``profile``);
    ``AWS_ENDPOINT_URL_PRICING`` / ``AWS_ENDPOINT_URL`` point it elsewhere. ``on_product``
    (callable, one call per product) reports progress.

    Raises:
        ProviderConfigError: ``region`` has no Price List endpoint.
        AccessDeniedError, ThrottledError, ProviderUnreachableError, ProviderError: as
            :func:`providers.aws.translate` says.
        PricingError: the answer holds no usable rate.
    """
    if region not in AWS_PRICING_REGIONS:
        raise ProviderConfigError(
            f"--region {region}: the AWS Price List API answers only in"
            f" {', '.join(AWS_PRICING_REGIONS)}",
            provider="aws",
        )
    session = boto3.Session(profile_name=profile, region_name=region)
    client = session.client("pricing", config=CLIENT_CONFIG)

    def counted() -> Iterator[dict[str, Any]]:
        for product in aws_products(client):
            if on_product is not None:
                on_product()
            yield product

    try:
        products = list(counted())
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        raise translate(err, "AWS Price List GetProducts") from err
    return aws_price_table(
        products,
        name=name,
        read_on=read_on,
        monthly_internet_gb=monthly_internet_gb,
        discount=discount,
    )
