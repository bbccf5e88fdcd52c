"""What the proxy agent is told: frozen dataclasses the CLI fills from its flags.

Each field is one flag of ``meshfed proxy sidecar`` / ``meshfed proxy gateway`` /
``meshfed bootstrap grpc`` (the flag's name is the field's with ``-`` for ``_``); errors about
a field name that flag (:class:`~federation.errors.ConfigError`). Values are as
given: checking and defaults that need the control plane's ``/v1/bootstrap`` happen in
:mod:`federation.agent.prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.errors import ConfigError
from federation.netaddr import parse_host_port


def host_port(value: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``.

    Raises:
        ConfigError: not ``HOST:PORT`` with a port 1-65535 (names ``flag``).
    """
    try:
        return parse_host_port(value, what=flag)
    except ValueError as err:
        raise ConfigError(str(err)) from err


@dataclass(frozen=True, slots=True)
class IdentityOptions:
    """How the agent obtains its first SVID (``--workload-token``, ``--workload-token-file``,
    ``--ca``, ``--trust-bundle``); unset ones come from the control plane's ``/v1/bootstrap``.

    Attributes:
        token: a workload token ('meshfed workload token').
        token_file: a file holding it (or a pod's projected service-account token).
        ca: the certificate service's ``HOST:PORT``.
        trust_bundle: PEM roots to verify the control plane with on first contact.
    """

    token: str | None = None
    token_file: Path | None = None
    ca: str | None = None
    trust_bundle: Path | None = None

    def token_text(self) -> str | None:
        """The workload token (read from :attr:`token_file` if given).

        Raises:
            ConfigError: the file cannot be read.
        """
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as err:
                raise ConfigError(f"--workload-token-file: {err.strerror}") from err
        return self.token

    def trust_bundle_pem(self) -> bytes | None:
        """The ``--trust-bundle`` file's bytes, or None when not given.

        Raises:
            ConfigError: the file cannot be read.
        """
        if self.trust_bundle is None:
            return None
        try:
            return self.trust_bundle.read_bytes()
        except OSError as err:
            raise ConfigError(f"--trust-bundle: {err.strerror}") from err


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What every Envoy-running agent needs (sidecar and gateway alike).

    Attributes:
        cluster: the member cluster's name.
        controlplane: the control plane's xDS ``HOST:PORT``.
        api: the control plane's API URL (None: ``$MESHFED_HOME/controlplanes/CLUSTER/
            endpoint.json``, else ``https://XDS_HOST:15014``).
        token: the API bearer token.
        identity: :class:`IdentityOptions`.
        admin_port: Envoy's admin port on 127.0.0.1 (0: pick a free one).
        locality: ``region/zone/sub_zone`` (None: the control plane's cluster locality).
        delta: incremental (delta) xDS, the default; False: state of the world.
        metrics_listen: the Prometheus endpoint's ``HOST:PORT`` ('' turns it off).
        envoy_log_level: Envoy's ``--log-level``.
        envoy_log: Envoy's log file (None: ``$MESHFED_HOME/proxies/NODE/envoy.log``).
    """

    cluster: str
    controlplane: str
    api: str | None = None
    token: str | None = None
    identity: IdentityOptions = field(default_factory=IdentityOptions)
    admin_port: int = 0
    locality: str | None = None
    delta: bool = True
    metrics_listen: str = "127.0.0.1:0"
    envoy_log_level: str = "warning"
    envoy_log: Path | None = None

    @classmethod
    def from_flags(cls, values: dict[str, Any]) -> AgentConfig:
        """The options every agent command shares (``meshfed proxy sidecar|gateway``: the
        control plane, API, identity, admin port, locality, xDS flavour, metrics and Envoy's
        log), removed from ``values`` (click's keyword arguments, by their names)."""
        identity = IdentityOptions(
            values.pop("workload_token"),
            values.pop("workload_token_file"),
            values.pop("ca"),
            values.pop("trust_bundle"),
        )
        return cls(
            cluster=values.pop("cluster"),
            controlplane=values.pop("controlplane"),
            api=values.pop("api"),
            token=values.pop("token"),
            identity=identity,
            admin_port=values.pop("admin_port"),
            locality=values.pop("locality"),
            delta=values.pop("delta"),
            metrics_listen=values.pop("metrics_listen"),
            envoy_log_level=values.pop("envoy_log_level"),
            envoy_log=values.pop("envoy_log"),
        )

    def xds(self) -> tuple[str, int]:
        """The control plane's xDS address.

        Raises:
            ConfigError: ``--controlplane`` is not ``HOST:PORT``.
        """
        return host_port(self.controlplane, "--controlplane")


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    """``meshfed proxy sidecar``: one workload's sidecar.

    Attributes:
        agent: the common settings.
        service / namespace / service_account: the workload's service, namespace and
            identity (service account None: the service name).
        app_port: the app's port on 127.0.0.1.
        service_port: the port callers use (None: ``app_port``).
        protocol: ``http``, ``http2``, ``grpc`` or ``tcp`` (Istio's capitals accepted).
        address: the inbound listener's address; ``inbound_port`` its port.
        outbound_port: the outbound HTTP listener's port on 127.0.0.1.
        name: the WorkloadEntry's name (None: ``SERVICE-ADDRESS-INBOUNDPORT``; with
            ``kubernetes``, the control plane's ``k8s-SERVICE-ADDRESS``).
        extra_ports: more ports, each ``NAME=SERVICE_PORT:APP_PORT/PROTOCOL``.
        labels: the WorkloadEntry's labels (``app=SERVICE`` unless given).
        upstreams: TCP service ports, each ``SERVICE.NAMESPACE:PORT=LOCAL_PORT``.
        capacity_rps: requests/s the workload can serve (None: undeclared).
        kubernetes: a pod whose EndpointSlice registers it (no WorkloadEntry is applied).
        capture: the pod's traffic is captured (``meshfed proxy init``): the outbound
            listener binds ``0.0.0.0:<outbound_port>`` and picks services by original
            destination, and the agent answers the pod's DNS on ``dns_listen``.
        outbound_traffic_policy: ``ALLOW_ANY`` or ``REGISTRY_ONLY`` (Istio's names): where a
            captured connection to an address outside the mesh goes.
        dns_listen: ``HOST:PORT`` of the agent's DNS resolver (UDP and TCP) with ``capture``.
    """

    agent: AgentConfig
    service: str
    app_port: int
    namespace: str = "default"
    service_account: str | None = None
    service_port: int | None = None
    protocol: str = "http"
    address: str = "127.0.0.1"
    inbound_port: int = 15006
    outbound_port: int = 15001
    name: str | None = None
    extra_ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    upstreams: tuple[str, ...] = ()
    capacity_rps: float | None = None
    kubernetes: bool = False
    capture: bool = False
    outbound_traffic_policy: str = "ALLOW_ANY"
    dns_listen: str = "127.0.0.1:15053"


def parse_labels(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``("version=v2", ...)`` -> ``(("version", "v2"), ...)``.

    Raises:
        ConfigError: an item is not ``KEY=VALUE`` with a non-empty key.
    """
    labels: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--label {item!r}: use KEY=VALUE")
        labels.append((key, value))
    return tuple(labels)


@dataclass(frozen=True, slots=True)
class GrpcBootstrapConfig:
    """``meshfed bootstrap grpc``: a proxyless gRPC client's (or server's) bootstrap.

    Attributes:
        controlplane: the control plane's xDS ``HOST:PORT``.
        node_id: unique id of this gRPC client/server.
        service / namespace / service_account: who it is (service account None: the
            service name).
        locality: ``region/zone/sub_zone`` or None.
        identity_dir: the directory 'meshfed workload identity' keeps fresh (None:
            ``$MESHFED_HOME/identities/NS/SERVICE_ACCOUNT``).
        workload: for an xDS gRPC server, its WorkloadEntry's name.
    """

    controlplane: str
    node_id: str
    service: str
    namespace: str = "default"
    service_account: str | None = None
    locality: str | None = None
    identity_dir: Path | None = None
    workload: str | None = None
