"""``meshfed install``, ``meshfed uninstall``, ``meshfed inject`` and ``meshfed uninject``:
meshfed on Kubernetes (issue #20). They print manifests; ``kubectl apply -f -`` (or ``delete``)
applies them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from federation.cli.params import InputError, image_options, output_option
from federation.model.documents import parse_yaml, read_source, to_yaml


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
    from federation.install.apply import apply_to_cluster, describe

    progress = lambda obj, verb: click.echo(f"{describe(obj)} {verb}", err=True)  # noqa: E731
    apply_to_cluster(objects, kubeconfig, progress, delete=delete)
    click.echo(f"{len(objects)} objects {'deleted' if delete else 'applied'}", err=True)


def _print(objects: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        click.echo(to_yaml(objects, documents=True), nl=False)


def install_options(f: Any) -> Any:
    """The options ``install`` and ``uninstall`` share."""
    # fmt: off
    for option in reversed(
        [
            click.option("--cluster", default="",
                         help="The member's name (meshfed cluster join).  [install: required]"),
            click.option("--locality", default="", help="<cloud>/<region>[/<zone>] of the"
                         " cluster, e.g. aws/us-east-1.  [install: required]"),
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
            *image_options("The meshfed image, by digest (docs/image.md).  [install: required]"),
            click.option(
                "--provider",
                type=click.Choice(["aws", "gcp", "local"]),
                default="local",
                show_default=True,
                help="Load balancer annotations of the gateway Service: an AWS NLB, a GCP"
                " passthrough load balancer, or none.",
            ),
            click.option("--network", default="default", show_default=True, help="Network name."),
            click.option("--mesh-namespaces", default="", metavar="NS[,NS...]",
                         help="Namespaces whose Services are in the mesh.  [default: all]"),
            click.option("--zone-gateways", default="", metavar="ZONE[,ZONE...]", help="These"
                         " zones get a gateway of their own, each with a load balancer (zone-"
                         "local gateways; uninstall: give them again)."),
            click.option("--gateway-allowed-cidrs", default="", metavar="CIDR[,CIDR...]",
                         help="Who may reach the gateway's load balancer (loadBalancerSource"
                         "Ranges): the other members' egress ranges.  [default: anyone; mTLS"
                         " still applies]"),
            click.option("--gateway-ip", default="", metavar="ADDRESS", help="A reserved"
                         " address for the gateway's load balancer: an IP (local), the"
                         " address's name (gcp), Elastic IP allocation IDs (aws; comma-"
                         "separated)."),
            click.option(
                "--crds/--no-crds",
                default=True,
                show_default=True,
                help="Include the MCS CRDs (ServiceExport, ServiceImport).",
            ),
            click.option(
                "--ecosystem-crds",
                default="gateway-api,istio",
                show_default=True,
                metavar="gateway-api,istio|none",
                help="The official CRDs of the Gateway API and Istio kinds read; --apply"
                " creates each only where missing.",
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
    # fmt: on
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
    ServiceImports and ServiceExport conditions, reads Istio's and Gateway API's documents (in
    force for this cluster's proxies) and writes their status, checks first CSRs with the
    TokenReview API and serves the sidecar injector for namespaces labelled
    meshfed.io/inject=enabled; the gateway's LoadBalancer address is reported to the
    controller when the cloud gives it.
    """
    from federation.install.manifests import install
    from federation.install.options import install_options

    _emit(install(install_options(**options, for_install=True)), output, apply_, kubeconfig)


@click.command("uninstall")
@install_options
@click.option(
    "--delete-crds",
    is_flag=True,
    help="Also delete the MCS CRDs, and with them every ServiceExport and ServiceImport in"
    " the cluster, another MCS implementation's too.  [default: kept]",
)
def uninstall_cmd(
    output: str, apply_: bool, kubeconfig: Path | None, delete_crds: bool, **options: Any
) -> None:
    """Print what removes an installation (pipe to 'kubectl delete -f -'), or with --apply
    delete it. The MCS CRDs stay unless --delete-crds; the Istio and Gateway API CRDs always
    stay (they hold your documents)."""
    from federation.install.manifests import uninstall
    from federation.install.options import install_options

    opts = install_options(**options)
    _emit(uninstall(opts, delete_crds=delete_crds), output, apply_, kubeconfig, delete=True)


_manifests = click.option("-f", "--filename", "path", required=True, help="Manifests ('-': stdin).")


def _each_document(path: str, change: Any) -> None:
    """Print every document of ``-f path`` as ``change(doc)`` returns it."""
    text, source = read_source(path)
    docs = parse_yaml(text, source=source)
    out = []
    for i, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict):
            raise InputError(f"-f {path}: document {i} is not a mapping")
        out.append(change(doc))
    click.echo(to_yaml(out, documents=True), nl=False)


_sidecar_image, _allow_tag = image_options(
    "The meshfed image of the sidecar, by digest (docs/image.md).  [required]"
)


@click.command("inject")
@_manifests
@click.option("--cluster", required=True, help="The cluster the workloads run in.")
@_sidecar_image
@_allow_tag
def inject_cmd(path: str, cluster: str, image: str, allow_tag: bool) -> None:
    """Print the manifests with meshfed's sidecar and capture init container added to every
    Pod template (Deployments, StatefulSets, DaemonSets, Jobs, Pods), as the admission
    webhook would; other documents pass through unchanged."""
    from federation.controlplane.kube.inject import inject_document
    from federation.install.images import pinned_image

    try:
        image = pinned_image(image, allow_tag=allow_tag)
    except ValueError as err:
        raise InputError(str(err)) from err
    _each_document(path, lambda doc: inject_document(doc, cluster, image))


@click.command("uninject")
@_manifests
def uninject_cmd(path: str) -> None:
    """Print the manifests with what 'meshfed inject' added taken out again."""
    from federation.controlplane.kube.inject import uninject_document

    _each_document(path, uninject_document)


@click.command("install")
@_sidecar_image
@_allow_tag
@click.option(
    "--trust-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="The root of trust to mount (read for its file names; its controller intermediate is"
    " created here when missing).  [default: $MESHFED_HOME/trust]",
)
@click.option(
    "--sync-address",
    default="",
    metavar="HOST:PORT",
    help="What control planes"
    " dial for sync: the load balancer's name.  [default: the in-cluster Service]",
)
@click.option("--replicas", type=click.IntRange(1, 9), default=2, show_default=True)
@click.option(
    "--provider",
    type=click.Choice(["aws", "gcp", "local"]),
    default="local",
    show_default=True,
    help="Load balancer annotations of the controller's Service.",
)
@click.option(
    "--allowed-cidrs",
    default="",
    metavar="CIDR[,CIDR...]",
    help="Who may reach the controller (loadBalancerSourceRanges).  [default: anyone]",
)
@output_option(("yaml", "json"), "yaml", "Manifest format.")
def controller_install_cmd(trust_dir: Path | None, output: str, **flags: Any) -> None:
    """Print the manifests of the replicated controller on PostgreSQL (pipe to 'kubectl apply
    -f -'), and on stderr the kubectl commands that create the Secrets it mounts: the
    database URL, the admin token, and the root of trust, from files on this machine."""
    from federation.install.controller import controller_manifests, secret_commands
    from federation.install.options import controller_install

    opts, trust = controller_install(trust_dir, **flags)
    _print(controller_manifests(opts), output)
    commands = secret_commands(trust, opts.trust_files)
    click.echo("# create its Secrets first:\n" + "\n".join(commands), err=True)
