"""Gateway API ``HTTPRoute`` (``gateway.networking.k8s.io/v1``, ``v1beta1``) on a Service:
GAMMA mesh routes, taken as written and translated to meshfed's TrafficPolicy (issue #40).

A route whose ``parentRefs`` names a Service (``group: ""``, ``kind: Service``) governs the
requests every caller in the mesh makes to that Service (gateway-api.sigs.k8s.io/mesh/,
GAMMA, read 2026-12-05); applied to the controller, callers in every member cluster. Its
rules become the TrafficPolicy's ``http`` routes of ``<svc>.<ns>.svc.clusterset.local``:

- **Precedence** as Gateway API orders matches, not as written: an ``Exact`` path, then the
  longest ``PathPrefix``, then a method, then the most headers, then the most query
  parameters; ties by rule order. One meshfed route per match; a match repeated later is
  dropped (the earlier wins). A rule without matches matches ``PathPrefix /``.
- ``PathPrefix /foo`` matches ``/foo`` and ``/foo/...`` but not ``/foobar`` (path segments,
  as Gateway API says): the regex ``/foo(/.*)?``. Header names are case-insensitive (lower
  cased). ``RegularExpression`` is RE2 (Envoy ``safe_regex``).
- ``backendRefs``: weights are relative (default 1), made percentages that sum to 100; the
  parent Service itself, or a ``ServiceImport`` of the same name (the MCS convention for the
  clusterset service), is the service's own endpoints -- meshfed's names are clusterset-wide,
  so a ``Service`` backend is the clusterset service too; another Service (same namespace)
  is that service, whole, on the ``port`` given.
- ``filters``: ``RequestMirror`` (``percent`` or ``fraction``) is a mirror;
  ``RequestHeaderModifier`` / ``ResponseHeaderModifier`` header operations; ``URLRewrite`` /
  ``RequestRedirect`` a rewrite / redirect (``ReplacePrefixMatch`` by path segments); the
  others (``CORS``, ``ExtensionRef``) are refused (not yet). ``timeouts.request`` is the
  route's timeout.
- A backend in another namespace needs a ``ReferenceGrant`` there that lets the route's
  kind and namespace name it (:class:`ReferenceGrant`).

Refused, naming the field: a Gateway parent (ingress is not supported yet), more than one
parentRef, a backend in another namespace without a ReferenceGrant, a second route
document for one Service. ``GRPCRoute`` is taken the same way, its method matches on the
RPC's path. ``parentRefs[].port`` and ``hostnames`` are accepted; meshfed
applies the route to every HTTP port of the Service (:func:`route_warnings`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from federation.durations import parse_duration
from federation.model.istio_networking import not_supported
from federation.model.istio_translate import (
    TRANSLATED_FROM,
    Problem,
    Translation,
    TranslationError,
    global_name,
    label,
    refused,
)
from federation.model.policy import TrafficPolicy
from federation.model.workload import ObjectMeta, _Strict

_NotYet = Annotated[Any, not_supported()]
_MCS_GROUP = "multicluster.x-k8s.io"
#: Gateway API's group (a ReferenceGrant's ``from[].group`` for routes).
GROUP = "gateway.networking.k8s.io"


class ParentReference(_Strict):
    """``parentRefs[]``."""

    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str = Field(min_length=1)
    section_name: _NotYet = Field(default=None, alias="sectionName")
    port: int | None = Field(default=None, ge=1, le=65535)


class PathMatch(_Strict):
    """``matches[].path``."""

    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"


class NameMatch(_Strict):
    """``matches[].headers[]`` / ``queryParams[]``."""

    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str = Field(min_length=1)
    value: str


class RouteMatch(_Strict):
    """``rules[].matches[]``."""

    path: PathMatch | None = None
    headers: list[NameMatch] | None = None
    query_params: list[NameMatch] | None = Field(default=None, alias="queryParams")
    method: str | None = None


class BackendRef(_Strict):
    """``backendRefs[]`` (and a mirror's ``backendRef``)."""

    group: str | None = None
    kind: str | None = None
    name: str = Field(min_length=1)
    namespace: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    weight: int | None = Field(default=None, ge=0, le=1_000_000)
    filters: _NotYet = None


class Fraction(_Strict):
    """``RequestMirror.fraction``."""

    numerator: int = Field(ge=0)
    denominator: int = Field(default=100, ge=1)


class RequestMirror(_Strict):
    """``filters[].requestMirror``."""

    backend_ref: BackendRef = Field(alias="backendRef")
    percent: int | None = Field(default=None, ge=0, le=100)
    fraction: Fraction | None = None


class HeaderValue(_Strict):
    """``HTTPHeader``: ``name`` and ``value``."""

    name: str = Field(min_length=1)
    value: str


class HeaderModifier(_Strict):
    """``RequestHeaderModifier`` / ``ResponseHeaderModifier``."""

    set: list[HeaderValue] | None = None
    add: list[HeaderValue] | None = None
    remove: list[str] | None = None


class PathModifier(_Strict):
    """``HTTPPathModifier``."""

    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = Field(default=None, alias="replaceFullPath")
    replace_prefix_match: str | None = Field(default=None, alias="replacePrefixMatch")


class URLRewrite(_Strict):
    """``URLRewrite`` filter."""

    hostname: str | None = None
    path: PathModifier | None = None


class RequestRedirect(_Strict):
    """``RequestRedirect`` filter."""

    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    status_code: Literal[301, 302, 303, 307, 308] = Field(default=302, alias="statusCode")


class RouteFilter(_Strict):
    """``filters[]``: ``RequestMirror`` and the header modifiers are honoured; the others
    are refused."""

    type: str
    request_mirror: RequestMirror | None = Field(default=None, alias="requestMirror")
    request_header_modifier: HeaderModifier | None = Field(
        default=None, alias="requestHeaderModifier"
    )
    response_header_modifier: HeaderModifier | None = Field(
        default=None, alias="responseHeaderModifier"
    )
    request_redirect: RequestRedirect | None = Field(default=None, alias="requestRedirect")
    url_rewrite: URLRewrite | None = Field(default=None, alias="urlRewrite")
    extension_ref: _NotYet = Field(default=None, alias="extensionRef")
    cors: _NotYet = None


class Timeouts(_Strict):
    """``rules[].timeouts``."""

    request: str | None = None
    backend_request: _NotYet = Field(default=None, alias="backendRequest")


class RouteRule(_Strict):
    """``rules[]``."""

    name: str | None = None
    matches: list[RouteMatch] | None = None
    filters: list[RouteFilter] | None = None
    backend_refs: list[BackendRef] | None = Field(default=None, alias="backendRefs")
    timeouts: Timeouts | None = None
    retry: _NotYet = None
    session_persistence: _NotYet = Field(default=None, alias="sessionPersistence")


class GRPCMethodMatch(_Strict):
    """``GRPCRoute`` ``matches[].method``: the service and/or the method (the RPC's path is
    ``/<service>/<method>``)."""

    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: str | None = None
    method: str | None = None


class GRPCRouteMatch(_Strict):
    """``GRPCRoute`` ``rules[].matches[]``."""

    method: GRPCMethodMatch | None = None
    headers: list[NameMatch] | None = None


class GRPCRouteRule(_Strict):
    """``GRPCRoute`` ``rules[]`` (no timeouts in Gateway API's GRPCRoute)."""

    name: str | None = None
    matches: list[GRPCRouteMatch] | None = None
    filters: list[RouteFilter] | None = None
    backend_refs: list[BackendRef] | None = Field(default=None, alias="backendRefs")
    session_persistence: _NotYet = Field(default=None, alias="sessionPersistence")

    @property
    def timeouts(self) -> None:
        """GRPCRoute has none (the shared rule translation asks)."""
        return None


class GRPCRouteSpec(_Strict):
    """``spec`` of a GRPCRoute."""

    parent_refs: list[ParentReference] = Field(default_factory=list, alias="parentRefs")
    hostnames: list[str] | None = None
    rules: list[GRPCRouteRule] | None = None


class GRPCRoute(_Strict):
    """A ``GRPCRoute`` document (``gateway.networking.k8s.io/v1``)."""

    api_version: Literal["gateway.networking.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["GRPCRoute"]
    metadata: ObjectMeta
    spec: GRPCRouteSpec
    status: Any = Field(default=None, exclude=True)


class HTTPRouteSpec(_Strict):
    """``spec`` of an HTTPRoute."""

    parent_refs: list[ParentReference] = Field(default_factory=list, alias="parentRefs")
    hostnames: list[str] | None = None
    rules: list[RouteRule] | None = None


class HTTPRoute(_Strict):
    """An ``HTTPRoute`` document; ``status`` (as ``kubectl get -o yaml`` prints it) is
    accepted and not stored."""

    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"] = (
        Field(alias="apiVersion")
    )
    kind: Literal["HTTPRoute"]
    metadata: ObjectMeta
    spec: HTTPRouteSpec
    status: Any = Field(default=None, exclude=True)


Route = HTTPRoute | GRPCRoute


class GrantFrom(_Strict):
    """``ReferenceGrant`` ``spec.from[]``."""

    group: str
    kind: str
    namespace: str


class GrantTo(_Strict):
    """``ReferenceGrant`` ``spec.to[]`` (no ``name``: every object of the kind)."""

    group: str
    kind: str
    name: str | None = None


class ReferenceGrantSpec(_Strict):
    """``spec`` of a ReferenceGrant."""

    from_: list[GrantFrom] = Field(alias="from", min_length=1)
    to: list[GrantTo] = Field(min_length=1)


class ReferenceGrant(_Strict):
    """A ``ReferenceGrant`` (``gateway.networking.k8s.io/v1beta1``, ``v1``): lets routes of
    the ``from`` namespaces name the ``to`` objects of the grant's own namespace as backends
    (Gateway API's rule for cross-namespace references)."""

    api_version: Literal["gateway.networking.k8s.io/v1beta1", "gateway.networking.k8s.io/v1"] = (
        Field(alias="apiVersion")
    )
    kind: Literal["ReferenceGrant"]
    metadata: ObjectMeta
    spec: ReferenceGrantSpec


@dataclass(frozen=True)
class _Scope:
    """What a route's backends are resolved against: its parent ``(namespace, service)``,
    its kind, and the ReferenceGrants in force."""

    parent: tuple[str, str]
    kind: str
    grants: tuple[ReferenceGrant, ...] = ()

    def granted(self, namespace: str, kind: str, group: str, name: str) -> bool:
        """Whether a ReferenceGrant in ``namespace`` lets this route name that object."""
        return any(
            g.metadata.namespace == namespace
            and any(
                (f.group, f.kind, f.namespace) == (GROUP, self.kind, self.parent[0])
                for f in g.spec.from_
            )
            and any(
                (t.group or "", t.kind) == (group, kind) and t.name in (None, name)
                for t in g.spec.to
            )
            for g in self.grants
        )


def parent_service(route: Route) -> tuple[str, str]:
    """``(namespace, service)`` of the route's one parent: a Service or, as the MCS
    convention for the clusterset service, a ServiceImport (meshfed's names are clusterset-wide:
    the same)."""
    refs = route.spec.parent_refs
    if not refs:
        raise refused(
            "spec.parentRefs",
            'the route attaches to nothing: a mesh route names its Service (GAMMA: group "",'
            " kind Service)",
        )
    if len(refs) != 1:
        raise refused("spec.parentRefs", f"one parent per route in meshfed (got {len(refs)})")
    ref = refs[0]
    service_import = (ref.group, ref.kind) == (_MCS_GROUP, "ServiceImport")
    if not service_import and ((ref.group or "") not in ("", "core") or ref.kind != "Service"):
        raise refused(
            "spec.parentRefs.0",
            f"not supported by meshfed: {ref.kind or 'Gateway'} parent: meshfed takes mesh"
            ' routes (GAMMA: group "", kind Service, or an MCS ServiceImport); Gateways are'
            " not supported yet",
        )
    namespace = ref.namespace or route.metadata.namespace
    if namespace != route.metadata.namespace:
        raise refused(
            "spec.parentRefs.0.namespace",
            "a route for a Service of another namespace is not supported yet",
        )
    return (namespace, ref.name)


def _destination(ref: BackendRef, scope: _Scope, path: str) -> dict[str, Any]:
    """A backendRef as a meshfed destination: the parent itself (``{}``) or another
    service (``host``, ``port``); a backend in another namespace only where a
    ReferenceGrant there allows it."""
    parent = scope.parent
    kind, group = ref.kind or "Service", ref.group or ""
    if group == "core":
        group = ""
    namespace = ref.namespace or parent[0]
    if namespace != parent[0] and not scope.granted(namespace, kind, group, ref.name):
        raise refused(
            f"{path}.namespace",
            f"no ReferenceGrant in namespace {namespace!r} lets {scope.kind}s of"
            f" {parent[0]!r} name {kind} {ref.name!r} (Gateway API requires one)",
        )
    target = (namespace, ref.name)
    if (kind, group) == ("ServiceImport", _MCS_GROUP):  # a clusterset service
        if target == parent:
            return {}
        return {"host": global_name(target), **({"port": ref.port} if ref.port else {})}
    if (kind, group) != ("Service", ""):
        raise refused(
            path, f"not supported by meshfed: backend kind {kind!r} (Service or ServiceImport)"
        )
    if target == parent:
        return {}
    if ref.port is None:
        raise refused(f"{path}.port", "required for a Service backend (Gateway API)")
    return {"host": global_name(target), "port": ref.port}


def _percentages(weights: Sequence[int]) -> list[int]:
    """Relative weights as percentages summing to 100 (largest remainder)."""
    total = sum(weights)
    if total == 0:
        raise refused("backendRefs", "every weight is 0: nothing could serve the route")
    exact = [w * 100 / total for w in weights]
    out = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - out[i], reverse=True)[
        : 100 - sum(out)
    ]:
        out[i] += 1
    return out


def _match(m: RouteMatch) -> dict[str, Any]:
    out: dict[str, Any] = {}
    path = m.path or PathMatch()
    if path.type == "Exact":
        out["uri"] = {"exact": path.value}
    elif path.type == "RegularExpression":
        out["uri"] = {"regex": path.value}
    elif path.value.rstrip("/"):
        out["uri"] = {"regex": re.escape(path.value.rstrip("/")) + "(/.*)?"}
    else:
        out["uri"] = {"prefix": "/"}
    if m.method:
        out["method"] = {"exact": m.method}
    kinds = {"Exact": "exact", "RegularExpression": "regex"}
    if m.headers:
        out["headers"] = {h.name.lower(): {kinds[h.type]: h.value} for h in m.headers}
    if m.query_params:
        out["queryParams"] = {q.name: {kinds[q.type]: q.value} for q in m.query_params}
    return out


def _precedence(m: RouteMatch) -> tuple[int, int, int, int, int]:
    """Gateway API's order of matches (smaller first)."""
    path = m.path or PathMatch()
    return (
        0 if path.type == "Exact" else 1,
        -len(path.value) if path.type == "PathPrefix" else 0,
        0 if m.method else 1,
        -len(m.headers or []),
        -len(m.query_params or []),
    )


def _grpc_match(m: GRPCRouteMatch) -> dict[str, Any]:
    """A GRPCRoute match as a meshfed HTTP match on the RPC's path and metadata."""
    out: dict[str, Any] = {}
    method = m.method
    if method is not None and (method.service or method.method):
        if method.type == "Exact":
            if method.service and method.method:
                out["uri"] = {"exact": f"/{method.service}/{method.method}"}
            elif method.service:
                out["uri"] = {"prefix": f"/{method.service}/"}
            else:
                out["uri"] = {"regex": f"/[^/]+/{re.escape(str(method.method))}"}
        else:
            out["uri"] = {"regex": f"/{method.service or '[^/]+'}/{method.method or '[^/]+'}"}
    kinds = {"Exact": "exact", "RegularExpression": "regex"}
    if m.headers:
        out["headers"] = {h.name.lower(): {kinds[h.type]: h.value} for h in m.headers}
    return out


def _grpc_precedence(m: GRPCRouteMatch) -> tuple[int, int, int, int, int]:
    """GRPCRoute's order of matches: the longest service, then method, then most headers."""
    method = m.method or GRPCMethodMatch()
    return (-len(method.service or ""), -len(method.method or ""), -len(m.headers or []), 0, 0)


def _path_rewrite(modifier: PathModifier, prefix: str | None, path: str) -> dict[str, Any]:
    """A path modifier as meshfed's ``uriRegexRewrite``: ``ReplaceFullPath`` the whole path;
    ``ReplacePrefixMatch`` the match's PathPrefix, by path segments as Gateway API says
    (prefix ``/foo`` to ``/``: ``/foo/bar`` becomes ``/bar``; to ``/xyz``: ``/xyz/bar``)."""
    if modifier.type == "ReplaceFullPath":
        return {"match": "^.*$", "rewrite": modifier.replace_full_path or "/"}
    if prefix is None:
        raise refused(
            f"{path}.type", "ReplacePrefixMatch needs the rule's match to be a PathPrefix"
        )
    stem = prefix.rstrip("/")
    replacement = modifier.replace_prefix_match or "/"
    if replacement.endswith("/"):
        return {"match": f"^{re.escape(stem)}/?", "rewrite": replacement}
    return {"match": f"^{re.escape(stem)}", "rewrite": replacement}


def _rule_action(
    rule: RouteRule | GRPCRouteRule,
    scope: _Scope,
    path: str,
    prefix: str | None = None,
) -> dict[str, Any]:
    """One rule's action for a match whose PathPrefix is ``prefix`` (None: another kind)."""
    refs = rule.backend_refs or []
    redirect = next((f.request_redirect for f in rule.filters or [] if f.request_redirect), None)
    out: dict[str, Any] = {}
    if redirect is None and not refs:
        raise refused(
            f"{path}.backendRefs", "required by meshfed (a rule without backends answers 500)"
        )
    if refs:
        weights = _percentages([r.weight if r.weight is not None else 1 for r in refs])
        out["route"] = [
            {"destination": _destination(r, scope, f"{path}.backendRefs.{i}"), "weight": w}
            for i, (r, w) in enumerate(zip(refs, weights, strict=True))
        ]
    if rule.name:
        out["name"] = rule.name
    if rule.timeouts is not None and rule.timeouts.request is not None:
        try:
            out["timeoutMs"] = max(
                1, round(parse_duration(rule.timeouts.request).total_seconds() * 1000)
            )
        except ValueError as err:
            raise refused(f"{path}.timeouts.request", str(err)) from err
    headers: dict[str, Any] = {}
    for j, f in enumerate(rule.filters or []):
        where = f"{path}.filters.{j}"
        side, ops = {
            "RequestHeaderModifier": ("request", f.request_header_modifier),
            "ResponseHeaderModifier": ("response", f.response_header_modifier),
        }.get(f.type, ("", None))
        if ops is not None:
            headers[side] = {
                "set": {h.name.lower(): h.value for h in ops.set or []},
                "add": {h.name.lower(): h.value for h in ops.add or []},
                "remove": [n.lower() for n in ops.remove or []],
            }
        elif f.type == "URLRewrite" and f.url_rewrite is not None:
            rw = f.url_rewrite
            out["rewrite"] = {
                **({"authority": rw.hostname} if rw.hostname else {}),
                **(
                    {"uriRegexRewrite": _path_rewrite(rw.path, prefix, f"{where}.urlRewrite.path")}
                    if rw.path
                    else {}
                ),
            }
        elif f.type == "RequestRedirect" and f.request_redirect is not None:
            rd = f.request_redirect
            target: dict[str, Any] = {"redirectCode": rd.status_code}
            target |= {"scheme": rd.scheme} if rd.scheme else {}
            target |= {"authority": rd.hostname} if rd.hostname else {}
            target |= {"port": rd.port} if rd.port else {}
            if rd.path is not None:
                target["uriRegexRewrite"] = _path_rewrite(
                    rd.path, prefix, f"{where}.requestRedirect.path"
                )
            out["redirect"] = target
            out.pop("route", None)  # a redirect answers: no backend is called
        elif f.type == "RequestMirror" and f.request_mirror is not None:
            mirror = f.request_mirror
            out["mirror"] = _destination(
                mirror.backend_ref, scope, f"{where}.requestMirror.backendRef"
            )
            if mirror.fraction is not None:
                out["mirrorPercentage"] = {
                    "value": 100 * mirror.fraction.numerator / mirror.fraction.denominator
                }
            elif mirror.percent is not None:
                out["mirrorPercentage"] = {"value": mirror.percent}
        else:
            raise refused(
                where,
                f"not supported by meshfed yet: filter {f.type!r} (RequestHeaderModifier,"
                " ResponseHeaderModifier, URLRewrite, RequestRedirect and RequestMirror are)",
            )
    if headers:
        out["headers"] = headers
    return out


def _entries(route: Route, scope: _Scope) -> list[tuple[Any, int, dict[str, Any], dict[str, Any]]]:
    """``(precedence, rule index, meshfed match, action)`` of every match of ``route``."""
    out: list[tuple[Any, int, dict[str, Any], dict[str, Any]]] = []
    if isinstance(route, GRPCRoute):
        for i, grpc_rule in enumerate(route.spec.rules or []):
            action = _rule_action(grpc_rule, scope, f"spec.rules.{i}")
            for g in grpc_rule.matches or [GRPCRouteMatch()]:
                out.append((_grpc_precedence(g), i, _grpc_match(g), action))
        return out
    for i, rule in enumerate(route.spec.rules or []):
        for m in rule.matches or [RouteMatch()]:
            path = m.path or PathMatch()
            prefix = path.value if path.type == "PathPrefix" else None
            action = _rule_action(rule, scope, f"spec.rules.{i}", prefix)
            out.append((_precedence(m), i, _match(m), action))
    return out


def _policy(route: Route, scope: _Scope) -> TrafficPolicy:
    parent = scope.parent
    http, seen = [], set()
    for _, _, match, action in sorted(_entries(route, scope), key=lambda e: (e[0], e[1])):
        key = repr(sorted(match.items()))
        if key in seen:
            continue  # the same match in a later rule never wins
        seen.add(key)
        http.append({**action, "match": [match]} if match else action)
    raw = {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {
            "name": route.metadata.name,
            "namespace": parent[0],
            "annotations": {TRANSLATED_FROM: label(route)},
        },
        "spec": {"host": global_name(parent), "http": http},
    }
    try:
        return TrafficPolicy.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise refused(
            "spec", f"as a TrafficPolicy, {where}: {first['msg'].removeprefix('Value error, ')}"
        ) from err


def translate_routes(documents: Sequence[BaseModel]) -> Translation:
    """The TrafficPolicies the HTTPRoutes and GRPCRoutes among ``documents`` make, their
    cross-namespace backends allowed by the ReferenceGrants among them (other kinds
    skipped); every problem collected, and a Service with one gets no policy."""
    result = Translation()
    owners: dict[tuple[str, str], Route] = {}
    grants = tuple(d for d in documents if isinstance(d, ReferenceGrant))
    for doc in documents:
        if not isinstance(doc, HTTPRoute | GRPCRoute):
            continue
        try:
            parent = parent_service(doc)
            earlier = owners.get(parent)
            if earlier is not None:
                raise refused(
                    "spec.parentRefs.0",
                    f"{global_name(parent)} already has {label(earlier)} (one route document"
                    " per Service in meshfed: edit that one)",
                )
            policy = _policy(doc, _Scope(parent, doc.kind, grants))
        except TranslationError as err:
            result.problems.append(Problem((label(doc),), str(err)))
            continue
        owners[parent] = doc
        result.policies[parent] = policy
        result.sources[parent] = [label(doc)]
    return result


def route_warnings(route: Route) -> list[str]:
    """What applying ``route`` should tell its author (as kubectl prints warnings):
    ``parentRefs[].port`` and ``hostnames``, which meshfed does not narrow routes by."""
    out = [
        f"spec.parentRefs.{i}.port {ref.port}: meshfed applies the routes to every HTTP port"
        " of the Service"
        for i, ref in enumerate(route.spec.parent_refs)
        if ref.port is not None
    ]
    if route.spec.hostnames:
        out.append(
            "spec.hostnames: not used for a Service parent (GAMMA); callers name the Service"
        )
    return out


#: ``status.parents[].controllerName`` meshfed writes (Gateway API: a domain-prefixed path).
CONTROLLER_NAME = "meshfed.io/federation-controller"


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}


def route_status(
    route: Route,
    known: set[tuple[str, str]],
    problems: Sequence[str] = (),
    *,
    scope: str = "every member cluster's callers",
    unknown: str = "no member cluster exports",
) -> dict[str, Any]:
    """The ``status`` Gateway API defines for a route, as meshfed holds it: per parent,
    ``Accepted`` (False with reason ``UnsupportedValue`` and the ``problems`` that keep the
    route from being a TrafficPolicy) and ``ResolvedRefs`` (False with ``BackendNotFound``
    when a backend Service is not among ``known`` -- ``(namespace, service)`` exported by a
    member cluster). ``scope`` (whose callers the route is for) and ``unknown`` word the
    messages. Without ``observedGeneration`` and ``lastTransitionTime`` (the controller
    computes this when read; a control plane writing it adds them). Pure."""
    missing: list[str] = []
    namespace = route.metadata.namespace
    for rule in route.spec.rules or []:
        for ref in rule.backend_refs or []:
            key = (ref.namespace or namespace, ref.name)
            if key not in known and f"{key[0]}/{key[1]}" not in missing:
                missing.append(f"{key[0]}/{key[1]}")
    accepted = _condition(
        "Accepted",
        not problems,
        "UnsupportedValue" if problems else "Accepted",
        "; ".join(problems) or f"the route is in force for {scope}",
    )
    resolved = _condition(
        "ResolvedRefs",
        not missing,
        "BackendNotFound" if missing else "ResolvedRefs",
        f"{unknown} {', '.join(missing)}" if missing else "every backend is exported",
    )
    parents = [
        {
            "parentRef": ref.model_dump(by_alias=True, exclude_none=True),
            "controllerName": CONTROLLER_NAME,
            "conditions": [accepted, resolved],
        }
        for ref in route.spec.parent_refs
    ]
    return {"parents": parents}
