"""The Cloud Billing Catalog API through google-cloud-billing (``meshfed prices update --from
gcp``): Compute Engine's SKUs (``ListSkus``), which :func:`providers.price_lists.gcp_price_table`
turns into a PriceTable.

Credentials come from Application Default Credentials. ``$MESHFED_GCP_BILLING_ENDPOINT``
(``host:port``) points the real ``CloudCatalogClient`` at another
``google.cloud.billing.v1.CloudCatalog`` over plain gRPC -- a test server -- with anonymous
credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import billing_v1
from google.cloud.billing_v1.services.cloud_catalog.transports import CloudCatalogGrpcTransport

from providers.gcp import translate
from providers.price_lists import GCP_COMPUTE_SERVICE, gcp_price_table

ENDPOINT_ENV = "MESHFED_GCP_BILLING_ENDPOINT"


def sku_dict(sku: Any) -> dict[str, Any]:
    """A catalog ``Sku`` as :func:`gcp_price_table` reads it (its latest pricing info)."""
    info = sku.pricing_info[-1] if sku.pricing_info else None
    expression = info.pricing_expression if info is not None else None
    return {
        "description": sku.description,
        "resourceGroup": sku.category.resource_group,
        "serviceRegions": list(sku.service_regions),
        "usageUnit": expression.usage_unit if expression is not None else "",
        "tiers": [
            (float(t.start_usage_amount), t.unit_price.units + t.unit_price.nanos / 1e9)
            for t in (expression.tiered_rates if expression is not None else [])
        ],
    }


def catalog_skus(client: Any) -> Iterator[dict[str, Any]]:
    """Every SKU of Compute Engine in US dollars (the client's pager follows the pages)."""
    request = billing_v1.ListSkusRequest(parent=GCP_COMPUTE_SERVICE, currency_code="USD")
    for sku in client.list_skus(request=request):
        yield sku_dict(sku)


def fetch_gcp_price_table(
    *,
    name: str,
    read_on: str,
    monthly_internet_gb: float = 0.0,
    discount: float = 1.0,
    on_product: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """:func:`gcp_price_table` of the live catalog (or of ``$MESHFED_GCP_BILLING_ENDPOINT``);
    ``on_product`` is called once per SKU read (progress).

    Raises:
        AccessDeniedError, ThrottledError, ProviderUnreachableError, ProviderError: as
            :func:`providers.gcp.translate` says.
        PricingError: the answer holds no usable rate.
    """
    endpoint = os.environ.get(ENDPOINT_ENV)
    channel = grpc.insecure_channel(endpoint) if endpoint else None
    try:
        if channel is not None:
            transport = CloudCatalogGrpcTransport(
                channel=channel,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            )
            client = billing_v1.CloudCatalogClient(transport=transport)
        else:
            client = billing_v1.CloudCatalogClient()
        skus = []
        for sku in catalog_skus(client):
            skus.append(sku)
            if on_product is not None:
                on_product()
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as err:
        raise translate(err, "Cloud Billing Catalog ListSkus") from err
    finally:
        if channel is not None:
            channel.close()
    return gcp_price_table(
        skus,
        name=name,
        read_on=read_on,
        monthly_internet_gb=monthly_internet_gb,
        discount=discount,
    )
