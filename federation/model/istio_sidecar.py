"""Istio's ``Sidecar`` resource (``networking.istio.io`` ``v1``, ``v1beta1``, ``v1alpha3``):
which services a sidecar is sent configuration for (``egress[].hosts``), so a proxy that
calls two services holds two services' clusters, not the mesh's (issue #40)::

    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: default, namespace: demo}
    spec:
      egress:
      - hosts: ["./*", "shared/db.shared.svc.cluster.local"]

Which applies to a sidecar (Istio's rules, istio.io/latest/docs/reference/config/networking/
sidecar/, read 2026-12-05): a Sidecar of its namespace whose ``workloadSelector`` matches its
workload's labels (of several, the first by name), else its namespace's Sidecar without a
selector, else the root namespace's (``meshfed-system``) without a selector; none: every
service. A host is ``<namespace>/<dns name>``: namespace ``*`` (any), ``.`` (the sidecar's
own, also in the root namespace's Sidecar) or a name; dns name ``*``, ``*.<suffix>`` or a
service's ``<svc>.<ns>.svc.cluster.local`` (``clusterset.local`` too).

Applied to the controller, a Sidecar holds in every member cluster. A route to a service
outside the scope fails there (503, no cluster), as in Istio. ``ingress``,
``outboundTrafficPolicy`` (meshfed sets it per sidecar: ``--outbound-traffic-policy``),
``egress[].port`` / ``bind`` / ``captureMode`` are refused (not yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from federation.model.authz import ROOT_NAMESPACE
from federation.model.istio_networking import NetworkingVersion, not_supported
from federation.model.workload import ObjectMeta, _Strict

_NotYet = Annotated[Any, not_supported()]
_SUFFIXES = (".svc.cluster.local", ".svc.clusterset.local")


def _host(value: str) -> str:
    ns, sep, name = value.partition("/")
    if not sep or not ns or not name:
        raise ValueError(f"{value!r}: write <namespace>/<dns name>, e.g. ./* or prod/*")
    if "*" in name.lstrip("*") or (
        name.startswith("*") and name != "*" and not name.startswith("*.")
    ):
        raise ValueError(f"{value!r}: the dns name is *, *.<suffix> or a name")
    if ns == "~":
        raise ValueError(
            f"{value!r}: not supported by meshfed: ~ (no namespace) is not supported yet"
        )
    return value


class EgressListener(_Strict):
    """``egress[]``: the hosts in scope."""

    hosts: list[str] = Field(min_length=1)
    port: _NotYet = None
    bind: _NotYet = None
    capture_mode: _NotYet = Field(default=None, alias="captureMode")

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [_host(v) for v in value]


class WorkloadSelector(_Strict):
    """``workloadSelector``."""

    labels: dict[str, str] = Field(min_length=1)


class SidecarSpec(_Strict):
    """``spec`` of a Sidecar."""

    workload_selector: WorkloadSelector | None = Field(default=None, alias="workloadSelector")
    egress: list[EgressListener] = Field(min_length=1)
    ingress: _NotYet = None
    outbound_traffic_policy: Annotated[
        Any,
        not_supported("set it per sidecar (meshfed proxy sidecar --outbound-traffic-policy)"),
    ] = Field(default=None, alias="outboundTrafficPolicy")
    inbound_connection_pool: _NotYet = Field(default=None, alias="inboundConnectionPool")


class IstioSidecar(_Strict):
    """A ``Sidecar`` document (see the module docstring)."""

    api_version: NetworkingVersion = Field(alias="apiVersion")
    kind: Literal["Sidecar"]
    metadata: ObjectMeta
    spec: SidecarSpec

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``."""
        return (self.metadata.namespace, self.metadata.name)


def _applies(sidecar: IstioSidecar, namespace: str, labels: Mapping[str, str]) -> int | None:
    """How specifically ``sidecar`` applies to a proxy (0 by selector, 1 its namespace's, 2
    mesh-wide), None when it does not."""
    selector = sidecar.spec.workload_selector
    if sidecar.metadata.namespace == namespace:
        if selector is None:
            return 1
        return 0 if all(labels.get(k) == v for k, v in selector.labels.items()) else None
    if sidecar.metadata.namespace == ROOT_NAMESPACE and selector is None:
        return 2
    return None


def sidecar_for(
    sidecars: Iterable[IstioSidecar], namespace: str, labels: Mapping[str, str]
) -> IstioSidecar | None:
    """The Sidecar that applies to a proxy in ``namespace`` whose workload has ``labels``
    (``{}`` without a workload), None when none does."""
    found: list[tuple[int, str, IstioSidecar]] = []
    for s in sidecars:
        level = _applies(s, namespace, labels)
        if level is not None:
            found.append((level, s.metadata.name, s))
    return min(found, key=lambda f: (f[0], f[1]))[2] if found else None


def _visible(
    sidecar: IstioSidecar | None, proxy_namespace: str, namespace: str, names: list[str]
) -> bool:
    """Whether something of ``namespace`` called by any of ``names`` is in the egress
    scope ``sidecar`` gives a proxy of ``proxy_namespace``."""
    if sidecar is None:
        return True
    for egress in sidecar.spec.egress:
        for host in egress.hosts:
            want_ns, _, pattern = host.partition("/")
            ns = want_ns in ("*", namespace) or (want_ns == "." and namespace == proxy_namespace)
            if ns and any(_dns_matches(pattern, n) for n in names):
                return True
    return False


def _dns_matches(pattern: str, name: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return pattern == name


def in_scope(sidecar: IstioSidecar | None, proxy_namespace: str, service: tuple[str, str]) -> bool:
    """Whether service ``(namespace, name)`` is in the egress scope ``sidecar`` gives a proxy
    of ``proxy_namespace`` (every service without a Sidecar)."""
    ns, svc = service
    return _visible(sidecar, proxy_namespace, ns, [f"{svc}.{ns}{s}" for s in _SUFFIXES])


def host_in_scope(
    sidecar: IstioSidecar | None, proxy_namespace: str, namespace: str, host: str
) -> bool:
    """Whether ServiceEntry host ``host``, of an entry in ``namespace``, is in the egress
    scope ``sidecar`` gives a proxy of ``proxy_namespace``."""
    return _visible(sidecar, proxy_namespace, namespace, [host])


#: The annotation by which an Istio user limits the namespaces that see a Kubernetes Service
#: (istio.io, "Annotations": ``networking.istio.io/exportTo``; read 2026-12-05).
EXPORT_TO = "networking.istio.io/exportTo"


def export_visible(export_to: str | None, service_namespace: str, proxy_namespace: str) -> bool:
    """Whether a service whose Service says ``networking.istio.io/exportTo: <export_to>`` is
    seen by a proxy of ``proxy_namespace``: comma-separated ``*`` (everyone: also when the
    annotation is absent or empty), ``.`` (the service's own namespace), ``~`` (no one) or
    namespace names, as Istio reads it."""
    tokens = {t.strip() for t in (export_to or "").split(",") if t.strip()}
    if not tokens or "*" in tokens:
        return True
    if "." in tokens and proxy_namespace == service_namespace:
        return True
    return proxy_namespace in tokens - {".", "~"}
