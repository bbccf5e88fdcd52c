"""``meshfed cost``: what the federation's traffic cost (``report``) and how that compares
with the cloud's bill (``reconcile``)."""

from __future__ import annotations

import csv
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import click

from federation.cli.controller_commands import controller_call
from federation.cli.params import (
    InputError,
    admin_token_option,
    controller_option,
    emit,
    output_option,
    print_table,
)

SINCE_HELP = (
    "A duration back from now (7d, 24h: every UTC day it touches) or a UTC day (YYYY-MM-DD)."
)


@click.group("cost")
def cost() -> None:
    """Egress dollars over days, from the controller's traffic ledger."""


@cost.command("report")
@click.option("--since", default="7d", show_default=True, help=SINCE_HELP)
@controller_option
@admin_token_option
@output_option(("table", "json", "yaml", "csv"))
def report_cmd(since: str, controller: str | None, token: str | None, output: str) -> None:
    """Bytes and egress dollars per service and path since --since, and what round robin
    and locality failover would have spent on the same traffic (at today's prices; see
    docs/policy.md, "Cost report")."""
    from federation.cost_report import CSV_COLUMNS, csv_rows, path_table, summary_lines

    query = urllib.parse.urlencode({"since": since})
    data = controller_call(controller, token, "GET", f"/v1/cost/report?{query}")
    if output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerows([CSV_COLUMNS, *csv_rows(data)])
        return

    emit(data, output, lambda: _lines_then_table(summary_lines(data), *path_table(data)))


def _lines_then_table(lines: list[str], head: Sequence[str], rows: list[list[str]]) -> None:
    click.echo("\n".join(lines))
    if rows:
        print_table(head, rows)


@cost.command("reconcile")
@click.option("--aws-cur", "aws_cur", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An AWS CUR 2.0 export: .parquet, .csv or .csv.gz.")  # fmt: skip
@click.option("--gcp-billing", "gcp_billing", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A GCP Cloud Billing standard usage cost export, as CSV.")  # fmt: skip
@click.option("--since", default="7d", show_default=True, help=SINCE_HELP)
@click.option("--tolerance", type=click.FloatRange(0, 100), default=1.0, show_default=True,
              help="Percent by which meshfed's bytes may differ from the bill's.")  # fmt: skip
@controller_option
@admin_token_option
@output_option(("table", "json", "yaml"))
def reconcile_cmd(
    aws_cur: Path | None, gcp_billing: Path | None, since: str, tolerance: float,
    controller: str | None, token: str | None, output: str,
) -> None:  # fmt: skip
    """Match the data-transfer lines of a billing export with meshfed's own count of the
    same bytes, per UTC day, source region and destination, naming the cluster pairs in
    each. Exit code 1 when a day and path differ by more than --tolerance or only meshfed
    counted it; bill lines of days outside --since are left out (docs/policy.md,
    "Reconciling with the bill", lists the columns read)."""
    from federation.billing import FAILING, TABLE_COLUMNS, reconcile_export, table_rows

    if (aws_cur is None) == (gcp_billing is None):
        raise InputError("give one of --aws-cur FILE or --gcp-billing FILE")
    cloud, path = ("aws", aws_cur) if aws_cur else ("gcp", gcp_billing)
    query = urllib.parse.urlencode({"since": since})
    ledger = controller_call(controller, token, "GET", f"/v1/cost/ledger?{query}")
    data, rows = reconcile_export(cloud, Path(str(path)), ledger, tolerance / 100)
    lead = f"{cloud} data transfer from {data['since']} to {data['until']} (UTC days)"
    unplaced = data["unplacedBillLines"]
    lead += f"; {unplaced} bill lines with no region left out" if unplaced else ""
    emit(data, output, lambda: _lines_then_table([lead], TABLE_COLUMNS, table_rows(rows)))
    if any(r.status in FAILING for r in rows):
        raise SystemExit(1)


@click.group("prices")
def prices() -> None:
    """Price tables from the clouds' own price lists."""


@prices.command("update")
@click.option("--from", "cloud", type=click.Choice(["aws", "gcp"]), required=True,
              help="aws: the Price List Query API; gcp: the Cloud Billing Catalog.")  # fmt: skip
@click.option("--name", default=None, help="The PriceTable's name.  [default: CLOUD-price-list]")
@click.option("--region", default="us-east-1", show_default=True,
              help="aws: the Price List API's (us-east-1, ap-south-1, eu-central-1).")  # fmt: skip
@click.option("--profile", default=None, help="AWS CLI profile.  [default: boto3's chain]")
@click.option("--discount", type=click.FloatRange(0, 10, min_open=True), default=1.0,
              show_default=True, help="Multiplies every rate (0.8: a 20 % discount).")  # fmt: skip
@click.option("--monthly-internet-gb", type=click.FloatRange(min=0), default=0.0,
              show_default=True, help="Internet rates at this tier (GB/month).")  # fmt: skip
@output_option(("yaml", "json"), default="yaml")
def prices_update_cmd(
    cloud: str, name: str | None, region: str, profile: str | None, discount: float,
    monthly_internet_gb: float, output: str,
) -> None:  # fmt: skip
    """Read a cloud's data-transfer prices (per region pair, internet tiers) into a PriceTable
    document with its source and date; apply it with 'meshfed apply -f FILE' (docs/policy.md,
    "PriceTable")."""
    import datetime as dt

    from providers.price_lists import fetch_price_table

    read = [0]

    def progress() -> None:
        read[0] += 1
        if read[0] % 500 == 0:
            click.echo(f"read {read[0]} products", err=True)

    doc = fetch_price_table(
        cloud, name=name or f"{cloud}-price-list", region=region, profile=profile,
        read_on=dt.datetime.now(dt.UTC).date().isoformat(), discount=discount,
        monthly_internet_gb=monthly_internet_gb, on_product=progress,
    )  # fmt: skip
    click.echo(f"{read[0]} products, {len(doc['spec']['regionPairs'])} region pairs", err=True)
    emit(doc, output, lambda: None)
