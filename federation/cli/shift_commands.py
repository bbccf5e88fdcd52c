"""``meshfed shift``: move a service's traffic to a cluster or subset step by step, watching
the mesh's own error rate and p99, and roll back when a step breaks them (issue #21). The
plan and verdicts are :mod:`federation.shift.plan`, the loop :mod:`federation.shift.run`;
this module parses flags and renders."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import click

from federation.cli.params import (
    DURATION,
    InputError,
    admin_token_option,
    controller_option,
    emit,
    output_option,
    print_table,
)
from federation.client import controller_target
from federation.model.workload import DNS_LABEL
from federation.shift.plan import ShiftError
from federation.shift.run import ShiftPlan, ShiftRequest, describe, plan_shift, run_shift

#: Exit code of a shift that was rolled back (1: the controller could not be reached; 2: bad
#: input, nothing changed).
EXIT_ROLLED_BACK = 3


def _say(line: str) -> None:
    click.echo(line, err=True)


@click.command("shift")
@click.argument("service", metavar="SERVICE.NAMESPACE")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="CLUSTER|SUBSET",
    help="Where traffic goes: a member cluster or a subset of the service's TrafficPolicy"
    " (cluster:NAME / subset:NAME when a name is both).",
)
@click.option(
    "--from",
    "from_",
    default=None,
    metavar="CLUSTER|SUBSET",
    help="What keeps the rest of the traffic.  [default: the whole service]",
)
@click.option(
    "--steps",
    default="10,25,50,100",
    show_default=True,
    help="Percentages to the target, increasing.",
)
@click.option(
    "--interval", type=DURATION, default="60s", show_default=True, help="Time each step runs."
)
@click.option(
    "--max-error-rate",
    default="1%",
    show_default=True,
    help="Roll back when more of the service's requests than this fail (5xx or no answer).",
)
@click.option(
    "--max-p99",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="MS",
    help="Roll back when the service's p99 latency exceeds this.  [default: not checked]",
)
@click.option(
    "--min-requests",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Requests a step needs to be judged; a step that ends with fewer rolls back.",
)
@click.option("--max-usd-per-hour", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="USD", help="Roll back when the service's egress costs more than this, or a"
              " step is projected to.  [default: not checked]")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@controller_option
@admin_token_option
@output_option(("table", "json", "yaml"), "table", "Format of the plan or the result.")
def shift_cmd(
    service: str,
    to: str,
    from_: str | None,
    steps: str,
    interval: timedelta,
    max_error_rate: str,
    max_p99: float | None,
    min_requests: int,
    max_usd_per_hour: float | None,
    dry_run: bool,
    controller: str | None,
    token: str | None,
    output: str,
) -> None:
    """Shift SERVICE's traffic to a cluster or subset step by step:

    \b
      meshfed shift echo.demo --to b --steps 10,25,50,100 --interval 60s \\
          --max-error-rate 1%

    Each step rewrites the service's TrafficPolicy with closing http routes named
    meshfed-shift (the target at the step's weight, the rest at the remainder; the target's
    5xx to GET, HEAD, OPTIONS, TRACE, PUT, DELETE retried elsewhere), then judges every
    caller's attempts (retried ones too; p99 with --max-p99; egress $ with --max-usd-per-hour,
    measured or projected) over each interval. A breach, too little traffic, or a target
    cluster answering under half its share rolls the policy back, exit 3 (Ctrl-C too).
    Exit 0: done; 1: the controller could not be reached; 2: bad input, nothing changed;
    3: rolled back.
    """
    name, _, namespace = service.partition(".")
    if not (re.fullmatch(DNS_LABEL, name) and re.fullmatch(DNS_LABEL, namespace)):
        raise InputError(f"SERVICE {service!r}: give <name>.<namespace>, e.g. echo.demo")
    url, tok = controller_target(controller, token)
    request = ShiftRequest(service, to, from_, steps, interval.total_seconds(), max_error_rate,
                           max_p99, min_requests, max_usd_per_hour)  # fmt: skip
    try:
        plan = plan_shift(url, tok, request)
    except ShiftError as err:
        raise InputError(str(err)) from err
    if dry_run:
        emit(plan.to_dict(), output, lambda: _print_plan(plan))
        return
    try:
        outcome = run_shift(url, tok, plan, _say)
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
    result = {**plan.to_dict(), "result": outcome.result, "steps": outcome.steps}
    if outcome.result != "done":
        if output != "table":
            emit({**result, "reason": outcome.reason}, output, lambda: None)
        raise click.exceptions.Exit(EXIT_ROLLED_BACK)
    _say(f"shift complete: {plan.weights[-1]}% of {service} to {describe(plan.target)}")
    emit(result, output, lambda: _print_steps(outcome.steps))


def _print_steps(rows: list[dict[str, Any]]) -> None:
    print_table(
        ["WEIGHT", "REQUESTS", "ERRORS", "P99"],
        [
            [
                f"{r['weight']}%",
                str(r["requests"]),
                f"{r['errorRate']:.2%}",
                f"{r['p99Ms']:.0f} ms" if r["p99Ms"] is not None else "-",
            ]
            for r in rows
        ],
    )


def _print_plan(plan: ShiftPlan) -> None:
    interval = f"{plan.request.interval_s:g} s"
    print_table(
        ["STEP", "TO " + describe(plan.target).upper(), "REST", "FOR"],
        [[str(i), f"{w}%", f"{100 - w}%", interval] for i, w in enumerate(plan.weights, start=1)],
    )
    click.echo(f"rolls back when {plan.limits()}; the last step's policy:")
    from federation.model.documents import to_yaml

    click.echo(to_yaml(json.loads(json.dumps(plan.docs[-1]))), nl=False)
