"""Istio's ``PeerAuthentication`` (``security.istio.io/v1``, ``v1beta1``): what a workload's
sidecar accepts from callers -- mTLS only (``STRICT``), mTLS or plain text (``PERMISSIVE``,
how an existing service is migrated into the mesh), plain text only (``DISABLE``) --
mesh-wide, per namespace, per workload and per port (issue #40)::

    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: default, namespace: meshfed-system}   # the root namespace: mesh-wide
    spec:
      mtls: {mode: STRICT}
    ---
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: legacy, namespace: demo}
    spec:
      selector: {matchLabels: {app: legacy}}
      mtls: {mode: STRICT}
      portLevelMtls: {8080: {mode: PERMISSIVE}}   # the workload's (target) port

Which applies (Istio's rules, istio.io/latest/docs/reference/config/security/
peer_authentication/, read 2026-12-05): for each port of a workload, the most specific
policy that sets a mode -- a policy of its namespace whose ``selector`` matches it (its
``portLevelMtls`` for the port, else its ``mtls``; of several, the first by name, as Istio
takes the oldest), then its namespace's policy without a selector, then the mesh-wide one
(root namespace ``meshfed-system``, no selector); ``UNSET`` defers to the next. Where none
sets a mode, the WorkloadEntry's ``mtlsMode`` holds: ``STRICT`` unless it says otherwise
(Istio's default is PERMISSIVE; meshfed's is secure). ``portLevelMtls`` needs a
``selector``, as in Istio.

Applied to the controller, a PeerAuthentication holds in every member cluster. It changes
what a sidecar accepts only: meshfed callers keep sending mTLS, so ``DISABLE`` is for
workloads called from outside the mesh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from federation.model.authz import ROOT_NAMESPACE, Selector
from federation.model.istio_networking import not_supported
from federation.model.workload import ObjectMeta, WorkloadEntry, _Strict

Mode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]
#: What the sidecar's inbound listener does for a port: the resolved mode (never UNSET).
Enforced = Literal["DISABLE", "PERMISSIVE", "STRICT"]


class MutualTLS(_Strict):
    """``mtls`` / a ``portLevelMtls`` entry."""

    mode: Mode = "UNSET"


class PeerAuthenticationSpec(_Strict):
    """``spec`` of a PeerAuthentication."""

    selector: Selector | None = None
    mtls: MutualTLS | None = None
    port_level_mtls: dict[int, MutualTLS] | None = Field(default=None, alias="portLevelMtls")
    target_ref: Annotated[Any, not_supported("select workloads with selector.matchLabels")] = Field(
        default=None, alias="targetRef"
    )

    @model_validator(mode="after")
    def _ports(self) -> PeerAuthenticationSpec:
        for port in self.port_level_mtls or {}:
            if not 0 < port < 65536:
                raise ValueError(f"portLevelMtls: port {port} must be 1-65535")
        if self.port_level_mtls and (self.selector is None or not self.selector.match_labels):
            raise ValueError("portLevelMtls needs a selector (as in Istio)")
        return self


class PeerAuthentication(_Strict):
    """A ``PeerAuthentication`` document (see the module docstring)."""

    api_version: Literal["security.istio.io/v1", "security.istio.io/v1beta1"] = Field(
        alias="apiVersion"
    )
    kind: Literal["PeerAuthentication"]
    metadata: ObjectMeta
    spec: PeerAuthenticationSpec = Field(default_factory=PeerAuthenticationSpec)

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``."""
        return (self.metadata.namespace, self.metadata.name)

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether this policy applies to a workload in ``namespace`` with ``labels`` (a
        mesh-wide one, in the root namespace without a selector, applies to every
        workload)."""
        wanted = self.spec.selector.match_labels if self.spec.selector else {}
        if self.metadata.namespace == ROOT_NAMESPACE and not wanted:
            return True
        if self.metadata.namespace != namespace:
            return False
        return all(labels.get(k) == v for k, v in wanted.items())

    def mode_for(self, port: int) -> Mode:
        """The mode this policy sets for ``port`` (``UNSET``: it defers)."""
        level = (self.spec.port_level_mtls or {}).get(port)
        if level is not None and level.mode != "UNSET":
            return level.mode
        return self.spec.mtls.mode if self.spec.mtls is not None else "UNSET"


def _specificity(policy: PeerAuthentication) -> int:
    """0: selects the workload by labels; 1: its namespace's; 2: mesh-wide."""
    if policy.spec.selector is not None and policy.spec.selector.match_labels:
        return 0
    return 1 if policy.metadata.namespace != ROOT_NAMESPACE else 2


def mtls_modes(
    policies: Iterable[PeerAuthentication], workload: WorkloadEntry
) -> dict[int, Enforced]:
    """The mode each port of ``workload`` (by its target port) is served in (see the module
    docstring). Pure."""
    meta = workload.metadata
    first: dict[int, PeerAuthentication] = {}  # per level, the one that counts
    for p in sorted(policies, key=lambda p: p.metadata.name):
        if p.selects(meta.namespace, meta.labels):
            first.setdefault(_specificity(p), p)
    applying = [first[level] for level in sorted(first)]
    out: dict[int, Enforced] = {}
    for port in workload.spec.ports:
        mode: Enforced = workload.spec.mtls_mode
        for p in applying:
            m = p.mode_for(port.app_port)
            if m != "UNSET":
                mode = m
                break
        out[port.app_port] = mode
    return out
