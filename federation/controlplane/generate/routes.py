"""RDS: the sidecar's outbound routes, the inbound route, and proxyless-gRPC routes.

Outbound virtual hosts match the ``Host``/``:authority`` header: the global name
``<svc>.<ns>.svc.clusterset.local`` (with and without ``:<port>``) and, for callers in the same
namespace, the short forms ``<svc>.<ns>`` and ``<svc>``. Retries (Envoy ``RetryPolicy``):
``connect-failure,refused-stream,reset,unavailable`` and status 503 (a sidecar whose app is
gone answers 503), 2 retries, never the same host twice
(``envoy.retry_host_predicates.previous_hosts``).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2

from federation.controlplane.generate.common import (
    OUTBOUND_ROUTE,
    SERVED_BY_HEADER,
    duration_ms,
    inbound_cluster_name,
    pack,
)
from federation.controlplane.generate.services import ServicePort

RETRY_ON = "connect-failure,refused-stream,reset,unavailable,retriable-status-codes"


def retry_policy() -> rc.RetryPolicy:
    """The default retry policy (see the module docstring)."""
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
    )


def domains(port: ServicePort, caller_namespace: str, *, default_port: bool) -> list[str]:
    """Host header values routed to ``port`` (see the module docstring)."""
    names = [port.hostname]
    if caller_namespace == port.namespace:
        names += [f"{port.service}.{port.namespace}", port.service]
    result = [f"{n}:{port.port}" for n in names]
    if default_port:
        result = names + result
    return result


def outbound_route_config(
    ports: Sequence[ServicePort], caller_namespace: str
) -> route_pb2.RouteConfiguration:
    """The sidecar's ``outbound`` RouteConfiguration: one virtual host per HTTP service port.

    A service's first HTTP port (lowest number) also answers host names without a port.
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
                routes=[
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


def inbound_route_config(
    port_name: str, target_port: int, served_by: str
) -> route_pb2.RouteConfiguration:
    """Inbound: everything to the local app; every response says who served it."""
    return route_pb2.RouteConfiguration(
        name=f"inbound|{target_port}|{port_name}",
        virtual_hosts=[
            rc.VirtualHost(
                name="inbound",
                domains=["*"],
                routes=[
                    rc.Route(
                        match=rc.RouteMatch(prefix="/"),
                        route=rc.RouteAction(
                            cluster=inbound_cluster_name(port_name, target_port),
                            timeout=duration_ms(0),
                        ),
                    )
                ],
                response_headers_to_add=[
                    base_pb2.HeaderValueOption(
                        header=base_pb2.HeaderValue(key=SERVED_BY_HEADER, value=served_by),
                        append_action=base_pb2.HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
                    )
                ],
            )
        ],
    )


def grpc_route_name(port: ServicePort, *, with_port: bool) -> str:
    """The target name a grpcio client dials (``xds:///<name>``), also its Listener/Route name."""
    return f"{port.hostname}:{port.port}" if with_port else port.hostname


def grpc_route_config(port: ServicePort, *, with_port: bool) -> route_pb2.RouteConfiguration:
    """A RouteConfiguration for grpcio's xDS client: every RPC to the port's cluster."""
    name = grpc_route_name(port, with_port=with_port)
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            rc.VirtualHost(
                name=name,
                domains=[name],
                routes=[
                    rc.Route(
                        match=rc.RouteMatch(prefix=""),
                        route=rc.RouteAction(cluster=port.cluster_name),
                    )
                ],
            )
        ],
    )
