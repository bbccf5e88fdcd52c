"""Envoy bootstrap for meshfed proxies: ADS to the cluster control plane, admin on loopback.

Pure: returns the bootstrap as a dict (JSON-ready), written to a file by the proxy agent.
Field names follow ``envoy.config.bootstrap.v3.Bootstrap``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

XDS_CLUSTER = "meshfed-xds"
HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True, slots=True)
class BootstrapParams:
    """Inputs of :func:`envoy_bootstrap`.

    Attributes:
        node_id: unique per proxy, e.g. ``sidecar~demo~echo-1``.
        cluster: the member cluster's name (Envoy ``node.cluster``).
        xds_host / xds_port: the control plane's ADS address (IP or hostname).
        admin_port: Envoy's admin interface, always bound to 127.0.0.1.
        locality: ``(region, zone, sub_zone)``.
        metadata: ``node.metadata`` (the ``meshfed.io/*`` keys the control plane reads).
        delta: use incremental xDS (``DELTA_GRPC``) instead of state of the world.
    """

    node_id: str
    cluster: str
    xds_host: str
    xds_port: int
    admin_port: int
    locality: tuple[str, str, str] = ("", "", "")
    metadata: dict[str, str] = field(default_factory=dict)
    delta: bool = False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def envoy_bootstrap(p: BootstrapParams) -> dict[str, Any]:
    """The bootstrap dict (see the module docstring)."""
    api_type: Literal["GRPC", "DELTA_GRPC"] = "DELTA_GRPC" if p.delta else "GRPC"
    region, zone, sub_zone = p.locality
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {
            "id": p.node_id,
            "cluster": p.cluster,
            "locality": {"region": region, "zone": zone, "sub_zone": sub_zone},
            "metadata": dict(p.metadata),
        },
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": p.admin_port}}
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            },
            "cds_config": ads_source,
            "lds_config": ads_source,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STATIC" if _is_ip(p.xds_host) else "STRICT_DNS",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": HTTP_OPTIONS_TYPE,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": p.xds_host,
                                                    "port_value": p.xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }
