"""Names both ends of the certificate service and of xDS agree on. Pure.

A control plane serves xDS and certificates with an X.509-SVID for
``spiffe://<td>/ns/meshfed-system/sa/controlplane-<cluster>`` that also carries the DNS name
``controlplane.<cluster>.cluster.meshfed.internal`` (under the only DNS domain the cluster's
intermediate may name, :func:`trust.pki.cluster_dns_name`); gRPC clients verify that name
(whatever address they dial), Envoy verifies the SPIFFE ID. East-west gateways run as
``spiffe://<td>/ns/meshfed-system/sa/eastwest-gateway`` (Istio's gateways likewise have their
own service account).
"""

from __future__ import annotations

import re

from federation.model.workload import DNS_LABEL as DNS_LABEL_PATTERN
from federation.model.workload import DNS_SUBDOMAIN_PATTERN
from trust.pki import cluster_dns_name

#: The namespace of meshfed's own identities (control planes, gateways, the controller).
SYSTEM_NAMESPACE = "meshfed-system"
#: The service account of every east-west gateway.
GATEWAY_SERVICE_ACCOUNT = "eastwest-gateway"
CONTROL_PLANE_SA_PREFIX = "controlplane-"


def control_plane_server_name(cluster: str) -> str:
    """``controlplane.<cluster>.cluster.meshfed.internal``: the DNS SAN of a control plane's
    server certificate."""
    return f"controlplane.{cluster_dns_name(cluster)}"


def control_plane_service_account(cluster: str) -> str:
    """``controlplane-<cluster>``."""
    return CONTROL_PLANE_SA_PREFIX + cluster


def control_plane_spiffe_id(trust_domain: str, cluster: str) -> str:
    """``spiffe://<td>/ns/meshfed-system/sa/controlplane-<cluster>``."""
    return (
        f"spiffe://{trust_domain}/ns/{SYSTEM_NAMESPACE}/sa/{control_plane_service_account(cluster)}"
    )


def workload_spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """``spiffe://<td>/ns/<ns>/sa/<sa>``."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def namespace_and_account(spiffe_path: str) -> tuple[str, str] | None:
    """``(ns, sa)`` of a ``/ns/<ns>/sa/<sa>`` path, or None for any other shape."""
    parts = spiffe_path.split("/")
    well_formed = len(parts) == 5 and parts[0] == "" and parts[1] == "ns" and parts[3] == "sa"
    return (parts[2], parts[4]) if well_formed and parts[2] and parts[4] else None


#: A Kubernetes namespace name: an RFC 1123 DNS label (63 characters at most).
DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
#: A Kubernetes object name such as a service account's: an RFC 1123 subdomain (253 at most).
DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)


def workload_name_problem(namespace: str, service_account: str) -> str | None:
    """Why ``ns/<namespace>/sa/<service_account>`` cannot name a workload, or None: the
    namespace must be a DNS label and the service account an RFC 1123 subdomain, as
    Kubernetes requires of both (its API documentation, "Object Names and IDs")."""
    if not DNS_LABEL.match(namespace):
        return (
            f"namespace {namespace[:80]!r} is not a Kubernetes name (a DNS label: at most 63"
            " lowercase letters, digits and '-')"
        )
    if not DNS_SUBDOMAIN.match(service_account):
        return (
            f"service account {service_account[:80]!r} is not a Kubernetes name (at most 253"
            " lowercase letters, digits, '-' and '.')"
        )
    return None
