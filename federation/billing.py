"""``meshfed cost reconcile``: a cloud bill's data-transfer line items against meshfed's own
count of the same bytes, per UTC day and path. Pure apart from reading the export file.

Both sides are reduced to one key, :class:`BillKey`: ``(day, cloud, from region, to)``, where
``from region`` is where the bytes left (the cloud bills egress at the sender) and ``to`` is:

- AWS: the region they went to (the same region: across availability zones), or ``internet``;
- GCP: ``cross-zone``, ``cross-region`` (same continent), ``cross-continent`` or
  ``internet`` -- GCP's SKUs name continents, not regions.

**AWS** (CUR 2.0 in Data Exports, Parquet -- with pyarrow, ``meshfed[billing]`` -- CSV or
gzip CSV, columns as the "Cost and Usage Report
(CUR) 2.0" table dictionary names them: ``line_item_usage_start_date``,
``line_item_usage_type``, ``line_item_usage_amount`` (GB), ``line_item_unblended_cost``
(US$), ``line_item_line_item_type``, ``product_from_region_code``,
``product_to_region_code``): lines whose usage type ends in ``-AWS-Out-Bytes`` (between
regions), ``-DataTransfer-Regional-Bytes`` (across zones) or ``-DataTransfer-Out-Bytes`` (to
the internet). Regions come from the product columns; without them, from the usage type's
region prefix (:data:`AWS_USAGE_REGIONS`). ``-In-Bytes`` lines are free and skipped. Across
zones AWS bills each GB twice (out of one zone and into the other, both
``Regional-Bytes``), so meshfed's cross-zone bytes count twice on this side too.

**GCP** (the Cloud Billing standard usage cost export, as CSV; nested names with ``.`` or
``_``: ``usage_start_time``, ``sku.description``, ``usage.amount``, ``usage.unit``,
``cost``, ``location.region``): SKUs ``Network Inter Zone ...``, ``Network Inter Region ...
from X to Y`` (``cross-region`` when X is Y, else ``cross-continent``), ``Network Internet
... from X to ...``; ``usage.amount`` in bytes (``gibibyte`` is converted).

**meshfed's side** is the traffic ledger (:mod:`federation.traffic_days`): request bytes
leave the caller's region, response bytes the server's; same-zone bytes are free and left
out. Its dollars are each ledger row's own, split between the two directions by their
priced bytes. A serving cluster's gateway hops are ledger rows too (gateway -> sidecar
across zones is billed like any cross-zone bytes); their clusters read ``b gateway -> b``.
A bill also holds traffic meshfed does not carry (other workloads, control
traffic, TLS and TCP overhead -- meshfed counts HTTP bytes), so scope the export to the
mesh's accounts or projects: keys only the bill has are listed (``bill only``) and do not
fail the reconciliation; a key whose bytes differ by more than the tolerance, or that only
meshfed has, does.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.errors import BillingExportError
from federation.lb.paths import BYTES_PER_GB, site
from federation.model.locality import Locality
from federation.traffic_days import DayCounts, LedgerKey, is_hop
from providers.pricing import continent, path_price

#: Region prefixes of AWS usage types (``USE1-EUW2-AWS-Out-Bytes``), for exports without
#: ``product_from_region_code`` / ``product_to_region_code``. ``EU`` is eu-west-1's older
#: prefix; a usage type with no prefix is us-east-1's (AWS's convention).
AWS_USAGE_REGIONS = {
    "USE1": "us-east-1", "USE2": "us-east-2", "USW1": "us-west-1", "USW2": "us-west-2",
    "CAN1": "ca-central-1", "EU": "eu-west-1", "EUW1": "eu-west-1", "EUW2": "eu-west-2",
    "EUW3": "eu-west-3", "EUC1": "eu-central-1", "EUN1": "eu-north-1", "EUS1": "eu-south-1",
    "APN1": "ap-northeast-1", "APN2": "ap-northeast-2", "APN3": "ap-northeast-3",
    "APS1": "ap-southeast-1", "APS2": "ap-southeast-2", "APS3": "ap-south-1",
    "SAE1": "sa-east-1",
}  # fmt: skip
_AWS_REQUIRED = (
    "line_item_usage_start_date",
    "line_item_usage_type",
    "line_item_usage_amount",
    "line_item_unblended_cost",
)
_GCP_REQUIRED = ("usage_start_time", "sku_description", "usage_amount", "cost", "location_region")
_GCP_INTER_REGION = re.compile(r"^Network Inter Region .* from (.+?) to (.+?)$")
_GCP_UNITS = {"byte": 1.0, "bytes": 1.0, "gibibyte": 2.0**30, "gibibytes": 2.0**30}


@dataclass(frozen=True, slots=True, order=True)
class BillKey:
    """A day's bytes from a region to a destination (see the module docstring)."""

    day: str
    cloud: str
    source_region: str
    to: str


@dataclass(slots=True)
class Amount:
    """Bytes and US$ on one key; ``pairs``: the meshfed clusters ``"a -> b"`` counted in it."""

    bytes: float = 0.0
    usd: float = 0.0
    lines: int = 0
    pairs: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Reconciled:
    """One key's two sides. ``status``: ``match``, ``differs``, ``meshfed only``,
    ``bill only``; ``difference``: meshfed's bytes over the bill's minus 1 (None when one
    side is missing)."""

    key: BillKey
    bill: Amount
    mesh: Amount
    status: str
    difference: float | None

    def to_json(self) -> dict[str, Any]:
        """The ``-o json`` row."""
        return {
            "day": self.key.day,
            "cloud": self.key.cloud,
            "from": self.key.source_region,
            "to": self.key.to,
            "clusters": sorted(self.mesh.pairs),
            "billGB": self.bill.bytes / BYTES_PER_GB,
            "billUsd": self.bill.usd,
            "billLines": self.bill.lines,
            "meshfedGB": self.mesh.bytes / BYTES_PER_GB,
            "meshfedUsd": self.mesh.usd,
            "difference": self.difference,
            "status": self.status,
        }


def _parquet_rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a Parquet export (pyarrow, ``pip install 'meshfed[billing]'``), as
    :func:`_rows`; a map column (CUR 2.0's ``product``) becomes JSON."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BillingExportError(
            f"{path}: reading Parquet needs pyarrow: pip install 'meshfed[billing]' (or export CSV)"
        ) from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise BillingExportError(f"{path}: cannot read a Parquet export: {err}") from None
    names = [n.strip().lower().replace(".", "_") for n in table.column_names]
    for row in table.to_pylist():
        out = {}
        for name, cell in zip(names, row.values(), strict=True):
            if isinstance(cell, list) and all(isinstance(v, tuple) for v in cell):
                cell = json.dumps(dict(cell))  # noqa: PLW2901 - a map column as JSON
            out[name] = "" if cell is None else str(cell)
        yield out


def _rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows of ``path``: Parquet (``.parquet``) or CSV (gzip when it ends in ``.gz``),
    column names lowercased with ``.`` as ``_``."""
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        names = {n: n.strip().lower().replace(".", "_") for n in reader.fieldnames or []}
        for row in reader:
            yield {names[k]: (v or "") for k, v in row.items() if k in names}


def _export_rows(
    path: Path, required: Iterable[str], what: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of an export whose first row has the ``required`` columns.

    Raises:
        BillingExportError: a column missing, or the file unreadable as CSV.
    """
    try:
        for line, row in enumerate(_rows(path), start=2):
            if line == 2:
                _need(path, required, row, what)
            yield line, row
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as err:
        raise BillingExportError(f"{path}: cannot read a CSV export: {err}") from None


def _need(path: Path, columns: Iterable[str], row: Mapping[str, str], what: str) -> None:
    missing = [c for c in columns if c not in row]
    if missing:
        raise BillingExportError(
            f"{path}: not a {what}: no column {', '.join(missing)} (see 'meshfed cost"
            " reconcile --help' for the columns read)"
        )


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        return float(text or 0)
    except ValueError:
        raise BillingExportError(f"{path}:{line}: {column}: {text!r} is not a number") from None


def _aws_regions(row: Mapping[str, str], usage_type: str) -> tuple[str, str] | None:
    """``(from, to)`` regions of a data-transfer line; to is ``internet`` for internet out."""
    product = row.get("product", "")
    extra: dict[str, Any] = {}
    if product.startswith("{"):
        try:
            extra = json.loads(product)
        except ValueError:
            extra = {}
    src = row.get("product_from_region_code") or str(extra.get("from_region_code", ""))
    dst = row.get("product_to_region_code") or str(extra.get("to_region_code", ""))
    parts = usage_type.split("-")
    prefix = AWS_USAGE_REGIONS.get(parts[0], "")
    if usage_type.endswith("-AWS-Out-Bytes"):
        src = src or prefix
        dst = dst or (AWS_USAGE_REGIONS.get(parts[1], "") if len(parts) >= 5 else "")
        return (src, dst) if src and dst else None
    region = src or prefix or ("us-east-1" if usage_type.startswith("DataTransfer-") else "")
    if not region:
        return None
    if usage_type.endswith("DataTransfer-Regional-Bytes"):
        return region, region
    if usage_type.endswith("DataTransfer-Out-Bytes"):
        return region, "internet"
    return None


def read_aws_cur(path: Path) -> tuple[dict[BillKey, Amount], int]:
    """The data-transfer lines of a CUR 2.0 export by key, and how many such lines could
    not be placed (unknown region).

    Raises:
        BillingExportError: unreadable, a required column missing, or a number that is not one
            (the message names the file, line and column).
    """
    out: dict[BillKey, Amount] = defaultdict(Amount)
    unplaced = 0
    for line, row in _export_rows(path, _AWS_REQUIRED, "CUR 2.0 export"):
        usage_type = row["line_item_usage_type"]
        kind = row.get("line_item_line_item_type", "Usage")
        if not usage_type.endswith("-Bytes") or "-In-Bytes" in usage_type:
            continue
        if kind not in ("Usage", "DiscountedUsage", ""):
            continue
        regions = _aws_regions(row, usage_type)
        if regions is None or not regions[1]:
            unplaced += 1 if "DataTransfer" in usage_type or "AWS-Out" in usage_type else 0
            continue
        amount = out[BillKey(row["line_item_usage_start_date"][:10], "aws", regions[0], regions[1])]
        gb = _number(path, line, "line_item_usage_amount", row["line_item_usage_amount"])
        amount.bytes += gb * BYTES_PER_GB
        amount.usd += _number(
            path, line, "line_item_unblended_cost", row["line_item_unblended_cost"]
        )
        amount.lines += 1
    return dict(out), unplaced


def _gcp_to(sku: str) -> str | None:
    if sku.startswith("Network Inter Zone"):
        return "cross-zone"
    if sku.startswith("Network Internet"):
        return "internet"
    found = _GCP_INTER_REGION.match(sku)
    if found:
        return "cross-region" if found.group(1) == found.group(2) else "cross-continent"
    return None


def read_gcp_billing(path: Path) -> tuple[dict[BillKey, Amount], int]:
    """The network egress lines of a GCP billing export by key, and how many could not be
    placed (no region, or a unit other than bytes).

    Raises:
        BillingExportError: as :func:`read_aws_cur`.
    """
    out: dict[BillKey, Amount] = defaultdict(Amount)
    unplaced = 0
    for line, row in _export_rows(path, _GCP_REQUIRED, "GCP billing export"):
        to = _gcp_to(row["sku_description"].strip())
        if to is None:
            continue
        unit = _GCP_UNITS.get(row.get("usage_unit", "bytes").strip().lower() or "bytes")
        region = row["location_region"].strip()
        if unit is None or not region:
            unplaced += 1
            continue
        amount = out[BillKey(row["usage_start_time"][:10], "gcp", region, to)]
        amount.bytes += unit * _number(path, line, "usage.amount", row["usage_amount"])
        amount.usd += _number(path, line, "cost", row["cost"])
        amount.lines += 1
    return dict(out), unplaced


def _to(cloud: str, sender: Locality, receiver: Locality) -> str | None:
    """The key's ``to`` for bytes ``sender`` -> ``receiver`` billed by ``cloud``; None when
    free (same zone)."""
    here, there = site(sender), site(receiver)
    if there.cloud != here.cloud:
        return "internet"
    if here.region == there.region:
        if here.zone == there.zone:
            return None
        return there.region if cloud == "aws" else "cross-zone"
    if cloud == "aws":
        return there.region
    same = continent(here) is not None and continent(here) == continent(there)
    return "cross-region" if same else "cross-continent"


def mesh_amounts(
    rows: Iterable[tuple[str, LedgerKey, DayCounts]], cloud: str
) -> dict[BillKey, Amount]:
    """meshfed's ledger rows as keys of ``cloud``'s bill (see the module docstring)."""
    out: dict[BillKey, Amount] = defaultdict(Amount)
    for day, key, counts in rows:
        try:
            caller, server = Locality.parse(key[1]), Locality.parse(key[4])
        except ValueError:
            continue  # no sidecar answered: no known path
        legs = [(caller, server, counts.request_bytes), (server, caller, counts.response_bytes)]
        priced = [n * path_price(site(a), site(b)).usd_per_gb for a, b, n in legs]
        for (sender, receiver, n), weight in zip(legs, priced, strict=True):
            to = _to(cloud, sender, receiver)
            if sender.cloud != cloud or to is None or n <= 0:
                continue
            amount = out[BillKey(day, cloud, site(sender).region, to)]
            twice = cloud == "aws" and to == site(sender).region  # both zones bill it
            amount.bytes += n * (2 if twice else 1)
            amount.usd += counts.egress_usd * (weight / sum(priced) if sum(priced) else 0.0)
            amount.pairs.add(f"{key[0]}{' gateway' if is_hop(key) else ''} -> {key[3]}")
    return dict(out)


def reconcile(
    bill: Mapping[BillKey, Amount], mesh: Mapping[BillKey, Amount], tolerance: float
) -> list[Reconciled]:
    """Every key of either side, by day and key; ``tolerance``: the largest relative
    difference of bytes that still matches (0.01 = 1 %)."""
    out = []
    for key in sorted(set(bill) | set(mesh)):
        b, m = bill.get(key, Amount()), mesh.get(key, Amount())
        if key not in mesh:
            out.append(Reconciled(key, b, m, "bill only", None))
        elif key not in bill or b.bytes <= 0:
            out.append(Reconciled(key, b, m, "meshfed only", None))
        else:
            difference = m.bytes / b.bytes - 1
            status = "match" if abs(difference) <= tolerance else "differs"
            out.append(Reconciled(key, b, m, status, difference))
    return out


#: Statuses that fail ``meshfed cost reconcile`` (exit code 1).
FAILING = frozenset({"differs", "meshfed only"})
#: The table output's columns.
TABLE_COLUMNS = (
    "DAY", "FROM", "TO", "CLUSTERS", "BILL GB", "MESHFED GB", "BILL USD", "MESHFED USD",
    "DIFF", "STATUS",
)  # fmt: skip


def reconcile_export(
    cloud: str, path: Path, ledger: Mapping[str, Any], tolerance: float
) -> tuple[dict[str, Any], list[Reconciled]]:
    """``meshfed cost reconcile``: the export at ``path`` (``cloud`` ``aws`` or ``gcp``)
    against ``ledger`` (``GET /v1/cost/ledger``'s answer); bill lines of days outside the
    ledger's window are left out. Returns the ``-o json`` document and the rows.

    Raises:
        BillingExportError: as :func:`read_aws_cur`.
    """
    from federation.traffic_days import ledger_rows_from_json

    bill, unplaced = (read_aws_cur if cloud == "aws" else read_gcp_billing)(path)
    first, last = ledger["since"], ledger["until"]
    inside = {k: v for k, v in bill.items() if first <= k.day <= last}
    mesh = mesh_amounts(ledger_rows_from_json(ledger["rows"]), cloud)
    rows = reconcile(inside, mesh, tolerance)
    data = {
        "since": first,
        "until": last,
        "cloud": cloud,
        "unplacedBillLines": unplaced,
        "rows": [r.to_json() for r in rows],
    }
    return data, rows


def table_rows(rows: Iterable[Reconciled]) -> list[list[str]]:
    """The table output's rows (:data:`TABLE_COLUMNS`)."""
    from federation.traffic import format_usd

    return [
        [
            r.key.day,
            r.key.source_region,
            r.key.to,
            ", ".join(sorted(r.mesh.pairs)) or "-",
            f"{r.bill.bytes / BYTES_PER_GB:.3f}",
            f"{r.mesh.bytes / BYTES_PER_GB:.3f}",
            format_usd(r.bill.usd),
            format_usd(r.mesh.usd),
            "-" if r.difference is None else f"{r.difference:+.1%}",
            r.status,
        ]
        for r in rows
    ]
