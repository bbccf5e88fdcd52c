"""The controller's routing plans: for every service whose TrafficPolicy says ``cost.mode:
optimize``, the split of each caller locality's demand over the serving localities
(:func:`federation.lb.optimizer.solve`), solved every :attr:`PlannerSettings.interval_s`.

Inputs, as the controller has them:

- **demand** per caller ``(cluster, locality)``: requests/s and mean request/response bytes
  over the last :attr:`PlannerSettings.window_s` of the traffic the sidecars counted
  (:class:`federation.controller.traffic.TrafficHistory`), smoothed by an exponential moving
  average; a caller whose traffic is missing keeps its last value for
  :data:`DEMAND_KEPT_S`;
- **servers**: the zones of every cluster whose ServiceExport of the service is ``Exported``,
  from its latest report: healthy endpoints and the capacity they declare
  (``WorkloadEntry spec.capacity.rps``; a zone with a healthy endpoint that declares none is
  unbounded);
- **paths**: price (:func:`federation.lb.paths.path_facts`: request bytes priced caller ->
  server, response bytes server -> caller, as the sidecars' counters price them), RTT
  measured by the caller's control plane to the serving cluster's gateway (estimated where
  there is no measurement, and always inside one cluster), failover rank
  (:func:`federation.lb.decision.locality_rank`), and the policy's budget and price cap.

Hysteresis: the program is solved again only when an input moved by more than
:attr:`PlannerSettings.resolve_threshold`; each interval moves at most
:attr:`PlannerSettings.max_shift` of a caller's requests toward the new optimum, unless a
locality it used lost its last healthy endpoint (then at once). When nothing can be solved
(no demand measured yet) the previous plan stays in force.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from federation.controller.imports import ExportStatus, gateway_of
from federation.controller.store import ClusterRecord
from federation.errors import OptimizerError
from federation.lb.decision import Candidate, PolicyInputs, locality_rank
from federation.lb.headroom import Headroom, ZoneLoad, declared, learn, zone_loads
from federation.lb.optimizer import (
    DEFAULT_HEADROOM,
    Caller,
    Link,
    Problem,
    Server,
    failover_shares,
    inputs_moved,
    limit_shift,
    round_robin_shares,
    solve,
    usd_per_hour,
)
from federation.lb.paths import BYTES_PER_GB, path_facts, rtts_for_decisions
from federation.model.locality import Locality
from federation.model.policy import TrafficPolicy
from federation.sync.messages import ClusterReport, RoutingPlan, ServiceReport
from providers.pricing import PriceTable

log = logging.getLogger(__name__)

#: How long a caller's last measured demand stands in for a missing measurement (s).
DEMAND_KEPT_S = 300.0

ServiceKey = tuple[str, str]
CallerKey = tuple[str, str]  # (cluster, locality)
ServerKey = tuple[str, str]  # (cluster, locality)


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """How often and how gently plans change.

    Attributes:
        interval_s: seconds between planning rounds.
        window_s: the rate window demand is measured over (s).
        smoothing: weight of the newest measurement in the moving average (0-1].
        max_shift: at most this share (0-1) of a caller's requests moves per interval.
        resolve_threshold: solve again when an input moved by more than this (relative).
    """

    interval_s: float = 5.0
    window_s: float = 10.0
    smoothing: float = 0.5
    max_shift: float = 0.25
    resolve_threshold: float = 0.1


@dataclass(slots=True)
class _Demand:
    rps: float
    request_bytes: float
    response_bytes: float
    seen: float


@dataclass(slots=True)
class _ServicePlan:
    """A service's last solve (its inputs, optimum per caller, what the optimum is compared
    with and what binds) and the shares in force per caller."""

    inputs: dict[str, float] = field(default_factory=dict)
    targets: dict[CallerKey, dict[ServerKey, float]] = field(default_factory=dict)
    #: per caller: (demand rps, US$/hour under locality failover, under round robin)
    comparisons: dict[CallerKey, tuple[float, float, float]] = field(default_factory=dict)
    binding: tuple[str, ...] = ()
    current: dict[CallerKey, dict[ServerKey, float]] = field(default_factory=dict)
    plans: dict[CallerKey, RoutingPlan] = field(default_factory=dict)
    #: what the last solve saw, before any path was priced (see Planner._unmoved)
    shape: tuple[object, ...] = ()
    quick: dict[str, float] = field(default_factory=dict)
    #: every caller's shares reached its optimum: a round with unmoved inputs has nothing to do
    converged: bool = False
    #: per server: (headroom, why) the last solve planned with
    headrooms: tuple[tuple[str, str, float, str], ...] = ()
    #: a solve since the plans were built: they are built again even where the shares stay,
    #: so that what ``explain`` shows (demand, headrooms and why, binding) is the last solve's
    fresh: bool = False


def demand_rows(
    rows: Sequence[Mapping[str, object]],
) -> dict[ServiceKey, dict[CallerKey, tuple[float, float, float]]]:
    """Demand per service and caller from rate rows grouped by ``source_cluster,
    source_locality, destination_service`` (:meth:`TrafficHistory.rates`): ``(rps, mean
    request bytes, mean response bytes)``."""
    out: dict[ServiceKey, dict[CallerKey, tuple[float, float, float]]] = {}
    for row in rows:
        rps = float(row["rps"])  # type: ignore[arg-type]
        if rps <= 0:
            continue
        name, _, namespace = str(row["destination_service"]).partition(".")
        caller = (str(row["source_cluster"]), str(row["source_locality"]))
        out.setdefault((namespace, name), {})[caller] = (
            rps,
            float(row["requestBytesPerS"]) / rps,  # type: ignore[arg-type]
            float(row["responseBytesPerS"]) / rps,  # type: ignore[arg-type]
        )
    return out


@dataclass(frozen=True, slots=True)
class RoundIndex:
    """What a planning round looks up per service, indexed once per round (a round over
    1,000 services used to scan every export and every reported service for each service).

    Attributes:
        exporters: per service, the clusters whose export of it is ``Exported``.
        services: per cluster, its reported services by key.
        measured_rtt_ms: per cluster, the RTTs its control plane measured to other clusters
            (as decisions use them, :func:`rtts_for_decisions`).
    """

    exporters: Mapping[ServiceKey, tuple[str, ...]]
    services: Mapping[str, Mapping[ServiceKey, ServiceReport]]
    measured_rtt_ms: Mapping[str, Mapping[str, float]]

    @classmethod
    def build(
        cls,
        exports: Sequence[ExportStatus],
        records: Mapping[str, ClusterRecord],
        reports: Mapping[str, ClusterReport],
    ) -> RoundIndex:
        exporters: dict[ServiceKey, list[str]] = {}
        for status in exports:
            if status.condition == "Exported":
                exporters.setdefault((status.namespace, status.service), []).append(status.cluster)
        gateways = {name: gateway_of(r, reports.get(name)) for name, r in records.items()}
        return cls(
            exporters={k: tuple(v) for k, v in exporters.items()},
            services={c: {s.key: s for s in r.services} for c, r in reports.items()},
            measured_rtt_ms={
                c: rtts_for_decisions({}, r.rtt_ms, gateways) for c, r in reports.items()
            },
        )


def servers_of(
    key: ServiceKey,
    exports: Sequence[ExportStatus],
    records: Mapping[str, ClusterRecord],
    reports: Mapping[str, ClusterReport],
) -> list[Server]:
    """The serving zones of ``key``: every cluster exporting it (condition ``Exported``),
    one :class:`Server` per zone with a healthy endpoint, its capacity the sum of what those
    endpoints declare (None when one declares nothing)."""
    return _servers(key, records, RoundIndex.build(exports, records, reports))


def _servers(
    key: ServiceKey, records: Mapping[str, ClusterRecord], index: RoundIndex
) -> list[Server]:
    """:func:`servers_of` from a round's :class:`RoundIndex`."""
    out: list[Server] = []
    for cluster in index.exporters.get(key, ()):
        record = records.get(cluster)
        service = index.services.get(cluster, {}).get(key)
        if record is None or service is None:
            continue
        base = Locality.parse(record.locality)
        zones: dict[str, list[float]] = {}
        for e in service.endpoints:
            if e.healthy:
                zones.setdefault(e.zone or base.zone, []).append(e.capacity_rps)
        for zone, caps in sorted(zones.items()):
            capacity = None if any(c <= 0 for c in caps) else sum(caps)
            out.append(Server(cluster, base.with_zone(zone) if zone else base, capacity))
    return out


def link(
    caller: Caller,
    server: Server,
    policy: PolicyInputs,
    *,
    measured_rtt_ms: float | None,
    prices: Mapping[str, PriceTable],
) -> Link:
    """The path ``caller`` -> ``server``: US$ per request (request bytes priced caller ->
    server, response bytes server -> caller), RTT, failover rank and policy exclusion."""
    answer = path_facts(
        caller.locality, server.locality, measured_rtt_ms=measured_rtt_ms, prices=prices
    )
    ask = path_facts(server.locality, caller.locality, prices=prices)
    usd = (
        caller.request_bytes * ask.usd_per_gb + caller.response_bytes * answer.usd_per_gb
    ) / BYTES_PER_GB
    candidate = Candidate(server.cluster, server.locality, 1, 1, 1, answer.rtt_ms)
    rank, _ = locality_rank(caller.locality, caller.cluster, candidate, policy)
    excluded = ""
    budget = policy.latency_budget_ms
    if budget is not None and answer.rtt_ms is not None and answer.rtt_ms > budget:
        excluded = f"RTT {answer.rtt_ms:g} ms over the {budget:g} ms budget"
    elif policy.max_cost_per_gb is not None and answer.usd_per_gb > policy.max_cost_per_gb + 1e-12:
        excluded = f"${answer.usd_per_gb:g}/GB over maxCostPerGB ${policy.max_cost_per_gb:g}"
    return Link(
        usd_per_request=usd,
        rtt_ms=answer.rtt_ms,
        rank=rank,
        excluded=excluded,
    )


class Planner:
    """See the module docstring. :meth:`plan` is one round (one at a time; it may run on a
    worker thread); it keeps what hysteresis needs between rounds."""

    def __init__(
        self,
        settings: PlannerSettings = PlannerSettings(),
        clock: Callable[[], float] = time.time,
        on_solve: Callable[[ServiceKey, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._on_solve = on_solve
        self._demand: dict[ServiceKey, dict[CallerKey, _Demand]] = {}
        self._services: dict[ServiceKey, _ServicePlan] = {}
        self._published: dict[str, list[RoutingPlan]] = {}
        self._prices: Mapping[str, PriceTable] | None = None
        self._prices_version = 0
        #: per (service, server): whether the policy fixes it, and the headroom in force
        self._headroom: dict[tuple[ServiceKey, ServerKey], tuple[bool, Headroom]] = {}
        self.solves = 0
        self.skipped = 0  # services a round left alone: inputs unmoved, plans converged

    @property
    def active(self) -> bool:
        """True while any service is planned (a round without an ``optimize`` policy and
        without plans to withdraw has nothing to do)."""
        return bool(self._services)

    def plans(self) -> dict[str, list[RoutingPlan]]:
        """cluster -> the plans in force for its caller localities (as of the end of the
        last round: safe to read while a round runs on another thread)."""
        return self._published

    def _publish(self) -> None:
        out: dict[str, list[RoutingPlan]] = {}
        for service in self._services.values():
            for (cluster, _), plan in sorted(service.plans.items()):
                out.setdefault(cluster, []).append(plan)
        self._published = out  # one assignment: readers see the old or the new whole

    def plan(
        self,
        policies: Sequence[TrafficPolicy],
        exports: Sequence[ExportStatus],
        records: Mapping[str, ClusterRecord],
        reports: Mapping[str, ClusterReport],
        rows: Sequence[Mapping[str, object]],
        prices: Mapping[str, PriceTable],
        served: Sequence[Mapping[str, object]] = (),
    ) -> bool:
        """One round: update demand from ``rows`` (see :func:`demand_rows`) and each serving
        zone's headroom from ``served`` (rate rows grouped by service, serving cluster and
        locality, and caller locality: :func:`federation.lb.headroom.zone_loads`), solve
        what moved, step every caller toward its optimum. Returns True when a plan
        changed."""
        now = self.clock()
        self._smooth(demand_rows(rows), now)
        loads = zone_loads(served)
        wanted = {p.target: p for p in policies if p.spec.cost.mode == "optimize"}
        changed = False
        for key in list(self._services):
            if key not in wanted:
                del self._services[key]
                changed = True
        for hkey in [k for k in self._headroom if k[0] not in wanted]:
            del self._headroom[hkey]
        if self._prices is None or (prices is not self._prices and prices != self._prices):
            self._prices_version += 1
        self._prices = prices
        index = RoundIndex.build(exports, records, reports) if wanted else None
        for key, policy in sorted(wanted.items()):
            assert index is not None
            try:
                changed |= self._plan_service(key, policy, index, records, prices, loads, now)
            except OptimizerError as err:
                log.error("no new plan for %s/%s, the previous stays: %s", *key, err)
        if changed:
            self._publish()
        return changed

    def _smooth(
        self, measured: dict[ServiceKey, dict[CallerKey, tuple[float, float, float]]], now: float
    ) -> None:
        a = self.settings.smoothing
        for key, callers in measured.items():
            known = self._demand.setdefault(key, {})
            for caller, (rps, req_b, resp_b) in callers.items():
                old = known.get(caller)
                if old is None:
                    known[caller] = _Demand(rps, req_b, resp_b, now)
                else:
                    known[caller] = _Demand(
                        a * rps + (1 - a) * old.rps,
                        a * req_b + (1 - a) * old.request_bytes,
                        a * resp_b + (1 - a) * old.response_bytes,
                        now,
                    )
        for known in self._demand.values():
            for caller in [c for c, d in known.items() if now - d.seen > DEMAND_KEPT_S]:
                del known[caller]

    def _unmoved(
        self,
        state: _ServicePlan,
        policy: TrafficPolicy,
        servers: list[Server],
        callers: list[Caller],
        index: RoundIndex,
    ) -> tuple[bool, tuple[object, ...], dict[str, float]]:
        """Whether the service's inputs did not move since its last solve, judged before
        any path is priced: the same policy, servers and capacities, callers, measured RTTs
        and price tables, and each caller's demand and request and response bytes within
        the resolve threshold. Then no priced input (:func:`_signature`) moved beyond it
        either: a path's US$ per request is a non-negative combination of the two byte
        counts. Returns the verdict and the shape and quick inputs to remember."""
        shape = (
            policy,
            tuple(servers),
            tuple((c.cluster, c.locality) for c in callers),
            tuple(
                tuple(sorted(index.measured_rtt_ms.get(c, {}).items()))
                for c in sorted({c.cluster for c in callers})
            ),
            self._prices_version,
        )
        quick: dict[str, float] = {}
        for c in callers:
            quick[f"demand {c.cluster} {c.locality}"] = c.rps
            quick[f"request {c.cluster} {c.locality}"] = c.request_bytes
            quick[f"response {c.cluster} {c.locality}"] = c.response_bytes
        unmoved = (
            state.converged
            and state.shape == shape
            and not inputs_moved(state.quick, quick, self.settings.resolve_threshold)
        )
        return unmoved, shape, quick

    def _plan_service(
        self,
        key: ServiceKey,
        policy: TrafficPolicy,
        index: RoundIndex,
        records: Mapping[str, ClusterRecord],
        prices: Mapping[str, PriceTable],
        loads: Mapping[tuple[str, str, str], ZoneLoad],
        now: float,
    ) -> bool:
        state = self._services.setdefault(key, _ServicePlan())
        servers = self._learned(key, policy, _servers(key, records, index), loads)
        demand = self._demand.get(key, {})
        callers = [
            Caller(cluster, where, d.rps, d.request_bytes, d.response_bytes)
            for (cluster, loc), d in sorted(demand.items())
            if cluster in records and (where := _locality(loc)) is not None
        ]
        if not servers or not callers:
            return False  # nothing measured yet, or nobody serves: the previous plan stays
        unmoved, shape, quick = self._unmoved(state, policy, servers, callers, index)
        if unmoved:
            self.skipped += 1
            return False
        problem = _problem(callers, servers, policy, index, prices)
        signature = _signature(problem)
        threshold = self.settings.resolve_threshold
        if inputs_moved(state.inputs, signature, threshold) or _headroom_moved(
            state.inputs, signature
        ):
            self._solve(key, state, problem)
            state.inputs, state.shape, state.quick = signature, shape, quick
        return self._step(key, state, problem, now)

    def _learned(
        self,
        key: ServiceKey,
        policy: TrafficPolicy,
        servers: list[Server],
        loads: Mapping[tuple[str, str, str], ZoneLoad],
    ) -> list[Server]:
        """``servers`` with each one's headroom of this round (:func:`federation.lb.headroom.learn`
        from the window's ``loads``; fixed when the policy sets ``cost.headroom``)."""
        fixed = policy.spec.cost.headroom is not None
        base = policy.spec.cost.headroom or DEFAULT_HEADROOM
        out = []
        for s in servers:
            was = self._headroom.get((key, s.key))
            previous = was[1] if was is not None and was[0] == fixed else None
            if previous is None or (fixed and previous.value != base):
                previous = declared(base, fixed=fixed)
            load = loads.get((f"{key[1]}.{key[0]}", s.cluster, str(s.locality)))
            now = learn(previous, s.capacity_rps, load, fixed=fixed)
            self._headroom[(key, s.key)] = (fixed, now)
            out.append(replace(s, headroom=now.value) if s.capacity_rps is not None else s)
        return out

    def _solve(self, key: ServiceKey, state: _ServicePlan, problem: Problem) -> None:
        """Solve ``problem`` and keep its optimum and comparisons in ``state``."""
        callers, servers = problem.callers, problem.servers
        started = time.perf_counter()
        solution = solve(problem)
        self.solves += 1
        if self._on_solve is not None:
            self._on_solve(key, time.perf_counter() - started)
        failover_split = failover_shares(problem)
        failover = usd_per_hour(problem, failover_split)
        spread = usd_per_hour(problem, round_robin_shares(problem))
        shares, noise = within_noise(
            solution.shares, solution.usd_per_hour, failover_split, failover
        )
        state.targets = {
            (c.cluster, str(c.locality)): {servers[j].key: s for j, s in split.items()}
            for c, split in zip(callers, shares, strict=True)
        }
        state.binding = tuple(solution.binding) + tuple(
            f"{callers[i].cluster} {callers[i].locality}: a {moved:.0%} move off locality"
            f" failover is within the demand's measurement noise ({SPILL_DEADBAND:.0%}) and"
            " only dearer -- failover's order kept (its zone's overflow is retried on the next"
            " priority)"
            for i, moved in noise.items()
        )
        state.fresh = True
        state.headrooms = tuple(  # every server's was set by this round's _learned
            (s.cluster, str(s.locality), h.value, h.reason)
            for s in servers
            if s.capacity_rps is not None
            for _, h in [self._headroom[(key, s.key)]]
        )
        state.comparisons = {
            (c.cluster, str(c.locality)): (c.rps, failover[i], spread[i])
            for i, c in enumerate(callers)
        }

    def _step(self, key: ServiceKey, state: _ServicePlan, problem: Problem, now: float) -> bool:
        """Move every caller's shares at most one step toward its optimum (at once off a
        locality that lost its last healthy endpoint); drop callers without demand.
        Returns True when a plan changed."""
        callers, servers = problem.callers, problem.servers
        available = {s.key for s in servers}
        changed = False
        present = {(c.cluster, str(c.locality)) for c in callers}
        for gone in [k for k in state.plans if k not in present]:
            del state.plans[gone]  # no demand for DEMAND_KEPT_S: back to the priority order
            state.current.pop(gone, None)
            changed = True
        position = {s.key: j for j, s in enumerate(servers)}
        for i, c in enumerate(callers):
            ckey = (c.cluster, str(c.locality))
            target = state.targets.get(ckey)
            if target is None or ckey not in state.comparisons:
                continue
            step = limit_shift(
                state.current.get(ckey, {}), target, self.settings.max_shift, available
            )
            step = {k: round(v, 4) for k, v in step.items() if k in position and round(v, 4) > 0}
            if step == state.current.get(ckey) and ckey in state.plans and not state.fresh:
                continue
            state.current[ckey] = step
            demand_rps, failover_usd, spread_usd = state.comparisons[ckey]
            alone = replace(problem, callers=[c], links=[problem.links[i]])
            (predicted,) = usd_per_hour(alone, [{position[s]: v for s, v in step.items()}])
            state.plans[ckey] = RoutingPlan(
                namespace=key[0],
                service=key[1],
                caller_locality=ckey[1],
                shares=tuple((s[0], s[1], v) for s, v in sorted(step.items())),
                demand_rps=round(demand_rps, 3),
                usd_per_hour=predicted,
                failover_usd_per_hour=failover_usd,
                round_robin_usd_per_hour=spread_usd,
                binding=state.binding,
                solved_at=now,
                capacities=tuple(
                    (s.cluster, str(s.locality), s.capacity_rps or 0.0) for s in servers
                ),
                headrooms=state.headrooms,
            )
            changed = True
        state.converged = not changed
        state.fresh = False
        return changed


def _problem(
    callers: list[Caller],
    servers: list[Server],
    policy: TrafficPolicy,
    index: RoundIndex,
    prices: Mapping[str, PriceTable],
) -> Problem:
    """The linear program of one service: every caller -> server path priced and timed."""
    inputs = PolicyInputs.from_policy(policy)
    links = [
        [
            link(
                c,
                s,
                inputs,
                measured_rtt_ms=(
                    index.measured_rtt_ms.get(c.cluster, {}).get(s.cluster)
                    if s.cluster != c.cluster
                    else None
                ),
                prices=prices,
            )
            for s in servers
        ]
        for c in callers
    ]
    return Problem(callers, servers, links, headroom=policy.spec.cost.headroom or DEFAULT_HEADROOM)


def _signature(problem: Problem) -> dict[str, float]:
    """The inputs :func:`inputs_moved` compares: demand, bytes, capacity, headroom, and per
    path price, RTT, failover rank and exclusion (a policy or price table change counts)."""
    out: dict[str, float] = {"headroom": problem.headroom}
    for c in problem.callers:
        out[f"demand {c.cluster} {c.locality}"] = c.rps
        out[f"bytes {c.cluster} {c.locality}"] = c.request_bytes + c.response_bytes
    for s in problem.servers:
        out[f"capacity {s.key}"] = s.capacity_rps if s.capacity_rps is not None else -1.0
        out[f"headroom {s.key}"] = s.headroom if s.headroom is not None else problem.headroom
    for i, row in enumerate(problem.links):
        for j, lk in enumerate(row):
            out[f"usd {i} {j}"] = lk.usd_per_request
            out[f"rtt {i} {j}"] = lk.rtt_ms if lk.rtt_ms is not None else -1.0
            out[f"rank {i} {j}"] = lk.rank
            out[f"excluded {i} {j}"] = 1.0 if lk.excluded else 0.0
    return out


#: A server's headroom this much above the last solve's re-solves (a fall: any amount).
HEADROOM_RESOLVE = 0.04
#: A plan that moves at most this share of a caller's requests off locality failover's
#: order, and only to pay more, is not taken: measured demand is a rate over 2 s reports in
#: a 10 s window, a few per cent off either way, and at exactly a zone's capacity its noise
#: alone made the plan spill (bench/cost_live.py --zones, 100 % load: 4 % sent to another
#: region, p99 45 ms against failover's 5 ms, dearer and slower).
SPILL_DEADBAND = 0.05


def within_noise(
    shares: Sequence[Mapping[int, float]],
    usd: Sequence[float],
    failover: Sequence[Mapping[int, float]],
    failover_usd: Sequence[float],
) -> tuple[list[Mapping[int, float]], dict[int, float]]:
    """Per caller, the optimum's ``shares`` -- or failover's, where the optimum moves at most
    :data:`SPILL_DEADBAND` of its requests away from them (half the L1 distance) and costs
    at least as much (US$/hour ``usd`` against ``failover_usd``). Returns the shares and,
    by caller index, the move left untaken. Pure."""
    out: list[Mapping[int, float]] = []
    noise: dict[int, float] = {}
    for i, (split, first) in enumerate(zip(shares, failover, strict=True)):
        moved = sum(abs(split.get(j, 0.0) - first.get(j, 0.0)) for j in {*split, *first}) / 2
        if 1e-9 < moved <= SPILL_DEADBAND and usd[i] >= failover_usd[i] - 1e-12:
            out.append(first)
            noise[i] = moved
        else:
            out.append(split)
    return out, noise


def _headroom_moved(old: Mapping[str, float], new: Mapping[str, float]) -> bool:
    """Whether a server's headroom fell since the last solve (trouble: act at once), or rose
    by :data:`HEADROOM_RESOLVE` or to the whole capacity (the relative threshold of
    :func:`inputs_moved` is too coarse for a share near 1)."""
    for name, value in new.items():
        if not name.startswith("headroom ") or name not in old:
            continue
        was = old[name]
        fell = value < was - 1e-9
        rose = value > was + 1e-9 and value >= min(was + HEADROOM_RESOLVE, 1.0) - 1e-9
        if fell or rose:
            return True
    return False


def _locality(text: str) -> Locality | None:
    """A caller locality as the sidecars reported it; None when it is not one (``unknown``)."""
    try:
        return Locality.parse(text)
    except ValueError:
        return None
