"""Typed sync messages <-> ``meshfed.sync.v1`` protos: the only module that touches them.

Every ``*_from_proto`` validates what arrives (pydantic) and raises
:class:`~federation.errors.InvalidDocumentError` naming the message and field, so a bad
update is refused whole. :func:`update_to_json` / :func:`update_from_json` are the form
earlier releases' control planes persisted their last update in (the proto's JSON mapping;
:mod:`federation.controlplane.link.state` still reads it and now writes the binary message).
"""

from __future__ import annotations

import json
import math
import weakref
from typing import Any

from google.protobuf import json_format
from pydantic import BaseModel, ValidationError

from federation.ca.names import DNS_LABEL as _DNS_LABEL
from federation.errors import InvalidDocumentError
from federation.model.authz import AuthorizationPolicy
from federation.model.documents import invalid, validate_documents
from federation.model.istio_sidecar import IstioSidecar
from federation.model.locality import Locality
from federation.model.peer_authentication import PeerAuthentication
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service import DirectEndpoint, ServiceImport
from federation.model.service_entry import ServiceEntry
from federation.sync.messages import (
    ChangeTrace,
    ClusterReport,
    ControllerUpdate,
    EndpointReport,
    RoutingPlan,
    ServiceKey,
    split_service_ref,
)
from federation.sync.proto import sync_pb2
from federation.traffic import (
    CODE_CLASSES,
    DURATION_BUCKETS_MS,
    Counters,
    Edge,
    GatewayHop,
    TrafficTable,
)
from providers.pricing import PATH_CLASSES

#: The destination of a request no sidecar answered (:class:`federation.traffic.Edge`).
UNKNOWN = "unknown"


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
        capacity_rps=e.capacity_rps if isinstance(e, EndpointReport) else 0.0,
    )


def _validate(model: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise invalid(err, where) from err


def report_to_proto(
    report: ClusterReport, traffic: TrafficTable | None = None
) -> sync_pb2.ClusterReport:
    """The wire form of a report, with the cluster's ``traffic`` counters if given."""
    body = report.model_dump()
    exports = body.pop("exports")
    message = json_format.ParseDict(body, sync_pb2.ClusterReport())
    message.exports.extend(_refs([split_service_ref(e) for e in exports]))
    if traffic is not None:
        message.traffic.CopyFrom(traffic_to_proto(traffic))
    return message


def traffic_to_proto(table: TrafficTable) -> sync_pb2.TrafficReport:
    """The wire form of a cluster's traffic table (its source cluster is the report's);
    an edge the controller would refuse (:func:`edge_problem`) is left out rather than
    have the whole report refused."""
    return sync_pb2.TrafficReport(
        started_at=table.started_at,
        taken_at=table.taken_at,
        duration_bounds_ms=DURATION_BUCKETS_MS,
        edges=[
            sync_pb2.EdgeTraffic(
                source_locality=e.source_locality,
                destination_service=e.destination_service,
                destination_cluster=e.destination_cluster,
                destination_locality=e.destination_locality,
                path_class=e.path_class,
                response_code_class=e.response_code_class,
                requests=c.requests,
                request_bytes=c.request_bytes,
                response_bytes=c.response_bytes,
                egress_usd=c.egress_usd,
                duration_ms_sum=c.duration_ms_sum,
                duration_buckets=c.buckets,
                retries=c.retries,
            )
            for e, c in table.edges.items()
            if edge_problem(e) is None
        ],
        gateway_hops=[
            sync_pb2.GatewayHopTraffic(
                gateway_locality=h.gateway_locality,
                destination_service=h.destination_service,
                destination_locality=h.destination_locality,
                path_class=h.path_class,
                connections=c.requests,
                bytes_to_endpoint=c.request_bytes,
                bytes_from_endpoint=c.response_bytes,
                egress_usd=c.egress_usd,
            )
            for h, c in table.hops.items()
            if hop_problem(h) is None
        ],
    )


def traffic_from_proto(message: sync_pb2.ClusterReport) -> TrafficTable | None:
    """The traffic table a report carries, counted for ``message.cluster``; None when it
    carries none.

    Raises:
        InvalidDocumentError: its histogram has other bucket bounds than
            :data:`federation.traffic.DURATION_BUCKETS_MS` (another meshfed version), an
            edge has the wrong number of buckets, a label outside what a control plane
            counts (:func:`edge_problem`), or a number that is not finite and >= 0.
    """
    if not message.HasField("traffic"):
        return None
    t = message.traffic
    where = f"report of cluster {message.cluster!r}: traffic"
    if tuple(t.duration_bounds_ms) != DURATION_BUCKETS_MS:
        raise InvalidDocumentError(f"{where}: duration_bounds_ms differ from this controller's")
    for name in ("started_at", "taken_at"):
        value = getattr(t, name)
        if not math.isfinite(value) or value < 0:
            raise InvalidDocumentError(f"{where}: {name} {value} is not a Unix time")
    table = TrafficTable(t.started_at, taken_at=t.taken_at)
    for i, e in enumerate(t.edges):
        if len(e.duration_buckets) != len(DURATION_BUCKETS_MS) + 1:
            raise InvalidDocumentError(f"{where}: an edge has {len(e.duration_buckets)} buckets")
        for name in ("egress_usd", "duration_ms_sum"):
            value = getattr(e, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidDocumentError(f"{where}.edges.{i}.{name}: {value} is not >= 0")
        edge = Edge(
            message.cluster,
            e.source_locality,
            e.destination_service,
            e.destination_cluster,
            e.destination_locality,
            e.path_class,
            e.response_code_class,
        )
        problem = edge_problem(edge)
        if problem:
            raise InvalidDocumentError(f"{where}.edges.{i}: {problem}")
        table.edges[edge] = Counters(
            e.requests,
            e.request_bytes,
            e.response_bytes,
            e.egress_usd,
            e.duration_ms_sum,
            list(e.duration_buckets),
            e.retries,
        )
    for i, h in enumerate(t.gateway_hops):
        if not math.isfinite(h.egress_usd) or h.egress_usd < 0:
            raise InvalidDocumentError(f"{where}.gateway_hops.{i}.egress_usd: not >= 0")
        hop = GatewayHop(
            message.cluster,
            h.gateway_locality,
            h.destination_service,
            h.destination_locality,
            h.path_class,
        )
        problem = hop_problem(hop)
        if problem:
            raise InvalidDocumentError(f"{where}.gateway_hops.{i}: {problem}")
        table.hops[hop] = Counters(
            h.connections, h.bytes_to_endpoint, h.bytes_from_endpoint, h.egress_usd
        )
    return table


def edge_problem(edge: Edge) -> str | None:
    """Why an edge's labels are not what a control plane counts, or None: localities
    ``<cloud>/<region>/<zone>``, ``<service>.<namespace>`` and a member cluster name (DNS
    labels), a path class of :data:`providers.pricing.PATH_CLASSES`, a response code class of
    :data:`federation.traffic.CODE_CLASSES`; the destination's locality and path class may be
    ``unknown``, its cluster a name that is no member (counted, not priced). They become
    metric labels and planner keys at the controller. Pure."""
    problem = _labels_problem(
        ("source_locality", edge.source_locality),
        ("destination_locality", edge.destination_locality),
        edge.destination_service,
        edge.path_class,
    )
    if problem:
        return problem
    if not _DNS_LABEL.match(edge.destination_cluster):  # "unknown" is one
        return f"destination_cluster {edge.destination_cluster!r} is not a cluster name"
    if edge.response_code_class not in CODE_CLASSES:
        known = ", ".join(CODE_CLASSES)
        return f"response_code_class {edge.response_code_class!r} is not one of {known}"
    return None


def hop_problem(hop: GatewayHop) -> str | None:
    """Why a gateway hop's labels are not what a control plane counts, or None (as
    :func:`edge_problem`: the gateway's locality, the sidecar's or ``unknown``, the
    service, the path class). Pure."""
    return _labels_problem(
        ("gateway_locality", hop.gateway_locality),
        ("destination_locality", hop.destination_locality),
        hop.destination_service,
        hop.path_class,
    )


def _labels_problem(
    source: tuple[str, str], destination: tuple[str, str], service: str, path_class: str
) -> str | None:
    """The labels edges and hops share: ``(field, locality)`` of the source (required) and
    of the destination (``unknown`` allowed), ``<service>.<namespace>``, the path class."""
    for (name, value), required in ((source, True), (destination, False)):
        if value == UNKNOWN and not required:
            continue
        try:
            Locality.parse(value)
        except ValueError as err:
            return f"{name}: {err}"
    name, _, namespace = service.partition(".")
    if not (_DNS_LABEL.match(name) and _DNS_LABEL.match(namespace)):
        return f"destination_service {service!r} is not <service>.<namespace>"
    if path_class not in PATH_CLASSES and path_class != UNKNOWN:
        return f"path_class {path_class!r} is not one of {', '.join(PATH_CLASSES)}"
    return None


def report_from_proto(message: sync_pb2.ClusterReport) -> ClusterReport:
    """A received report, validated.

    Raises:
        InvalidDocumentError: a field breaks :class:`ClusterReport` (names the field).
    """
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    body["exports"] = [f"{r['namespace']}/{r['name']}" for r in body.get("exports", [])]
    body.pop("traffic", None)  # traffic_from_proto
    stream_fields = (
        *("protocol", "acked_version", "trace"),
        *("report_version", "base_report", "removed_services"),
    )
    for stream_field in stream_fields:  # the stream's, not the cluster's
        body.pop(stream_field, None)
    return _validate(ClusterReport, body, f"report of cluster {message.cluster!r}")  # type: ignore[no-any-return]


#: id(import model) -> (a weak reference to the model, its message): the controller hands
#: every control plane with the same view the same import object, and keeps it across
#: recomputes while it is unchanged (:func:`federation.controller.imports.intern_imports`);
#: a control plane keeps the unchanged imports of its updates. So each is converted once.
#: An entry goes when its model does (nothing here keeps a model alive).
_IMPORT_PROTO: dict[int, tuple[weakref.ref[ServiceImport], sync_pb2.ServiceImport]] = {}


def _import_to_proto(imp: ServiceImport) -> sync_pb2.ServiceImport:
    """The wire form of an import (models are treated as immutable once validated; a caller
    that puts the message in another copies it)."""
    key = id(imp)
    hit = _IMPORT_PROTO.get(key)
    if hit is not None and hit[0]() is imp:
        return hit[1]
    message = _new_import_proto(imp)

    def forget(ref: weakref.ref[ServiceImport]) -> None:
        if _IMPORT_PROTO.get(key, (None,))[0] is ref:
            del _IMPORT_PROTO[key]

    _IMPORT_PROTO[key] = (weakref.ref(imp, forget), message)
    return message


def _new_import_proto(imp: ServiceImport) -> sync_pb2.ServiceImport:
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
                zone_gateways=[
                    sync_pb2.ZoneGateway(zone=z.zone, gateway=z.gateway, endpoints=z.endpoints)
                    for z in c.zone_gateways
                ],
            )
            for c in imp.spec.clusters
        ],
        ips=imp.spec.ips,
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
                    "zoneGateways": [
                        {"zone": z.zone, "gateway": z.gateway, "endpoints": z.endpoints}
                        for z in c.zone_gateways
                    ],
                }
                for c in m.clusters
            ],
            "ips": list(m.ips),
        },
    }
    where = f"controller update: ServiceImport {m.namespace}/{m.name}"
    return _validate(ServiceImport, doc, where)  # type: ignore[no-any-return]


#: id(policy model) -> (the model, its JSON): the controller sends the same model objects to
#: every control plane, so each is serialised once. Holding the model keeps its id from being
#: reused; emptied when it grows past :data:`_POLICY_JSON_MAX` entries.
_POLICY_JSON: dict[int, tuple[BaseModel, str]] = {}
_POLICY_JSON_MAX = 20_000


def policy_json(
    doc: TrafficPolicy
    | PriceTable
    | AuthorizationPolicy
    | PeerAuthentication
    | IstioSidecar
    | ServiceEntry,
) -> str:
    """A policy document as sent (JSON, canonical: sorted keys, aliases, no nulls); models
    are treated as immutable once validated (their JSON is kept)."""
    hit = _POLICY_JSON.get(id(doc))
    if hit is not None and hit[0] is doc:
        return hit[1]
    body = doc.model_dump(by_alias=True, mode="json", exclude_none=True)
    text = json.dumps(body, sort_keys=True)
    if len(_POLICY_JSON) >= _POLICY_JSON_MAX:
        _POLICY_JSON.clear()
    _POLICY_JSON[id(doc)] = (doc, text)
    return text


def update_to_proto(update: ControllerUpdate) -> sync_pb2.ControllerUpdate:
    """The wire form of an update."""
    return sync_pb2.ControllerUpdate(
        version=update.version,
        imports=[_import_to_proto(i) for i in update.imports],
        exports=_refs(update.exports),
        policies_json=[policy_json(p) for p in update.policies]
        + [policy_json(p) for p in update.price_tables]
        + [policy_json(p) for p in update.authorization_policies]
        + [policy_json(p) for p in update.peer_authentications]
        + [policy_json(p) for p in update.sidecars]
        + [policy_json(p) for p in update.service_entries],
        trust_bundle_pem=update.trust_bundle_pem,
        lease_seconds=update.lease_seconds,
        cluster_crls=update.cluster_crls,
        cluster_cas=update.cluster_cas,
        intermediate_chain_pem=update.intermediate_chain_pem,
        plans=[_plan_to_proto(p) for p in update.plans],
        sync_addresses=update.sync_addresses,
        export_conditions=[
            sync_pb2.ExportCondition(namespace=ns, name=name, condition=c, message=m)
            for (ns, name), (c, m) in sorted(update.export_conditions.items())
        ],
        trace=trace_to_proto(update.trace) if update.trace is not None else None,
        federated_bundles=update.federated_bundles,
        root_crl_pem=update.root_crl_pem,
    )


def trace_to_proto(trace: ChangeTrace) -> sync_pb2.ChangeTrace:
    """The wire form of a change's trace."""
    return sync_pb2.ChangeTrace(
        origin_cluster=trace.origin_cluster,
        origin_version=trace.origin_version,
        changed_at=trace.changed_at,
        reported_at=trace.reported_at,
        received_at=trace.received_at,
        sent_at=trace.sent_at,
    )


def trace_from_proto(message: sync_pb2.ChangeTrace) -> ChangeTrace | None:
    """A received trace; None when the message carries none (no origin cluster) or its
    times are not finite (a trace is diagnostics: a bad one is dropped, not refused)."""
    times = (message.changed_at, message.reported_at, message.received_at, message.sent_at)
    if not message.origin_cluster or not all(math.isfinite(t) for t in times):
        return None
    return ChangeTrace(
        message.origin_cluster[:63],
        message.origin_version,
        message.changed_at,
        message.reported_at,
        message.received_at,
        message.sent_at,
    )


def _plan_to_proto(plan: RoutingPlan) -> sync_pb2.RoutingPlan:
    return sync_pb2.RoutingPlan(
        namespace=plan.namespace,
        name=plan.service,
        caller_locality=plan.caller_locality,
        shares=[
            sync_pb2.LocalityShare(cluster=c, locality=loc, share=share)
            for c, loc, share in plan.shares
        ],
        demand_rps=plan.demand_rps,
        usd_per_hour=plan.usd_per_hour,
        failover_usd_per_hour=plan.failover_usd_per_hour,
        round_robin_usd_per_hour=plan.round_robin_usd_per_hour,
        binding=list(plan.binding),
        solved_at=plan.solved_at,
        capacities=[
            sync_pb2.LocalityShare(cluster=c, locality=loc, share=cap)
            for c, loc, cap in plan.capacities
        ],
        headrooms=[
            sync_pb2.LocalityHeadroom(cluster=c, locality=loc, headroom=h, reason=why)
            for c, loc, h, why in plan.headrooms
        ],
    )


def _plan_from_proto(m: sync_pb2.RoutingPlan) -> RoutingPlan:
    """A received plan.

    Raises:
        InvalidDocumentError: a locality does not parse or a share is outside 0-1.
    """
    where = f"controller update: plan for {m.name}.{m.namespace} from {m.caller_locality!r}"
    for text in (m.caller_locality, *(s.locality for s in m.shares)):
        try:
            Locality.parse(text)
        except ValueError as err:
            raise InvalidDocumentError(f"{where}: {err}") from err
    if not m.shares or any(not 0 < s.share <= 1 for s in m.shares):
        raise InvalidDocumentError(f"{where}: shares must be non-empty and in (0, 1]")
    return RoutingPlan(
        namespace=m.namespace,
        service=m.name,
        caller_locality=m.caller_locality,
        shares=tuple((s.cluster, s.locality, s.share) for s in m.shares),
        demand_rps=m.demand_rps,
        usd_per_hour=m.usd_per_hour,
        failover_usd_per_hour=m.failover_usd_per_hour,
        round_robin_usd_per_hour=m.round_robin_usd_per_hour,
        binding=tuple(m.binding),
        solved_at=m.solved_at,
        capacities=tuple((c.cluster, c.locality, c.share) for c in m.capacities),
        headrooms=tuple((h.cluster, h.locality, h.headroom, h.reason[:300]) for h in m.headrooms),
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
        peer_authentications=[d for d in docs if isinstance(d, PeerAuthentication)],
        sidecars=[d for d in docs if isinstance(d, IstioSidecar)],
        service_entries=[d for d in docs if isinstance(d, ServiceEntry)],
        trust_bundle_pem=message.trust_bundle_pem,
        lease_seconds=message.lease_seconds,
        cluster_crls=dict(message.cluster_crls),
        cluster_cas=dict(message.cluster_cas),
        intermediate_chain_pem=message.intermediate_chain_pem,
        plans=[_plan_from_proto(p) for p in message.plans],
        sync_addresses=list(message.sync_addresses),
        export_conditions={
            (c.namespace, c.name): (c.condition, c.message) for c in message.export_conditions
        },
        trace=trace_from_proto(message.trace) if message.HasField("trace") else None,
        federated_bundles=dict(message.federated_bundles),
        root_crl_pem=message.root_crl_pem,
    )


def update_to_json(update: ControllerUpdate) -> dict[str, Any]:
    """An update as earlier releases' control planes stored it (the proto's JSON mapping,
    without the trust bundle, which is kept as a PEM file of its own)."""
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


def traffic_to_json(table: TrafficTable) -> str:
    """A cluster's traffic table as kept for other controller replicas (the proto's JSON)."""
    return json_format.MessageToJson(traffic_to_proto(table), indent=None)


def traffic_from_json(cluster: str, text: str) -> TrafficTable:
    """A table stored by :func:`traffic_to_json`, counted for ``cluster``.

    Raises:
        InvalidDocumentError: it does not parse (see :func:`traffic_from_proto`).
    """
    message = sync_pb2.ClusterReport(cluster=cluster)
    try:
        json_format.Parse(text, message.traffic)
    except json_format.ParseError as err:
        raise InvalidDocumentError(f"stored traffic of cluster {cluster!r}: {err}") from err
    table = traffic_from_proto(message)
    assert table is not None  # the field was just set
    return table


def plans_to_json(plans: dict[str, list[RoutingPlan]]) -> str:
    """cluster -> routing plans, as the leader publishes them to other replicas."""
    return json.dumps(
        {
            cluster: [json_format.MessageToDict(_plan_to_proto(p)) for p in items]
            for cluster, items in sorted(plans.items())
        },
        sort_keys=True,
    )


def plans_from_json(text: str) -> dict[str, list[RoutingPlan]]:
    """Plans stored by :func:`plans_to_json`.

    Raises:
        InvalidDocumentError: they do not parse or a plan is invalid.
    """
    try:
        data = json.loads(text)
        return {
            str(cluster): [
                _plan_from_proto(json_format.ParseDict(p, sync_pb2.RoutingPlan())) for p in items
            ]
            for cluster, items in data.items()
        }
    except (ValueError, AttributeError, json_format.ParseError) as err:
        raise InvalidDocumentError(f"stored routing plans: {err}") from err
