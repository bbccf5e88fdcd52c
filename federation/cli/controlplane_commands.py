"""``meshfed controlplane serve``, ``apply``, ``delete``, ``proxy-status``, ``trace``,
``bootstrap grpc``."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import click

from federation.agent.config import GrpcBootstrapConfig
from federation.agent.grpc_bootstrap import grpc_bootstrap
from federation.cli.params import (
    InputError,
    controller_option,
    controlplane_option,
    controlplane_token_option,
    emit,
    output_option,
    print_table,
)
from federation.client import (
    call,
    control_planes_to_ask,
    controlplane_api_of,
    named_after,
)
from federation.controlplane.status import PROXY_STATUS_COLUMNS, proxy_status_row
from federation.controlplane.trace import TRACE_COLUMNS, trace_row
from federation.errors import ApiError, ConfigError, InvalidDocumentError
from federation.model.documents import (
    document_label,
    not_deleted,
    read_documents,
)
from federation.model.locality import Locality
from federation.model.service import split_service_name


def _locality(value: str) -> Locality:
    try:
        return Locality.parse(value)
    except ValueError as err:
        raise InputError(f"--locality: {err}") from err


@click.group("controlplane")
def controlplane() -> None:
    """Run a cluster control plane (xDS server, registry, certificates)."""


@controlplane.command("serve")
@click.option("--cluster", required=True, help="This member cluster's name.")
@click.option("--locality", required=True, help="Cluster locality, e.g. aws/us-east-1/us-east-1a.")
@click.option(
    "--xds-listen",
    default="127.0.0.1:15010",
    show_default=True,
    help="ADS gRPC address (mutual TLS: proxies present their SVID; also SVID renewals).",
)
@click.option(
    "--ca-listen",
    default="127.0.0.1:15012",
    show_default=True,
    help="Certificate service address (TLS): first SVIDs for workload tokens.",
)
@click.option(
    "--api-listen", default="127.0.0.1:15014", show_default=True, help="HTTP API address."
)
@click.option(
    "--ca-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Trust directory with this cluster's intermediate CA.  [default: $MESHFED_HOME/trust]",
)
@click.option("--network", default="default", show_default=True, help="Network name.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Workloads, API token, endpoint.json.  [default: $MESHFED_HOME/controlplanes/CLUSTER]",
)
@click.option("--no-health-checks", is_flag=True, help="Do not probe workloads.")
@click.option(
    "--controller",
    default=None,
    metavar="HOST:PORT[,...]",
    help="Federation controller API to join and sync with (HTTPS; http://HOST:PORT for one"
    " started with --insecure-http); replicas comma-separated, tried in order. After the"
    " join the controller names every live replica's sync service and the link fails over"
    " between them.",
)
@click.option(
    "--join-token",
    envvar="MESHFED_JOIN_TOKEN",
    default=None,
    help="One-time token from 'meshfed cluster join' (first start only).",
)
@click.option(
    "--trust-domain",
    default=None,
    help="Trust domain to ask for when joining.  [default: the controller's]",
)
@click.option(
    "--gateway",
    default="",
    metavar="HOST:PORT",
    help="This cluster's east-west gateway, as reported to the controller.",
)
@click.option("--zone-gateway", multiple=True, metavar="ZONE=HOST:PORT", help="A zone's own"
              " gateway (proxy gateway --zone-local), reported (repeatable).")  # fmt: skip
@click.option("--zone-gateway-service", multiple=True, metavar="ZONE=NS/NAME", help="With"
              " --kubernetes: a zone gateway's LoadBalancer Service (repeatable).")  # fmt: skip
@click.option(
    "--otlp-collector",
    default=None,
    metavar="HOST:PORT",
    help="OpenTelemetry collector (OTLP/gRPC): every sidecar traces HTTP requests (W3C"
    " traceparent) and sends its spans there.  [default: no tracing]",
)
@click.option(
    "--no-telemetry",
    is_flag=True,
    help="Do not count traffic: sidecars get no traffic log, /metrics has no"
    " meshfed_requests_total or egress dollars, the controller gets no traffic from this"
    " cluster.  [default: counted]",
)
@click.option(
    "--kubernetes",
    is_flag=True,
    help="Take workloads from the cluster's Kubernetes API: every ready endpoint of a"
    " Service's EndpointSlices, with its node's locality (in a pod: its service account;"
    " else --kubeconfig).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="With --kubernetes: the kubeconfig to use.  [default: in-cluster, else $KUBECONFIG"
    " or ~/.kube/config]",
)
@click.option(
    "--kube-namespaces",
    default="",
    metavar="NS[,NS...]",
    help="With --kubernetes: the namespaces in the mesh.  [default: all]",
)
@click.option(
    "--kube-member-label",
    default="",
    metavar="KEY[=VALUE]",
    help="With --kubernetes: only Services with this label are in the mesh.  [default: all]",
)
@click.option(
    "--kube-pod-label",
    default="",
    metavar="KEY[=VALUE]",
    help="With --kubernetes: only endpoints whose pod has this label are in the mesh."
    "  [default: all]",
)
@click.option(
    "--gateway-service",
    default="",
    metavar="NAMESPACE/NAME",
    help="With --kubernetes: the east-west gateway's LoadBalancer Service; its load"
    " balancer's address is reported to the controller as this cluster's gateway.",
)
@click.option(
    "--webhook-listen",
    default=None,
    metavar="HOST:PORT",
    help="With --kubernetes: serve the sidecar injector (HTTPS, AdmissionReview v1) here;"
    " pods of namespaces labelled meshfed.io/inject=enabled get the sidecar.",
)
@click.option(
    "--sidecar-image",
    default=None,
    metavar="REPO@sha256:DIGEST",
    help="With --webhook-listen (required there): the image injected sidecars run, best by"
    " digest (meshfed install passes its --image).",
)
@click.option(
    "--leader-lease",
    type=int,
    default=15,
    show_default=True,
    metavar="SECONDS",
    help="With --kubernetes: how long the leader of the control plane replicas keeps its"
    " Lease unrenewed before another replica takes over.",
)
def serve_cmd(**flags: Any) -> None:
    """Serve xDS (SotW and delta ADS), the certificate service and the HTTP API until
    SIGTERM/SIGINT.

    Proxies connect to xDS with mutual TLS; their identity is their SVID's SPIFFE ID (node
    metadata that disagrees is refused). Workloads get SVIDs by sending a CSR with a workload
    token ('meshfed workload token') to --ca-listen, and renew on --xds-listen."""
    from federation.controlplane.config import serve_config
    from federation.controlplane.server import serve

    def started(plane: Any) -> None:
        click.echo(
            f"control plane {plane.config.cluster}: xDS {plane.xds_address}, certificates"
            f" {plane.ca_address}, API {plane.api_url}",
            err=True,
        )

    serve(serve_config(**flags), started)


def _target(
    controlplane: str | None, controller: str | None, token: str | None
) -> tuple[str, str | None]:
    if controlplane:
        return controlplane, token
    from federation.client import controller_target

    return controller_target(controller, token)


target_controlplane_option = click.option(
    "--controlplane",
    "controlplane",
    default=None,
    metavar="URL",
    help="Send to this cluster control plane's API (WorkloadEntry, MCS ServiceExport, ...)"
    " instead of the controller.",
)


namespace_option = click.option(
    "-n", "--namespace", default=None, help="Namespace of the documents that name none."
)


@click.command("apply")
@target_controlplane_option
@controller_option
@controlplane_token_option
@click.option("-f", "--filename", required=True, help="YAML file, directory of them, or -.")
@namespace_option
@click.option("-R", "--recursive", is_flag=True, help="With -f DIR: its subdirectories too.")
@click.option(
    "--dry-run", type=click.Choice(["none", "client", "server"]), default="none",
    is_flag=False, flag_value="server",
    help="client: validate here only; server (--dry-run alone): the server validates too and"
    " says what would change; nothing is stored either way.",
)  # fmt: skip
def apply_cmd(
    controlplane: str | None, controller: str | None, token: str | None, filename: str,
    recursive: bool, namespace: str | None, dry_run: str,
) -> None:  # fmt: skip
    """Validate every document in FILE (or the .yaml, .yml and .json files of a directory),
    then apply all of them (or none).

    Documents go to the federation controller (ServiceExport with spec.cluster, policies)
    unless --controlplane names a cluster control plane.
    """
    text, models = read_documents(filename, recursive=recursive, namespace=namespace)
    if dry_run == "client":
        return click.echo(
            "".join(f"{document_label(m)} valid (client dry run)\n" for m in models), nl=False
        )
    url, tok = _target(controlplane, controller, token)
    query, note = ("?dryRun=All", " (server dry run)") if dry_run == "server" else ("", "")
    try:
        result = call("POST", url, "/v1/apply" + query, token=tok, body=text)
    except (ApiError, InvalidDocumentError) as err:  # "request body: ..." as the user's file
        raise named_after(err, filename) from err
    for name in result.get("applied", []):
        click.echo(f"{name} configured{note}")
    for name in result.get("unchanged", []):
        click.echo(f"{name} unchanged{note}")
    for warning in result.get("warnings", []):
        click.echo(f"Warning: {warning}", err=True)


@click.command("delete")
@target_controlplane_option
@controller_option
@controlplane_token_option
@click.option("-f", "--filename", required=True, help="YAML file naming the documents to delete.")
@namespace_option
@click.option("--ignore-not-found", is_flag=True, help="A document that is not there is no error.")
def delete_cmd(
    controlplane: str | None, controller: str | None, token: str | None, filename: str,
    namespace: str | None, ignore_not_found: bool,
) -> None:  # fmt: skip
    """Delete the documents named in FILE (from the controller, or --controlplane). One that
    is not there is an error (exit 2) after the others are deleted, as kubectl's."""
    text, models = read_documents(filename, namespace=namespace)
    url, tok = _target(controlplane, controller, token)
    deleted = call("POST", url, "/v1/delete", token=tok, body=text).get("deleted", [])
    for name in deleted:
        click.echo(f"{name} deleted")
    missing = not_deleted(models, deleted)
    if missing and not ignore_not_found:
        raise ConfigError(f"{', '.join(missing)}: not found (--ignore-not-found to allow)")


@click.command("proxy-status")
@click.option(
    "--controlplane", default=None, metavar="URL",
    help="One control plane's API.  [default: every one under $MESHFED_HOME/controlplanes]",
)  # fmt: skip
@controlplane_token_option
@output_option(("table", "json", "yaml"))
def proxy_status_cmd(controlplane: str | None, token: str | None, output: str) -> None:
    """Is every proxy in sync? SYNCED, STALE or NACKED per xDS type, per cluster."""
    planes = control_planes_to_ask(controlplane)
    found = {
        c: call("GET", url, "/v1/proxy-status", token=token).get("proxies", [])
        for c, url in planes.items()
    }
    rows = [proxy_status_row(c, p) for c, proxies in found.items() for p in proxies]
    emit([{"cluster": c, **p} for c, ps in found.items() for p in ps], output,
         lambda: print_table(PROXY_STATUS_COLUMNS, rows))  # fmt: skip


@click.command("trace")
@controlplane_option
@controlplane_token_option
@click.option("--origin", default=None, metavar="CLUSTER", help="Only changes made in CLUSTER.")
@click.option("--last", type=click.IntRange(1, 64), default=10, show_default=True, help="How many.")
@output_option()
def trace_cmd(
    controlplane: str, token: str | None, origin: str | None, last: int, output: str
) -> None:
    """Where the time of recent changes went, hop by hop, in ms (docs/architecture.md,
    "Propagation traces"): origin report, controller, delivery, apply, first build, and each
    altered proxy's ACK counted from the origin's change. -o json|yaml: every proxy's hops."""
    data = call("GET", controlplane, "/v1/traces", token=token)
    rows = [t for t in data.get("traces", []) if origin in (None, t["origin"])][:last]
    emit(rows, output, lambda: print_table(TRACE_COLUMNS, [trace_row(t) for t in rows]))


@click.group("bootstrap")
def bootstrap() -> None:
    """Write bootstrap files for proxies."""


@bootstrap.command("grpc")
@click.option(
    "--controlplane", required=True, metavar="HOST:PORT", help="The control plane's xDS address."
)
@click.option("--node-id", required=True, help="Unique id of this gRPC client/server.")
@click.option("--service", required=True, help="The workload's service name.")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--service-account", default=None, help="[default: the service name]")
@click.option(
    "--locality", default=None, help="Where the client runs, e.g. aws/us-east-1/us-east-1a."
)
@click.option(
    "--identity-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Identity directory kept fresh by 'meshfed workload identity' (cert.pem, key.pem,"
    " members.pem: every member cluster's CA).  [default:"
    " $MESHFED_HOME/identities/NS/SERVICE_ACCOUNT]",
)
@click.option(
    "--workload",
    default=None,
    metavar="NAME",
    help="For a gRPC server created with xds=True: its WorkloadEntry (in NAMESPACE, running as"
    " SERVICE_ACCOUNT). The control plane then sends the server's Listener for"
    " ADDRESS:PORT of that entry (its inboundPort for tlsMode mutual), with mTLS and the"
    " AuthorizationPolicies that select it.",
)
def bootstrap_grpc_cmd(
    controlplane: str,
    node_id: str,
    service: str,
    namespace: str,
    service_account: str | None,
    locality: str | None,
    identity_dir: Path | None,
    workload: str | None,
) -> None:
    """Print a gRPC xDS bootstrap (GRPC_XDS_BOOTSTRAP) for xds:///<svc>.<ns>.svc.clusterset.local.

    The xDS channel uses mutual TLS with the SVID in --identity-dir (gRFC A65); keep it fresh
    with 'meshfed workload identity'. The control plane verifies that the SVID is
    NAMESPACE/SERVICE_ACCOUNT. The same files are the certificate provider of channels with
    xDS credentials (mutual TLS to sidecars, gRFC A29) and of servers with xds=True and xDS
    server credentials (gRFC A36, with --workload). Run it with
    GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE=true to accept federated trust domains' SVIDs, each
    checked with its own domain's bundle (gRFC A87; without it they fail the handshake)."""
    config = GrpcBootstrapConfig(
        controlplane=controlplane,
        node_id=node_id,
        service=service,
        namespace=namespace,
        service_account=service_account,
        locality=locality,
        identity_dir=identity_dir,
        workload=workload,
    )
    click.echo(json.dumps(grpc_bootstrap(config), indent=2))


class DefaultCommandGroup(click.Group):
    """A group that runs ``default`` when the first argument names no subcommand, so
    ``meshfed explain echo.demo --from a`` and ``meshfed explain authz ...`` both work."""

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


@click.group("explain", cls=DefaultCommandGroup, default="service")
def explain_cmd() -> None:
    """Explain a decision: where requests to a service go ('meshfed explain SERVICE --from
    CLUSTER', the same as 'explain service'), or whether a caller may call it
    ('meshfed explain authz --from CLUSTER/NS/SA --to SERVICE')."""


@explain_cmd.command("service")
@click.argument("service")
@click.option("-n", "--namespace", default=None, help="Namespace, if SERVICE has none.")
@click.option("--from", "from_cluster", required=True, metavar="CLUSTER", help="Caller's cluster.")
@click.option("--locality", default=None, help="Caller's locality.  [default: the cluster's]")
@click.option(
    "--controlplane",
    default=None,
    metavar="URL",
    help="[default: found for --from in $MESHFED_HOME]",
)
@controlplane_token_option
@output_option(("table", "json", "yaml"))
def explain_service_cmd(
    service: str,
    namespace: str | None,
    from_cluster: str,
    locality: str | None,
    controlplane: str | None,
    token: str | None,
    output: str,
) -> None:
    """Where requests to SERVICE (echo.demo or echo.demo.svc.clusterset.local) from a caller
    in cluster --from go, and why: priority, locality, weight, expected share, RTT, $/GB.
    In cost mode optimize, also the controller's plan for the caller's locality: measured
    demand, capacity and planned requests/s per serving locality, egress $/hour against
    locality failover and round robin, and the constraints that bind."""
    svc, ns = split_service_name(service, namespace)
    if locality:
        _locality(locality)
    url = controlplane or controlplane_api_of(from_cluster)
    query = f"/v1/explain?service={svc}&namespace={ns}" + (
        f"&locality={locality}" if locality else ""
    )
    data = call("GET", url, query, token=token)
    if output != "table":
        return emit(data, output, lambda: None)
    from federation.explain_tables import render_explain

    render_explain(data)


@explain_cmd.command("authz")
@click.option(
    "--from",
    "from_",
    required=True,
    metavar="CLUSTER/NAMESPACE/SERVICEACCOUNT|SPIFFE_ID",
    help="The caller, e.g. aws-us-east-1/demo/frontend (its SPIFFE ID is"
    " spiffe://<trust domain>/ns/NAMESPACE/sa/SERVICEACCOUNT; its SVID claims CLUSTER, which"
    " policies' 'clusters' match), or a SPIFFE ID, e.g. of a federated trust domain's"
    " workload (no cluster claim; --at is then required).",
)
@click.option("--to", "to", required=True, metavar="SERVICE", help="e.g. echo.demo.")
@click.option(
    "--at",
    default=None,
    metavar="CLUSTER",
    help="Check the workloads of this cluster (policies are the same everywhere; the"
    " workloads' labels are not).  [default: the caller's cluster]",
)
@click.option("--method", default="GET", show_default=True)
@click.option("--path", default="/", show_default=True)
@click.option("--port", type=int, default=None, help="Service or target port.  [default: all]")
@click.option("-H", "--header", "headers", multiple=True, metavar="NAME:VALUE",
              help="A request header (for 'when' conditions); repeatable.")  # fmt: skip
@click.option("--controlplane", default=None, metavar="URL", help="[default: found for --at]")
@controlplane_token_option
@output_option(("table", "json", "yaml"))
def explain_authz_cmd(
    from_: str,
    to: str,
    at: str | None,
    method: str,
    path: str,
    port: int | None,
    headers: tuple[str, ...],
    controlplane: str | None,
    token: str | None,
    output: str,
) -> None:
    """Whether the caller --from may call --to, per workload, and which AuthorizationPolicy
    decides (Istio's rules: DENY first, then ALLOW; dry-run policies only reported)."""
    parts, foreign = from_.split("/"), from_.startswith("spiffe://")
    if (not foreign and (len(parts) != 3 or not all(parts))) or (foreign and not at):
        raise InputError(f"--from {from_!r}: use CLUSTER/NAMESPACE/SERVICEACCOUNT, or a"
                         " SPIFFE ID with --at CLUSTER")  # fmt: skip
    cluster, ns, sa = ("", "", "") if foreign else parts
    svc, svc_ns = split_service_name(to, None)
    url = controlplane or controlplane_api_of(at or cluster)
    trust_domain = call("GET", url, "/v1/info", token=token)["trust_domain"]
    principal = from_ if foreign else f"spiffe://{trust_domain}/ns/{ns}/sa/{sa}"
    query = urllib.parse.urlencode(
        {
            "service": svc,
            "namespace": svc_ns,
            "principal": principal,
            "cluster": cluster,
            "method": method,
            "path": path,
            **({"port": str(port)} if port is not None else {}),
            "header": [h.strip() for h in headers],
        },
        doseq=True,
    )
    data = call("GET", url, f"/v1/explain/authz?{query}", token=token)
    if output != "table":
        return emit(data, output, lambda: None)
    click.echo(f"{principal} (cluster {cluster or '-'}) -> {data['service']}: {method} {path}")
    print_table(
        ["WORKLOAD", "PORT", "DECISION", "REASON", "DRY RUN WOULD DENY"],
        [
            [
                r["workload"],
                str(r["port"]),
                r["decision"],
                r["reason"],
                ", ".join(r["dryRunWouldDeny"]) or "-",
            ]
            for r in data["rows"]
        ],
    )
