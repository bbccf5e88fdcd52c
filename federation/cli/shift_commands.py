"""``meshfed shift``: move a service's traffic to a cluster or subset step by step, watching
the mesh's own error rate and p99, and roll back when a step breaks them (issue #21). The
plan and verdicts are :mod:`federation.shift`; this module is the loop and its I/O."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import click
import yaml

from federation.cli.params import (
    DURATION,
    InputError,
    admin_token_option,
    controller_option,
    emit,
    output_option,
    print_table,
)
from federation.client import call, controller_target
from federation.model.workload import DNS_LABEL
from federation.shift import (
    ShiftError,
    StepStats,
    destination,
    parse_rate,
    parse_steps,
    stats_of,
    step_over,
    step_policy,
    verdict,
)

#: Exit code of a shift that was rolled back (1: the controller could not be reached; 2: bad
#: input, nothing changed).
EXIT_ROLLED_BACK = 3
#: How often a step is judged while it runs (s; or the interval, if shorter). The numbers
#: themselves lag more: sidecars report to their control plane and control planes to the
#: controller every 2 s each (``federation.agent.tap``, ``controlplane.link.session``), so a
#: target that starts failing is seen 2-5 s later.
CHECK_EVERY_S = 1.0


def _describe(d: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "the whole service"


def _stats_line(stats: StepStats) -> str:
    p99 = f"{stats.p99_ms:.0f} ms" if stats.p99_ms is not None else "-"
    return f"{stats.requests} requests, errors {stats.error_rate:.2%}, p99 {p99}"


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
    dry_run: bool,
    controller: str | None,
    token: str | None,
    output: str,
) -> None:
    """Shift SERVICE's traffic to a cluster or subset step by step:

    \b
      meshfed shift echo.demo --to b --steps 10,25,50,100 --interval 60s \\
          --max-error-rate 1%

    Each step rewrites the service's TrafficPolicy with a closing http route named
    meshfed-shift (the target at the step's weight, the rest at the remainder), then watches
    every caller's requests to the service in the mesh's telemetry for the step's interval.
    When the error rate (or p99, with --max-p99) goes over its limit, or a step ends with
    too little traffic to judge, the policy is put back as it was before the shift and the
    command exits 3, saying why (Ctrl-C rolls back too). After the last step the policy
    stays. Exit 0: done; 1: the controller could not be reached; 2: bad input, nothing
    changed; 3: rolled back.
    """
    name, _, namespace = service.partition(".")
    if not (re.fullmatch(DNS_LABEL, name) and re.fullmatch(DNS_LABEL, namespace)):
        raise InputError(f"SERVICE {service!r}: give <name>.<namespace>, e.g. echo.demo")
    host = f"{name}.{namespace}.svc.clusterset.local"
    url, tok = controller_target(controller, token)
    try:
        plan_steps = parse_steps(steps)
        limit = parse_rate(max_error_rate)
        policies = call("GET", url, "/v1/policies", token=tok)["policies"]
        base = next(
            (
                p
                for p in policies
                if p.get("kind") == "TrafficPolicy" and p["spec"].get("host") == host
            ),
            None,
        )
        members = [c["name"] for c in call("GET", url, "/v1/clusters", token=tok)["clusters"]]
        subsets = [s["name"] for s in ((base or {}).get("spec") or {}).get("subsets") or []]
        target = destination(to, members, subsets, "--to")
        rest = destination(from_, members, subsets, "--from") if from_ else {}
        start = base or {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "TrafficPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"host": host},
        }
        docs = [step_policy(start, target, rest, w) for w in plan_steps]
    except ShiftError as err:
        raise InputError(str(err)) from err
    plan = {
        "service": service,
        "target": target,
        "rest": rest,
        "intervalS": interval.total_seconds(),
        "maxErrorRate": limit,
        "maxP99Ms": max_p99,
        "steps": [{"weight": w, "policy": d} for w, d in zip(plan_steps, docs, strict=True)],
    }
    if dry_run:
        emit(plan, output, lambda: _print_plan(plan, docs[-1]))
        return

    def rollback(reason: str) -> None:
        click.echo(f"rolling back: {reason}", err=True)
        if base is not None:
            call("POST", url, "/v1/apply", token=tok, body=yaml.safe_dump(base))
        else:
            call("POST", url, "/v1/delete", token=tok, body=yaml.safe_dump(docs[0]))
        click.echo(
            f"rolled back: {service}'s TrafficPolicy is as it was before the shift", err=True
        )

    results: list[dict[str, Any]] = []
    seconds = interval.total_seconds()
    try:
        for i, (weight, doc) in enumerate(zip(plan_steps, docs, strict=True), start=1):
            call("POST", url, "/v1/apply", token=tok, body=yaml.safe_dump(doc))
            click.echo(
                f"step {i}/{len(docs)}: {weight}% to {_describe(target)} for {seconds:g} s",
                err=True,
            )
            stats, reason = _watch(url, tok, service, seconds, limit, max_p99, min_requests)
            if reason is not None:
                rollback(f"step {i} ({weight}%): {reason}")
                if output != "table":
                    emit(
                        {**plan, "result": "rolled back", "reason": reason,
                         "steps": [*results, _row(weight, stats)]},
                        output,
                        lambda: None,
                    )  # fmt: skip
                raise click.exceptions.Exit(EXIT_ROLLED_BACK)
            results.append(_row(weight, stats))
    except KeyboardInterrupt:
        rollback("interrupted")
        raise click.exceptions.Exit(130) from None
    click.echo(f"shift complete: {plan_steps[-1]}% of {service} to {_describe(target)}", err=True)
    emit(
        {**plan, "result": "done", "steps": results},
        output,
        lambda: print_table(
            ["WEIGHT", "REQUESTS", "ERRORS", "P99"],
            [
                [
                    f"{r['weight']}%",
                    str(r["requests"]),
                    f"{r['errorRate']:.2%}",
                    f"{r['p99Ms']:.0f} ms" if r["p99Ms"] is not None else "-",
                ]
                for r in results
            ],
        ),
    )


def _row(weight: int, stats: StepStats) -> dict[str, Any]:
    return {
        "weight": weight,
        "requests": stats.requests,
        "errorRate": stats.error_rate,
        "p99Ms": stats.p99_ms,
    }


def _watch(
    url: str,
    tok: str | None,
    service: str,
    seconds: float,
    limit: float,
    max_p99: float | None,
    min_requests: int,
) -> tuple[StepStats, str | None]:
    """Judge one step every :data:`CHECK_EVERY_S` until it is over
    (:func:`federation.shift.step_over`); the last stats and the reason to roll back (None:
    the step passed)."""
    began = time.monotonic()
    while True:
        time.sleep(min(CHECK_EVERY_S, seconds))
        elapsed = time.monotonic() - began
        window = max(1.0, min(300.0, elapsed))
        query = urlencode({"window": f"{window:.0f}", "by": "destination_service"})
        rows = call("GET", url, f"/v1/traffic?{query}", token=tok)["edges"]
        stats = stats_of(rows, service)
        click.echo(f"  {elapsed:5.0f} s  {_stats_line(stats)}", err=True)
        final = step_over(elapsed, seconds, stats, min_requests)
        reason = verdict(stats, limit, max_p99, min_requests, final=final)
        if reason is not None or final:
            return stats, reason


def _print_plan(plan: dict[str, Any], last: dict[str, Any]) -> None:
    interval = f"{plan['intervalS']:g} s"
    print_table(
        ["STEP", "TO " + _describe(plan["target"]).upper(), "REST", "FOR"],
        [
            [str(i), f"{s['weight']}%", f"{100 - s['weight']}%", interval]
            for i, s in enumerate(plan["steps"], start=1)
        ],
    )
    click.echo(
        f"rolls back when the error rate exceeds {plan['maxErrorRate']:.2%}"
        + (f" or p99 exceeds {plan['maxP99Ms']:g} ms" if plan["maxP99Ms"] else "")
        + "; the last step's policy:"
    )
    click.echo(yaml.safe_dump(json.loads(json.dumps(last)), sort_keys=False), nl=False)
