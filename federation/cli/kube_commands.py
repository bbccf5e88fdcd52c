"""``meshfed install``, ``meshfed uninstall`` and ``meshfed inject``: meshfed on Kubernetes
(issue #20). They print manifests; ``kubectl apply -f -`` (or ``delete``) applies them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from federation.cli.params import InputError, output_option
from federation.model.documents import decode_text, parse_yaml
from federation.model.locality import Locality


def _options(
    cluster: str,
    locality: str,
    controller: str,
    join_token: str,
    join_token_file: Path | None,
    image: str,
    provider: str,
    network: str,
    mesh_namespaces: str,
    crds: bool,
    gateway_allowed_cidrs: str,
    gateway_ip: str,
) -> Any:
    import ipaddress
    import re

    from federation.controller.membership import validate_member_name
    from federation.controlplane.link.join import controller_urls
    from federation.install.manifests import InstallOptions
    from federation.model.workload import DNS_LABEL

    try:
        validate_member_name(cluster)  # as the controller checks member names
    except ValueError as err:
        raise InputError(f"--cluster: {cluster!r} is not a member name ({err})") from err
    try:
        Locality.parse(locality)
    except ValueError as err:
        raise InputError(f"--locality: {err}") from err
    if controller:
        try:
            controller_urls(controller)
        except ValueError as err:
            raise InputError(str(err)) from err
    if join_token_file is not None:
        if join_token:
            raise InputError("give --join-token or --join-token-file, not both")
        join_token = _token_from_file(join_token_file)
    if join_token and not controller:
        raise InputError("--join-token needs --controller")
    namespaces = tuple(n.strip() for n in mesh_namespaces.split(",") if n.strip())
    for ns in namespaces:
        if not re.fullmatch(DNS_LABEL, ns):
            raise InputError(f"--mesh-namespaces: {ns!r} is not a namespace name")
    cidrs = tuple(c.strip() for c in gateway_allowed_cidrs.split(",") if c.strip())
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError as err:
            raise InputError(f"--gateway-allowed-cidrs: {err}") from err
    if gateway_ip:
        try:
            ipaddress.ip_address(gateway_ip)
        except ValueError as err:
            raise InputError(f"--gateway-ip: {err}") from err
    return InstallOptions(
        cluster=cluster,
        locality=locality,
        controller=controller,
        join_token=join_token,
        image=image,
        provider=provider,
        network=network,
        mesh_namespaces=namespaces,
        install_crds=crds,
        gateway_allowed_cidrs=cidrs,
        gateway_ip=gateway_ip,
    )


def _token_from_file(path: Path) -> str:
    """The join token in ``path``: the JSON ``meshfed cluster join -o json`` prints (its
    ``token``), or the token alone."""
    text = path.read_text().strip()
    if text.startswith("{"):
        try:
            token = json.loads(text).get("token", "")
        except ValueError as err:
            raise InputError(f"--join-token-file {path}: not JSON ({err})") from err
    else:
        token = text
    if not isinstance(token, str) or not token.startswith("mfj_"):
        raise InputError(f"--join-token-file {path}: no join token (mfj_...) in it")
    return token


def _emit(
    objects: list[dict[str, Any]],
    output: str,
    apply_: bool,
    kubeconfig: Path | None,
    delete: bool = False,
) -> None:
    """Print ``objects``, or with ``apply_`` write them into the cluster (delete them)."""
    if not apply_:
        _print(objects, output)
        return
    import asyncio

    from federation.controlplane.kube.config import KubeSettings, api_client
    from federation.install.apply import apply_objects, delete_objects, describe

    def progress(obj: dict[str, Any], verb: str) -> None:
        click.echo(f"{describe(obj)} {verb}", err=True)

    async def run() -> None:
        # kubeconfig only, never in-cluster: this runs where the user (or Terraform) is
        api = await api_client(KubeSettings(kubeconfig=kubeconfig or _default_kubeconfig()))
        async with api:
            await (delete_objects if delete else apply_objects)(api, objects, progress)

    asyncio.run(run())
    click.echo(f"{len(objects)} objects {'deleted' if delete else 'applied'}", err=True)


def _default_kubeconfig() -> Path:
    import os

    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(first) if first else Path.home() / ".kube" / "config"


def _print(objects: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        click.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)


def install_options(f: Any) -> Any:
    """The options ``install`` and ``uninstall`` share."""
    for option in reversed(
        [
            click.option(
                "--cluster", required=True, help="The member's name (meshfed cluster join)."
            ),
            click.option(
                "--locality",
                required=True,
                help="<cloud>/<region>[/<zone>] of the cluster, e.g. aws/us-east-1.",
            ),
            click.option(
                "--controller",
                default="",
                metavar="URL[,URL...]",
                help="The federation controller's API (replicas comma-separated).  [default:"
                " none: an unfederated control plane]",
            ),
            click.option(
                "--join-token",
                envvar="MESHFED_JOIN_TOKEN",
                default="",
                help="The one-time join token of 'meshfed cluster join' (put in a Secret).",
            ),
            click.option(
                "--join-token-file",
                type=click.Path(dir_okay=False, exists=True, path_type=Path),
                default=None,
                help="Read the join token from a file: the JSON of 'meshfed cluster join -o"
                " json', or the token alone (keeps it out of the process list).",
            ),
            click.option(
                "--image",
                default="ghcr.io/meshfed/meshfed:latest",
                show_default=True,
                help="The meshfed image (see Dockerfile).",
            ),
            click.option(
                "--provider",
                type=click.Choice(["aws", "gcp", "local"]),
                default="local",
                show_default=True,
                help="Load balancer annotations of the gateway Service: an AWS NLB, a GCP"
                " passthrough load balancer, or none.",
            ),
            click.option("--network", default="default", show_default=True, help="Network name."),
            click.option(
                "--mesh-namespaces",
                default="",
                metavar="NS[,NS...]",
                help="Namespaces whose Services are in the mesh.  [default: all]",
            ),
            click.option(
                "--gateway-allowed-cidrs",
                default="",
                metavar="CIDR[,CIDR...]",
                help="Who may reach the gateway's load balancer (loadBalancerSourceRanges):"
                " the other members' egress ranges.  [default: anyone; mTLS still applies]",
            ),
            click.option(
                "--gateway-ip",
                default="",
                metavar="IP",
                help="A reserved address for the gateway's load balancer (loadBalancerIP).",
            ),
            click.option(
                "--crds/--no-crds",
                default=True,
                show_default=True,
                help="Include the MCS CRDs (ServiceExport, ServiceImport).",
            ),
            output_option(("yaml", "json"), "yaml", "Manifest format."),
            click.option(
                "--apply",
                "apply_",
                is_flag=True,
                help="Write the objects into the cluster (server-side apply, field manager"
                " meshfed; uninstall: delete) instead of printing them; one line per object.",
            ),
            click.option(
                "--kubeconfig",
                type=click.Path(dir_okay=False, exists=True, path_type=Path),
                default=None,
                help="With --apply: the kubeconfig (its current context).  [default:"
                " $KUBECONFIG or ~/.kube/config]",
            ),
        ]
    ):
        f = option(f)
    return f


@click.command("install")
@install_options
def install_cmd(output: str, apply_: bool, kubeconfig: Path | None, **options: Any) -> None:
    """Print the manifests that install meshfed into a Kubernetes cluster (or, with --apply,
    write them into it):

    \b
      meshfed cluster join NAME --locality L -o json        # the join token
      meshfed install --cluster NAME --locality L --controller URL \\
          --join-token TOKEN --provider aws | kubectl apply -f -

    The control plane reads the cluster's Services, EndpointSlices and ServiceExports, writes
    ServiceImports and ServiceExport conditions, checks first CSRs with the TokenReview API
    and serves the sidecar injector for namespaces labelled meshfed.io/inject=enabled; the
    gateway's LoadBalancer address is reported to the controller when the cloud gives it.
    """
    from federation.install.manifests import install

    _emit(install(_options(**options)), output, apply_, kubeconfig)


@click.command("uninstall")
@install_options
def uninstall_cmd(output: str, apply_: bool, kubeconfig: Path | None, **options: Any) -> None:
    """Print what removes an installation (pipe to 'kubectl delete -f -'), or with --apply
    delete it; with --no-crds the MCS CRDs, and so every ServiceExport and ServiceImport,
    stay."""
    from federation.install.manifests import uninstall

    _emit(uninstall(_options(**options)), output, apply_, kubeconfig, delete=True)


@click.command("inject")
@click.option(
    "-f",
    "--filename",
    "path",
    required=True,
    help="Manifests to inject the sidecar into ('-': stdin).",
)
@click.option("--cluster", required=True, help="The cluster the workloads run in.")
@click.option(
    "--image",
    default="ghcr.io/meshfed/meshfed:latest",
    show_default=True,
    help="The meshfed image of the sidecar.",
)
def inject_cmd(path: str, cluster: str, image: str) -> None:
    """Print the manifests with meshfed's sidecar added to every Pod template (Deployments,
    StatefulSets, DaemonSets, Jobs, Pods), as the admission webhook would; other documents
    pass through unchanged."""
    from federation.controlplane.kube.inject import inject_document

    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        docs = parse_yaml(decode_text(data, source=f"-f {path}"), source=f"-f {path}")
    except OSError as err:
        raise InputError(f"-f {path}: {err.strerror}") from err
    out = []
    for i, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict):
            raise InputError(f"-f {path}: document {i} is not a mapping")
        out.append(inject_document(doc, cluster, image))
    click.echo(yaml.safe_dump_all(out, sort_keys=False), nl=False)
