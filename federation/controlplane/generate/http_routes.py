"""RDS for a TrafficPolicy's ``http`` routes (issue #21): the Envoy ``Route`` list of one
service port, as one calling sidecar in one cluster sees it. Pure.

How Istio's fields become Envoy's (docs/policy.md has the table):

- ``match[]``: one Envoy ``Route`` per entry (Envoy's ``RouteMatch`` is a conjunction, an
  Istio route's entries a disjunction), in order. ``uri`` -> ``path`` (exact), ``prefix``
  or ``safe_regex``; ``method`` -> a ``:method`` ``HeaderMatcher``; ``headers`` ->
  ``HeaderMatcher.string_match``; ``queryParams`` -> ``QueryParameterMatcher``.
  ``sourceClusters`` are resolved here: an entry for other callers' clusters is left out of
  this cluster's configuration (a route left without entries is left out whole).
- ``route[]``: the destination clusters by weight (``weighted_clusters``); a destination
  ``cluster: b`` is the subset cluster ``outbound|<port>|b|<host>`` (b's healthy
  localities first; when b has none, the locality failover order, as a ``split`` share),
  none the service's whole cluster.
- ``timeoutMs``, ``retries``: the route's, else the policy's, else meshfed's defaults (no
  timeout; 2 retries on connect failures, resets and 503, another host and priority each
  time -- what makes failover lossless).
- ``fault``: ``typed_per_filter_config`` for ``envoy.filters.http.fault`` (the outbound
  listener always carries the filter, empty): ``FaultDelay.fixed_delay`` / ``FaultAbort.
  http_status``, each with ``percentage`` as a ``FractionalPercent`` per million.
- ``mirror`` + ``mirrorPercentage``: ``request_mirror_policies`` (responses discarded by
  Envoy; the mirrored request's ``Host`` gets ``-shadow`` appended, as Envoy does).
- ``rewrite``: ``prefix_rewrite`` (``uri``), ``regex_rewrite`` (``uriRegexRewrite``),
  ``host_rewrite_literal`` (``authority``) on the route's action.
- ``redirect``: the Route answers with a ``RedirectAction`` (``path_redirect`` or
  ``regex_rewrite``, ``host_redirect``, ``port_redirect``, ``scheme_redirect``,
  ``response_code``) instead of routing.
- ``headers``: the Route's ``request_headers_to_add`` / ``_to_remove`` and
  ``response_headers_to_add`` / ``_to_remove`` (``set``: OVERWRITE_IF_EXISTS_OR_ADD,
  ``add``: APPEND_IF_EXISTS_OR_ADD).

After the policy's routes comes the default route (``prefix: /``, the ``split`` or the whole
service) unless the last policy route matches every request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2

from federation.controlplane.generate.common import duration_ms, pack
from federation.controlplane.generate.routes import retry_policy, weighted_action
from federation.controlplane.generate.services import ServicePort
from federation.model.policy import (
    Destination,
    HeaderOperations,
    Headers,
    HTTPMatchRequest,
    HTTPRoute,
    Percent,
    Redirect,
    RegexRewrite,
    StringMatch,
    TrafficPolicy,
)

FAULT_FILTER = "envoy.filters.http.fault"


def string_matcher(match: StringMatch) -> string_pb2.StringMatcher:
    """An Istio ``StringMatch`` as Envoy's ``StringMatcher``."""
    if match.exact is not None:
        return string_pb2.StringMatcher(exact=match.exact)
    if match.prefix is not None:
        return string_pb2.StringMatcher(prefix=match.prefix)
    assert match.regex is not None
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.regex))


def grpc_header_matcher(name: str, match: StringMatch) -> rc.HeaderMatcher:
    """A header match in the fields grpcio's xDS client reads (gRFC A28: ``exact_match``,
    ``prefix_match``, ``safe_regex_match``)."""
    if match.exact is not None:
        return rc.HeaderMatcher(name=name, exact_match=match.exact)
    if match.prefix is not None:
        return rc.HeaderMatcher(name=name, prefix_match=match.prefix)
    assert match.regex is not None
    return rc.HeaderMatcher(name=name, safe_regex_match=regex_pb2.RegexMatcher(regex=match.regex))


def route_match(match: HTTPMatchRequest | None, *, grpc: bool = False) -> rc.RouteMatch:
    """One ``HTTPMatchRequest`` (None: every request) as a ``RouteMatch`` (``grpc``: as
    grpcio's xDS client reads it: headers by :func:`grpc_header_matcher`, an empty prefix for
    every request)."""
    out = rc.RouteMatch()
    uri = match.uri if match is not None else None
    if uri is None or uri.prefix is not None:
        every = "" if grpc else "/"
        out.prefix = uri.prefix if uri is not None and uri.prefix is not None else every
    elif uri.exact is not None:
        out.path = uri.exact
    else:
        assert uri.regex is not None
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.regex))
    if match is None:
        return out
    if match.method is not None:
        out.headers.append(
            rc.HeaderMatcher(name=":method", string_match=string_matcher(match.method))
        )
    for name, value in sorted(match.headers.items()):
        out.headers.append(
            grpc_header_matcher(name, value)
            if grpc
            else rc.HeaderMatcher(name=name, string_match=string_matcher(value))
        )
    for name, value in sorted(match.query_params.items()):
        out.query_parameters.append(
            rc.QueryParameterMatcher(name=name, string_match=string_matcher(value))
        )
    return out


def fractional(percent: Percent) -> percent_pb2.FractionalPercent:
    """A percentage (0-100) as a ``FractionalPercent`` per million."""
    return percent_pb2.FractionalPercent(
        numerator=round(percent.value * 10_000),
        denominator=percent_pb2.FractionalPercent.DenominatorType.MILLION,
    )


def fault_config(route: HTTPRoute) -> fault_pb2.HTTPFault | None:
    """The route's ``fault`` as the fault filter's per-route configuration (None: none)."""
    if route.fault is None:
        return None
    out = fault_pb2.HTTPFault()
    if route.fault.delay is not None:
        out.delay.CopyFrom(
            common_fault.FaultDelay(
                fixed_delay=duration_ms(route.fault.delay.fixed_delay_ms),
                percentage=fractional(route.fault.delay.percentage),
            )
        )
    if route.fault.abort is not None:
        out.abort.CopyFrom(
            fault_pb2.FaultAbort(
                http_status=route.fault.abort.http_status,
                percentage=fractional(route.fault.abort.percentage),
            )
        )
    return out


def _applies(match: HTTPMatchRequest, caller_cluster: str) -> bool:
    return not match.source_clusters or caller_cluster in match.source_clusters


def envoy_cluster(
    port: ServicePort,
    subsets: Mapping[tuple[str | None, str | None], str],
    destination: Destination,
) -> str:
    """The Envoy cluster of a route destination: another service's (``host``: its port
    ``destination.port``, else the routed port's number), the service's own with neither
    cluster nor subset, else the one ``subsets`` names for its ``(cluster, subset)``."""
    if destination.host is not None:
        return f"outbound|{destination.port or port.port}||{destination.host}"  # Istio's naming
    if destination.key() == (None, None):
        return port.cluster_name
    return subsets[destination.key()]


def route_action(
    port: ServicePort,
    route: HTTPRoute,
    policy: TrafficPolicy,
    subset: Callable[[Destination], str],
) -> rc.RouteAction:
    """The action of one policy route; ``subset`` names the Envoy cluster of a destination."""
    spec = policy.spec
    action = weighted_action([(subset(d.destination), d.weight) for d in route.route])
    action.timeout.CopyFrom(duration_ms(route.timeout_ms or spec.timeout_ms or 0))
    action.retry_policy.CopyFrom(retry_policy(route.retries or spec.retries))
    rewrite = route.rewrite
    if rewrite is not None:
        if rewrite.uri is not None:
            action.prefix_rewrite = rewrite.uri
        if rewrite.uri_regex_rewrite is not None:
            action.regex_rewrite.CopyFrom(_substitute(rewrite.uri_regex_rewrite))
        if rewrite.authority is not None:
            action.host_rewrite_literal = rewrite.authority
    if route.mirror is not None:
        action.request_mirror_policies.append(
            rc.RouteAction.RequestMirrorPolicy(
                cluster=subset(route.mirror),
                runtime_fraction=base_pb2.RuntimeFractionalPercent(
                    default_value=fractional(route.mirror_percentage or Percent(value=100))
                ),
            )
        )
    return action


def _substitute(rewrite: RegexRewrite) -> regex_pb2.RegexMatchAndSubstitute:
    return regex_pb2.RegexMatchAndSubstitute(
        pattern=regex_pb2.RegexMatcher(regex=rewrite.match), substitution=rewrite.rewrite
    )


_REDIRECT_CODES = {
    301: rc.RedirectAction.RedirectResponseCode.MOVED_PERMANENTLY,
    302: rc.RedirectAction.RedirectResponseCode.FOUND,
    303: rc.RedirectAction.RedirectResponseCode.SEE_OTHER,
    307: rc.RedirectAction.RedirectResponseCode.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.RedirectResponseCode.PERMANENT_REDIRECT,
}


def redirect_action(redirect: Redirect) -> rc.RedirectAction:
    """A route's ``redirect`` as Envoy's ``RedirectAction``."""
    out = rc.RedirectAction(response_code=_REDIRECT_CODES[redirect.redirect_code])
    if redirect.uri is not None:
        out.path_redirect = redirect.uri
    if redirect.uri_regex_rewrite is not None:
        out.regex_rewrite.CopyFrom(_substitute(redirect.uri_regex_rewrite))
    if redirect.authority is not None:
        out.host_redirect = redirect.authority
    if redirect.port is not None:
        out.port_redirect = redirect.port
    if redirect.scheme is not None:
        out.scheme_redirect = redirect.scheme
    return out


def policy_routes(
    port: ServicePort,
    policy: TrafficPolicy,
    caller_cluster: str,
    subsets: Mapping[tuple[str | None, str | None], str],
    default: rc.RouteAction,
) -> list[rc.Route]:
    """The routes of ``port`` for callers in ``caller_cluster`` (see the module docstring).

    Args:
        subsets: ``(cluster, subset)`` of each destination -> its Envoy cluster
            (``outbound|<port>|<cluster>|<host>``, ``outbound|<port>|<subset>@<cluster or
            *>|<host>``).
        default: the action of the closing ``prefix: /`` route.
    """

    def subset(destination: Destination) -> str:
        return envoy_cluster(port, subsets, destination)

    out: list[rc.Route] = []
    catch_all = False
    for i, route in enumerate(policy.spec.http):
        entries: list[HTTPMatchRequest | None] = (
            [m for m in route.match if _applies(m, caller_cluster)] if route.match else [None]
        )
        if not entries:
            continue  # for callers in other clusters only
        action: rc.RouteAction | rc.RedirectAction = (
            redirect_action(route.redirect)
            if route.redirect is not None
            else route_action(port, route, policy, subset)
        )
        out += _envoy_routes(
            route.name or f"http-{i}", entries, action, fault_config(route), headers=route.headers
        )
        catch_all = catch_all or any(_matches_all(e) for e in entries)
    if not catch_all:
        out.append(rc.Route(name="default", match=rc.RouteMatch(prefix="/"), route=default))
    return out


def _header_values(
    ops: HeaderOperations | None,
) -> tuple[list[base_pb2.HeaderValueOption], list[str]]:
    """``(to add, to remove)`` of one side's header operations."""
    if ops is None:
        return [], []
    set_, add = (
        base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
    )
    options = [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, value=v), append_action=action
        )
        for values, action in ((ops.set, set_), (ops.add, add))
        for k, v in sorted(values.items())
    ]
    return options, list(ops.remove)


def _envoy_routes(
    name: str,
    entries: Sequence[HTTPMatchRequest | None],
    action: rc.RouteAction | rc.RedirectAction,
    fault: fault_pb2.HTTPFault | None,
    *,
    grpc: bool = False,
    headers: Headers | None = None,
) -> list[rc.Route]:
    """One Envoy route per match entry of a policy route (``<name>.<j>`` when several)."""
    request_add, request_remove = _header_values(headers.request if headers else None)
    response_add, response_remove = _header_values(headers.response if headers else None)
    return [
        rc.Route(
            name=f"{name}.{j}" if len(entries) > 1 else name,
            match=route_match(entry, grpc=grpc),
            **(
                {"redirect": action} if isinstance(action, rc.RedirectAction) else {"route": action}
            ),
            typed_per_filter_config={FAULT_FILTER: pack(fault)} if fault else {},
            request_headers_to_add=request_add,
            request_headers_to_remove=request_remove,
            response_headers_to_add=response_add,
            response_headers_to_remove=response_remove,
        )
        for j, entry in enumerate(entries)
    ]


def _matches_all(entry: HTTPMatchRequest | None) -> bool:
    """True when the entry (its source clusters already resolved) matches every request."""
    if entry is None:
        return True
    plain = entry.model_copy(update={"source_clusters": [], "name": None})
    if plain.uri is not None and plain.uri.prefix == "/":
        plain = plain.model_copy(update={"uri": None})
    return plain == HTTPMatchRequest()


def tcp_clusters(
    port: ServicePort,
    policy: TrafficPolicy | None,
    caller_cluster: str,
    subsets: Mapping[tuple[str | None, str | None], str],
    split: Sequence[tuple[str, int]] = (),
) -> list[tuple[str, int]]:
    """``[(Envoy cluster, weight)]`` of a TCP service port for callers in ``caller_cluster``:
    the first ``tcp`` route of the policy that applies to them (destinations as for ``http``),
    else the ``split`` subsets (``[(name, percent)]``), else the whole service."""
    for route in policy.spec.tcp if policy is not None else []:
        if route.applies_to(caller_cluster):
            return [(envoy_cluster(port, subsets, d.destination), d.weight) for d in route.route]
    live = [(name, w) for name, w in split if w > 0]
    return live or [(port.cluster_name, 100)]


def grpc_routes(
    port: ServicePort,
    policy: TrafficPolicy,
    caller_cluster: str,
    subsets: Mapping[tuple[str | None, str | None], str],
    default: rc.RouteAction,
) -> list[rc.Route]:
    """The policy's ``http`` routes for a proxyless gRPC client in ``caller_cluster``, as far
    as grpcio's xDS client goes: matches on ``uri`` (the RPC's ``/package.Service/Method``
    path) and ``headers`` (metadata), destinations by member cluster with weights (gRFC A28),
    ``timeoutMs`` as ``max_stream_duration`` (A31) and ``fault`` (A33). Left out for gRPC:
    match entries with ``method`` or ``queryParams`` (gRPC has neither), routes to label
    subsets or to other services (not generated for gRPC clients), routes that change
    headers, rewrite or redirect (gRPC's xDS client does not), and mirroring (not in gRPC).
    The closing route is ``default``."""
    out: list[rc.Route] = []
    catch_all = False
    for i, route in enumerate(policy.spec.http):
        if (
            route.headers is not None
            or route.rewrite is not None
            or route.redirect is not None
            or any(d.destination.subset or d.destination.host for d in route.route)
        ):
            continue
        entries: list[HTTPMatchRequest | None] = (
            [
                m
                for m in route.match
                if _applies(m, caller_cluster) and m.method is None and not m.query_params
            ]
            if route.match
            else [None]
        )
        if not entries:
            continue
        action = weighted_action(
            [(envoy_cluster(port, subsets, d.destination), d.weight) for d in route.route]
        )
        timeout = route.timeout_ms or policy.spec.timeout_ms
        if timeout:
            action.max_stream_duration.max_stream_duration.CopyFrom(duration_ms(timeout))
        out += _envoy_routes(
            route.name or f"http-{i}", entries, action, fault_config(route), grpc=True
        )
        catch_all = catch_all or any(_matches_all(e) for e in entries)
    if not catch_all:
        out.append(rc.Route(name="default", match=rc.RouteMatch(prefix=""), route=default))
    return out
