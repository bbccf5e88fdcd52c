"""What ``meshfed describe KIND NAME [-n NAMESPACE]`` shows (issue 41): one object of the
federation with everything about it that the controller knows, in kubectl's ``describe``
layout (``Field:  value`` lines, then indented tables). Pure: it reads the controller's
listings, as fetched, and the time.

Kinds, as ``get`` reads them (:func:`federation.selection.parse_kind`):

- ``cluster NAME``: the member (state, locality, network, gateway, provider, joined and last
  heartbeat with their age, RTT, intermediate CA lifetime), its exports with their MCS
  condition, the ServiceImports it receives, the traffic it sends and serves.
- ``export NAME`` / ``import NAME`` (``-n`` the namespace; without it every namespace with
  that service): the service across the federation -- which clusters export it and their
  condition, which import it and from where, the documents that make its routing
  (TrafficPolicy, VirtualService/DestinationRule, HTTPRoute), the AuthorizationPolicies of its
  namespace and the root namespace, and its traffic by caller and serving cluster.
- a policy kind (or ``policy``) ``NAME``: the document, the services it routes, its status
  (HTTPRoute/GRPCRoute conditions) and its spec.

Inputs are the JSON bodies of ``GET /v1/clusters``, ``/v1/exports``, ``/v1/imports``,
``/v1/policies`` and ``/v1/traffic`` (edges as :func:`federation.traffic.edge_rates` gives).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from federation.durations import parse_rfc3339
from federation.errors import ConfigError, InvalidDocumentError
from federation.model.authz import ROOT_NAMESPACE
from federation.selection import ago, parse_kind, select
from federation.traffic import format_usd

#: Window of the traffic ``describe`` shows (s): the dashboard's.
TRAFFIC_WINDOW_S = 10

Row = list[str]


@dataclass(frozen=True, slots=True)
class Table:
    """An indented table under a description: its title, headers and rows (``rows`` empty:
    ``<none>`` is printed, as kubectl does)."""

    title: str
    headers: list[str]
    rows: list[Row]


@dataclass(frozen=True, slots=True)
class Description:
    """One described object: ``fields`` (label, value) lines, then ``tables``; ``data`` is
    what ``-o json|yaml`` prints."""

    fields: list[tuple[str, str]]
    tables: list[Table] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def age(when: str | None, now: float) -> str:
    """``"2026-12-05T15:00:00Z (12s ago)"``; ``"never"`` for None. ``now``: epoch s."""
    return "never" if when is None else f"{when} ({ago(when, now)})"


def _until(when: str, now: float) -> str:
    days = (parse_rfc3339(when) - now) / 86400
    return f"{when} (expired)" if days < 0 else f"{when} ({days:.0f}d left)"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


TRAFFIC_HEADERS = ["FROM", "SERVICE", "SERVED BY", "SHARE", "REQ/S", "P99 MS", "ERRORS", "$/HOUR"]


def traffic_rows(edges: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Rows of :data:`TRAFFIC_HEADERS`, one per edge (share of the caller's requests, %)."""
    return [
        [
            e["source_cluster"],
            e["destination_service"],
            e["destination_cluster"],
            f"{e['share'] * 100:.0f}%",
            f"{e['rps']:.1f}",
            _ms(e.get("p99Ms")),
            f"{e['errorShare'] * 100:.1f}%",
            format_usd(e["usdPerHour"]),
        ]
        for e in edges
    ]


def _export_rows(
    exports: Sequence[Mapping[str, Any]], now: float, first: Sequence[str]
) -> list[Row]:
    """Per export: the fields ``first`` (``cluster``, ``service``, ``namespace``), then its
    condition, since when, and its message."""
    return [
        [*(str(e[f]) for f in first), e["condition"], age(e.get("since"), now),
         e.get("message") or "-"]
        for e in exports
    ]  # fmt: skip


def _import_rows(imports: Sequence[Mapping[str, Any]], first: str) -> list[Row]:
    rows = []
    for i in imports:
        meta, spec = i["metadata"], i["spec"]
        rows.append(
            [
                i["cluster"] if first == "cluster" else f"{meta['name']}.{meta['namespace']}",
                ",".join(spec.get("ips", [])) or "-",
                ",".join(f"{p['port']}/{p['protocol']}" for p in spec["ports"]),
                "; ".join(f"{c['cluster']} ({c['endpoints']} endpoints)" for c in spec["clusters"])
                or "- (exported only here)",
            ]
        )
    return rows


def describe_cluster(
    row: Mapping[str, Any],
    exports: Sequence[Mapping[str, Any]],
    imports: Sequence[Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    now: float,
) -> Description:
    """A member cluster (a row of ``GET /v1/clusters``) with its exports, the imports it
    receives and its traffic (edges it sends or serves)."""
    name = row["name"]
    state = row["state"] + (" (connected)" if row.get("connected") else " (not connected)")
    inter = row.get("intermediate")
    mine_exp = [e for e in exports if e["cluster"] == name]
    mine_imp = [i for i in imports if i["cluster"] == name]
    mine_edges = [e for e in edges if name in (e["source_cluster"], e["destination_cluster"])]
    rtt = row.get("rttMs") or {}
    fields = [
        ("Name", name),
        ("State", state),
        ("Locality", row["locality"]),
        ("Network", row["network"]),
        ("Provider", row["provider"]),
        ("Gateway", row.get("gateway") or "(not reported yet)"),
        ("Joined", age(row.get("joinedAt"), now)),
        ("Last heartbeat", age(row.get("lastHeartbeat"), now)),
        ("RTT to gateways", ", ".join(f"{c} {ms:.1f} ms" for c, ms in sorted(rtt.items())) or "-"),
        ("Intermediate CA", _until(inter["notAfter"], now) if inter else "(not joined)"),
        ("Services", str(row.get("services", 0))),
    ]
    tables = [
        Table(
            "Exports",
            ["SERVICE", "NAMESPACE", "CONDITION", "SINCE", "MESSAGE"],
            _export_rows(mine_exp, now, ("service", "namespace")),
        ),
        Table(
            "Imports",
            ["SERVICE", "CLUSTERSET IP", "PORTS", "FROM"],
            _import_rows(mine_imp, "service"),
        ),
        Table(f"Traffic (last {TRAFFIC_WINDOW_S} s)", TRAFFIC_HEADERS, traffic_rows(mine_edges)),
    ]
    data = {
        "kind": "Cluster",
        "cluster": dict(row),
        "exports": mine_exp,
        "imports": mine_imp,
        "traffic": mine_edges,
    }
    return Description(fields, tables, data)


def _models(policies: Sequence[Mapping[str, Any]]) -> list[Any] | None:
    """The stored policies as models (their ``status`` left out), None when this CLI cannot
    read one (a controller of a newer release)."""
    from federation.model.documents import validate_documents

    raws = [{k: v for k, v in p.items() if k != "status"} for p in policies]
    try:
        return validate_documents(raws, source="controller")
    except InvalidDocumentError:
        return None


def routing_sources(policies: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """``(namespace, service)`` -> the documents that make its routing (``TrafficPolicy
    demo/echo``, ``VirtualService demo/echo``, ``HTTPRoute demo/split``), as
    :func:`federation.model.translated.effective_traffic_policies` reads them; empty when the
    documents cannot be read here."""
    from federation.model.gateway_api import translate_routes
    from federation.model.istio_translate import label, translate
    from federation.model.policy import TrafficPolicy

    models = _models(policies)
    if models is None:
        return {}
    out: dict[tuple[str, str], list[str]] = {}
    for p in models:
        if isinstance(p, TrafficPolicy):
            out.setdefault(p.target, []).append(label(p))
    for translation in (translate(models), translate_routes(models)):
        for target, labels in translation.sources.items():
            out.setdefault(target, []).extend(labels)
    return out


def _policy_label(p: Mapping[str, Any]) -> str:
    return f"{p['kind']} {p['metadata'].get('namespace', 'default')}/{p['metadata']['name']}"


def describe_service(
    namespace: str,
    service: str,
    listings: Mapping[str, Any],
    now: float,
) -> Description:
    """Service ``service`` of ``namespace`` across the federation. ``listings``: the bodies
    of ``/v1/exports`` (``exports``), ``/v1/imports`` (``imports``), ``/v1/policies``
    (``policies``) and ``/v1/traffic`` (``edges``) under those keys."""
    exp = [e for e in listings["exports"] if (e["namespace"], e["service"]) == (namespace, service)]
    imp = [
        i
        for i in listings["imports"]
        if (i["metadata"]["namespace"], i["metadata"]["name"]) == (namespace, service)
    ]
    routing = routing_sources(listings["policies"]).get((namespace, service), [])
    authz = [
        _policy_label(p)
        for p in listings["policies"]
        if p["kind"] == "AuthorizationPolicy"
        and p["metadata"].get("namespace", "default") in (namespace, ROOT_NAMESPACE)
    ]
    short = f"{service}.{namespace}"
    edges = [e for e in listings["edges"] if e["destination_service"] == short]
    fields = [
        ("Name", service),
        ("Namespace", namespace),
        ("Host", f"{service}.{namespace}.svc.clusterset.local"),
        ("Exported by", ", ".join(sorted({e["cluster"] for e in exp})) or "(no cluster)"),
        ("Routing", ", ".join(routing) or "(defaults: locality, then failover)"),
        ("Authorization", ", ".join(authz) or "(no AuthorizationPolicy: mesh default)"),
    ]
    tables = [
        Table(
            "Exports",
            ["CLUSTER", "CONDITION", "SINCE", "MESSAGE"],
            _export_rows(exp, now, ("cluster",)),
        ),
        Table(
            "Imports", ["CLUSTER", "CLUSTERSET IP", "PORTS", "FROM"], _import_rows(imp, "cluster")
        ),
        Table(f"Traffic (last {TRAFFIC_WINDOW_S} s)", TRAFFIC_HEADERS, traffic_rows(edges)),
    ]
    data = {
        "kind": "Service",
        "namespace": namespace,
        "name": service,
        "host": fields[2][1],
        "exports": exp,
        "imports": imp,
        "routing": routing,
        "authorizationPolicies": authz,
        "traffic": edges,
    }
    return Description(fields, tables, data)


def describe_policy(
    policy: Mapping[str, Any], all_policies: Sequence[Mapping[str, Any]]
) -> Description:
    """One stored policy document: the services it routes, its status conditions, its spec."""
    from federation.model.documents import to_yaml

    me = _policy_label(policy)
    routes = sorted(
        f"{svc}.{ns}" for (ns, svc), labels in routing_sources(all_policies).items() if me in labels
    )
    meta = policy["metadata"]
    fields = [
        ("Name", meta["name"]),
        ("Namespace", meta.get("namespace", "default")),
        ("Kind", f"{policy['kind']} ({policy.get('apiVersion', '-')})"),
    ]
    if routes:
        fields.append(("Routes", ", ".join(routes)))
    if policy["kind"] == "AuthorizationPolicy":
        selector = (policy.get("spec") or {}).get("selector") or {}
        labels = selector.get("matchLabels") or {}
        ns = meta.get("namespace", "default")
        scope = "every namespace" if ns == ROOT_NAMESPACE else f"namespace {ns}"
        chosen = ",".join(f"{k}={v}" for k, v in labels.items())
        fields.append(
            (
                "Applies to",
                f"workloads labelled {chosen} in {scope}"
                if chosen
                else f"every workload in {scope}",
            )
        )
    conditions = [
        [parent.get("parentRef", {}).get("name", "-"), c["type"], c["status"], c.get("reason", "-"),
         c.get("message") or "-"]
        for parent in (policy.get("status") or {}).get("parents", [])
        for c in parent.get("conditions", [])
    ]  # fmt: skip
    tables = []
    if policy["kind"] in ("HTTPRoute", "GRPCRoute"):
        tables.append(
            Table("Conditions", ["PARENT", "TYPE", "STATUS", "REASON", "MESSAGE"], conditions)
        )
    spec = to_yaml(policy.get("spec") or {}).rstrip("\n")
    fields.append(("Spec", "\n" + "\n".join("  " + line for line in spec.splitlines())))
    return Description(
        fields, tables, {"kind": policy["kind"], "document": dict(policy), "routes": routes}
    )


def _aligned(headers: Sequence[str], rows: Sequence[Row], indent: str) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    return [
        (indent + "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))).rstrip()
        for line in (headers, *rows)
    ]


def render(description: Description) -> str:
    """kubectl's layout: ``Label:`` padded to the longest label, then each table titled and
    indented two spaces (``<none>`` when empty)."""
    width = max(len(label) for label, _ in description.fields) + 2
    lines = [
        line.rstrip()
        for label, value in description.fields
        for line in f"{label + ':':<{width}}{value}".splitlines()
    ]
    for table in description.tables:
        lines.append(f"{table.title}:")
        lines += _aligned(table.headers, table.rows, "  ") if table.rows else ["  <none>"]
    return "\n".join(lines)


def _services(
    listings: Mapping[str, Any], name: str, namespace: str | None
) -> list[tuple[str, str]]:
    found = {(e["namespace"], e["service"]) for e in listings["exports"] if e["service"] == name}
    found |= {
        (i["metadata"]["namespace"], i["metadata"]["name"])
        for i in listings["imports"]
        if i["metadata"]["name"] == name
    }
    found = {f for f in found if namespace is None or f[0] == namespace}
    if not found:
        where = f" in namespace {namespace}" if namespace else ""
        raise ConfigError(f"service {name!r} is not exported or imported by any cluster{where}")
    return sorted(found)


def describe(
    word: str,
    name: str,
    namespace: str | None,
    fetch: Callable[[str], Any],
    now: float,
) -> list[Description]:
    """``meshfed describe``: every object ``word`` and ``name`` (and ``namespace``, None: any)
    select; ``fetch(path)`` answers the controller's ``GET`` of ``path``.

    Raises:
        ConfigError: not a kind, or nothing has that name (exit 2).
    """
    kind = parse_kind(word)
    if kind.listing == "policies":
        policies = fetch("/v1/policies")["policies"]
        return [describe_policy(p, policies) for p in select(kind, policies, name, namespace)]
    edges = fetch(f"/v1/traffic?window={TRAFFIC_WINDOW_S}")["edges"]
    exports = fetch("/v1/exports")["exports"]
    imports = fetch("/v1/imports")["imports"]
    if kind.listing == "clusters":
        [row] = select(kind, fetch("/v1/clusters")["clusters"], name, None)
        return [describe_cluster(row, exports, imports, edges, now)]
    listings = {
        "exports": exports,
        "imports": imports,
        "edges": edges,
        "policies": fetch("/v1/policies")["policies"],
    }
    return [
        describe_service(ns, svc, listings, now) for ns, svc in _services(listings, name, namespace)
    ]
