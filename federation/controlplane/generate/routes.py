"""RDS: the sidecar's outbound routes, the inbound route, and proxyless-gRPC routes.

Outbound virtual hosts match the ``Host``/``:authority`` header: the global name
``<svc>.<ns>.svc.clusterset.local`` (with and without ``:<port>``) and, for callers in the same
namespace, the short forms ``<svc>.<ns>`` and ``<svc>``. Retries (Envoy ``RetryPolicy``):
``connect-failure,refused-stream,reset,unavailable`` and status 503 (a sidecar whose app is
gone answers 503), 2 retries, never the same host twice
(``envoy.retry_host_predicates.previous_hosts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2

from federation.controlplane.generate.common import (
    OUTBOUND_ROUTE,
    SERVED_BY_HEADER,
    duration_ms,
    inbound_cluster_name,
    pack,
)
from federation.controlplane.generate.services import ServicePort
from federation.model.policy import RetrySettings, TrafficPolicy

RETRY_ON = "connect-failure,refused-stream,reset,unavailable,retriable-status-codes"


def _previous_priorities() -> rc.RetryPolicy.RetryPriority:
    # a retry avoids the priority that just failed (Envoy "retry plugin configuration")
    return rc.RetryPolicy.RetryPriority(
        name="envoy.retry_priorities.previous_priorities",
        typed_config=pack(
            previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=1)
        ),
    )


def retry_policy(settings: RetrySettings | None = None) -> rc.RetryPolicy:
    """The default retry policy (see the module docstring); TrafficPolicy ``retries``
    overrides the attempts, per-try timeout and conditions. Retries never pick the same host
    twice and prefer another priority (``envoy.retry_priorities.previous_priorities``)."""
    if settings is not None:
        per_try = settings.per_try_timeout_ms
        return rc.RetryPolicy(
            retry_on=settings.retry_on.replace("503", "retriable-status-codes"),
            num_retries={"value": settings.attempts},
            per_try_timeout=duration_ms(per_try) if per_try else None,
            retry_host_predicate=[
                rc.RetryPolicy.RetryHostPredicate(
                    name="envoy.retry_host_predicates.previous_hosts",
                    typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
                )
            ],
            host_selection_retry_max_attempts=5,
            retriable_status_codes=[503] if "503" in settings.retry_on else [],
            retry_priority=_previous_priorities(),
        )
    return rc.RetryPolicy(
        retry_on=RETRY_ON,
        num_retries={"value": 2},
        retry_host_predicate=[
            rc.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=5,
        retriable_status_codes=[503],
        retry_priority=_previous_priorities(),
    )


def domains(port: ServicePort, caller_namespace: str, *, default_port: bool) -> list[str]:
    """Host header values routed to ``port`` (see the module docstring)."""
    names = [port.hostname]
    if caller_namespace == port.namespace:
        names += [f"{port.service}.{port.namespace}", port.service]
    names += port.ips  # a captured client that dialled the ClusterSetIP
    result = [f"{n}:{port.port}" for n in names]
    if default_port:
        result = names + result
    return result


def split_action(
    port: ServicePort, subsets: Sequence[tuple[str, int]], policy: TrafficPolicy | None
) -> rc.RouteAction:
    """The RouteAction of one service port: its cluster, or the ``split`` subsets as
    ``weighted_clusters`` (``[(subset cluster name, percent)]``, zero weights left out), with
    the policy's retries and timeout (``timeoutMs``; default none)."""
    spec = policy.spec if policy is not None else None
    action = grpc_default_action(port, subsets)
    action.timeout.CopyFrom(duration_ms(spec.timeout_ms if spec and spec.timeout_ms else 0))
    action.retry_policy.CopyFrom(retry_policy(spec.retries if spec else None))
    return action


def weighted_action(clusters: Sequence[tuple[str, int]]) -> rc.RouteAction:
    """A RouteAction to ``clusters`` (``[(name, weight)]``, zero weights left out): ``cluster``
    for one, ``weighted_clusters`` for several."""
    live = [(name, w) for name, w in clusters if w > 0]
    if len(live) == 1:
        return rc.RouteAction(cluster=live[0][0])
    return rc.RouteAction(
        weighted_clusters=rc.WeightedCluster(
            clusters=[
                rc.WeightedCluster.ClusterWeight(name=name, weight={"value": w}) for name, w in live
            ]
        )
    )


def outbound_route_config(
    ports: Sequence[ServicePort],
    caller_namespace: str,
    routes: Mapping[str, Sequence[rc.Route]] | None = None,
) -> route_pb2.RouteConfiguration:
    """The sidecar's ``outbound`` RouteConfiguration: one virtual host per HTTP service port.

    A service's first HTTP port (lowest number) also answers host names without a port.
    ``routes`` (by ``port.cluster_name``) replace the default route (policies: their split
    and ``http`` routes, :mod:`~federation.controlplane.generate.http_routes`).
    """
    vhosts = []
    defaults_taken: set[tuple[str, str]] = set()
    for port in ports:
        if not port.is_http:
            continue
        key = (port.namespace, port.service)
        is_default = key not in defaults_taken
        defaults_taken.add(key)
        vhosts.append(
            rc.VirtualHost(
                name=f"{port.hostname}:{port.port}",
                domains=domains(port, caller_namespace, default_port=is_default),
                routes=list((routes or {}).get(port.cluster_name, ()))
                or [
                    rc.Route(
                        match=rc.RouteMatch(prefix="/"),
                        route=rc.RouteAction(
                            cluster=port.cluster_name,
                            timeout=duration_ms(0),
                            retry_policy=retry_policy(),
                        ),
                    )
                ],
            )
        )
    return route_pb2.RouteConfiguration(name=OUTBOUND_ROUTE, virtual_hosts=vhosts)


def _inbound_virtual_host(
    name: str,
    domains: Sequence[str],
    port_name: str,
    target_port: int,
    served_by: str,
    per_filter: Mapping[str, Any] | None = None,
) -> rc.VirtualHost:
    return rc.VirtualHost(
        name=name,
        domains=list(domains),
        routes=[
            rc.Route(
                match=rc.RouteMatch(prefix="/"),
                route=rc.RouteAction(
                    cluster=inbound_cluster_name(port_name, target_port),
                    timeout=duration_ms(0),
                ),
                typed_per_filter_config=dict(per_filter or {}),
            )
        ],
        response_headers_to_add=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=SERVED_BY_HEADER, value=served_by),
                append_action=base_pb2.HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        ],
    )


def inbound_route_config(
    port_name: str, target_port: int, served_by: str
) -> route_pb2.RouteConfiguration:
    """Inbound: everything to the local app; every response says who served it."""
    return route_pb2.RouteConfiguration(
        name=f"inbound|{target_port}|{port_name}",
        virtual_hosts=[_inbound_virtual_host("inbound", ["*"], port_name, target_port, served_by)],
    )


@dataclass(frozen=True, slots=True)
class AuthorityRoute:
    """One port of the inbound authority chain: the ``:authority`` values that reach it, the
    app port behind it, and its RBAC filters' per-route configuration (filter name -> Any)."""

    domains: tuple[str, ...]
    port_name: str
    target_port: int
    per_filter: Mapping[str, Any]


def inbound_authority_route_config(
    entries: Sequence[AuthorityRoute], served_by: str
) -> route_pb2.RouteConfiguration:
    """Inbound for callers that send no meshfed SNI (proxyless gRPC): the port is chosen by
    ``:authority`` (``<host>:<port>``, and ``<host>`` for the default port), each with its
    own RBAC configuration (``RBACPerRoute``)."""
    return route_pb2.RouteConfiguration(
        name="inbound|authority",
        virtual_hosts=[
            _inbound_virtual_host(
                f"inbound|{e.target_port}|{e.port_name}",
                e.domains,
                e.port_name,
                e.target_port,
                served_by,
                e.per_filter,
            )
            for e in entries
        ],
    )


def grpc_route_name(port: ServicePort, *, with_port: bool) -> str:
    """The target name a grpcio client dials (``xds:///<name>``), also its Listener/Route name."""
    return f"{port.hostname}:{port.port}" if with_port else port.hostname


def grpc_default_action(
    port: ServicePort, subsets: Sequence[tuple[str, int]] = ()
) -> rc.RouteAction:
    """Every RPC to the port's cluster, or to the ``split`` subsets by weight (gRFC A28
    weighted clusters)."""
    live = [(n, w) for n, w in subsets if w > 0]
    return weighted_action(live or [(port.cluster_name, 100)])


def grpc_route_config(
    port: ServicePort,
    *,
    with_port: bool,
    subsets: Sequence[tuple[str, int]] = (),
    routes: Sequence[rc.Route] = (),
) -> route_pb2.RouteConfiguration:
    """A RouteConfiguration for grpcio's xDS client: ``routes`` (a policy's, made by
    :func:`~federation.controlplane.generate.http_routes.grpc_routes`), else one route
    with :func:`grpc_default_action`."""
    name = grpc_route_name(port, with_port=with_port)
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            rc.VirtualHost(
                name=name,
                domains=[name],
                routes=list(routes)
                or [
                    rc.Route(
                        match=rc.RouteMatch(prefix=""),
                        route=grpc_default_action(port, subsets),
                    )
                ],
            )
        ],
    )
