"""Istio's ``VirtualService`` and ``DestinationRule`` as meshfed ``TrafficPolicy`` -- the one
place where they are given meaning (issue #40). Pure.

A service's VirtualService (its routes) and DestinationRule (its subsets, connection pool
and outlier detection) become one TrafficPolicy for ``<svc>.<ns>.svc.clusterset.local``,
field by field as docs/policy.md lists. Applied to the controller, it applies as any
TrafficPolicy does: to every caller in every member cluster, for the service's endpoints in
every cluster (a subset's workloads wherever they run).

**Hosts.** Istio resolves a short name (``reviews``) in the document's namespace; so does
meshfed. ``<svc>.<ns>``, ``<svc>.<ns>.svc``, ``<svc>.<ns>.svc.cluster.local`` and
``<svc>.<ns>.svc.clusterset.local`` name the same service. Any other host (an external
name, a wildcard) is refused: ServiceEntry is not supported yet.

**Istio's defaults, not meshfed's**, where a field is left out: a route's only destination
takes 100 %, others 0; a fault without ``percentage`` hits no request; outlier detection
ejects after 5 errors, checks every 10 s, ejects for 30 s, at most 10 % of hosts
(istio.io/latest/docs/reference/config/networking/destination-rule/#OutlierDetection).

**Refused, naming the document and field**: a second VirtualService or DestinationRule for
one service; a route to a host outside the mesh, or to a subset of another service; a subset
no DestinationRule defines; a subset without labels; what
:mod:`federation.model.istio_networking` refuses by field. A route to another service of the
mesh sends to that service whole, on the same port number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from federation.durations import parse_duration
from federation.errors import InvalidDocumentError
from federation.model.istio_networking import (
    Destination as IstioDestination,
)
from federation.model.istio_networking import (
    DestinationRule,
    HTTPRoute,
    OutlierDetection,
    TCPRoute,
    VirtualService,
)
from federation.model.istio_networking import (
    TrafficPolicy as IstioTrafficPolicy,
)
from federation.model.policy import TrafficPolicy

#: Annotation on a translated TrafficPolicy: the documents it was made from.
TRANSLATED_FROM = "meshfed.io/translated-from"
#: Istio's OutlierDetection defaults (ms, percent, errors).
ISTIO_OUTLIER_DEFAULTS = {
    "consecutive5xx": 5,
    "intervalMs": 10_000,
    "baseEjectionTimeMs": 30_000,
    "maxEjectionPercent": 10,
}
_SUFFIXES = ("", ".svc", ".svc.cluster.local", ".svc.clusterset.local")

Target = tuple[str, str]
IstioDocument = VirtualService | DestinationRule


def label(doc: BaseModel) -> str:
    """``VirtualService demo/echo``."""
    meta = getattr(doc, "metadata", None)
    name = f"{meta.namespace}/{meta.name}" if meta is not None else "?"
    return f"{getattr(doc, 'kind', '?')} {name}"


def service_of(host: str, namespace: str) -> Target | None:
    """``(namespace, service)`` that Istio host ``host``, written in a document of
    ``namespace``, names (see the module docstring); None when it is no mesh service."""
    if "*" in host or not host:
        return None
    parts = host.split(".")
    if len(parts) == 1:
        return (namespace, host)
    svc, ns, rest = parts[0], parts[1], "." + ".".join(parts[2:]) if len(parts) > 2 else ""
    if rest not in _SUFFIXES or not svc or not ns:
        return None
    return (ns, svc)


def global_name(target: Target) -> str:
    """``<svc>.<ns>.svc.clusterset.local``."""
    return f"{target[1]}.{target[0]}.svc.clusterset.local"


class TranslationError(InvalidDocumentError):
    """One document cannot be translated; ``path`` is the field (``spec.http.0.route``)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


def refused(path: str, reason: str) -> TranslationError:
    """The error for field ``path`` (``spec.http.0.route``) refused for ``reason``."""
    return TranslationError(f"{path}: {reason}", path=path)


def _ms(text: str, path: str) -> int:
    try:
        return max(1, round(parse_duration(text).total_seconds() * 1000))
    except ValueError as err:
        raise refused(path, str(err)) from err


def _drop_none(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}


def _destination(d: IstioDestination, target: Target, ns: str, path: str) -> dict[str, Any]:
    named = service_of(d.host, ns)
    if named is None:
        raise refused(
            f"{path}.host",
            f"{d.host!r} is not a service of the mesh (routes to ServiceEntry hosts are not"
            " supported yet)",
        )
    if d.port is not None and d.subset is not None:
        raise refused(
            f"{path}.port", "not supported by meshfed: a port with a subset (give one of them)"
        )
    if named != target or d.port is not None:
        if d.subset is not None:
            raise refused(
                f"{path}.subset",
                "a route to another service takes it whole in meshfed (its own"
                " DestinationRule's subsets are not reachable from this route)",
            )
        # that service (or this one on another port), whole; no port: the same port number
        port = {"port": d.port.number} if d.port is not None else {}
        return {"host": global_name(named), **port}
    return _drop_none({"subset": d.subset})


def _weights(count: int, weights: Iterable[int | None]) -> list[int]:
    """Istio: a route's only destination without a weight takes 100 %, others 0."""
    return [w if w is not None else (100 if count == 1 else 0) for w in weights]


def _http_route(route: HTTPRoute, target: Target, ns: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": route.name}
    if route.redirect is not None:
        red = route.redirect
        out["redirect"] = _drop_none(
            {
                "uri": red.uri,
                "authority": red.authority,
                "port": red.port,
                "scheme": red.scheme,
                "redirectCode": red.redirect_code,
            }
        )
    elif not route.route:
        raise refused(f"{path}.route", "required (at least one destination, or a redirect)")
    else:
        weights = _weights(len(route.route), (r.weight for r in route.route))
        out["route"] = [
            {
                "destination": _destination(
                    d.destination, target, ns, f"{path}.route.{i}.destination"
                ),
                "weight": w,
            }
            for i, (d, w) in enumerate(zip(route.route, weights, strict=True))
        ]
    if route.rewrite is not None:
        rw = route.rewrite
        out["rewrite"] = _drop_none(
            {
                "uri": rw.uri,
                "authority": rw.authority,
                "uriRegexRewrite": rw.uri_regex_rewrite.model_dump()
                if rw.uri_regex_rewrite
                else None,
            }
        )
    if route.match:
        out["match"] = [
            _drop_none(
                {
                    "name": m.name,
                    "uri": m.uri,
                    "method": m.method,
                    "headers": m.headers,
                    "queryParams": m.query_params,
                }
            )
            for m in route.match
        ]
    if route.timeout is not None:
        out["timeoutMs"] = _ms(route.timeout, f"{path}.timeout")
    if route.retries is not None:
        r = route.retries
        out["retries"] = _drop_none(
            {
                "attempts": r.attempts,
                # Istio's default is no per-try timeout (each attempt has the route's)
                "perTryTimeoutMs": _ms(r.per_try_timeout, f"{path}.retries.perTryTimeout")
                if r.per_try_timeout
                else 0,
                "retryOn": r.retry_on,
            }
        )
    if route.fault is not None:
        fault: dict[str, Any] = {}
        if route.fault.delay is not None:
            delay = route.fault.delay
            fault["delay"] = {
                "fixedDelayMs": _ms(delay.fixed_delay, f"{path}.fault.delay.fixedDelay"),
                "percentage": {"value": delay.percentage.value if delay.percentage else 0},
            }
        if route.fault.abort is not None:
            abort = route.fault.abort
            fault["abort"] = {
                "httpStatus": abort.http_status,
                "percentage": {"value": abort.percentage.value if abort.percentage else 0},
            }
        if fault:
            out["fault"] = fault
    if route.mirror is not None:
        out["mirror"] = _destination(route.mirror, target, ns, f"{path}.mirror")
    if route.mirror_percentage is not None:
        out["mirrorPercentage"] = {"value": route.mirror_percentage.value}
    if route.headers is not None:
        out["headers"] = _drop_none(
            {
                side: _header_ops(ops)
                for side, ops in (
                    ("request", route.headers.request),
                    ("response", route.headers.response),
                )
            }
        )
    return _drop_none(out)


def _header_ops(ops: Any) -> dict[str, Any] | None:
    """Istio's (or Gateway API's, made alike) header operations with names lower-cased
    (HTTP header names are case-insensitive; meshfed's are written lower-case)."""
    if ops is None:
        return None
    return {
        "set": {k.lower(): v for k, v in (ops.set or {}).items()},
        "add": {k.lower(): v for k, v in (ops.add or {}).items()},
        "remove": [k.lower() for k in ops.remove or []],
    }


def _tcp_route(route: TCPRoute, target: Target, ns: str, path: str) -> dict[str, Any]:
    if not route.route:
        raise refused(f"{path}.route", "required (at least one destination)")
    weights = _weights(len(route.route), (r.weight for r in route.route))
    return {
        "route": [
            {
                "destination": _destination(
                    r.destination, target, ns, f"{path}.route.{i}.destination"
                ),
                "weight": w,
            }
            for i, (r, w) in enumerate(zip(route.route, weights, strict=True))
        ]
    }


def _outlier(od: OutlierDetection, path: str) -> dict[str, Any]:
    five = od.consecutive_5xx_errors
    gateway = od.consecutive_gateway_errors
    if five == 0 or gateway == 0:
        raise refused(
            f"{path}.consecutive5xxErrors" if five == 0 else f"{path}.consecutiveGatewayErrors",
            "0 (off) is not supported by meshfed: leave outlierDetection out for Envoy's"
            " defaults, or give a count",
        )
    out = dict(ISTIO_OUTLIER_DEFAULTS)
    if five is not None:
        out["consecutive5xx"] = five
    if gateway is not None and gateway < out["consecutive5xx"]:
        raise refused(
            f"{path}.consecutiveGatewayErrors",
            f"not supported by meshfed below consecutive5xxErrors ({out['consecutive5xx']}):"
            " one count applies to both (gateway errors are 5xx errors too)",
        )
    if od.interval is not None:
        out["intervalMs"] = _ms(od.interval, f"{path}.interval")
    if od.base_ejection_time is not None:
        out["baseEjectionTimeMs"] = _ms(od.base_ejection_time, f"{path}.baseEjectionTime")
    if od.max_ejection_percent is not None:
        out["maxEjectionPercent"] = od.max_ejection_percent
    return out


def _pool_and_outlier(policy: IstioTrafficPolicy | None, path: str) -> dict[str, Any]:
    """``connectionPool`` (flattened) and ``outlierDetection`` of an Istio traffic policy."""
    if policy is None:
        return {}
    out: dict[str, Any] = {}
    pool = policy.connection_pool
    if pool is not None:
        tcp, http = pool.tcp, pool.http
        out["connectionPool"] = _drop_none(
            {
                "maxConnections": tcp.max_connections if tcp else None,
                "http1MaxPendingRequests": http.http1_max_pending_requests if http else None,
                "http2MaxRequests": http.http2_max_requests if http else None,
                "maxRetries": http.max_retries if http else None,
                "maxRequestsPerConnection": http.max_requests_per_connection if http else None,
            }
        )
    if policy.outlier_detection is not None:
        out["outlierDetection"] = _outlier(policy.outlier_detection, f"{path}.outlierDetection")
    return out


def _subsets(rule: DestinationRule) -> list[dict[str, Any]]:
    out = []
    for i, subset in enumerate(rule.spec.subsets or []):
        path = f"spec.subsets.{i}"
        if not subset.labels:
            raise refused(
                f"{path}.labels",
                "required by meshfed: a subset is the workloads carrying its labels",
            )
        own = _pool_and_outlier(subset.traffic_policy, f"{path}.trafficPolicy")
        out.append(
            _drop_none({"name": subset.name, "labels": subset.labels, "trafficPolicy": own or None})
        )
    return out


def _check_subsets(vs: VirtualService, target: Target, defined: set[str], rule: str) -> None:
    ns = vs.metadata.namespace
    for i, route in enumerate(vs.spec.http or []):
        for j, r in enumerate(route.route or []):
            _defined(
                r.destination, f"spec.http.{i}.route.{j}.destination", target, ns, defined, rule
            )
        if route.mirror is not None:
            _defined(route.mirror, f"spec.http.{i}.mirror", target, ns, defined, rule)
    for i, tcp in enumerate(vs.spec.tcp or []):
        for j, t in enumerate(tcp.route or []):
            _defined(
                t.destination, f"spec.tcp.{i}.route.{j}.destination", target, ns, defined, rule
            )


def _defined(
    d: IstioDestination, path: str, target: Target, ns: str, defined: set[str], rule: str
) -> None:
    """Refuse a subset of the VirtualService's own service that no DestinationRule defines
    (another service's subset is refused by :func:`_destination`)."""
    if d.subset is not None and service_of(d.host, ns) == target and d.subset not in defined:
        raise refused(
            f"{path}.subset",
            f"subset {d.subset!r} is not defined by {rule or 'a DestinationRule'} for"
            f" {global_name(target)} (defined: {', '.join(sorted(defined)) or 'none'}):"
            " apply the DestinationRule first, or in the same file",
        )


def _reachable(routes: list[HTTPRoute]) -> list[HTTPRoute]:
    """``routes`` up to the first without ``match`` (it takes every request: the later ones
    never match, in Istio as here; :func:`virtual_service_warnings` says so)."""
    for i, route in enumerate(routes):
        if not route.match:
            return routes[: i + 1]
    return routes


def virtual_service_warnings(vs: VirtualService) -> list[str]:
    """What applying ``vs`` should tell its author: routes after one that matches every
    request, which never match (Istio accepts them too)."""
    routes = vs.spec.http or []
    kept = len(_reachable(routes))
    return [
        f"spec.http.{i}: never matches: spec.http.{kept - 1} matches every request"
        for i in range(kept, len(routes))
    ]


def _vs_target(vs: VirtualService) -> Target:
    hosts = vs.spec.hosts
    if len(hosts) != 1:
        raise refused("spec.hosts", f"one host per VirtualService in meshfed (got {len(hosts)})")
    return _target(hosts[0], vs.metadata.namespace, "spec.hosts.0")


def _target(host: str, namespace: str, path: str) -> Target:
    target = service_of(host, namespace)
    if target is None:
        raise refused(
            path,
            f"{host!r} is not a service of the mesh (write <svc>, <svc>.<ns>,"
            " <svc>.<ns>.svc.cluster.local or <svc>.<ns>.svc.clusterset.local; hosts"
            " outside the mesh need a ServiceEntry, which is not supported yet)",
        )
    if not all(p and p.replace("-", "").isalnum() and p.islower() for p in target):
        raise refused(path, f"{host!r} is not a Kubernetes service name")
    return target


@dataclass(frozen=True)
class Problem:
    """Why the documents ``documents`` (``Kind ns/name`` each) make no TrafficPolicy."""

    documents: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return f"{', '.join(self.documents)}: {self.message}"


@dataclass
class Translation:
    """What :func:`translate` made: TrafficPolicies by service, and the problems of the
    documents that could not be translated (``<Kind ns/name>: <field>: <reason>``)."""

    policies: dict[Target, TrafficPolicy] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: the Istio documents translated for each service.
    sources: dict[Target, list[str]] = field(default_factory=dict)


def target_of(doc: IstioDocument) -> Target:
    """The service a VirtualService or DestinationRule is for.

    Raises:
        TranslationError: its host is not one mesh service.
    """
    if isinstance(doc, VirtualService):
        return _vs_target(doc)
    return _target(doc.spec.host, doc.metadata.namespace, "spec.host")


def translate(documents: Sequence[BaseModel]) -> Translation:
    """The TrafficPolicies the VirtualServices and DestinationRules among ``documents``
    make (other kinds are skipped); every problem is collected, and a service with one
    gets no policy."""
    result = Translation()
    by_target: dict[Target, dict[str, IstioDocument]] = {}
    for doc in documents:
        if not isinstance(doc, VirtualService | DestinationRule):
            continue
        try:
            target = target_of(doc)
        except TranslationError as err:
            result.problems.append(Problem((label(doc),), str(err)))
            continue
        slot = by_target.setdefault(target, {})
        earlier = slot.get(doc.kind)
        if earlier is not None:
            result.problems.append(
                Problem(
                    (label(doc),),
                    f"{global_name(target)} already has {label(earlier)}"
                    f" (one {doc.kind} per service in meshfed: edit that one)",
                )
            )
            continue
        slot[doc.kind] = doc
    for target, docs in sorted(by_target.items()):
        vs = docs.get("VirtualService")
        dr = docs.get("DestinationRule")
        assert vs is None or isinstance(vs, VirtualService)
        assert dr is None or isinstance(dr, DestinationRule)
        policy = _policy(target, vs, dr)
        if isinstance(policy, Problem):
            result.problems.append(policy)
            continue
        result.policies[target] = policy
        result.sources[target] = [label(d) for d in (vs, dr) if d is not None]
    return result


def _policy(
    target: Target, vs: VirtualService | None, dr: DestinationRule | None
) -> TrafficPolicy | Problem:
    """The TrafficPolicy of ``target`` from its VirtualService and DestinationRule, or the
    problem that keeps it from being one."""
    spec: dict[str, Any] = {"host": global_name(target)}
    try:
        if dr is not None:
            current: IstioDocument = dr
            spec["subsets"] = _subsets(dr)
            spec.update(_pool_and_outlier(dr.spec.traffic_policy, "spec.trafficPolicy"))
        if vs is not None:
            current = vs
            defined = {s.name for s in (dr.spec.subsets or [])} if dr is not None else set()
            _check_subsets(vs, target, defined, label(dr) if dr is not None else "")
            ns = vs.metadata.namespace
            spec["http"] = [
                _http_route(r, target, ns, f"spec.http.{i}")
                for i, r in enumerate(_reachable(vs.spec.http or []))
            ]
            spec["tcp"] = [
                _tcp_route(r, target, ns, f"spec.tcp.{i}") for i, r in enumerate(vs.spec.tcp or [])
            ]
    except TranslationError as err:
        return Problem((label(current),), str(err))
    named = vs or dr
    assert named is not None
    labels = tuple(label(d) for d in (vs, dr) if d is not None)
    sources = ", ".join(labels)
    raw = {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {
            "name": named.metadata.name,
            "namespace": target[0],
            "annotations": {TRANSLATED_FROM: sources},
        },
        "spec": _drop_none(spec),
    }
    try:
        return TrafficPolicy.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        return Problem(labels, f"as a TrafficPolicy, {where}: {message}")
