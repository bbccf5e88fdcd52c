"""``meshfed workload token`` (mint the credential of a workload's first certificate) and
``meshfed workload identity`` (obtain and keep an SVID fresh in a directory, for proxyless
gRPC and any app that reads its certificate from files)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from federation.agent.config import IdentityOptions
from federation.agent.prepare import workload_identity
from federation.agent.run import keep_identity
from federation.ca.names import GATEWAY_SERVICE_ACCOUNT, SYSTEM_NAMESPACE, workload_spiffe_id
from federation.cli.params import (
    DURATION,
    InputError,
    controlplane_token_option,
    emit,
)
from federation.cli.proxy_commands import identity_options
from federation.client import call, controlplane_api_of
from federation.paths import meshfed_home
from trust.files import CERT_FILE_MODE, KEY_FILE_MODE, write_atomic


def _target_options(f: Any) -> Any:
    """``--cluster``, ``--controlplane``, ``--token``, ``-n/--namespace``."""
    for option in reversed(
        [
            click.option(
                "--cluster", default=None, help="Member cluster (its local control plane)."
            ),
            click.option(
                "--controlplane",
                default=None,
                metavar="URL",
                help="Control plane API.  [default: that of --cluster in $MESHFED_HOME]",
            ),
            controlplane_token_option,
            click.option("-n", "--namespace", default="default", show_default=True),
        ]
    ):
        f = option(f)
    return f


def _controlplane(cluster: str | None, controlplane: str | None) -> str:
    if controlplane is not None:
        return controlplane
    if cluster is None:
        raise InputError("pass --cluster NAME or --controlplane URL")
    return controlplane_api_of(cluster, "--cluster")


@click.group("workload")
def workload() -> None:
    """Onboard workloads: mint the tokens they obtain their first SVID with."""


@workload.command("token")
@_target_options
@click.option("--service-account", default=None, help="Required unless --gateway.")
@click.option(
    "--gateway",
    is_flag=True,
    help=f"A token for an east-west gateway ({SYSTEM_NAMESPACE}/{GATEWAY_SERVICE_ACCOUNT}).",
)
@click.option(
    "--ttl",
    type=DURATION,
    default="1h",
    show_default=True,
    help="How long the token can be used (at most 7d).",
)
@click.option(
    "--reusable",
    is_flag=True,
    help="Allow more than one use until it expires (default: single use).",
)
@click.option(
    "--token-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the token to this file (0600) instead of printing it.",
)
@click.option(
    "--bundle-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the trust bundle (PEM) the workload verifies its control plane with.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
    help="text: the token alone (or nothing with --token-out).",
)
def token_cmd(
    cluster: str | None,
    controlplane: str | None,
    token: str | None,
    namespace: str,
    service_account: str | None,
    gateway: bool,
    ttl: timedelta,
    reusable: bool,
    token_out: Path | None,
    bundle_out: Path | None,
    output: str,
) -> None:
    """Mint a workload token for one namespace and service account of one cluster.

    The token lets one proxy agent (or 'meshfed workload identity') obtain its first X.509-SVID from
    the cluster's certificate service; the agent generates its key itself and renews with
    its SVID afterwards. Single use and valid for --ttl by default; the control plane stores
    only its SHA-256. As Istio's VM onboarding: copy the token and the trust bundle to the
    workload's host, and pass them with --workload-token-file and --trust-bundle.
    """
    controlplane = _controlplane(cluster, controlplane)
    if gateway:
        namespace, service_account = SYSTEM_NAMESPACE, GATEWAY_SERVICE_ACCOUNT
    elif not service_account:
        raise InputError("--service-account is required (or --gateway)")
    minted = call(
        "POST",
        controlplane,
        "/v1/workload-tokens",
        token=token,
        body=json.dumps(
            {
                "namespace": namespace,
                "serviceAccount": service_account,
                "ttlSeconds": int(ttl.total_seconds()),
                "singleUse": not reusable,
            }
        ),
    )
    if token_out is not None:
        write_atomic(token_out, f"{minted['token']}\n".encode(), KEY_FILE_MODE)
    if bundle_out is not None:
        write_atomic(bundle_out, str(minted["trustBundle"]).encode(), CERT_FILE_MODE)
    if output == "text":
        if token_out is None:
            click.echo(minted["token"])
        click.echo(
            f"token for {minted['spiffeId']} in cluster {minted['cluster']}, expires"
            f" {minted['expiresAt']}, {'single use' if minted['singleUse'] else 'reusable'}",
            err=True,
        )
        return
    data = {k: v for k, v in minted.items() if k != "trustBundle"}
    if token_out is not None:
        data["token"] = str(token_out)
    emit(data, output, lambda: None)


@workload.command("identity")
@_target_options
@click.option("--service-account", required=True)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Identity directory (cert.pem, key.pem 0600, bundle.pem, members.pem)."
    "  [default: $MESHFED_HOME/identities/NS/SA]",
)
@identity_options
@click.option("--once", is_flag=True, help="Obtain (or reuse) the SVID and exit.")
def identity_cmd(
    cluster: str | None,
    controlplane: str | None,
    token: str | None,
    namespace: str,
    service_account: str,
    directory: Path | None,
    workload_token: str | None,
    workload_token_file: Path | None,
    ca: str | None,
    trust_bundle: Path | None,
    once: bool,
) -> None:
    """Obtain this workload's X.509-SVID and keep it fresh in a directory until SIGTERM.

    The key is generated here and never sent: a CSR goes to the cluster's certificate
    service, with the workload token the first time and the current SVID afterwards; the
    trust bundle is refreshed every 5 s. 'meshfed bootstrap grpc --identity-dir' points a
    proxyless gRPC workload's xDS channel and its file_watcher certificate provider at the
    same files.
    """
    controlplane = _controlplane(cluster, controlplane)
    info = call("GET", controlplane, "/v1/info", token=token)
    ns_dir = directory or meshfed_home() / "identities" / namespace / service_account
    spiffe_id = workload_spiffe_id(str(info["trust_domain"]), namespace, service_account)
    identity = workload_identity(
        IdentityOptions(workload_token, workload_token_file, ca, trust_bundle),
        spiffe_id,
        ns_dir.resolve(),
        info,
        str(info["xdsAddress"]),
    )
    keep_identity(
        identity,
        once=once,
        ready=lambda svid: click.echo(
            f"{svid.spiffe_id} in {ns_dir} (valid until {svid.not_after.isoformat()})", err=True
        ),
    )
