"""The service ports visible in the registry, derived once per generation."""

from __future__ import annotations

from dataclasses import dataclass

from federation.controlplane.generate.common import outbound_cluster_name, sni
from federation.controlplane.registry import RegistryState
from federation.model.workload import global_name


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one service, with what its workloads have in common.

    Attributes:
        service_accounts: every service account of the service's workloads (upstream SAN set).
        tls_modes: the tlsMode values present among its workloads.
    """

    namespace: str
    service: str
    port_name: str
    port: int
    protocol: str
    service_accounts: tuple[str, ...]
    tls_modes: frozenset[str]

    @property
    def hostname(self) -> str:
        """``<svc>.<ns>.svc.clusterset.local``."""
        return global_name(self.service, self.namespace)

    @property
    def cluster_name(self) -> str:
        """The outbound cluster / EDS name."""
        return outbound_cluster_name(self.service, self.namespace, self.port)

    @property
    def sni(self) -> str:
        """The SNI that names this port across clusters."""
        return sni(self.service, self.namespace, self.port)

    @property
    def is_http(self) -> bool:
        """True for http, http2 and grpc ports (routed by the outbound HTTP listener)."""
        return self.protocol in ("http", "http2", "grpc")


def service_ports(state: RegistryState) -> list[ServicePort]:
    """Every service port in the registry, sorted by (namespace, service, port).

    The first workload (by name) that defines a port name fixes its number and protocol;
    conflicting definitions in later workloads are ignored.
    """
    result: list[ServicePort] = []
    for namespace, service in state.services():
        workloads = state.by_service(namespace, service)
        seen: dict[str, tuple[int, str]] = {}
        for w in workloads:
            for p in w.spec.ports:
                seen.setdefault(p.name, (p.port, p.protocol))
        accounts = tuple(sorted({w.spec.service_account for w in workloads}))
        modes = frozenset(w.spec.tls_mode for w in workloads)
        for name, (number, protocol) in sorted(seen.items(), key=lambda kv: kv[1][0]):
            result.append(ServicePort(namespace, service, name, number, protocol, accounts, modes))
    return result
