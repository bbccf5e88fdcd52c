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
from federation.model.locality import Locality


def _options(
    cluster: str,
    locality: str,
    controller: str,
    join_token: str,
    image: str,
    provider: str,
    network: str,
    mesh_namespaces: str,
    crds: bool,
) -> Any:
    import re

    from federation.controller.membership import validate_member_name
    from federation.controlplane.kube.manifests import InstallOptions
    from federation.controlplane.link.join import controller_urls
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
    if join_token and not controller:
        raise InputError("--join-token needs --controller")
    namespaces = tuple(n.strip() for n in mesh_namespaces.split(",") if n.strip())
    for ns in namespaces:
        if not re.fullmatch(DNS_LABEL, ns):
            raise InputError(f"--mesh-namespaces: {ns!r} is not a namespace name")
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
    )


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
                "--crds/--no-crds",
                default=True,
                show_default=True,
                help="Include the MCS CRDs (ServiceExport, ServiceImport).",
            ),
            output_option(("yaml", "json"), "yaml", "Manifest format."),
        ]
    ):
        f = option(f)
    return f


@click.command("install")
@install_options
def install_cmd(output: str, **options: Any) -> None:
    """Print the manifests that install meshfed into a Kubernetes cluster:

    \b
      meshfed cluster join NAME --locality L --gateway PENDING -o json   # the token
      meshfed install --cluster NAME --locality L --controller URL \\
          --join-token TOKEN --provider aws | kubectl apply -f -

    The control plane reads the cluster's Services, EndpointSlices and ServiceExports, writes
    ServiceImports and ServiceExport conditions, checks first CSRs with the TokenReview API
    and serves the sidecar injector for namespaces labelled meshfed.io/inject=enabled; the
    gateway's LoadBalancer address is reported to the controller when the cloud gives it.
    """
    from federation.controlplane.kube.manifests import install

    _print(install(_options(**options)), output)


@click.command("uninstall")
@install_options
def uninstall_cmd(output: str, **options: Any) -> None:
    """Print what removes an installation (pipe to 'kubectl delete -f -'); with --no-crds
    the MCS CRDs, and so every ServiceExport and ServiceImport, stay."""
    from federation.controlplane.kube.manifests import uninstall

    _print(uninstall(_options(**options)), output)


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
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as err:
        raise InputError(f"-f {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise InputError(f"-f {path}: not YAML ({err})") from err
    out = []
    for i, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict):
            raise InputError(f"-f {path}: document {i} is not a mapping")
        out.append(inject_document(doc, cluster, image))
    click.echo(yaml.safe_dump_all(out, sort_keys=False), nl=False)
