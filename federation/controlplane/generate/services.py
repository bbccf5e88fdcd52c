"""The service ports visible to a cluster: local workloads plus imported services."""

from __future__ import annotations

from dataclasses import dataclass

from federation.controlplane.generate.common import outbound_cluster_name, sni
from federation.controlplane.registry import RegistryState, ServiceShape
from federation.model.workload import global_name


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one service, with what its endpoints have in common.

    Attributes:
        service_accounts: every service account serving it, local and remote (upstream SANs).
        tls_modes: tlsMode values of its endpoints (remote ones, behind gateways, are mutual).
        exported: the service has a ServiceExport in this cluster.
        local: at least one local workload serves it.
        retained: exported here, its last local workload gone
            (:class:`~federation.controlplane.registry.ServiceShape`): the east-west
            gateway keeps its routes, with no endpoint.
        remote: at least one remote cluster serves it (a ServiceImport).
        subset: a TrafficPolicy subset's name: the port as its subset's cluster sees it
            (its SNI names the subset); "" for the whole service.
        ips: the service's ClusterSetIPs (its import's ``spec.ips``): a captured connection
            to one of them on ``port`` is this port's (:mod:`.capture`); empty for a service
            that is not exported.
    """

    namespace: str
    service: str
    port_name: str
    port: int
    protocol: str
    service_accounts: tuple[str, ...]
    tls_modes: frozenset[str]
    exported: bool = False
    local: bool = True
    remote: bool = False
    retained: bool = False
    subset: str = ""
    ips: tuple[str, ...] = ()

    @property
    def hostname(self) -> str:
        """``<svc>.<ns>.svc.clusterset.local``."""
        return global_name(self.service, self.namespace)

    @property
    def cluster_name(self) -> str:
        """The outbound cluster / EDS name."""
        return outbound_cluster_name(self.service, self.namespace, self.port)

    @property
    def gateway_cluster_name(self) -> str:
        """The east-west gateway's cluster of local sidecars for this port."""
        return f"gateway|{self.port}||{self.hostname}"

    @property
    def sni(self) -> str:
        """The SNI that names this port (and subset) across clusters."""
        return sni(self.service, self.namespace, self.port, self.subset)

    def subset_cluster_name(self, subset: str, cluster: str | None) -> str:
        """The outbound cluster of a subset, in one member cluster or any:
        ``outbound|<port>|<subset>@<cluster or *>|<host>``."""
        return f"outbound|{self.port}|{subset}@{cluster or '*'}|{self.hostname}"

    def gateway_subset_cluster_name(self, subset: str) -> str:
        """The east-west gateway's cluster of the local sidecars of one subset."""
        return f"gateway|{self.port}|{subset}|{self.hostname}"

    @property
    def is_http(self) -> bool:
        """True for http, http2 and grpc ports (routed by the outbound HTTP listener)."""
        return self.protocol in ("http", "http2", "grpc")


def service_ports(state: RegistryState) -> list[ServicePort]:
    """Every service port, sorted by (namespace, service, port) (:func:`ports_of_service`
    of every service)."""
    return [
        p
        for namespace, service in state.services()
        for p in ports_of_service(state, namespace, service)
    ]


def ports_of_service(state: RegistryState, namespace: str, service: str) -> list[ServicePort]:
    """The ports of one service, sorted by port number.

    Port numbers and protocols: local workloads first (the first by name that defines a port
    name wins) or, with none left, as they defined them (:attr:`RegistryState.retained`),
    then the import's definition for ports no local workload has.
    """
    workloads = state.by_service(namespace, service)
    imported = state.imports.get((namespace, service))
    kept = state.retained.get((namespace, service))  # never a service with workloads
    shape = ServiceShape.of(workloads) if workloads else kept
    seen: dict[str, tuple[int, str]] = {}
    accounts: set[str] = set()
    modes: set[str] = set()
    if shape is not None:
        seen.update((name, (number, protocol)) for name, number, protocol in shape.ports)
        accounts.update(shape.service_accounts)
        modes.update(shape.tls_modes)
    remote = imported is not None and bool(imported.spec.clusters)
    if imported is not None:
        for ip in imported.spec.ports:
            seen.setdefault(ip.name, (ip.port, ip.protocol))
        accounts |= set(imported.spec.service_accounts)
        if remote:
            modes.add("mutual")
    return [
        ServicePort(
            namespace,
            service,
            name,
            number,
            protocol,
            tuple(sorted(accounts)),
            frozenset(modes),
            exported=state.exported((namespace, service)),
            local=bool(workloads),
            remote=remote,
            retained=kept is not None,
            ips=tuple(imported.spec.ips) if imported is not None else (),
        )
        for name, (number, protocol) in sorted(seen.items(), key=lambda kv: kv[1][0])
    ]
