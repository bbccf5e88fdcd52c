"""Price lists from the clouds' own price APIs, as a ``PriceTable`` document
(``meshfed prices update --from aws|gcp``).

**AWS**: the Price List Query API (``pricing:GetProducts``, boto3 ``pricing`` client,
service code ``AWSDataTransfer``; https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/price-changes.html),
products of ``transferType``

- ``InterRegion Outbound``: the rate of region pair ``fromRegionCode`` -> ``toRegionCode``;
- ``IntraRegion``: across availability zones of one region, billed out of one zone and into
  the other, so the pair ``(region, region)`` is twice the product's rate (as
  ``providers/pricing/aws.yaml``'s ``cross_zone``);
- ``AWS Outbound`` with ``toLocation`` ``External``: to the internet, in volume tiers
  (``beginRange``/``endRange`` GB a month); the pair ``(region, internet)`` takes the tier
  that ``monthly_internet_gb`` falls in (0: the first).

Each product's ``OnDemand`` price dimensions in USD per GB. The path-class rates (for pairs
the list does not name) are the most common rate of each kind: across zones, between regions
on one continent, between continents (continents from ``providers/pricing/regions.yaml``),
to the internet.

Pure: the products come from :mod:`providers.aws_prices` (boto3 stays behind the
``providers/aws*`` modules).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from providers.errors import PricingError
from providers.pricing import Site, continent

#: The ``transferType`` values read, and what each becomes.
AWS_TRANSFER_TYPES = ("InterRegion Outbound", "IntraRegion", "AWS Outbound")


def _dimensions(product: Mapping[str, Any], where: str) -> list[tuple[float, float | None, float]]:
    """``(begin GB, end GB or None, USD/GB)`` of a product's on-demand price, by begin."""
    out = []
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            unit = str(dim.get("unit", ""))
            if unit.upper() not in ("GB", "GB-MO") and unit:
                raise PricingError(f"{where}: unit {unit!r}, not GB")
            try:
                usd = float(dim["pricePerUnit"]["USD"])
                begin = float(dim.get("beginRange", 0) or 0)
                end_text = str(dim.get("endRange", "Inf"))
                end = None if end_text in ("Inf", "") else float(end_text)
            except (KeyError, TypeError, ValueError) as err:
                raise PricingError(f"{where}: price dimension without a USD rate: {err}") from err
            out.append((begin, end, usd))
    return sorted(out)


def _tier_rate(dims: list[tuple[float, float | None, float]], volume_gb: float) -> float:
    for begin, end, usd in dims:
        if begin <= volume_gb and (end is None or volume_gb < end):
            return usd
    return dims[-1][2]


def _most_common(values: Iterable[float]) -> float | None:
    counted = Counter(round(v, 6) for v in values)
    return counted.most_common(1)[0][0] if counted else None


def path_class_rates(cloud: str, pairs: Mapping[tuple[str, str], float]) -> dict[str, float]:
    """The path-class rates of a table from its region pairs: the most common rate of each
    kind (kinds with no pair are left out)."""
    kinds: dict[str, list[float]] = {"cross-zone": [], "cross-region": [],
                                     "cross-continent": [], "cross-cloud": []}  # fmt: skip
    for (src, dst), rate in pairs.items():
        if dst == "internet":
            kinds["cross-cloud"].append(rate)
        elif src == dst:
            kinds["cross-zone"].append(rate)
        else:
            a, b = continent(Site(cloud, src)), continent(Site(cloud, dst))
            kinds["cross-region" if a is not None and a == b else "cross-continent"].append(rate)
    out = {"same-zone": 0.0}
    for kind, rates in kinds.items():
        common = _most_common(rates)
        if common is not None:
            out[kind] = common
    return out


def aws_price_table(
    products: Iterable[Mapping[str, Any]],
    *,
    name: str,
    read_on: str,
    monthly_internet_gb: float = 0.0,
    discount: float = 1.0,
) -> dict[str, Any]:
    """A ``PriceTable`` document (as a dict) from AWS price list products (see the module
    docstring).

    Raises:
        PricingError: a product without a USD rate per GB, or no data transfer product at
            all (the message says which).
    """
    pairs: dict[tuple[str, str], float] = {}
    tiers: dict[tuple[str, str], list[dict[str, float | None]]] = {}
    for product in products:
        attrs = product.get("product", {}).get("attributes", {})
        kind, src = attrs.get("transferType"), attrs.get("fromRegionCode", "")
        where = f"AWSDataTransfer SKU {product.get('product', {}).get('sku', '?')}"
        if kind not in AWS_TRANSFER_TYPES or not src:
            continue
        dims = _dimensions(product, where)
        if not dims:
            continue
        if kind == "IntraRegion":
            pairs[(src, src)] = 2 * dims[0][2]
        elif kind == "InterRegion Outbound" and attrs.get("toRegionCode"):
            pairs[(src, attrs["toRegionCode"])] = dims[0][2]
        elif kind == "AWS Outbound" and attrs.get("toLocation") == "External":
            pairs[(src, "internet")] = _tier_rate(dims, monthly_internet_gb)
            tiers[(src, "internet")] = [{"upToGB": end, "usdPerGB": usd} for _, end, usd in dims]
    if not pairs:
        raise PricingError("the AWS price list answered no data transfer product (AWSDataTransfer)")
    source = "AWS Price List Query API, service AWSDataTransfer (on-demand, USD/GB)"
    return _document("aws", name, pairs, tiers, read_on, discount, source)


def _document(
    cloud: str,
    name: str,
    pairs: Mapping[tuple[str, str], float],
    tiers: Mapping[tuple[str, str], list[dict[str, float | None]]],
    read_on: str,
    discount: float,
    source: str,
) -> dict[str, Any]:
    region_pairs = []
    for (src, dst), rate in sorted(pairs.items()):
        entry: dict[str, Any] = {"from": src, "to": dst, "usdPerGB": rate}
        if len(tiers.get((src, dst), [])) > 1:
            entry["tiers"] = [
                {k: v for k, v in t.items() if v is not None} for t in tiers[(src, dst)]
            ]
        region_pairs.append(entry)
    return {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "PriceTable",
        "metadata": {"name": name},
        "spec": {
            "cloud": cloud,
            "source": source,
            "readOn": read_on,
            "discount": discount,
            "usdPerGB": path_class_rates(cloud, pairs),
            "regionPairs": region_pairs,
        },
    }


#: GCP's network SKUs name areas (``from Northern America to Europe``); each area's
#: continents as ``providers/pricing/regions.yaml`` spells them (the older SKU names too).
GCP_AREAS: dict[str, tuple[str, ...]] = {
    "northern america": ("north-america",),
    "north america": ("north-america",),
    "latin america": ("south-america",),
    "south america": ("south-america",),
    "americas": ("north-america", "south-america"),
    "europe": ("europe",),
    "emea": ("europe", "middle-east", "africa"),
    "middle east": ("middle-east",),
    "africa": ("africa",),
    "asia": ("asia",),
    "asia pacific": ("asia", "oceania"),
    "apac": ("asia", "oceania"),
    "oceania": ("oceania",),
    "australia": ("oceania",),
}
#: Compute Engine's service in the Cloud Billing Catalog (its network egress SKUs).
GCP_COMPUTE_SERVICE = "services/6F81-5844-456A"
_FROM_TO = re.compile(r" from (.+?) to (.+?)$")


def gcp_price_table(
    skus: Iterable[Mapping[str, Any]],
    *,
    name: str,
    read_on: str,
    monthly_internet_gb: float = 0.0,
    discount: float = 1.0,
) -> dict[str, Any]:
    """A ``PriceTable`` document (as a dict) from Cloud Billing Catalog SKUs of Compute
    Engine, each ``{"description", "resourceGroup", "serviceRegions", "usageUnit",
    "tiers": [(start GiB, USD per GiB), ...]}``:

    - ``InterzoneEgress``: the pair ``(region, region)`` of each service region;
    - ``InterregionEgress`` ``... from A to B``: the pairs from each service region to every
      GCP region meshfed knows in area B (:data:`GCP_AREAS`; the same region left out);
    - ``PremiumInternetEgress``: ``(region, internet)`` at the tier of
      ``monthly_internet_gb`` (the dearest destination area when several SKUs name one
      source: meshfed cannot tell where on the internet another cloud is).

    Rates are per GiB, as Google bills (``usageUnit`` ``GiBy``).

    Raises:
        PricingError: a SKU in another unit, or no network SKU at all.
    """
    from providers.pricing import regions

    known = {r: info.continent for (cloud, r), info in regions().items() if cloud == "gcp"}
    pairs: dict[tuple[str, str], float] = {}
    tiers: dict[tuple[str, str], list[dict[str, float | None]]] = {}
    for sku in skus:
        group, text = sku.get("resourceGroup", ""), str(sku.get("description", ""))
        rates = sorted(sku.get("tiers", []))
        if group not in ("InterzoneEgress", "InterregionEgress", "PremiumInternetEgress"):
            continue
        if not rates:
            continue
        if sku.get("usageUnit", "GiBy") != "GiBy":
            raise PricingError(f"GCP SKU {text!r}: unit {sku.get('usageUnit')!r}, not GiBy")
        ladder = [(begin, rates[i + 1][0] if i + 1 < len(rates) else None, usd)
                  for i, (begin, usd) in enumerate(rates)]  # fmt: skip
        for src in sku.get("serviceRegions", []):
            if group == "InterzoneEgress":
                pairs[(src, src)] = ladder[0][2]
            elif group == "PremiumInternetEgress":
                rate = _tier_rate(ladder, monthly_internet_gb)
                if rate >= pairs.get((src, "internet"), -1.0):
                    pairs[(src, "internet")] = rate
                    tiers[(src, "internet")] = [{"upToGB": e, "usdPerGB": u} for _, e, u in ladder]
            elif (found := _FROM_TO.search(text)) is not None:
                areas = GCP_AREAS.get(found.group(2).strip().lower(), ())
                for dst, where in known.items():
                    if where in areas and dst != src:
                        pairs[(src, dst)] = ladder[0][2]
    if not pairs:
        raise PricingError(
            f"the GCP catalog answered no network egress SKU ({GCP_COMPUTE_SERVICE})"
        )
    source = f"Cloud Billing Catalog API, {GCP_COMPUTE_SERVICE} (Compute Engine), USD/GiB"
    return _document("gcp", name, pairs, tiers, read_on, discount, source)


def fetch_price_table(
    cloud: str,
    *,
    name: str,
    read_on: str,
    region: str = "us-east-1",
    profile: str | None = None,
    monthly_internet_gb: float = 0.0,
    discount: float = 1.0,
    on_product: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """``cloud``'s (``aws`` or ``gcp``) live price list as a PriceTable document:
    :func:`providers.aws_prices.fetch_aws_price_table` (``region``, ``profile``) or
    :func:`providers.gcp_prices.fetch_gcp_price_table`.

    Raises:
        ProviderConfigError: another cloud; and what those raise.
    """
    if cloud == "aws":
        from providers.aws_prices import fetch_aws_price_table

        return fetch_aws_price_table(
            name=name, read_on=read_on, region=region, profile=profile,
            monthly_internet_gb=monthly_internet_gb, discount=discount, on_product=on_product,
        )  # fmt: skip
    if cloud == "gcp":
        from providers.gcp_prices import fetch_gcp_price_table

        return fetch_gcp_price_table(
            name=name, read_on=read_on, monthly_internet_gb=monthly_internet_gb,
            discount=discount, on_product=on_product,
        )  # fmt: skip
    from providers.errors import ProviderConfigError

    raise ProviderConfigError(f"no price list API for cloud {cloud!r} (aws, gcp)", provider=cloud)
