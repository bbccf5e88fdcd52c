"""A proxyless gRPC client's (or xDS server's) bootstrap, ``GRPC_XDS_BOOTSTRAP``
(``meshfed bootstrap grpc``). Pure but for resolving the default identity directory.

The xDS channel uses mutual TLS with the SVID in the identity directory (gRPC's ``tls``
channel credentials, gRFC A65). The same files are the bootstrap's certificate provider
:data:`~federation.sync.node.GRPC_CERT_PROVIDER` (``file_watcher``, gRFC A29), which the
control plane's clusters and server listeners name -- with the identity directory's SPIFFE
bundle map (``spiffe_bundle_map_file``, gRFC A87), so that with
``GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE=true`` a server accepts federated trust domains' SVIDs,
each verified with its own domain's bundle; a server asks for its Listener by
:data:`~federation.sync.node.GRPC_SERVER_LISTENER_TEMPLATE` (gRFC A36). Field names follow
gRPC's bootstrap format (grpc/proposal A27).
"""

from __future__ import annotations

from typing import Any

from federation.agent.config import GrpcBootstrapConfig, host_port
from federation.errors import ConfigError
from federation.model.locality import Locality
from federation.paths import meshfed_home
from federation.sync.node import (
    GRPC_CERT_PROVIDER,
    GRPC_SERVER_LISTENER_TEMPLATE,
    ProxyDescription,
)

#: How often gRPC re-reads the certificate files.
REFRESH_INTERVAL = "10s"


def grpc_bootstrap(config: GrpcBootstrapConfig) -> dict[str, Any]:
    """The bootstrap document (JSON-ready) for ``config``.

    Raises:
        ConfigError: ``--controlplane`` is not ``HOST:PORT`` or ``--locality`` is not
            a locality.
    """
    host_port(config.controlplane, "--controlplane")
    try:
        loc = Locality.parse(config.locality) if config.locality else None
    except ValueError as err:
        raise ConfigError(f"--locality: {err}") from err
    account = config.service_account or config.service
    proxy = ProxyDescription(
        node_id=config.node_id,
        role="grpc",
        namespace=config.namespace,
        workload=config.workload or "",
        service_account=account,
        locality=loc,
    )
    certs = (
        config.identity_dir or meshfed_home() / "identities" / config.namespace / account
    ).resolve()
    files = {
        "certificate_file": str(certs / "cert.pem"),
        "private_key_file": str(certs / "key.pem"),
        "ca_certificate_file": str(certs / "members.pem"),  # every member cluster's CA
    }
    watched = {**files, "refresh_interval": REFRESH_INTERVAL}
    # Per-domain anchors for the mesh's own traffic (gRFC A87): gRPC reads this instead of
    # ca_certificate_file when GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE is true, and ignores it
    # otherwise. The xDS channel keeps ca_certificate_file: its server is a member.
    provider = {**watched, "spiffe_bundle_map_file": str(certs / "spiffe_bundles.json")}
    return {
        "xds_servers": [
            {
                "server_uri": config.controlplane,
                "channel_creds": [{"type": "tls", "config": watched}],
                "server_features": ["xds_v3", "ignore_resource_deletion"],
            }
        ],
        "node": {
            "id": config.node_id,
            "cluster": config.service,
            "locality": {"region": loc.region, "zone": loc.zone, "sub_zone": loc.sub_zone}
            if loc
            else {},
            "metadata": {**proxy.metadata(), "meshfed.io/service": config.service},
        },
        "server_listener_resource_name_template": GRPC_SERVER_LISTENER_TEMPLATE,
        "certificate_providers": {
            GRPC_CERT_PROVIDER: {"plugin_name": "file_watcher", "config": provider}
        },
    }
