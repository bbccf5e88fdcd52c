"""xDS v3 type URLs and the order in which types are pushed (make-before-break).

Source: envoyproxy/go-control-plane ``pkg/resource/v3``; Envoy docs "xDS REST and gRPC
protocol", section "Eventual consistency considerations": CDS before EDS, LDS before RDS,
secrets before the clusters and listeners that use them.
"""

from __future__ import annotations

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

#: Push order: SDS, CDS, EDS, LDS, RDS.
PUSH_ORDER = (SECRET, CLUSTER, ENDPOINT, LISTENER, ROUTE)
#: Types Envoy requests as wildcard (empty resource_names) in SotW.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})
#: After a push of the key type, Envoy re-requests the value type and needs an answer even if
#: the version did not change (warming clusters / listeners).
FOLLOW_UP = {CLUSTER: ENDPOINT, LISTENER: ROUTE}

SHORT_NAMES = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS", SECRET: "SDS"}


def short_name(type_url: str) -> str:
    """``CDS``/``EDS``/``LDS``/``RDS``/``SDS`` for a known type URL, else the URL's last part."""
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])
