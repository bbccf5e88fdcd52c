"""Envoy bootstrap for meshfed proxies: ADS to the cluster control plane over mutual TLS,
admin on loopback.

The xDS connection presents the proxy's SVID and verifies the control plane against the trust
bundle and by its SPIFFE ID; both come from file-based SDS in the proxy's identity directory
(``svid.json`` and ``rootca.json``, kept fresh by the agent), so the key never leaves the host.

Pure: returns the bootstrap as a dict (JSON-ready), written to a file by the proxy agent.
Field names follow ``envoy.config.bootstrap.v3.Bootstrap``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

XDS_CLUSTER = "meshfed-xds"
HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
UPSTREAM_TLS_TYPE = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
)


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
        delta: incremental xDS (``DELTA_GRPC``, the default) or state of the world (``GRPC``).
        identity_dir: the identity directory (``svid.json``, ``rootca.json``): absolute, or
            relative to Envoy's working directory -- spelled as the control plane's resources
            spell it (:meth:`~federation.sync.node.ProxyDescription.envoy_path`), so Envoy
            keeps one file watch per file (each spelling of a path is a subscription of its
            own, with an inotify instance of its own: 8 per sidecar instead of 4, and 54
            Envoys on one host ran out of ``fs.inotify.max_user_instances``).
        xds_server_id: the control plane's SPIFFE ID (its certificate's URI SAN).
        xds_server_name: SNI sent to the control plane.
    """

    node_id: str
    cluster: str
    xds_host: str
    xds_port: int
    admin_port: int
    locality: tuple[str, str, str] = ("", "", "")
    metadata: dict[str, str] = field(default_factory=dict)
    delta: bool = True
    identity_dir: str = ""
    xds_server_id: str = ""
    xds_server_name: str = ""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _file_sds(name: str, path: str) -> dict[str, Any]:
    return {
        "name": name,
        "sds_config": {"path_config_source": {"path": path}, "resource_api_version": "V3"},
    }


def xds_transport_socket(p: BootstrapParams) -> dict[str, Any]:
    """The xDS cluster's ``transport_socket``: mutual TLS from the identity directory.

    Raises:
        ValueError: ``identity_dir`` or ``xds_server_id`` is empty.
    """
    if not p.identity_dir.strip("/") or not p.xds_server_id:
        raise ValueError("an xDS bootstrap needs an identity_dir and an xds_server_id")
    directory = p.identity_dir.rstrip("/")
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": UPSTREAM_TLS_TYPE,
            "sni": p.xds_server_name,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [
                    _file_sds("default", f"{directory}/svid.json")
                ],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [
                            {"san_type": "URI", "matcher": {"exact": p.xds_server_id}}
                        ]
                    },
                    "validation_context_sds_secret_config": _file_sds(
                        "ROOTCA", f"{directory}/rootca.json"
                    ),
                },
            },
        },
    }


def envoy_bootstrap(p: BootstrapParams) -> dict[str, Any]:
    """The bootstrap dict (see the module docstring).

    Raises:
        ValueError: see :func:`xds_transport_socket`.
    """
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
                    "transport_socket": xds_transport_socket(p),
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
