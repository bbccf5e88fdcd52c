"""The manifests of ``meshfed install`` and ``meshfed uninstall`` (issue #20). Pure.

What one cluster gets, in namespace :data:`NAMESPACE` unless said otherwise:

- the MCS CRDs (``serviceexports`` and ``serviceimports`` of ``multicluster.x-k8s.io``,
  ``v1alpha1``, with a status subresource), unless the cluster has them already;
- the official CRDs of the Istio and Gateway API kinds the control plane reads
  (:mod:`federation.install.ecosystem_crds`), created only where missing;
- ServiceAccounts for the control plane and the east-west gateway; a ClusterRole for the
  control plane with exactly what it reads and writes (no ``*``): list and watch of
  Services, EndpointSlices, Pods, Nodes, Namespaces and ServiceExports; the status of
  ServiceExports; ServiceImports; Istio's VirtualServices, DestinationRules,
  ServiceEntries, Sidecars, AuthorizationPolicies and PeerAuthentications and Gateway API's
  HTTPRoutes, GRPCRoutes and ReferenceGrants, and the status of all of them but
  ReferenceGrants; TokenReviews; and its own MutatingWebhookConfiguration
  (by name, to put its CA bundle in). The gateway needs no API access;
- a Secret with the one-time join token (when given); a Role that lets the control plane
  read and update, by name, what its replicas share: a Secret (its identity: the
  intermediate CA, 0600 in each replica), a ConfigMap (the controller's last update) and
  a Lease (the leader), created empty here
  (:mod:`federation.controlplane.kube.replicas`);
- the control plane Deployment (two replicas spread over zones and nodes, a
  PodDisruptionBudget, a rolling update that adds before it removes) and its ClusterIP
  Service (xDS 15010, certificates 15012, API 15014, webhook 443 -> 15017);
- the gateway Deployment and a ``LoadBalancer`` Service (an AWS NLB or a GCP passthrough
  load balancer by annotations); the control plane reads its address back from the
  Service's status and reports it to the controller; with zone-local gateways, the same
  per zone (``meshfed-gateway-<zone>``, its pods on that zone's nodes), each reported for
  its zone;
- the MutatingWebhookConfiguration that injects the sidecar into pods of namespaces labelled
  :data:`INJECT_LABEL` ``=enabled``.

Every object is labelled ``app.kubernetes.io/part-of: meshfed``; ``meshfed uninstall`` prints
the same objects for ``kubectl delete -f -``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from federation.controlplane.kube.pod import (
    FEDERATION_CONFIGMAP,
    IDENTITY_SECRET,
    INJECT_LABEL,
    LEADER_LEASE,
    NAMESPACE,
    PORTS,
    SHARED_LABEL,
    TOKEN_PATH,
    agent_args,
    token_volume,
)
from federation.install.ecosystem_crds import ecosystem_crds
from federation.model.locality import Locality

PART_OF = {"app.kubernetes.io/part-of": "meshfed"}
#: The Kubernetes version whose schemas the manifests are checked against (tests).
KUBERNETES_VERSION = "1.31"
#: Load balancer annotations of the gateway Service per provider.
LB_ANNOTATIONS = {
    "aws": {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
    },
    "gcp": {
        "cloud.google.com/l4-rbs": "enabled",
    },
    "local": {},
}


@dataclass(frozen=True, slots=True)
class InstallOptions:
    """``meshfed install`` options.

    Attributes:
        cluster: the member's name (as registered with ``meshfed cluster join``).
        locality: ``<cloud>/<region>[/<zone>]`` of the cluster.
        controller: the federation controller's API (``https://...``, several
            comma-separated); "" installs an unfederated control plane.
        join_token: the one-time join token ("" : none, already joined).
        image: the meshfed image, by digest (``make image``; docs/image.md).
        provider: ``aws``, ``gcp`` or ``local``: the gateway's load balancer annotations.
        network: the cluster's network name.
        mesh_namespaces: namespaces whose Services are in the mesh (empty: all).
        install_crds: include the MCS CRDs.
        ecosystem_crds: the official CRDs of the Istio and Gateway API kinds the control
            plane reads, by set (:data:`federation.install.ecosystem_crds.SETS`), each
            created only where missing.
        gateway_allowed_cidrs: who may reach the gateway's load balancer
            (``spec.loadBalancerSourceRanges``: the AWS Load Balancer Controller and GKE
            make security-group / firewall rules of it); empty: anyone.
        gateway_ip: a reserved address for the load balancer (``spec.loadBalancerIP``, e.g.
            the ``gcp-member`` module's ``google_compute_address``); "": the cloud picks.
        zone_gateways: zones that get a gateway of their own (zone-local gateways; each
            with a load balancer, reported by the control plane for that zone).
    """

    cluster: str
    locality: str
    controller: str = ""
    join_token: str = ""
    image: str = "ghcr.io/meshfed/meshfed:latest"
    provider: str = "local"
    network: str = "default"
    mesh_namespaces: tuple[str, ...] = ()
    install_crds: bool = True
    ecosystem_crds: tuple[str, ...] = ("gateway-api", "istio")
    gateway_allowed_cidrs: tuple[str, ...] = ()
    gateway_ip: str = ""
    zone_gateways: tuple[str, ...] = ()


def meta(name: str, namespace: str | None = NAMESPACE, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**PART_OF, **labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _crd(
    plural: str, kind: str, schema: dict[str, Any], columns: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": meta(f"{plural}.multicluster.x-k8s.io", None),
        "spec": {
            "group": "multicluster.x-k8s.io",
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


_CONDITIONS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer"},
        },
    },
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


def crds() -> list[dict[str, Any]]:
    """The MCS CRDs (KEP-1645 ``v1alpha1``: ServiceExport with conditions, ServiceImport
    with type, ports and exporting clusters)."""
    export_schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "status": {"type": "object", "properties": {"conditions": _CONDITIONS}},
        },
    }
    port = {
        "type": "object",
        "required": ["port"],
        "properties": {
            "name": {"type": "string"},
            "port": {"type": "integer"},
            "protocol": {"type": "string"},
            "appProtocol": {"type": "string"},
        },
    }
    import_schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["ports", "type"],
                "properties": {
                    "type": {"type": "string", "enum": ["ClusterSetIP", "Headless"]},
                    "ports": {"type": "array", "items": port},
                    "ips": {"type": "array", "items": {"type": "string"}},
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "clusters": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["cluster"],
                            "properties": {"cluster": {"type": "string"}},
                        },
                    }
                },
            },
        },
    }
    valid = {"name": "Valid", "type": "string",
             "jsonPath": ".status.conditions[?(@.type==\"Valid\")].status"}  # fmt: skip
    conflict = {"name": "Conflict", "type": "string",
                "jsonPath": ".status.conditions[?(@.type==\"Conflict\")].status"}  # fmt: skip
    kind_column = {"name": "Type", "type": "string", "jsonPath": ".spec.type"}
    return [
        _crd("serviceexports", "ServiceExport", export_schema, [valid, conflict]),
        _crd("serviceimports", "ServiceImport", import_schema, [kind_column]),
    ]


def _rule(
    groups: list[str], resources: list[str], verbs: list[str], **extra: Any
) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs, **extra}


_ISTIO_NETWORKING = ["virtualservices", "destinationrules", "serviceentries", "sidecars"]
_ISTIO_SECURITY = ["authorizationpolicies", "peerauthentications"]


def rbac() -> list[dict[str, Any]]:
    """ServiceAccounts, the control plane's ClusterRole and its binding (no ``*``)."""
    read = ["get", "list", "watch"]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta("meshfed-controlplane", None),
        "rules": [
            _rule([""], ["services", "pods", "nodes", "namespaces"], read),
            _rule(["discovery.k8s.io"], ["endpointslices"], read),
            _rule(["multicluster.x-k8s.io"], ["serviceexports"], read),
            _rule(["multicluster.x-k8s.io"], ["serviceexports/status"], ["update"]),
            _rule(["multicluster.x-k8s.io"], ["serviceimports"],
                  [*read, "create", "update", "delete"]),
            _rule(["multicluster.x-k8s.io"], ["serviceimports/status"], ["update"]),
            # Istio's and Gateway API's documents: read; their status written
            _rule(["networking.istio.io"], _ISTIO_NETWORKING, read),
            _rule(["networking.istio.io"], [f"{r}/status" for r in _ISTIO_NETWORKING],
                  ["update"]),
            _rule(["security.istio.io"], _ISTIO_SECURITY, read),
            _rule(["security.istio.io"], [f"{r}/status" for r in _ISTIO_SECURITY], ["update"]),
            _rule(["gateway.networking.k8s.io"], ["httproutes", "grpcroutes", "referencegrants"],
                  read),
            _rule(["gateway.networking.k8s.io"], ["httproutes/status", "grpcroutes/status"],
                  ["update"]),
            _rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
            _rule(["admissionregistration.k8s.io"], ["mutatingwebhookconfigurations"],
                  ["get", "update"], resourceNames=["meshfed-sidecar-injector"]),
        ],
    }  # fmt: skip
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": meta("meshfed-controlplane", None),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "meshfed-controlplane",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": "meshfed-controlplane", "namespace": NAMESPACE}
        ],
    }
    # what the replicas share, each object by name (list/watch of ConfigMaps cannot be
    # narrowed to one without a field selector; ConfigMaps hold no secret)
    shared = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta("meshfed-controlplane"),
        "rules": [
            _rule([""], ["secrets"], ["get", "update"], resourceNames=[IDENTITY_SECRET]),
            _rule([""], ["configmaps"], ["get", "update"], resourceNames=[FEDERATION_CONFIGMAP]),
            _rule([""], ["configmaps"], ["list", "watch"]),
            _rule(["coordination.k8s.io"], ["leases"], ["get", "update"],
                  resourceNames=[LEADER_LEASE]),
        ],
    }  # fmt: skip
    shared_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta("meshfed-controlplane"),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "meshfed-controlplane",
        },
        "subjects": binding["subjects"],
    }
    accounts = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name)}
        for name in ("meshfed-controlplane", "meshfed-gateway")
    ]
    return [*accounts, role, binding, shared, shared_binding]


def shared_state() -> list[dict[str, Any]]:
    """The objects control plane replicas share, created empty (the control plane's Role
    may update them, not create them): the identity Secret, the federation ConfigMap, the
    leader Lease (:mod:`federation.controlplane.kube.replicas`)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta(IDENTITY_SECRET, **{SHARED_LABEL: "identity"}),
            "type": "Opaque",
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(FEDERATION_CONFIGMAP, **{SHARED_LABEL: "federation"}),
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta(LEADER_LEASE),
            "spec": {},
        },
    ]


#: Control plane replicas (:func:`controlplane`).
CONTROLPLANE_REPLICAS = 2
#: The image's meshfed user (image/rootfs.py).
MESHFED_UID = 10001
#: The gateway agent's metrics and readiness port (``GET /healthz/ready``: Envoy's ``/ready``).
GATEWAY_HEALTH_PORT = 15020


def container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": MESHFED_UID,
        "runAsGroup": MESHFED_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> dict[str, Any]:
    """Pod Security Standards "restricted" (https://kubernetes.io/docs/concepts/security/
    pod-security-standards/): non-root, the runtime's default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": MESHFED_UID,
        "runAsGroup": MESHFED_UID,
        "fsGroup": MESHFED_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def spread(labels: dict[str, str]) -> list[dict[str, Any]]:
    """Replicas spread over zones, then nodes, as evenly as the scheduler can (soft: a
    one-zone or one-node cluster still schedules them)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": labels},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def disruption_budget(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """At most one replica evicted at a time (node drains, upgrades)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, **labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
    }


def _controlplane_args(opts: InstallOptions) -> list[str]:
    args = [
        "controlplane", "serve",
        "--cluster", opts.cluster, "--locality", opts.locality, "--network", opts.network,
        "--xds-listen", f"0.0.0.0:{PORTS['xds']}", "--ca-listen", f"0.0.0.0:{PORTS['ca']}",
        "--api-listen", f"0.0.0.0:{PORTS['api']}",
        "--state-dir", "/var/lib/meshfed", "--kubernetes",
        "--gateway-service", f"{NAMESPACE}/meshfed-gateway",
        *(f for z in opts.zone_gateways
          for f in ("--zone-gateway-service", f"{z}={NAMESPACE}/{zone_gateway_name(z)}")),
        "--webhook-listen", f"0.0.0.0:{PORTS['webhook']}", "--sidecar-image", opts.image,
    ]  # fmt: skip
    if opts.mesh_namespaces:
        args += ["--kube-namespaces", ",".join(opts.mesh_namespaces)]
    if opts.controller:
        args += ["--controller", opts.controller]
    return args


def _controlplane_container(opts: InstallOptions) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": "MESHFED_HOME", "value": "/var/lib/meshfed"}]
    if opts.join_token:
        env.append(
            {
                "name": "MESHFED_JOIN_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "meshfed-join", "key": "token"}},
            }
        )
    return {
        "name": "controlplane",
        "image": opts.image,
        "args": _controlplane_args(opts),
        "env": env,
        "ports": [
            {"name": name, "containerPort": port}
            for name, port in PORTS.items()
            if name != "gateway"
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": PORTS["api"], "scheme": "HTTPS"}
        },
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "state", "mountPath": "/var/lib/meshfed"}],
    }


def controlplane(opts: InstallOptions) -> list[dict[str, Any]]:
    """The control plane: its shared objects, Deployment, PodDisruptionBudget and Service
    (and the join Secret).

    :data:`CONTROLPLANE_REPLICAS` replicas, each serving xDS, certificates, the API and the
    injector (so the injector's ``failurePolicy: Fail`` does not stop pod creation while one
    restarts), sharing state through the API server
    (:mod:`federation.controlplane.kube.replicas`); each keeps its copy in an in-memory
    ``emptyDir`` (keys never on the node's disk). A rolling update adds a new replica before
    it stops an old one.
    """
    labels = {"app.kubernetes.io/name": "meshfed-controlplane"}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta("meshfed-join"),
        "type": "Opaque",
        "stringData": {"token": opts.join_token},
    }
    volume = {"name": "state", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("meshfed-controlplane", **labels),
        "spec": {
            "replicas": CONTROLPLANE_REPLICAS,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**PART_OF, **labels}},
                "spec": {
                    "serviceAccountName": "meshfed-controlplane",
                    "securityContext": pod_security(),
                    "topologySpreadConstraints": spread(labels),
                    "containers": [_controlplane_container(opts)],
                    "volumes": [volume],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("meshfed-controlplane", **labels),
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [
                {"name": "grpc-xds", "port": PORTS["xds"], "targetPort": PORTS["xds"]},
                {"name": "grpc-ca", "port": PORTS["ca"], "targetPort": PORTS["ca"]},
                {"name": "https-api", "port": PORTS["api"], "targetPort": PORTS["api"]},
                {"name": "https-webhook", "port": 443, "targetPort": PORTS["webhook"]},
            ],
        },
    }
    return [
        *([secret] if opts.join_token else []),
        *shared_state(),
        deployment,
        disruption_budget("meshfed-controlplane", labels),
        service,
    ]


def gateway(opts: InstallOptions) -> list[dict[str, Any]]:
    """The east-west gateway: Deployment and LoadBalancer Service; and with
    ``zone_gateways`` one more of each per zone (:func:`zone_gateway_name`), its pods on
    that zone's nodes (``topology.kubernetes.io/zone``) running ``--zone-local``."""
    out = _gateway_objects(opts, "meshfed-gateway", [], address=True)
    # uninstall needs no locality: it deletes by name
    region = Locality.parse(opts.locality).region if opts.locality else ""
    for zone in opts.zone_gateways:
        out += _gateway_objects(
            opts,
            zone_gateway_name(zone),
            ["--zone-local", "--locality", f"{region}/{zone}"],
            zone=zone,
        )
    return out


def zone_gateway_name(zone: str) -> str:
    """The Deployment and Service of ``zone``'s own gateway: ``meshfed-gateway-<zone>``."""
    return f"meshfed-gateway-{zone}"


def _gateway_objects(
    opts: InstallOptions, name: str, args: list[str], *, address: bool = False, zone: str = ""
) -> list[dict[str, Any]]:
    """One gateway's Deployment, LoadBalancer Service and PodDisruptionBudget (``address``:
    with ``opts.gateway_ip``; ``zone``: pinned to that zone's nodes)."""
    labels = {"app.kubernetes.io/name": name}
    address_annotations, address_fields = _load_balancer_address(opts) if address else ({}, {})
    container = {
        "name": "gateway",
        "image": opts.image,
        "args": [
            "proxy",
            "gateway",
            "--cluster",
            opts.cluster,
            *agent_args(),
            "--listen",
            f"0.0.0.0:{PORTS['gateway']}",
            "--metrics-listen",
            f"0.0.0.0:{GATEWAY_HEALTH_PORT}",
            *args,
        ],
        "env": [{"name": "MESHFED_WORKLOAD_TOKEN_FILE", "value": TOKEN_PATH}],
        "ports": [
            {"name": "tls", "containerPort": PORTS["gateway"]},
            {"name": "http-metrics", "containerPort": GATEWAY_HEALTH_PORT},
        ],
        # ready once Envoy has its first SVID and configuration; the load balancer and the
        # PodDisruptionBudget count only ready replicas
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": GATEWAY_HEALTH_PORT},
            "periodSeconds": 5,
        },
        "startupProbe": {
            "httpGet": {"path": "/healthz/ready", "port": GATEWAY_HEALTH_PORT},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "tcpSocket": {"port": GATEWAY_HEALTH_PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "meshfed-token", "mountPath": TOKEN_PATH.rsplit("/", 1)[0]},
            {"name": "work", "mountPath": "/tmp"},  # noqa: S108 - the container's own
        ],
    }
    placement: dict[str, Any] = (
        {"nodeSelector": {"topology.kubernetes.io/zone": zone}} if zone else {}
    )
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(name, **labels),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**PART_OF, **labels}},
                    "spec": {
                        "serviceAccountName": "meshfed-gateway",
                        "securityContext": pod_security(),
                        "topologySpreadConstraints": spread(labels),
                        **placement,
                        "terminationGracePeriodSeconds": 30,
                        "containers": [container],
                        "volumes": [token_volume(), {"name": "work", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                **meta(name, **labels),
                "annotations": {**LB_ANNOTATIONS[opts.provider], **address_annotations},
            },
            "spec": {
                "type": "LoadBalancer",
                "selector": labels,
                "ports": [
                    {"name": "tls", "port": PORTS["gateway"], "targetPort": PORTS["gateway"]}
                ],
                **(
                    {"loadBalancerSourceRanges": list(opts.gateway_allowed_cidrs)}
                    if opts.gateway_allowed_cidrs
                    else {}
                ),
                **address_fields,
            },
        },
        disruption_budget(name, labels),
    ]


def _load_balancer_address(opts: InstallOptions) -> tuple[dict[str, str], dict[str, str]]:
    """(annotations, spec fields) that give the gateway's load balancer ``opts.gateway_ip``.

    ``spec.loadBalancerIP`` is deprecated since Kubernetes 1.24 in favour of each
    implementation's annotation: GKE's ``networking.gke.io/load-balancer-ip-addresses``
    takes the reserved address's *name* (GKE 1.29+); the AWS Load Balancer Controller's
    ``service.beta.kubernetes.io/aws-load-balancer-eip-allocations`` takes Elastic IP
    allocation IDs, one per subnet. ``local`` (MetalLB, kube-vip, a bare cluster) keeps the
    generic field. :func:`federation.install.options.install_options` checks the form.
    """
    if not opts.gateway_ip:
        return {}, {}
    if opts.provider == "gcp":
        return {"networking.gke.io/load-balancer-ip-addresses": opts.gateway_ip}, {}
    if opts.provider == "aws":
        return {"service.beta.kubernetes.io/aws-load-balancer-eip-allocations": opts.gateway_ip}, {}
    return {}, {"loadBalancerIP": opts.gateway_ip}


def webhook() -> dict[str, Any]:
    """The sidecar injector (the control plane fills ``caBundle`` at start)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": meta("meshfed-sidecar-injector", None),
        "webhooks": [
            {
                "name": "sidecar.meshfed.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "timeoutSeconds": 10,
                "namespaceSelector": {"matchLabels": {INJECT_LABEL: "enabled"}},
                "objectSelector": {
                    "matchExpressions": [{"key": "meshfed.io/sidecar", "operator": "DoesNotExist"}]
                },
                "clientConfig": {
                    "service": {
                        "name": "meshfed-controlplane",
                        "namespace": NAMESPACE,
                        "path": "/inject",
                        "port": 443,
                    }
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
            }
        ],
    }


def install(opts: InstallOptions) -> list[dict[str, Any]]:
    """Every object of a cluster's installation, in the order to apply them."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": dict(PART_OF)},
    }
    return [
        namespace,
        *(crds() if opts.install_crds else []),
        *ecosystem_crds(opts.ecosystem_crds),
        *rbac(),
        *controlplane(opts),
        *gateway(opts),
        webhook(),
    ]


def uninstall(opts: InstallOptions, *, delete_crds: bool = False) -> list[dict[str, Any]]:
    """What removes an installation (``kubectl delete -f -``): the same objects, in reverse
    order. The MCS CRDs stay unless ``delete_crds``: deleting a CRD deletes every object of
    it, another MCS implementation's ServiceExports and ServiceImports too. The Istio and
    Gateway API CRDs always stay: they hold the user's own documents."""
    objects = install(replace(opts, install_crds=False, ecosystem_crds=()))
    return list(reversed([*(crds() if delete_crds else []), *objects]))
