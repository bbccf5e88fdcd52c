"""The control plane's settings (``meshfed controlplane serve``): :class:`ControlPlaneConfig`,
and :func:`serve_config`, which checks the flags' values and fills the defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from federation.controlplane.kube.config import KubeSettings
from federation.controlplane.link.join import controller_urls
from federation.errors import ConfigError
from federation.model.locality import LOCALITY_PART, Locality
from federation.netaddr import parse_host_port
from federation.paths import default_trust_dir, meshfed_home
from trust import pki

#: At start, how long xDS waits for the first list of every Kubernetes kind (s).
KUBE_SYNC_WAIT_S = 10


@dataclass(frozen=True, slots=True)
class ControlPlaneConfig:
    """Settings of ``meshfed controlplane serve``.

    Attributes:
        xds_listen / api_listen / ca_listen: ``host:port``; port 0 picks a free port.
        ca_dir: trust directory holding this cluster's intermediate CA.
        state_dir: where state.json, api-token (0600) and endpoint.json live.
        svid_ttl: lifetime of the SVIDs the certificate service issues.
        controller: the federation controller's API (``HOST:PORT``); with ``join_token`` the
            first start joins the federation (see :mod:`federation.controlplane.link`)
            and later starts reuse ``<state_dir>/ca`` instead of ``ca_dir``.
        trust_domain: the trust domain to ask for when joining (default: the controller's).
        gateway: this cluster's east-west gateway ``host:port``, reported to the controller.
        zone_gateways: zone -> ``host:port`` of that zone's own east-west gateway (``meshfed
            proxy gateway --zone-local``), reported to the controller: callers elsewhere
            pick the zone and the zone's gateway keeps their requests in it.
        otlp_collector: ``host:port`` of an OpenTelemetry collector for the sidecars' spans
            (:mod:`federation.controlplane.generate.tracing`); None: no tracing.
        telemetry: sidecars write a traffic log, their agents report it here and it is
            counted (:mod:`federation.controlplane.telemetry`); False: not.
        kubernetes: take the workloads from the cluster's Services and EndpointSlices
            (:mod:`federation.controlplane.kube`); xDS is served once every kind was listed
            (at most :data:`KUBE_SYNC_WAIT_S`). None: WorkloadEntry documents only.
    """

    cluster: str
    locality: Locality
    xds_listen: str
    api_listen: str
    ca_dir: Path
    state_dir: Path
    network: str = "default"
    svid_ttl: timedelta = pki.DEFAULT_SVID_TTL
    health_checks: bool = True
    controller: str | None = None
    join_token: str | None = None
    trust_domain: str | None = None
    gateway: str = ""
    zone_gateways: dict[str, str] = field(default_factory=dict)
    ca_listen: str = "127.0.0.1:0"
    otlp_collector: str | None = None
    telemetry: bool = True
    kubernetes: KubeSettings | None = None


def _check_addresses(addresses: list[tuple[str, str]]) -> None:
    for flag, value in addresses:
        try:
            parse_host_port(value, what=flag)
        except ValueError as err:
            raise ConfigError(str(err)) from err


def zone_gateways(values: Sequence[str], flag: str = "--zone-gateway") -> dict[str, str]:
    """``--zone-gateway ZONE=HOST:PORT`` (or ``--zone-gateway-service ZONE=NS/NAME``;
    repeatable) as zone -> the value.

    Raises:
        ConfigError: not ``ZONE=VALUE``, a zone that is no locality part, or a zone given
            twice (naming ``flag``).
    """
    out: dict[str, str] = {}
    for value in values:
        zone, sep, target = value.partition("=")
        if not sep or not LOCALITY_PART.match(zone) or not target:
            form = "NAMESPACE/NAME" if "service" in flag else "HOST:PORT"
            raise ConfigError(f"{flag} {value!r}: give ZONE={form}")
        if zone in out:
            raise ConfigError(f"{flag}: zone {zone!r} given twice")
        out[zone] = target
    return out


def _service_ref(flag: str, value: str) -> tuple[str, str]:
    ns, _, name = value.partition("/")
    if not ns or not name:
        raise ConfigError(f"{flag}: {value!r} is not NAMESPACE/NAME")
    return (ns, name)


def kube_settings(
    enabled: bool,
    kubeconfig: Path | None,
    namespaces: str,
    labels: tuple[str, str],
    gateway_service: str,
    webhook: tuple[str | None, str | None],
    leader_lease_s: int = 15,
    zone_gateway_services: Sequence[str] = (),
) -> KubeSettings | None:
    """``--kubernetes`` and its options (the others refused without it); ``labels`` are
    ``(--kube-member-label, --kube-pod-label)``, ``webhook`` ``(--webhook-listen,
    --sidecar-image)``, ``leader_lease_s`` ``--leader-lease``.

    Raises:
        ConfigError: a Kubernetes option without ``--kubernetes``, or a malformed value.
    """
    member_label, pod_label = labels
    webhook_listen, sidecar_image = webhook
    if webhook_listen and not sidecar_image:
        raise ConfigError(
            "--webhook-listen needs --sidecar-image: the image injected sidecars run"
            " (REPO@sha256:DIGEST, as make image prints it)"
        )
    if not enabled:
        if (
            kubeconfig or namespaces or member_label or pod_label or gateway_service
            or zone_gateway_services
        ):  # fmt: skip
            raise ConfigError(
                "--kubeconfig, --kube-namespaces, --kube-member-label, --kube-pod-label,"
                " --gateway-service and --zone-gateway-service need --kubernetes"
            )
        return None
    if leader_lease_s < 8:
        raise ConfigError(
            f"--leader-lease {leader_lease_s}: at least 8 s (the retry period, 2/15 of it,"
            " must be at least 1 s)"
        )
    service = _service_ref("--gateway-service", gateway_service) if gateway_service else None
    zones = {
        zone: _service_ref("--zone-gateway-service", ref)
        for zone, ref in zone_gateways(zone_gateway_services, "--zone-gateway-service").items()
    }
    return KubeSettings(
        kubeconfig=kubeconfig,
        namespaces=frozenset(n.strip() for n in namespaces.split(",") if n.strip()),
        member_label=member_label,
        pod_label=pod_label,
        gateway_service=service,
        zone_gateway_services=zones,
        webhook_listen=webhook_listen,
        sidecar_image=sidecar_image or "",
        leader_lease_s=leader_lease_s,
    )


def serve_config(
    *,
    cluster: str,
    locality: str,
    xds_listen: str,
    ca_listen: str,
    api_listen: str,
    ca_dir: Path | None,
    network: str,
    state_dir: Path | None,
    no_health_checks: bool,
    controller: str | None,
    join_token: str | None,
    trust_domain: str | None,
    gateway: str,
    otlp_collector: str | None,
    zone_gateway: Sequence[str] = (),
    zone_gateway_service: Sequence[str] = (),
    no_telemetry: bool,
    kubernetes: bool,
    kubeconfig: Path | None,
    kube_namespaces: str,
    kube_member_label: str,
    kube_pod_label: str,
    gateway_service: str,
    webhook_listen: str | None,
    sidecar_image: str | None,
    leader_lease: int = 15,
) -> ControlPlaneConfig:
    """The config of ``meshfed controlplane serve`` from its flags (each argument is the flag
    of that name); ``ca_dir`` defaults to ``$MESHFED_HOME/trust``, ``state_dir`` to
    ``$MESHFED_HOME/controlplanes/CLUSTER``.

    Raises:
        ConfigError: a value is malformed or needs a flag that is missing (named).
    """
    addresses = [
        ("--xds-listen", xds_listen),
        ("--ca-listen", ca_listen),
        ("--api-listen", api_listen),
    ]
    if controller:
        try:
            controller_urls(controller)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    if gateway:
        addresses.append(("--gateway", gateway))
    zones = zone_gateways(zone_gateway)
    addresses += [("--zone-gateway", address) for address in zones.values()]
    if webhook_listen:
        addresses.append(("--webhook-listen", webhook_listen))
        if not kubernetes:
            raise ConfigError("--webhook-listen needs --kubernetes")
    if otlp_collector:
        addresses.append(("--otlp-collector", otlp_collector))
    _check_addresses(addresses)
    try:
        loc = Locality.parse(locality)
    except ValueError as err:
        raise ConfigError(f"--locality: {err}") from err
    return ControlPlaneConfig(
        cluster=cluster,
        locality=loc,
        xds_listen=xds_listen,
        ca_listen=ca_listen,
        api_listen=api_listen,
        ca_dir=ca_dir or default_trust_dir(),
        state_dir=state_dir or meshfed_home() / "controlplanes" / cluster,
        network=network,
        health_checks=not no_health_checks,
        controller=controller,
        join_token=join_token,
        trust_domain=trust_domain,
        gateway=gateway,
        zone_gateways=zones,
        otlp_collector=otlp_collector,
        telemetry=not no_telemetry,
        kubernetes=kube_settings(
            kubernetes,
            kubeconfig,
            kube_namespaces,
            (kube_member_label, kube_pod_label),
            gateway_service,
            (webhook_listen, sidecar_image),
            leader_lease,
            zone_gateway_service,
        ),
    )
