"""What ``meshfed get KIND [NAME] [-n NAMESPACE]`` selects, as kubectl reads the same words
(issue 41): kind names singular, plural or by their Kubernetes kind, lowercase, and the rows
of the controller's listing that match a name and a namespace. Pure.

A kind names one listing of the controller's API (``/v1/clusters``, ``/v1/exports``,
``/v1/imports``, ``/v1/policies``) and, for one policy kind, the ``kind`` its documents must
have::

    cluster | clusters                                 -> /v1/clusters
    export | exports | serviceexport(s) | service(s) | svc  -> /v1/exports
    import | imports | serviceimport(s)                -> /v1/imports
    policy | policies                                  -> /v1/policies (every kind)
    trafficpolicy | authorizationpolicy | pricetable (+s, +ies)  -> /v1/policies of that kind
    virtualservice | vs | destinationrule | dr (+s)    -> /v1/policies of that kind (as applied)
    peerauthentication | pa (+s)                       -> /v1/policies of that kind (as applied)
    trustdomain(s) | trustdomainfederation(s) | clusterfederatedtrustdomain(s)
                                                       -> /v1/trustdomains
    httproute(s) | grpcroute(s) | referencegrant(s) | sidecar(s) | serviceentry | se (+s)
                                                       -> /v1/policies of that kind (as applied)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from federation.durations import parse_rfc3339
from federation.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Kind:
    """A ``get`` kind: the listing (``clusters``, ``exports``, ``imports``, ``policies``) and
    the document kind a policy must have (None: any)."""

    listing: str
    document_kind: str | None = None


_WORDS: dict[str, Kind] = {
    "cluster": Kind("clusters"),
    "export": Kind("exports"),
    "serviceexport": Kind("exports"),
    "service": Kind("exports"),
    "svc": Kind("exports"),
    "import": Kind("imports"),
    "serviceimport": Kind("imports"),
    "policy": Kind("policies"),
    "trafficpolicy": Kind("policies", "TrafficPolicy"),
    "authorizationpolicy": Kind("policies", "AuthorizationPolicy"),
    "pricetable": Kind("policies", "PriceTable"),
    "virtualservice": Kind("policies", "VirtualService"),
    "vs": Kind("policies", "VirtualService"),
    "destinationrule": Kind("policies", "DestinationRule"),
    "dr": Kind("policies", "DestinationRule"),
    "peerauthentication": Kind("policies", "PeerAuthentication"),
    "pa": Kind("policies", "PeerAuthentication"),
    "httproute": Kind("policies", "HTTPRoute"),
    "grpcroute": Kind("policies", "GRPCRoute"),
    "referencegrant": Kind("policies", "ReferenceGrant"),
    "sidecar": Kind("policies", "Sidecar"),
    "serviceentry": Kind("policies", "ServiceEntry"),
    "se": Kind("policies", "ServiceEntry"),
    "trustdomain": Kind("trustdomains"),
    "trustdomainfederation": Kind("trustdomains"),
    "clusterfederatedtrustdomain": Kind("trustdomains"),
}


_SINGULAR = {
    "clusters": "cluster",
    "exports": "export",
    "imports": "import",
    "policies": "policy",
    "trustdomains": "trust domain",
}


def parse_kind(word: str) -> Kind:
    """``KIND`` as ``get`` takes it: singular or plural (``policies``), any case.

    Raises:
        ConfigError: not a kind (exit 2), naming the ones there are.
    """
    w = word.lower()
    for candidate in (w, w.removesuffix("s"), w.removesuffix("ies") + "y"):
        if candidate in _WORDS:
            return _WORDS[candidate]
    known = ", ".join(sorted(w for w in _WORDS if len(w) > 3))
    short = ", ".join(sorted(w for w in _WORDS if len(w) <= 3))
    raise ConfigError(f"{word!r} is not a kind (one of {known}; plurals and {short} too)")


def _name_and_namespace(listing: str, row: Mapping[str, Any]) -> tuple[str, str | None]:
    if listing == "clusters":
        return str(row["name"]), None  # cluster-scoped
    if listing == "trustdomains":
        return str(row["trustDomain"]), None
    if listing == "exports":
        return str(row["service"]), str(row["namespace"])
    meta = row.get("metadata") or {}
    return str(meta.get("name", "")), str(meta.get("namespace", "default"))


def select(
    kind: Kind, rows: Sequence[dict[str, Any]], name: str | None, namespace: str | None
) -> list[dict[str, Any]]:
    """The rows of ``kind``'s listing with ``name`` (None: any) in ``namespace`` (None: all
    namespaces; ignored for cluster-scoped clusters), of its document kind.

    Raises:
        ConfigError: a name was given and nothing has it (exit 2, as kubectl's NotFound).
    """
    out = []
    for row in rows:
        if kind.document_kind and row.get("kind") != kind.document_kind:
            continue
        row_name, row_ns = _name_and_namespace(kind.listing, row)
        if name is not None and row_name != name:
            continue
        if namespace is not None and row_ns is not None and row_ns != namespace:
            continue
        out.append(row)
    if name is not None and not out:
        where = f" in namespace {namespace}" if namespace else ""
        what = kind.document_kind or _SINGULAR[kind.listing]
        listed = f"meshfed get {kind.document_kind.lower() if kind.document_kind else kind.listing}"
        raise ConfigError(f"{what} {name!r} not found{where} ({listed} lists them)")
    return out


def get(
    word: str,
    name: str | None,
    namespace: str | None,
    fetch: Callable[[str], Any],
) -> tuple[str, list[dict[str, Any]]]:
    """``meshfed get``: the listing ``word`` names and its selected rows; ``fetch(path)``
    answers the controller's ``GET /v1/<listing>`` (``{"<listing>": [...]}``).

    Raises:
        ConfigError: see :func:`parse_kind` and :func:`select`.
    """
    kind = parse_kind(word)
    rows = fetch(f"/v1/{kind.listing}")[kind.listing]
    return kind.listing, select(kind, rows, name, namespace)


def ago(when: str | None, now: float) -> str:
    """``"12s ago"`` / ``"3m ago"`` / ``"5h ago"`` / ``"2d ago"`` of an RFC 3339 time
    (``now``: epoch s); ``"never"`` for None."""
    if when is None:
        return "never"
    seconds = max(0.0, now - parse_rfc3339(when))
    for limit, unit, size in ((120, "s", 1), (7200, "m", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds / 86400:.0f}d ago"


CLUSTER_HEADERS = [
    "NAME", "STATE", "LOCALITY", "NETWORK", "GATEWAY", "PROVIDER", "LAST HEARTBEAT", "EXPORTS",
]  # fmt: skip


def listing_table(
    listing: str, rows: Sequence[dict[str, Any]], now: float = 0.0, *, wide: bool = False
) -> tuple[list[str], list[list[str]]]:
    """``get``'s table of clusters (heartbeats' age against ``now``, epoch s), exports,
    imports or policies: headers and one row per item; ``wide`` (``-o wide``, as kubectl)
    adds the columns of :func:`wide_columns`.

    Raises:
        ValueError: another listing.
    """
    headers, cells = _listing_table(listing, rows, now)
    if not wide:
        return headers, cells
    more, extra = wide_columns(listing, rows, now)
    return headers + more, [row + added for row, added in zip(cells, extra, strict=True)]


def _target(spec: dict[str, Any]) -> str:
    """What a policy applies to, in one cell: its host(s), selector labels or target refs."""
    if spec.get("host"):
        return str(spec["host"])
    if spec.get("hosts"):
        return ",".join(map(str, spec["hosts"]))
    labels = (spec.get("selector") or spec.get("workloadSelector") or {}).get("matchLabels")
    if labels:
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    refs = spec.get("targetRefs") or spec.get("parentRefs") or []
    return ",".join(f"{r.get('kind', '')}/{r.get('name', '')}" for r in refs) or "-"


def wide_columns(
    listing: str, rows: Sequence[dict[str, Any]], now: float
) -> tuple[list[str], list[list[str]]]:
    """The columns ``-o wide`` adds: a cluster's join age, whether its control plane is
    connected, its service count and when its intermediate CA expires; an export's age; a
    trust domain's endpoint SPIFFE ID and failed refreshes; a policy's target (host,
    selector labels or target refs). Imports show everything already (none)."""
    if listing == "clusters":
        return ["JOINED", "CONNECTED", "SERVICES", "CA EXPIRES"], [
            [
                ago(c.get("joinedAt"), now), "yes" if c.get("connected") else "no",
                str(c.get("services", 0)), (c.get("intermediate") or {}).get("notAfter") or "-",
            ]
            for c in rows
        ]  # fmt: skip
    if listing == "exports":
        return ["AGE"], [[ago(e.get("since"), now)] for e in rows]
    if listing == "trustdomains":
        return ["ENDPOINT SPIFFE ID", "FAILED REFRESHES"], [
            [t.get("endpointSPIFFEID") or "-", str(t.get("failures", 0))] for t in rows
        ]
    if listing == "policies":
        return ["TARGET"], [[_target(p.get("spec") or {})] for p in rows]
    return [], [[] for _ in rows]


def _listing_table(
    listing: str, rows: Sequence[dict[str, Any]], now: float
) -> tuple[list[str], list[list[str]]]:
    if listing == "clusters":
        return CLUSTER_HEADERS, [
            [
                c["name"], c["state"], c["locality"], c["network"],
                c["gateway"] or "(not reported yet)", c["provider"],
                ago(c["lastHeartbeat"], now), ",".join(c["exports"]) or "-",
            ]
            for c in rows
        ]  # fmt: skip
    if listing == "exports":
        headers = ["CLUSTER", "NAMESPACE", "SERVICE", "CONDITION", "MESSAGE"]
        fields = ("cluster", "namespace", "service", "condition", "message")
        return headers, [[str(e[f]) for f in fields] for e in rows]
    if listing == "imports":
        headers = [
            "CLUSTER",
            "SERVICE",
            "CLUSTERSET IP",
            "PORTS",
            "FROM (cluster: gateway, endpoints)",
        ]
        return headers, [
            [
                i["cluster"],
                f"{i['metadata']['name']}.{i['metadata']['namespace']}",
                ",".join(i["spec"].get("ips", [])) or "-",
                ",".join(f"{p['port']}/{p['protocol']}" for p in i["spec"]["ports"]),
                "; ".join(
                    f"{c['cluster']}: {c['gateway']}, {c['endpoints']}"
                    for c in i["spec"]["clusters"]
                )
                or "- (exported only here)",
            ]
            for i in rows
        ]
    if listing == "trustdomains":
        headers = ["TRUST DOMAIN", "PROFILE", "BUNDLE ENDPOINT", "ROOTS", "SEQUENCE"]
        headers += ["LAST FETCH", "ERROR"]
        return headers, [
            [
                t["trustDomain"], t["profile"], t["bundleEndpointURL"], str(t["roots"]),
                str(t["sequence"] if t["sequence"] is not None else "-"),
                ago(t["fetchedAt"], now), t.get("suspended") or t["error"] or "-",
            ]
            for t in rows
        ]  # fmt: skip
    if listing == "policies":
        return ["KIND", "NAMESPACE", "NAME"], [
            [p["kind"], p["metadata"]["namespace"], p["metadata"]["name"]] for p in rows
        ]
    raise ValueError(f"no table for {listing}")
