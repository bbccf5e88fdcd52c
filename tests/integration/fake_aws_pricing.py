"""A local AWS Price List Query API (``AWSPriceListService.GetProducts``, AWS JSON 1.1 over
HTTP on loopback) that boto3's real ``pricing`` client talks to through
``AWS_ENDPOINT_URL_PRICING``. moto has no Price List service.

It answers GetProducts with price list items in the documented shape (one JSON string per
product: ``product`` with ``sku``, ``productFamily`` and ``attributes``, ``terms.OnDemand``
price dimensions keyed by ``<sku>.<term code>``, with ``unit``, ``beginRange``,
``endRange`` and ``pricePerUnit.USD``), the
items written here from AWS's public data-transfer prices of 2026-11 rather than recorded
from a live answer. It pages (``NextToken``, two items a page) and applies ``TERM_MATCH``
filters on product attributes.

Not modelled: request signing (any credentials pass), ``MaxResults``, filter types other
than ``TERM_MATCH``, other services, ``GetAttributeValues`` / ``DescribeServices``, the
bulk offer files. ``deny=True`` answers every call ``AccessDeniedException`` (HTTP 400), as
the API does without ``pricing:GetProducts``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PAGE = 2


def product(sku: str, attributes: dict[str, str], tiers: list[tuple[str, str, str]]) -> str:
    """One price list item: ``tiers`` of ``(beginRange, endRange, USD per GB)``."""
    dims = {
        f"{sku}.JRTCKXETXF.{i}": {
            "unit": "GB",
            "beginRange": begin,
            "endRange": end,
            "pricePerUnit": {"USD": usd},
            "description": f"${usd} per GB",
        }
        for i, (begin, end, usd) in enumerate(tiers)
    }
    return json.dumps(
        {
            "product": {
                "productFamily": "Data Transfer",
                "sku": sku,
                "attributes": {"servicecode": "AWSDataTransfer", **attributes},
            },
            "serviceCode": "AWSDataTransfer",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "offerTermCode": "JRTCKXETXF",
                        "sku": sku,
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "priceDimensions": dims,
                        "termAttributes": {},
                    }
                }
            },
            "version": "20261120000000",
            "publicationDate": "2026-11-20T00:00:00Z",
        }
    )


def _between(sku: str, src: str, dst: str, usage: str, usd: str) -> str:
    return product(
        sku,
        {"transferType": "InterRegion Outbound", "fromRegionCode": src, "toRegionCode": dst,
         "usagetype": usage},
        [("0", "Inf", usd)],
    )  # fmt: skip


PRODUCTS = [
    _between("XR1", "us-east-1", "eu-west-1", "USE1-EU-AWS-Out-Bytes", "0.0200000000"),
    _between("XR2", "eu-west-1", "us-east-1", "EU-USE1-AWS-Out-Bytes", "0.0200000000"),
    _between("XR3", "us-east-1", "us-west-2", "USE1-USW2-AWS-Out-Bytes", "0.0200000000"),
    _between("XR4", "ap-northeast-1", "us-east-1", "APN1-USE1-AWS-Out-Bytes", "0.0900000000"),
    _between("XR5", "us-east-1", "eu-central-1", "USE1-EUC1-AWS-Out-Bytes", "0.0150000000"),
    product(
        "AZ1",
        {"transferType": "IntraRegion", "fromRegionCode": "us-east-1",
         "toRegionCode": "us-east-1", "usagetype": "USE1-DataTransfer-Regional-Bytes"},
        [("0", "Inf", "0.0100000000")],
    ),
    product(
        "AZ2",
        {"transferType": "IntraRegion", "fromRegionCode": "eu-west-1",
         "toRegionCode": "eu-west-1", "usagetype": "EU-DataTransfer-Regional-Bytes"},
        [("0", "Inf", "0.0100000000")],
    ),
    product(
        "NET1",
        {"transferType": "AWS Outbound", "fromRegionCode": "us-east-1",
         "toLocation": "External", "usagetype": "USE1-DataTransfer-Out-Bytes"},
        [("0", "10240", "0.0900000000"), ("10240", "51200", "0.0850000000"),
         ("51200", "153600", "0.0700000000"), ("153600", "Inf", "0.0500000000")],
    ),
    product(
        "IN1",
        {"transferType": "AWS Inbound", "fromLocation": "External", "toRegionCode": "us-east-1"},
        [("0", "Inf", "0.0000000000")],
    ),
]  # fmt: skip


class FakePricing:
    """The server; ``url`` once started, ``calls`` the GetProducts bodies received."""

    def __init__(self, *, deny: bool = False) -> None:
        self.deny = deny
        self.calls: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                target = self.headers.get("X-Amz-Target", "")
                status, answer = fake.answer(target, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def answer(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for one call."""
        if self.deny:
            return 400, {"__type": "AccessDeniedException", "Message": "User is not authorized"
                         " to perform: pricing:GetProducts"}  # fmt: skip
        if target != "AWSPriceListService.GetProducts":
            return 400, {"__type": "UnknownOperationException", "Message": target}
        self.calls.append(body)
        items = [p for p in PRODUCTS if self._matches(json.loads(p), body)]
        start = int(body.get("NextToken") or 0)
        page = items[start : start + PAGE]
        answer: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": page}
        if start + PAGE < len(items):
            answer["NextToken"] = str(start + PAGE)
        return 200, answer

    @staticmethod
    def _matches(item: dict[str, Any], body: dict[str, Any]) -> bool:
        if body.get("ServiceCode") != item["serviceCode"]:
            return False
        attrs = item["product"]["attributes"]
        return all(
            f.get("Type") == "TERM_MATCH" and attrs.get(f["Field"]) == f["Value"]
            for f in body.get("Filters", [])
        )

    def __enter__(self) -> FakePricing:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
