"""Typed sync messages <-> ``meshfed.sync.v1`` protos: the only module that touches them.

Every ``*_from_proto`` validates what arrives (pydantic) and raises
:class:`~federation.errors.InvalidDocumentError` naming the message and field, so a bad
update is refused whole. :func:`update_to_json` / :func:`update_from_json` are the form a
control plane persists its last update in (the proto's JSON mapping).
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from pydantic import BaseModel, ValidationError

from federation.errors import InvalidDocumentError
from federation.model.authz import AuthorizationPolicy
from federation.model.documents import invalid, validate_documents
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service import DirectEndpoint, ServiceImport
from federation.sync.messages import (
    ClusterReport,
    ControllerUpdate,
    EndpointReport,
    ServiceKey,
    split_service_ref,
)
from federation.sync.proto import sync_pb2


def _refs(keys: list[ServiceKey]) -> list[sync_pb2.ServiceRef]:
    return [sync_pb2.ServiceRef(namespace=ns, name=name) for ns, name in keys]


def _endpoint_to_proto(e: EndpointReport | DirectEndpoint) -> sync_pb2.EndpointReport:
    return sync_pb2.EndpointReport(
        address=e.address,
        zone=e.zone,
        healthy=e.healthy,
        tls_mode=e.tls_mode,
        ports=dict(e.ports),
        weight=e.weight,
    )


def _validate(model: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise invalid(err, where) from err


def report_to_proto(report: ClusterReport) -> sync_pb2.ClusterReport:
    """The wire form of a report."""
    body = report.model_dump()
    exports = body.pop("exports")
    message = json_format.ParseDict(body, sync_pb2.ClusterReport())
    message.exports.extend(_refs([split_service_ref(e) for e in exports]))
    return message


def report_from_proto(message: sync_pb2.ClusterReport) -> ClusterReport:
    """A received report, validated.

    Raises:
        InvalidDocumentError: a field breaks :class:`ClusterReport` (names the field).
    """
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    body["exports"] = [f"{r['namespace']}/{r['name']}" for r in body.get("exports", [])]
    return _validate(ClusterReport, body, f"report of cluster {message.cluster!r}")  # type: ignore[no-any-return]


def _import_to_proto(imp: ServiceImport) -> sync_pb2.ServiceImport:
    return sync_pb2.ServiceImport(
        namespace=imp.metadata.namespace,
        name=imp.metadata.name,
        ports=[
            sync_pb2.PortInfo(name=p.name, port=p.port, protocol=p.protocol) for p in imp.spec.ports
        ],
        service_accounts=imp.spec.service_accounts,
        clusters=[
            sync_pb2.RemoteCluster(
                cluster=c.cluster,
                gateway=c.gateway,
                network=c.network,
                locality=c.locality,
                endpoints=c.endpoints,
                same_network=c.direct_endpoints is not None,
                direct_endpoints=[_endpoint_to_proto(e) for e in c.direct_endpoints or []],
            )
            for c in imp.spec.clusters
        ],
    )


def _import_from_proto(m: sync_pb2.ServiceImport) -> ServiceImport:
    def endpoint(e: sync_pb2.EndpointReport) -> dict[str, Any]:
        return {
            "address": e.address,
            "zone": e.zone,
            "healthy": e.healthy,
            "tlsMode": e.tls_mode,
            "ports": dict(e.ports),
            "weight": e.weight,
        }

    doc = {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "ServiceImport",
        "metadata": {"name": m.name, "namespace": m.namespace},
        "spec": {
            "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in m.ports],
            "serviceAccounts": list(m.service_accounts),
            "clusters": [
                {
                    "cluster": c.cluster,
                    "gateway": c.gateway,
                    "network": c.network,
                    "locality": c.locality,
                    "endpoints": c.endpoints,
                    "directEndpoints": [endpoint(e) for e in c.direct_endpoints]
                    if c.same_network
                    else None,
                }
                for c in m.clusters
            ],
        },
    }
    where = f"controller update: ServiceImport {m.namespace}/{m.name}"
    return _validate(ServiceImport, doc, where)  # type: ignore[no-any-return]


def policy_json(doc: TrafficPolicy | PriceTable | AuthorizationPolicy) -> str:
    """A policy document as sent (JSON, canonical: sorted keys, aliases, no nulls)."""
    body = doc.model_dump(by_alias=True, mode="json", exclude_none=True)
    return json.dumps(body, sort_keys=True)


def update_to_proto(update: ControllerUpdate) -> sync_pb2.ControllerUpdate:
    """The wire form of an update."""
    return sync_pb2.ControllerUpdate(
        version=update.version,
        imports=[_import_to_proto(i) for i in update.imports],
        exports=_refs(update.exports),
        policies_json=[policy_json(p) for p in update.policies]
        + [policy_json(p) for p in update.price_tables]
        + [policy_json(p) for p in update.authorization_policies],
        trust_bundle_pem=update.trust_bundle_pem,
        lease_seconds=update.lease_seconds,
        cluster_crls=update.cluster_crls,
        intermediate_chain_pem=update.intermediate_chain_pem,
    )


def update_from_proto(message: sync_pb2.ControllerUpdate) -> ControllerUpdate:
    """A received update, validated whole.

    Raises:
        InvalidDocumentError: an import or policy is not valid (names it and the field).
    """
    try:
        raws = [json.loads(t) for t in message.policies_json]
    except ValueError as err:
        raise InvalidDocumentError(f"controller update: a policy is not JSON ({err})") from err
    docs = validate_documents(raws, source="controller update")
    return ControllerUpdate(
        version=message.version,
        imports=[_import_from_proto(i) for i in message.imports],
        exports=[(r.namespace, r.name) for r in message.exports],
        policies=[d for d in docs if isinstance(d, TrafficPolicy)],
        price_tables=[d for d in docs if isinstance(d, PriceTable)],
        authorization_policies=[d for d in docs if isinstance(d, AuthorizationPolicy)],
        trust_bundle_pem=message.trust_bundle_pem,
        lease_seconds=message.lease_seconds,
        cluster_crls=dict(message.cluster_crls),
        intermediate_chain_pem=message.intermediate_chain_pem,
    )


def update_to_json(update: ControllerUpdate) -> dict[str, Any]:
    """An update as stored by a control plane (the proto's JSON mapping, without the
    trust bundle, which is kept as a PEM file of its own)."""
    message = update_to_proto(update)
    message.ClearField("trust_bundle_pem")
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def update_from_json(data: dict[str, Any]) -> ControllerUpdate:
    """An update stored by :func:`update_to_json`.

    Raises:
        InvalidDocumentError: the stored update does not parse or validate.
    """
    if "service_imports_json" in data:
        return _legacy_update(data)
    try:
        message = json_format.ParseDict(data, sync_pb2.ControllerUpdate())
    except json_format.ParseError as err:
        raise InvalidDocumentError(f"stored controller update: {err}") from err
    return update_from_proto(message)


def _legacy_update(data: dict[str, Any]) -> ControllerUpdate:
    """An update stored before the protocol carried typed imports (JSON documents inside the
    proto, until 2026-11-27), so an upgraded control plane still serves its last view."""
    raws = [
        json.loads(t)
        for t in [*data.get("service_imports_json", []), *data.get("policies_json", [])]
    ]
    docs = validate_documents(raws, source="stored controller update")
    return ControllerUpdate(
        version=int(data.get("version", 0)),
        imports=[d for d in docs if isinstance(d, ServiceImport)],
        exports=[split_service_ref(str(e)) for e in data.get("exports", [])],
        policies=[d for d in docs if isinstance(d, TrafficPolicy)],
        price_tables=[d for d in docs if isinstance(d, PriceTable)],
    )
