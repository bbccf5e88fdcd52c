"""Sidecar injection (issue #20). Pure.

A pod gets one more container, ``meshfed-sidecar``: ``meshfed proxy sidecar --kubernetes``
(the agent and its Envoy), which

- takes its first SVID with the pod's projected service account token (audience
  ``meshfed``, mounted at :data:`~federation.controlplane.kube.pod.TOKEN_PATH`),
  checked by the control plane with the TokenReview API;
- serves the pod's inbound traffic with mTLS on the pod IP, port :data:`INBOUND_PORT`,
  and forwards it to the application's port (the first ``containerPort`` of the first
  container, or the annotation ``meshfed.io/app-port``);
- is registered by the pod's EndpointSlice, not by itself.

The pod is labelled ``meshfed.io/sidecar=true`` (its endpoints are then ``tlsMode: mutual``);
its service is the label ``app.kubernetes.io/name``, else ``app``, else the annotation
``meshfed.io/service``. A pod without a service name or a port is left as it is and
annotated with the reason.

Traffic is captured (issue #38): an init container, ``meshfed-init`` (``meshfed proxy init``,
:mod:`federation.agent.capture`; root with ``NET_ADMIN`` and ``NET_RAW`` only, as Istio's
``istio-init``), installs the pod's nftables rules, with the pod's ``traffic.meshfed.io/*``
and ``traffic.sidecar.istio.io/*`` annotations as they are at admission. Unchanged
applications then dial ``<svc>.<ns>.svc.clusterset.local`` (answered by the agent's DNS,
which takes the pod's port 53 whatever its resolver, so the pod's ``dnsConfig`` stays as it
is) or any address; the sidecar runs as UID and GID :data:`PROXY_UID`, which the rules
exempt, with every capability dropped. A CNI plugin instead of the init container is not
offered. :func:`uninject_document` takes all of it out again (``meshfed uninject``).

:func:`admission_response` answers an ``admission.k8s.io/v1`` AdmissionReview with a JSONPatch
(RFC 6902); :func:`inject_document` does the same to a manifest (``meshfed inject``).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from typing import Any

from federation.controlplane.kube.pod import TOKEN_PATH, agent_args, token_volume
from federation.sync.node import CAPTURE_ANNOTATIONS, PROXY_GID, PROXY_UID

SIDECAR = "meshfed-sidecar"
INIT = "meshfed-init"
VOLUMES = ("meshfed-token", "meshfed-work")
INBOUND_PORT = 15006
OUTBOUND_PORT = 15001
SIDECAR_LABEL = "meshfed.io/sidecar"
SKIPPED = "meshfed.io/inject-skipped"
#: Kinds whose ``spec.template`` is a pod template.
TEMPLATED = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def _escape(key: str) -> str:
    """A JSON Pointer token (RFC 6901): ``~`` -> ``~0``, ``/`` -> ``~1``."""
    return key.replace("~", "~0").replace("/", "~1")


def service_and_port(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[str, int] | str:
    """The pod's service name and application port, or why there are none."""
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    service = (
        labels.get("app.kubernetes.io/name")
        or labels.get("app")
        or annotations.get("meshfed.io/service")
    )
    if not service:
        return (
            "no service name (label app.kubernetes.io/name or app, or annotation"
            " meshfed.io/service)"
        )
    if "meshfed.io/app-port" in annotations:
        try:
            return str(service), int(annotations["meshfed.io/app-port"])
        except ValueError:
            return "annotation meshfed.io/app-port is not a number"
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("containerPort"):
                return str(service), int(port["containerPort"])
    return "no containerPort (or annotation meshfed.io/app-port)"


def sidecar_container(cluster: str, service: str, app_port: int, image: str) -> dict[str, Any]:
    """The ``meshfed-sidecar`` container."""
    return {
        "name": SIDECAR,
        "image": image,
        "args": [
            "proxy",
            "sidecar",
            "--kubernetes",
            "--cluster",
            cluster,
            *agent_args(),
            "--service",
            service,
            "--namespace",
            "$(POD_NAMESPACE)",
            "--service-account",
            "$(POD_SERVICE_ACCOUNT)",
            "--app-port",
            str(app_port),
            "--address",
            "$(POD_IP)",
            "--inbound-port",
            str(INBOUND_PORT),
            "--outbound-port",
            str(OUTBOUND_PORT),
            "--capture",
        ],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {
                "name": "POD_SERVICE_ACCOUNT",
                "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
            },
            {"name": "MESHFED_WORKLOAD_TOKEN_FILE", "value": TOKEN_PATH},
            {"name": "MESHFED_HOME", "value": "/var/run/meshfed"},
        ],
        "ports": [{"name": "mesh-inbound", "containerPort": INBOUND_PORT}],
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": PROXY_UID,
            "runAsGroup": PROXY_GID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "meshfed-token", "mountPath": TOKEN_PATH.rsplit("/", 1)[0], "readOnly": True},
            {"name": "meshfed-work", "mountPath": "/var/run/meshfed"},
        ],
    }


def init_container(annotations: Mapping[str, str], image: str) -> dict[str, Any]:
    """The ``meshfed-init`` container: the pod's capture rules from its ``traffic.*``
    annotations (``meshfed proxy init`` checks them and fails the pod's start, naming the
    annotation, on a bad one)."""
    args = ["proxy", "init"]
    args += [
        f"--annotation={k}={v}"
        for k, v in sorted(annotations.items())
        if k.startswith(CAPTURE_ANNOTATIONS)
    ]
    return {
        "name": INIT,
        "image": image,
        "args": args,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
        },
    }


def pod_patch(
    pod: Mapping[str, Any], cluster: str, image: str, base: str = ""
) -> list[dict[str, Any]]:
    """RFC 6902 operations that add the sidecar to a pod (``base``: the JSON Pointer of the
    pod, "" for a Pod, ``/spec/template`` for a template); ``[]`` when it has one already;
    an annotation saying why when it cannot get one."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ops: list[dict[str, Any]] = []
    if not meta:
        ops.append({"op": "add", "path": f"{base}/metadata", "value": {}})
    if any(c.get("name") == SIDECAR for c in spec.get("containers") or []):
        return []
    found = service_and_port(meta, spec)
    if isinstance(found, str):
        if "annotations" not in meta:
            ops.append({"op": "add", "path": f"{base}/metadata/annotations", "value": {}})
        ops.append({"op": "add", "path": f"{base}/metadata/annotations/{_escape(SKIPPED)}",
                    "value": found})  # fmt: skip
        return ops
    service, app_port = found
    if "labels" not in meta:
        ops.append({"op": "add", "path": f"{base}/metadata/labels", "value": {}})
    ops.append({"op": "add", "path": f"{base}/metadata/labels/{_escape(SIDECAR_LABEL)}",
                "value": "true"})  # fmt: skip
    ops.append({"op": "add", "path": f"{base}/spec/containers/-",
                "value": sidecar_container(cluster, service, app_port, image)})  # fmt: skip
    if "initContainers" not in spec:
        ops.append({"op": "add", "path": f"{base}/spec/initContainers", "value": []})
    ops.append({"op": "add", "path": f"{base}/spec/initContainers/-",
                "value": init_container(meta.get("annotations") or {}, image)})  # fmt: skip
    if "volumes" not in spec:
        ops.append({"op": "add", "path": f"{base}/spec/volumes", "value": []})
    ops.append({"op": "add", "path": f"{base}/spec/volumes/-", "value": token_volume()})
    ops.append({"op": "add", "path": f"{base}/spec/volumes/-",
                "value": {"name": VOLUMES[1], "emptyDir": {}}})  # fmt: skip
    return ops


def admission_response(
    review: Mapping[str, Any], cluster: str, image: str, *, inject: bool = True
) -> dict[str, Any]:
    """The AdmissionReview answer (``admission.k8s.io/v1``) to a pod CREATE: allowed, with a
    base64 JSONPatch adding the sidecar (none when there is nothing to add, or not
    ``inject``: a namespace without the label)."""
    request = review.get("request") or {}
    pod = request.get("object") or {}
    answer: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    if inject and request.get("kind", {}).get("kind") == "Pod":
        ops = pod_patch(pod, cluster, image)
        if ops:
            answer["patchType"] = "JSONPatch"
            answer["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` with RFC 6902 ``add`` operations applied (the only kind :func:`pod_patch`
    makes)."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add"
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.append(op["value"]) if last == "-" else node.insert(int(last), op["value"])
        else:
            node[last] = copy.deepcopy(op["value"])
    return out


def inject_document(doc: dict[str, Any], cluster: str, image: str) -> dict[str, Any]:
    """A manifest with the sidecar added to its pod (a Pod, or the template of a Deployment,
    StatefulSet, DaemonSet, ReplicaSet or Job); other kinds unchanged."""
    if doc.get("kind") == "Pod":
        return apply_patch(doc, pod_patch(doc, cluster, image))
    if doc.get("kind") in TEMPLATED and isinstance((doc.get("spec") or {}).get("template"), dict):
        template = doc["spec"]["template"]
        return apply_patch(doc, pod_patch(template, cluster, image, "/spec/template"))
    return doc


def _uninject_pod(pod: dict[str, Any]) -> None:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    for key, names in (("containers", (SIDECAR,)), ("initContainers", (INIT,)),
                       ("volumes", VOLUMES)):  # fmt: skip
        if key in spec:
            spec[key] = [c for c in spec[key] if c.get("name") not in names]
            if not spec[key] and key != "containers":
                del spec[key]
    for key, name in (("labels", SIDECAR_LABEL), ("annotations", SKIPPED)):
        if name in (meta.get(key) or {}):
            del meta[key][name]
            if not meta[key]:
                del meta[key]


def uninject_document(doc: dict[str, Any]) -> dict[str, Any]:
    """A manifest with what :func:`inject_document` added taken out (sidecar, init container,
    volumes, label, skip annotation); other kinds unchanged."""
    out = copy.deepcopy(doc)
    if out.get("kind") == "Pod":
        _uninject_pod(out)
    elif out.get("kind") in TEMPLATED and isinstance((out.get("spec") or {}).get("template"), dict):
        _uninject_pod(out["spec"]["template"])
    return out
