"""``meshfed explain``: the decision table a control plane emits for one service, as seen by
a caller in its cluster, and ``meshfed explain authz``: whether a caller may call it. Pure:
the same functions the generators use."""

from __future__ import annotations

from typing import Any

from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.endpoints import placement, prefer_cluster
from federation.controlplane.generate.rbac import tcp_only
from federation.controlplane.generate.services import ServicePort, service_ports
from federation.controlplane.registry import RegistryState
from federation.durations import rfc3339
from federation.errors import NotFoundError
from federation.lb.decision import Choice, priority_loads
from federation.model.authz import Request, evaluate
from federation.model.istio_translate import TRANSLATED_FROM
from federation.model.locality import Locality
from federation.model.policy import (
    Destination,
    HTTPMatchRequest,
    HTTPRoute,
    RouteDestination,
    TrafficPolicy,
)
from federation.sync.messages import RoutingPlan


def gateway_hop(via: str) -> str | None:
    """What the hop behind a remote cluster's gateway does (``explain``'s ``gatewayHop``):
    ``same-zone`` through a zone-local gateway (it sends to its own zone's endpoints while one
    is healthy), ``may cross zones`` through the cluster's gateway (it balances over the
    zones without a gateway of their own), None when dialled directly."""
    if not via:
        return None
    return "same-zone" if via.startswith("zone gateway") else "may cross zones"


def _rows(choices: list[Choice]) -> list[dict[str, Any]]:
    loads = priority_loads(choices)
    levels = sorted({c.priority for c in choices})
    rows = []
    for c in sorted(choices, key=lambda ch: (ch.priority, str(ch.locality), ch.candidate.cluster)):
        same = [x for x in choices if x.priority == c.priority]
        level_load = loads[levels.index(c.priority)]
        share = level_load * c.weight / (sum(x.weight for x in same) or 1)
        cand = c.candidate
        rows.append(
            {
                "priority": c.priority,
                "cluster": cand.cluster,
                "locality": str(cand.locality),
                "weight": c.weight,
                "share": round(share, 4),
                "healthy": cand.healthy,
                "rttMs": None if cand.rtt_ms is None else round(cand.rtt_ms, 1),
                "rttSource": cand.rtt_source,
                "usdPerGB": cand.usd_per_gb,
                "path": cand.path,
                "via": cand.via or "direct",
                "gatewayHop": gateway_hop(cand.via),
                "reason": (
                    f"{c.reason}; through {cand.via}, hop {gateway_hop(cand.via)}"
                    if cand.via
                    else c.reason
                ),
            }
        )
    return rows


def explain(
    mesh: MeshContext,
    state: RegistryState,
    namespace: str,
    service: str,
    caller: Locality | None = None,
) -> dict[str, Any]:
    """Per port of ``namespace/service``: where the requests go that no narrower route takes
    (``appliesTo``; ``destinations``: each cluster, the whole service or another service
    with its percent and rows, from a route for every request -- a shift's -- or the
    ``split``, :func:`default_destinations`) and ``rows``, the decision table of all of them
    together (priority, cluster, locality, weight, expected share of those requests (0-1),
    RTT ms, US$/GB, path class, reason; :func:`effective_rows`); the TrafficPolicy's name
    (``policy``) and, for one translated from Istio's documents, which (``policyFrom``:
    ``VirtualService demo/echo, DestinationRule demo/echo``).

    Raises:
        NotFoundError: the service is neither local nor imported here.
    """
    where = caller or mesh.locality
    ports = [p for p in service_ports(state) if (p.namespace, p.service) == (namespace, service)]
    if not ports:
        raise NotFoundError(f"service {service}.{namespace} is not known in cluster {mesh.cluster}")
    policy = state.policies.get((namespace, service))
    out_ports = []
    for port in ports:
        placed = placement(where, mesh.cluster, state, port)
        applies_to, targets = default_destinations(policy, port, mesh.cluster)
        destinations = [
            {
                "to": _to_text(cluster, host),
                "percent": percent,
                "rows": _rows(
                    prefer_cluster(placed.choices, cluster) if cluster else placed.choices
                )
                if host is None
                else [],
            }
            for cluster, host, percent in targets
        ]
        out_ports.append(
            {
                "port": port.port,
                "protocol": port.protocol,
                "appliesTo": applies_to,
                "rows": effective_rows(destinations),
                "destinations": destinations,
            }
        )
    plan = state.plans.get((namespace, service, str(where)))
    return {
        "service": f"{service}.{namespace}.svc.clusterset.local",
        "from": {"cluster": mesh.cluster, "locality": str(where)},
        "policy": policy.metadata.name if policy else None,
        "policyFrom": policy.metadata.annotations.get(TRANSLATED_FROM) if policy else None,
        "costMode": policy.spec.cost.mode if policy else "off",
        "plan": _plan(plan) if plan is not None else None,
        "routes": routes_for(policy, mesh.cluster) if policy is not None else [],
        "ports": out_ports,
    }


#: ``(cluster or None for every cluster, other service's host or None, percent)``.
Target = tuple[str | None, str | None, int]


def _every_request(route: HTTPRoute, cluster: str) -> bool:
    """Whether ``route`` takes every request of a caller in ``cluster`` (no match, or a match
    entry for the caller with no condition but its cluster)."""
    if not route.match:
        return True
    return any(
        _match_text(m.model_copy(update={"source_clusters": []})) == "every request"
        for m in route.match
        if not m.source_clusters or cluster in m.source_clusters
    )


def default_destinations(
    policy: TrafficPolicy | None, port: ServicePort, cluster: str
) -> tuple[str, list[Target]]:
    """Where the requests (connections, for a TCP port) of a caller in ``cluster`` go that
    no narrower route takes: the first route for every request (a shift's closing route,
    say), else the ``split`` (clusters at 0 % left out), else the whole service; and which
    requests that is (``"every request"`` or ``"requests no route above matches"``).
    A redirect route sends them nowhere in the mesh (no targets)."""
    if policy is None:
        return "every request", [(None, None, 100)]
    routes: list[tuple[bool, list[RouteDestination], Any]]
    if port.protocol == "tcp":
        tcp = next((t for t in policy.spec.tcp if t.applies_to(cluster)), None)
        routes = [] if tcp is None else [(True, tcp.route, None)]
    else:
        routes = [(_every_request(r, cluster), r.route, r.redirect) for r in policy.spec.http]
    earlier = False
    for i, (takes_all, shares, redirect) in enumerate(routes):
        if not takes_all:
            # a narrower route to the same destinations (a shift's route for idempotent
            # methods, say) does not change where requests go
            same = next((r for r in routes[i:] if r[0]), None)
            earlier = earlier or same is None or (shares, redirect) != same[1:]
            continue
        applies = "requests no route above matches" if earlier else "every request"
        if redirect is not None:
            return applies, []
        return applies, [
            (d.destination.cluster, d.destination.host, d.weight) for d in shares if d.weight
        ]
    applies = "requests no route above matches" if earlier else "every request"
    split = policy.spec.split or {}
    if split:
        return applies, [(c, None, w) for c, w in sorted(split.items()) if w]
    return applies, [(None, None, 100)]


def _to_text(cluster: str | None, host: str | None) -> str:
    if host is not None:
        return f"service {host}"
    return f"cluster {cluster}" if cluster else "the service"


def effective_rows(destinations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of every destination with its share of all the requests: a row's share in
    its destination x the destination's percent, summed per cluster and locality; each keeps
    the lowest priority it has in any destination and the reason of the destination that
    sends it the most (rows of another service are not counted). Ordered as the
    destinations' rows are: priority, then locality."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    weight_of: dict[tuple[str, str], float] = {}
    for dest in destinations:
        for row in dest["rows"]:
            key = (row["cluster"], row["locality"])
            part = row["share"] * dest["percent"] / 100
            have = merged.get(key)
            if have is None:
                merged[key] = {**row, "share": part}
                weight_of[key] = part
                continue
            have["share"] += part
            have["priority"] = min(have["priority"], row["priority"])
            if part > weight_of[key]:
                have["reason"], weight_of[key] = row["reason"], part
    rows = [{**r, "share": round(r["share"], 4)} for r in merged.values()]
    return sorted(rows, key=lambda r: (r["priority"], r["locality"], r["cluster"]))


def _destination(d: Destination) -> str:
    if d.host is not None:
        return f"service {d.host}" + (f":{d.port}" if d.port else "")
    parts = [f"cluster {d.cluster}"] if d.cluster else []
    parts += [f"subset {d.subset}"] if d.subset else []
    return ", ".join(parts) or "the service"


def _rewrite_text(route: HTTPRoute) -> str:
    """``path prefix to /v2/, host to echo-v2``."""
    rw = route.rewrite
    assert rw is not None
    parts = [f"path prefix to {rw.uri}"] if rw.uri is not None else []
    if rw.uri_regex_rewrite is not None:
        regex = rw.uri_regex_rewrite
        parts.append(f"path {regex.match} to {regex.rewrite}")
    parts += [f"host to {rw.authority}"] if rw.authority is not None else []
    return ", ".join(parts)


def _redirect_text(route: HTTPRoute) -> str:
    """``redirect 308 to https://example.com:8443/new`` (parts not given: the request's)."""
    r = route.redirect
    assert r is not None
    where = (f"{r.scheme}://" if r.scheme else "") + (r.authority or "")
    where += f":{r.port}" if r.port else ""
    path = r.uri or (
        f"{r.uri_regex_rewrite.match} -> {r.uri_regex_rewrite.rewrite}"
        if r.uri_regex_rewrite
        else ""
    )
    return (
        f"redirect {r.redirect_code} to {where}{path}"
        if where or path
        else f"redirect {r.redirect_code}"
    )


def _headers_text(route: HTTPRoute) -> str:
    """``request set x-a=1, remove x-b; response add x-c=2``."""
    parts = []
    for side in ("request", "response"):
        ops = getattr(route.headers, side)
        if ops is None:
            continue
        items = [f"set {k}={v}" for k, v in ops.set.items()]
        items += [f"add {k}={v}" for k, v in ops.add.items()]
        items += [f"remove {k}" for k in ops.remove]
        if items:
            parts.append(f"{side} {', '.join(items)}")
    return "; ".join(parts)


def routes_for(policy: TrafficPolicy, cluster: str) -> list[dict[str, Any]]:
    """The policy's ``http`` and ``tcp`` routes as a caller in ``cluster`` gets them, in order
    (routes for other callers' clusters left out): ``kind``, ``name``, ``match`` (one text per
    entry; "every request"), ``to`` (``"<percent>% <destination>"`` each), and ``timeoutMs``,
    ``fault``, ``mirror``, ``headers``, ``rewrite`` when set; a redirect's ``to`` says where
    it sends the caller."""
    out: list[dict[str, Any]] = []
    for i, route in enumerate(policy.spec.http):
        entries = [m for m in route.match if not m.source_clusters or cluster in m.source_clusters]
        if route.match and not entries:
            continue
        row: dict[str, Any] = {
            "kind": "http",
            "name": route.name or f"http-{i}",
            "match": [_match_text(m) for m in entries] or ["every request"],
            "to": [f"{d.weight}% {_destination(d.destination)}" for d in route.route]
            if route.redirect is None
            else [_redirect_text(route)],
        }
        if route.rewrite is not None:
            row["rewrite"] = _rewrite_text(route)
        if route.timeout_ms:
            row["timeoutMs"] = route.timeout_ms
        if route.fault is not None:
            row["fault"] = route.fault.model_dump(by_alias=True, exclude_none=True)
        if route.mirror is not None:
            share = route.mirror_percentage.value if route.mirror_percentage else 100
            row["mirror"] = f"{share:g}% to {_destination(route.mirror)}"
        if route.headers is not None:
            row["headers"] = _headers_text(route)
        out.append(row)
    for i, tcp in enumerate(policy.spec.tcp):
        if tcp.applies_to(cluster):
            out.append(
                {
                    "kind": "tcp",
                    "name": f"tcp-{i}",
                    "match": ["every connection"],
                    "to": [f"{d.weight}% {_destination(d.destination)}" for d in tcp.route],
                }
            )
            break  # the first that applies takes every connection
    return out


def _match_text(m: HTTPMatchRequest) -> str:
    parts = []
    if m.uri is not None:
        kind, value = m.uri.key()
        parts.append(f"uri {kind} {value}")
    if m.method is not None:
        parts.append(f"method {m.method.key()[1]}")
    parts += [f"header {k} {v.key()[0]} {v.key()[1]}" for k, v in sorted(m.headers.items())]
    parts += [f"query {k} {v.key()[0]} {v.key()[1]}" for k, v in sorted(m.query_params.items())]
    if m.source_clusters:
        parts.append(f"from {','.join(m.source_clusters)}")
    return "; ".join(parts) or "every request"


def _plan(plan: RoutingPlan) -> dict[str, Any]:
    """The controller's plan for the caller's locality, as ``explain`` shows it."""
    shares = {(c, loc): s for c, loc, s in plan.shares}
    rooms = {(c, loc): (h, why) for c, loc, h, why in plan.headrooms}
    return {
        "demandRps": plan.demand_rps,
        "localities": [
            {
                "cluster": c,
                "locality": loc,
                "capacityRps": cap or None,
                "headroom": rooms[(c, loc)][0] if (c, loc) in rooms else None,
                "headroomReason": rooms[(c, loc)][1] if (c, loc) in rooms else None,
                "share": round(shares.get((c, loc), 0.0), 4),
                "rps": round(shares.get((c, loc), 0.0) * plan.demand_rps, 2),
            }
            for c, loc, cap in plan.capacities
        ],
        "usdPerHour": plan.usd_per_hour,
        "failoverUsdPerHour": plan.failover_usd_per_hour,
        "roundRobinUsdPerHour": plan.round_robin_usd_per_hour,
        "binding": list(plan.binding),
        "solvedAt": rfc3339(plan.solved_at),
    }


def explain_authz(
    state: RegistryState,
    namespace: str,
    service: str,
    principal: str | None,
    *,
    method: str = "GET",
    path: str = "/",
    port: int | None = None,
    cluster: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Whether a caller with SPIFFE ID ``principal`` (and an SVID of ``cluster``'s CA) may
    call each local workload of
    ``namespace/service``, and which policy decides (:func:`federation.model.authz.evaluate`,
    the rules the sidecars' RBAC filters enforce).

    Args:
        port: a service or target port; None checks every port of each workload.
        headers: the request's headers (lower-case names), for ``when`` conditions on
            ``request.headers[...]``.

    Raises:
        NotFoundError: the service has no workload in this cluster.
    """
    workloads = state.by_service(namespace, service)
    if not workloads:
        raise NotFoundError(f"service {namespace}/{service} has no workload in this cluster")
    rows = []
    for w in workloads:
        selected = state.authorization_policies_for(w)
        for wp in w.spec.ports:
            if port is not None and port not in (wp.port, wp.app_port):
                continue
            # a TCP port sees no method or path: the policies as its network RBAC has them
            policies = [tcp_only(p) for p in selected] if wp.protocol == "tcp" else selected
            decision = evaluate(
                policies,
                Request(
                    principal,
                    (wp.port, wp.app_port),
                    method=method,
                    path=path,
                    cluster=cluster,
                    headers={k.lower(): v for k, v in (headers or {}).items()},
                ),
            )
            rows.append(
                {
                    "workload": w.metadata.name,
                    "port": wp.port,
                    "decision": "ALLOW" if decision.allowed else "DENY",
                    "reason": decision.reason,
                    "dryRunWouldDeny": list(decision.would_deny_dry_run),
                    "policies": [f"{p.metadata.namespace}/{p.metadata.name}" for p in selected],
                }
            )
    return {
        "service": f"{namespace}/{service}",
        "from": principal,
        "fromCluster": cluster,
        "request": {"method": method, "path": path, "port": port},
        "rows": rows,
    }
