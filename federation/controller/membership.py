"""Membership decisions: member names and cluster state from heartbeats. Pure functions.

Join tokens are :mod:`federation.sync.join_token` (both ends read them)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Literal

from federation.controller.store import ClusterRecord
from federation.sync.identity import CONTROLLER_CA_NAME
from federation.sync.messages import ClusterReport
from trust import pki
from trust.errors import TrustError
from trust.revocation import crl_issued_by

ClusterState = Literal["Pending", "Ready", "Unreachable"]
DEFAULT_LEASE_S = 30.0
DEFAULT_TOKEN_TTL_S = 3600.0
#: After a controller (re)start, joined clusters stay Ready this long (or one lease, if
#: longer) without a heartbeat: it covers a control plane's longest reconnect backoff (10 s,
#: :data:`federation.controlplane.link.session.BACKOFF_MAX_S`) so that a controller restart
#: never withdraws a live cluster's endpoints.
STARTUP_GRACE_S = 15.0
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def cluster_state(
    record: ClusterRecord, now: float, lease_s: float = DEFAULT_LEASE_S, since: float = 0.0
) -> ClusterState:
    """Pending until its control plane joins; Ready while heartbeats arrive within the lease;
    Unreachable once the lease (default 30 s) has expired.

    ``since`` is when the controller started (seconds since the epoch): a controller that was
    down cannot know who left meanwhile, so every joined cluster gets one lease from then to
    reconnect before it is declared Unreachable (otherwise a controller restart would withdraw
    every endpoint in the federation).
    """
    if record.joined_at is None:
        return "Pending"
    last = max(record.last_heartbeat or 0.0, since)
    if now - last > lease_s:
        return "Unreachable"
    return "Ready"


def validate_member_name(name: str) -> str:
    """A member cluster name: a DNS label (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63).

    Raises:
        ValueError: not a DNS label, or the name reserved for the controller's own identity.
    """
    if not _DNS_LABEL.fullmatch(name):
        raise ValueError(
            f"cluster name {name!r} must be a DNS label"
            " (lowercase letters, digits, '-'; at most 63)"
        )
    if name == CONTROLLER_CA_NAME:
        raise ValueError(f"cluster name {name!r} is reserved for the controller")
    return name


def member_crls(
    clusters: list[ClusterRecord], reports: Mapping[str, ClusterReport]
) -> dict[str, str]:
    """The CRL each joined member reported, by cluster -- only CRLs signed by the intermediate
    CA the controller signed for that cluster at join, so that no member can keep another
    (for instance a removed) cluster trusted by reporting its CRL. A removed cluster has no
    record, hence no CRL: every proxy refuses its SVIDs (see :mod:`trust.revocation`)."""
    out: dict[str, str] = {}
    for record in clusters:
        report = reports.get(record.name)
        if report is None or not report.crl_pem or not record.intermediate_pem:
            continue
        if _crl_signed_by(report.crl_pem, record.intermediate_pem):
            out[record.name] = report.crl_pem
    return out


@functools.lru_cache(maxsize=1024)
def _crl_signed_by(crl_pem: str, intermediate_pem: str) -> bool:
    """``crl_pem`` is signed by the first certificate of ``intermediate_pem`` (False when
    either does not parse). Kept: every recompute asks it for every member, and the parse
    and signature check were ~1 ms a member."""
    try:
        issuer = pki.load_certificates(intermediate_pem.encode(), source="intermediate")
        return crl_issued_by(crl_pem.encode(), issuer[0])
    except TrustError:
        return False


@functools.lru_cache(maxsize=1024)
def _first_certificate(chain_pem: str) -> str | None:
    """The first certificate of ``chain_pem`` as PEM, or None when it does not parse."""
    try:
        first = pki.load_certificates(chain_pem.encode(), source="intermediate")
    except TrustError:
        return None
    return pki.certificates_to_pem(first[:1]).decode()


def member_cas(clusters: list[ClusterRecord], crls: Mapping[str, str]) -> dict[str, str]:
    """The intermediate CA certificate (PEM, the first of the recorded chain) of every member
    in ``crls`` (:func:`member_crls`), by cluster: the trust anchors of proxyless gRPC
    workloads, which check no CRL -- a removed cluster has no record and is left out, so
    its SVIDs no longer verify there. Pure."""
    out: dict[str, str] = {}
    for record in clusters:
        if record.name not in crls or not record.intermediate_pem:
            continue
        first = _first_certificate(record.intermediate_pem)
        if first is not None:
            out[record.name] = first
    return out
