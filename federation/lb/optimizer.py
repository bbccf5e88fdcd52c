"""The federation-wide split of one service's demand: a linear program over measured demand,
declared capacity, price and RTT (cost mode ``optimize``). Pure; the solver is HiGHS through
its own Python binding, ``highspy`` (https://ergo-code.github.io/HiGHS/, the solver SciPy's
``linprog(method="highs")`` wraps, without SciPy's 85 MB in the image).

Inputs (a :class:`Problem`): one :class:`Caller` per caller locality that sends the service
requests (its demand in requests/s and mean bytes per request, measured by the sidecars), one
:class:`Server` per serving ``(cluster, locality)`` with healthy endpoints (its capacity in
requests/s as its workloads declare it, None when undeclared: unbounded), and a :class:`Link`
per (caller, server): egress US$ of one request on that path, RTT (ms), failover rank, and
whether the policy's ``latencyBudgetMs`` / ``maxCostPerGB`` exclude the path.

The program, in requests/s ``x[i, j, t]`` from caller ``i`` to server ``j`` in tier ``t``::

    minimise   sum  x[i,j,t] * cost[i,j,t]
    subject to sum_{j,t} x[i,j,t] = demand[i]                     (every request is served)
               sum_i x[i,j,0] <= headroom[j] * capacity[j]        (tier 0: within headroom)
               sum_i x[i,j,1] <= (1 - headroom[j]) * capacity[j]  (tier 1: the reserve)
               x >= 0                                             (tier 2: over capacity)

``cost[i,j,0]`` is US$ per hour of one request/s on the path -- egress dollars plus the
latency charge (RTT x :data:`federation.lb.decision.OPTIMIZE_USD_PER_GB_PER_MS` per GB, the
same charge as the priority order of mode ``optimize``) -- normalised to at most 1, plus
``1e-4 x rank`` so that equal paths are taken in failover order; where paths of one rank
tie, failover's split (by capacity) is returned when it is an optimum too. Penalties make
the program always feasible and order what it gives up when demand does not fit (graceful
degradation): using a locality's reserve (+:data:`RESERVE_PENALTY`) before leaving the
latency budget or the price cap (+:data:`POLICY_PENALTY`), and those before sending more
than a locality can serve (tier 2, :data:`OVERLOAD_PENALTY` x (1 + rank): the excess
follows the failover order, nearest first, as locality failover would send it).

Output (a :class:`Solution`): per caller, the share (0-1, summing to 1) of its requests for
each server -- the locality weights of EDS priority 0 -- the predicted egress US$/hour, and
the constraints that bind. :func:`limit_shift` and :func:`inputs_moved` are the hysteresis
the controller applies between intervals.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import highspy
import numpy as np

from federation.errors import OptimizerError
from federation.lb.decision import OPTIMIZE_USD_PER_GB_PER_MS
from federation.lb.paths import BYTES_PER_GB
from federation.model.locality import Locality

#: Default share of a locality's declared capacity the optimizer plans to use.
DEFAULT_HEADROOM = 0.8
#: Added (normalised cost units; a path's own cost is at most 1) per request/s served from a
#: locality's reserve (above ``headroom x capacity``).
RESERVE_PENALTY = 10.0
#: Added per request/s sent over the latency budget or above ``maxCostPerGB``.
POLICY_PENALTY = 100.0
#: Per request/s sent beyond a locality's capacity, times ``1 + rank``.
OVERLOAD_PENALTY = 1000.0
#: Tie-break per unit of failover rank (normalised cost units).
RANK_TIE_BREAK = 1e-4


@dataclass(frozen=True, slots=True)
class Caller:
    """The requests of one caller locality.

    Attributes:
        cluster / locality: where the callers run.
        rps: measured demand (requests/s, > 0).
        request_bytes / response_bytes: mean wire bytes per request (bytes).
    """

    cluster: str
    locality: Locality
    rps: float
    request_bytes: float = 0.0
    response_bytes: float = 0.0


@dataclass(frozen=True, slots=True)
class Server:
    """One serving ``(cluster, locality)`` with healthy endpoints.

    Attributes:
        capacity_rps: requests/s its healthy endpoints declare together; None: undeclared
            (unbounded).
        headroom: its own share (0-1] of ``capacity_rps`` planned before its reserve
            (learned, :mod:`federation.lb.headroom`); None: the problem's.
    """

    cluster: str
    locality: Locality
    capacity_rps: float | None = None
    headroom: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        """``(cluster, "<cloud>/<region>/<zone>")``."""
        return (self.cluster, str(self.locality))


@dataclass(frozen=True, slots=True)
class Link:
    """One caller -> server path.

    Attributes:
        usd_per_request: egress US$ of one request's bytes on it (request bytes priced
            caller -> server, response bytes server -> caller).
        rtt_ms: round trip (ms; None unknown: no latency charge).
        rank: the caller's failover rank of the server (lower first; ``decision.locality_rank``).
        excluded: the policy's latency budget or price cap excludes it ("" when not: else
            the reason, e.g. ``"RTT 80 ms over the 50 ms budget"``).
    """

    usd_per_request: float
    rtt_ms: float | None = None
    rank: float = 0.0
    excluded: str = ""


@dataclass(frozen=True, slots=True)
class Problem:
    """Callers, servers and ``links[i][j]`` (caller ``i`` -> server ``j``); ``headroom`` in
    (0, 1]."""

    callers: Sequence[Caller]
    servers: Sequence[Server]
    links: Sequence[Sequence[Link]]
    headroom: float = DEFAULT_HEADROOM
    latency_usd_per_gb_per_ms: float = OPTIMIZE_USD_PER_GB_PER_MS


@dataclass(frozen=True, slots=True)
class Solution:
    """The optimum.

    Attributes:
        shares: per caller, server index -> share of its requests (> 0, summing to 1;
            servers without a share are left out).
        usd_per_hour: per caller, predicted egress US$/hour of its demand under the plan.
        binding: the constraints that bind, in words (empty: every caller takes its
            cheapest path).
        overloaded_rps: requests/s the plan sends beyond some locality's capacity (0 when
            demand fits).
    """

    shares: list[dict[int, float]]
    usd_per_hour: list[float]
    binding: list[str] = field(default_factory=list)
    overloaded_rps: float = 0.0

    @property
    def total_usd_per_hour(self) -> float:
        """Predicted egress US$/hour of every caller together."""
        return sum(self.usd_per_hour)


def usd_per_hour(problem: Problem, shares: Sequence[Mapping[int, float]]) -> list[float]:
    """Egress US$/hour of each caller's demand split by ``shares`` (server index -> share)."""
    return [
        3600.0 * c.rps * sum(s * problem.links[i][j].usd_per_request for j, s in split.items())
        for i, (c, split) in enumerate(zip(problem.callers, shares, strict=True))
    ]


def failover_shares(problem: Problem) -> list[dict[int, float]]:
    """What locality failover does with healthy endpoints everywhere (Istio's default, cost
    mode ``off``): every request to the best-ranked servers (shared by capacity)."""
    out = []
    for i in range(len(problem.callers)):
        best = min(link.rank for link in problem.links[i])
        firsts = [j for j, link in enumerate(problem.links[i]) if link.rank == best]
        out.append(_by_capacity(problem, firsts))
    return out


def round_robin_shares(problem: Problem) -> list[dict[int, float]]:
    """Global balancing without locality: every server by its capacity (equal shares where
    none is declared)."""
    return [_by_capacity(problem, range(len(problem.servers))) for _ in problem.callers]


def _by_capacity(problem: Problem, indices: Sequence[int] | range) -> dict[int, float]:
    caps = [problem.servers[j].capacity_rps for j in indices]
    total = sum(c or 0.0 for c in caps)
    if any(c is None for c in caps) or not total:
        return {j: 1.0 / len(indices) for j in indices}
    return {j: (c or 0.0) / total for j, c in zip(indices, caps, strict=True)}


def _path_cost(problem: Problem, caller: Caller, link: Link) -> float:
    """US$/hour of one request/s on ``link``: egress plus the latency charge."""
    latency_usd = (
        (link.rtt_ms or 0.0)
        * problem.latency_usd_per_gb_per_ms
        * (caller.request_bytes + caller.response_bytes)
        / BYTES_PER_GB
    )
    return 3600.0 * (link.usd_per_request + latency_usd)


def solve(problem: Problem) -> Solution:
    """The optimal split (see the module docstring).

    Raises:
        ValueError: no caller or no server, a link matrix of another shape, a demand <= 0, a
            capacity <= 0, or a headroom outside (0, 1].
        OptimizerError: HiGHS returned no optimum.
    """
    callers, servers = list(problem.callers), list(problem.servers)
    n, m = len(callers), len(servers)
    if not n or not m:
        raise ValueError("an optimisation needs at least one caller and one server")
    if len(problem.links) != n or any(len(row) != m for row in problem.links):
        raise ValueError(f"links must be {n} rows of {m}")
    if not 0 < problem.headroom <= 1:
        raise ValueError(f"headroom {problem.headroom} must be in (0, 1]")
    for c in callers:
        if not c.rps > 0:
            raise ValueError(f"caller {c.cluster} {c.locality}: demand {c.rps} must be > 0 rps")
    for s in servers:
        if s.capacity_rps is not None and not s.capacity_rps > 0:
            raise ValueError(f"server {s.key}: capacity {s.capacity_rps} must be > 0 rps")
        if s.headroom is not None and not 0 < s.headroom <= 1:
            raise ValueError(f"server {s.key}: headroom {s.headroom} must be in (0, 1]")

    raw = np.array(
        [
            [_path_cost(problem, c, problem.links[i][j]) for j in range(m)]
            for i, c in enumerate(callers)
        ]
    )
    scale = float(raw.max()) if raw.max() > 0 else 1.0
    rank = np.array([[link.rank for link in row] for row in problem.links])
    excluded = np.array([[bool(link.excluded) for link in row] for row in problem.links])
    base = raw / scale + RANK_TIE_BREAK * rank
    policy = np.where(excluded, POLICY_PENALTY, 0.0)
    cost = np.stack(  # (n, m, tier): x[i, j, t] is variable (i * m + j) * 3 + t
        [base + policy, base + policy + RESERVE_PENALTY, base + OVERLOAD_PENALTY * (1.0 + rank)],
        axis=2,
    )
    capped = [j for j, s in enumerate(servers) if s.capacity_rps is not None]
    upper = np.full((n, m, 3), np.inf)
    upper[:, [j for j in range(m) if j not in capped], 1:] = 0.0  # unbounded: tier 0 only
    a_eq = np.kron(np.eye(n), np.ones(m * 3))  # each caller's variables sum to its demand
    a_ub = np.zeros((2 * len(capped), n, m, 3))
    b_ub = []
    for row, j in enumerate(capped):
        cap = float(servers[j].capacity_rps or 0.0)
        own = servers[j].headroom
        room = own if own is not None else problem.headroom
        a_ub[2 * row, :, j, 0] = 1.0
        a_ub[2 * row + 1, :, j, 1] = 1.0
        b_ub += [room * cap, (1.0 - room) * cap]
    size = n * m * 3
    rows = np.vstack([a_eq, a_ub.reshape(len(b_ub), size)]) if capped else a_eq
    demand = [c.rps for c in callers]
    solved = solve_lp(
        cost.reshape(size),
        rows,
        np.array(demand + [-np.inf] * len(b_ub)),
        np.array(demand + b_ub),
        upper.reshape(size),
    )
    x = np.clip(solved.reshape(n, m, 3), 0.0, None)
    failover = _failover_if_optimal(problem, cost[:, :, 0], float((cost * x).sum()))
    if failover is not None:
        x = failover
    shares: list[dict[int, float]] = []
    for i in range(n):
        served = x[i].sum(axis=1)
        total = float(served.sum()) or 1.0
        shares.append(
            {j: float(served[j]) / total for j in range(m) if served[j] / total > SHARE_FLOOR}
        )
        norm = sum(shares[-1].values())
        shares[-1] = {j: s / norm for j, s in shares[-1].items()}
    return Solution(
        shares=shares,
        usd_per_hour=usd_per_hour(problem, shares),
        binding=_binding(problem, x),
        overloaded_rps=float(x[:, :, 2].sum()),
    )


def _failover_if_optimal(problem: Problem, tier0: np.ndarray, optimum: float) -> np.ndarray | None:
    """Locality failover's split as ``x`` (every request in tier 0) when it is an optimum
    too: it keeps every server within headroom x capacity and costs no more than
    ``optimum`` (``tier0``: the program's per-path costs, shape (callers, servers)). None
    otherwise.

    A program whose best paths tie (two zones equally far and dear) has a whole edge of
    optima, and HiGHS returns a vertex: every request to one zone up to its headroom, the
    other idle. Failover shares equal paths by capacity, as Envoy's locality weights do; an
    idle zone also tells the headroom learning (:mod:`federation.lb.headroom`) nothing."""
    split = failover_shares(problem)
    x = np.zeros((len(problem.callers), len(problem.servers), 3))
    for i, c in enumerate(problem.callers):
        for j, share in split[i].items():
            x[i, j, 0] = c.rps * share
    for j, s in enumerate(problem.servers):
        room = s.headroom if s.headroom is not None else problem.headroom
        if s.capacity_rps is not None and x[:, j, 0].sum() > room * s.capacity_rps + 1e-9:
            return None
    value = float((tier0 * x[:, :, 0]).sum())
    return x if value <= optimum + 1e-7 * max(1.0, abs(optimum)) else None  # HiGHS tolerance


_FIRST_HIGHS = threading.Lock()
_first_made = False


def _highs() -> highspy.Highs:
    """A HiGHS instance with its console output off. HiGHS prints a banner on stdout when a
    process makes its first instance, before any option can be set: that one is made with the
    stdout file descriptor pointed at stderr, so that no command's output (``-o json``) holds
    it."""
    global _first_made
    with _FIRST_HIGHS:
        if _first_made:
            highs = highspy.Highs()  # type: ignore[no-untyped-call]
        else:
            sys.stdout.flush()
            saved = os.dup(1)
            try:
                os.dup2(2, 1)
                highs = highspy.Highs()  # type: ignore[no-untyped-call]
            finally:
                os.dup2(saved, 1)
                os.close(saved)
            _first_made = True
    highs.setOptionValue("output_flag", False)
    return highs


def solve_lp(
    cost: np.ndarray, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray, bound: np.ndarray
) -> np.ndarray:
    """``min cost . x`` subject to ``lower <= rows @ x <= upper`` and ``0 <= x <= bound``
    (``inf`` for no bound); the optimal ``x``.

    Raises:
        OptimizerError: HiGHS found no optimum (infeasible, unbounded, or an error).
    """
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cost), len(rows)
    lp.col_cost_ = cost.astype(float)
    lp.col_lower_ = np.zeros(len(cost))
    lp.col_upper_ = np.where(np.isinf(bound), highspy.kHighsInf, bound)
    lp.row_lower_ = np.where(np.isinf(lower), -highspy.kHighsInf, lower)
    lp.row_upper_ = np.where(np.isinf(upper), highspy.kHighsInf, upper)
    matrix = lp.a_matrix_
    matrix.format_ = highspy.MatrixFormat.kRowwise
    row, col = np.nonzero(rows)
    matrix.start_ = np.searchsorted(row, np.arange(len(rows) + 1)).astype(np.int32)
    matrix.index_ = col.astype(np.int32)
    matrix.value_ = rows[row, col].astype(float)
    highs = _highs()
    highs.passModel(lp)
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise OptimizerError(f"HiGHS: {highs.modelStatusToString(status)}")
    return np.array(highs.getSolution().col_value)


#: Shares below this are dropped (and the rest renormalised): 0.1 % of a caller's requests.
SHARE_FLOOR = 1e-3


def _binding(problem: Problem, x: np.ndarray) -> list[str]:
    """The constraints the optimum meets with equality, and what it gave up, in words."""
    out: list[str] = []
    for j, s in enumerate(problem.servers):
        if s.capacity_rps is None:
            continue
        h = s.headroom if s.headroom is not None else problem.headroom
        tier0, tier1, tier2 = (float(x[:, j, t].sum()) for t in range(3))
        name = f"{s.cluster} {s.locality}"
        if tier2 > 1e-6:
            out.append(
                f"{name}: over its capacity ({s.capacity_rps:g} rps) by {tier2:.1f} rps:"
                " demand exceeds what the federation can serve"
            )
        elif tier1 > 1e-6:
            out.append(
                f"{name}: reserve used, {tier0 + tier1:.1f} of {s.capacity_rps:g} rps"
                f" (above headroom {h:g})"
            )
        elif tier0 >= h * s.capacity_rps - 1e-6 and tier0 > 1e-6:
            out.append(f"{name}: capacity x headroom binds ({tier0:.1f} of {s.capacity_rps:g} rps)")
    for i, c in enumerate(problem.callers):
        for j, s in enumerate(problem.servers):
            link = problem.links[i][j]
            if link.excluded and float(x[i, j, :2].sum()) > 1e-6:
                out.append(
                    f"{c.cluster} {c.locality} -> {s.cluster} {s.locality}: {link.excluded},"
                    " used because nothing within the policy has capacity"
                )
    return out


def limit_shift(
    previous: Mapping[tuple[str, str], float],
    target: Mapping[tuple[str, str], float],
    max_shift: float,
    available: Collection[tuple[str, str]],
) -> dict[tuple[str, str], float]:
    """One hysteresis step from ``previous`` shares toward ``target`` (both by server key,
    summing to 1): at most ``max_shift`` (0-1) of the caller's requests change locality
    (half the L1 distance), by moving along the straight line, so shares stay >= 0 and sum to
    1. Without previous shares, or when a server holding a previous share is not among
    ``available`` (the servers with healthy endpoints now: it failed), the target applies at
    once."""
    if not previous or any(k not in available for k in previous):
        return dict(target)
    keys = set(previous) | set(target)
    moved = 0.5 * sum(abs(target.get(k, 0.0) - previous.get(k, 0.0)) for k in keys)
    if moved <= max_shift or moved <= 1e-12:
        return dict(target)
    alpha = max_shift / moved
    out = {
        k: previous.get(k, 0.0) + alpha * (target.get(k, 0.0) - previous.get(k, 0.0)) for k in keys
    }
    out = {k: v for k, v in out.items() if v > SHARE_FLOOR}
    total = sum(out.values())
    return {k: v / total for k, v in sorted(out.items())}


def inputs_moved(old: Mapping[str, float], new: Mapping[str, float], threshold: float) -> bool:
    """True when a named input (demand, capacity, price, RTT) appeared, disappeared or moved
    by more than ``threshold`` (relative, e.g. 0.1) since the last solve: only then is the
    program solved again."""
    if set(old) != set(new):
        return True
    for k, v in new.items():
        before = old[k]
        if abs(v - before) > threshold * max(abs(before), 1e-9):
            return True
    return False
