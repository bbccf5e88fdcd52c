"""The controller's settings (``meshfed controller serve``): :class:`ControllerConfig`, and
:func:`serve_config`, which checks the flags' values and fills the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import IPv4Network
from pathlib import Path

from federation.client import cli_config_path
from federation.controller.bundle_endpoint import DEFAULT_REFRESH_HINT_S
from federation.controller.clusterset_ips import DEFAULT_RANGE, parse_range
from federation.controller.intermediates import DEFAULT_INTERMEDIATE_TTL
from federation.controller.membership import DEFAULT_LEASE_S
from federation.errors import ConfigError
from federation.netaddr import parse_host_port
from federation.paths import default_trust_dir, meshfed_home


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Settings of ``meshfed controller serve``.

    Attributes:
        listen / sync_listen: ``host:port`` of the REST API and the gRPC sync service
            (port 0 picks a free port).
        state_path: the SQLite file (its folder also holds the API's certificate).
        store_dsn: a PostgreSQL connection string: the state lives there instead of
            ``state_path`` (:class:`federation.controller.pgstore.PostgresStore`).
        trust_dir: the root of trust (a :class:`trust.store.TrustDirectory`).
        trust_domain: used to create the root when ``trust_dir`` has none.
        token_path: the admin bearer token (created 0600 at first start).
        config_path: the CLI config file to write (None: do not write one).
        lease_s: heartbeat lease in seconds (a silent cluster becomes Unreachable).
        insecure_http: serve the REST API in plain HTTP (only on a loopback address).
        authz_default: ``allow`` (Istio's default) or ``deny`` (every workload needs an
            ALLOW AuthorizationPolicy to be called).
        intermediate_ttl: lifetime of the intermediates signed for joining clusters,
            re-signed over sync at half life.
        replica_name: this replica's name among replicas on one PostgreSQL (default
            ``<hostname>:<API port>``, or ``<hostname>-<pid>`` when the port is 0).
        advertise_sync: ``host:port`` control planes dial for the sync service (default:
            ``sync_listen`` with the port it got), e.g. when listening on ``0.0.0.0``.
        clusterset_ip_range: where exported services' ClusterSetIPs are allocated
            (:mod:`federation.controller.clusterset_ips`).
        bundle_refresh_hint_s: the ``spiffe_refresh_hint`` (s) the SPIFFE bundle endpoint
            publishes (:mod:`federation.controller.bundle_endpoint`).
        bundle_endpoint_listen: ``host:port`` of the dedicated bundle endpoint listener
            (None: only the API's ``/v1/spiffe-bundle``).
        bundle_endpoint_cert / bundle_endpoint_key: the operator's certificate chain and key
            (PEM) for that listener: profile ``https_web``; None: the controller's SVID
            (``https_spiffe``).
    """

    listen: str
    sync_listen: str
    state_path: Path
    trust_dir: Path
    token_path: Path
    config_path: Path | None = None
    trust_domain: str = "meshfed.local"
    lease_s: float = DEFAULT_LEASE_S
    insecure_http: bool = False
    authz_default: str = "allow"
    intermediate_ttl: timedelta = DEFAULT_INTERMEDIATE_TTL
    store_dsn: str | None = None
    replica_name: str | None = None
    advertise_sync: str | None = None
    clusterset_ip_range: IPv4Network = field(default_factory=lambda: parse_range(DEFAULT_RANGE))
    bundle_refresh_hint_s: int = DEFAULT_REFRESH_HINT_S
    bundle_endpoint_listen: str | None = None
    bundle_endpoint_cert: Path | None = None
    bundle_endpoint_key: Path | None = None


def serve_config(
    *,
    listen: str,
    sync_listen: str,
    state: Path | None,
    store_dsn: str | None,
    trust_dir: Path | None,
    trust_domain: str,
    lease: timedelta,
    token_file: Path | None,
    intermediate_ttl: timedelta,
    insecure_http: bool,
    authz_default: str,
    replica_name: str | None,
    advertise_sync: str | None,
    clusterset_ip_range: str = DEFAULT_RANGE,
    bundle_refresh_hint: timedelta = timedelta(seconds=DEFAULT_REFRESH_HINT_S),
    bundle_endpoint_listen: str | None = None,
    bundle_endpoint_cert: Path | None = None,
    bundle_endpoint_key: Path | None = None,
) -> ControllerConfig:
    """The config of ``meshfed controller serve`` from its flags (each argument is the flag
    of that name); files default to ``$MESHFED_HOME`` (``controller.db``,
    ``controller-token``, ``trust/``, ``config.yaml``).

    Raises:
        ConfigError: an address is not ``HOST:PORT``, ``--state`` with ``--store``, or
            ``--clusterset-ip-range`` is not a range (:func:`parse_range`), only one of
            ``--bundle-endpoint-cert`` and ``--bundle-endpoint-key``, either without
            ``--bundle-endpoint-listen``, or a refresh hint under 1 s.
    """
    ip_range = parse_range(clusterset_ip_range)
    addresses = [("--listen", listen), ("--sync-listen", sync_listen)]
    if advertise_sync is not None:
        addresses.append(("--advertise-sync", advertise_sync))
    if bundle_endpoint_listen is not None:
        addresses.append(("--bundle-endpoint-listen", bundle_endpoint_listen))
    if (bundle_endpoint_cert is None) != (bundle_endpoint_key is None):
        raise ConfigError("--bundle-endpoint-cert and --bundle-endpoint-key go together")
    if bundle_endpoint_cert is not None and bundle_endpoint_listen is None:
        raise ConfigError("--bundle-endpoint-cert needs --bundle-endpoint-listen")
    if bundle_refresh_hint.total_seconds() < 1:
        raise ConfigError("--bundle-refresh-hint: at least 1s")
    for flag, value in addresses:
        try:
            parse_host_port(value, what=flag)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    if store_dsn is not None and state is not None:
        raise ConfigError("--state and --store exclude each other")
    home = meshfed_home()
    return ControllerConfig(
        listen=listen,
        sync_listen=sync_listen,
        state_path=state or home / "controller.db",
        trust_dir=trust_dir or default_trust_dir(),
        token_path=token_file or home / "controller-token",
        config_path=cli_config_path(home),
        trust_domain=trust_domain,
        lease_s=lease.total_seconds(),
        insecure_http=insecure_http,
        authz_default=authz_default,
        intermediate_ttl=intermediate_ttl,
        store_dsn=store_dsn,
        replica_name=replica_name,
        advertise_sync=advertise_sync,
        clusterset_ip_range=ip_range,
        bundle_refresh_hint_s=int(bundle_refresh_hint.total_seconds()),
        bundle_endpoint_listen=bundle_endpoint_listen,
        bundle_endpoint_cert=bundle_endpoint_cert,
        bundle_endpoint_key=bundle_endpoint_key,
    )
