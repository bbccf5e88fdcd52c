"""``meshfed trust``: the root of trust, cluster intermediates, SVIDs and bundles."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from federation.cli.params import (
    DURATION,
    PATH,
    InputError,
    admin_token_option,
    controller_option,
    emit,
    output_option,
)  # fmt: skip
from federation.client import call, controller_target
from federation.controller.store import joined_intermediates
from federation.model.documents import validation_problems
from federation.model.trust_federation import federation_document
from federation.paths import default_trust_dir
from federation.sync.identity import controller_spiffe_id
from trust import pki
from trust.errors import InvalidSpiffeIdError
from trust.federation import PROFILES
from trust.root_rotation import (
    begin_root_rotation,
    move_root,
    publish_next_root,
    retire_old_roots,
)  # fmt: skip
from trust.spiffe import SpiffeId, TrustDomain
from trust.store import TrustDirectory, backend_settings

log = logging.getLogger(__name__)

dir_option = click.option(
    "--dir",
    "trust_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Trust directory.  [default: $MESHFED_HOME/trust]",
)


def backend_options(f: Any) -> Any:
    """Where a root lives (``trust init --backend``, ``trust rotate-root --to``): Vault's
    and AWS Private CA's settings."""
    for option in reversed([
        click.option("--vault-address", envvar="VAULT_ADDR", help="Vault URL (vault)."),
        click.option("--vault-mount", default="pki", show_default=True, help="PKI mount (vault)."),
        click.option("--vault-auth", type=click.Choice(["token", "approle", "kubernetes"]),
                     default="token", show_default=True, help="token: VAULT_TOKEN; approle:"
                     " VAULT_ROLE_ID + VAULT_SECRET_ID; kubernetes: --vault-role."),
        click.option("--vault-role", default="", help="Kubernetes auth role (vault)."),
        click.option("--pca-arn", default=None, help="AWS Private CA ARN (aws-pca)."),
        click.option("--pca-region", default=None, help="AWS region of the CA (aws-pca)."),
    ]):  # fmt: skip
        f = option(f)
    return f


force_option = click.option(
    "--force",
    is_flag=True,
    help="Replace existing key material (it is otherwise never overwritten).",
)


def _store(trust_dir: Path | None) -> TrustDirectory:
    return TrustDirectory(trust_dir or default_trust_dir())


def _emit(output: str, data: dict[str, object], text: str) -> None:
    emit(data, output, lambda: click.echo(text))


@click.group()
def trust() -> None:
    """Manage the root of trust: root CA, cluster intermediates, SVIDs, bundles."""


@trust.command("init")
@click.option("--trust-domain", required=True, help="Trust domain, e.g. example.org.")
@click.option("--ttl", type=DURATION, default="87600h", show_default=True, help="Root CA lifetime.")
@click.option(
    "--backend",
    type=click.Choice(["local", "vault", "aws-pca"]),
    default="local",
    show_default=True,
    help="Where the root CA lives: a local key file, a Vault PKI mount, or AWS Private CA.",
)
@backend_options
@dir_option
@force_option
@output_option(("text", "json", "yaml"), "text")
def init_cmd(
    trust_domain: str, ttl: timedelta, backend: str, trust_dir: Path | None, force: bool,
    output: str, **settings: Any,
) -> None:  # fmt: skip
    """Create the root of trust and the trust bundle.

    local: a root CA (ECDSA P-256) in roots/<id>/ca.pem and ca-key.pem (0600). vault / aws-pca:
    the root stays in Vault or AWS Private CA; its certificate is read into the bundle and
    intermediates are signed there. Also writes bundle.pem, bundle.spiffe.json and trust.json
    (no secret: Vault credentials come from the environment). With --force an existing root is
    replaced and everything issued under it stops verifying.
    """
    try:
        domain = TrustDomain.parse(trust_domain)
    except InvalidSpiffeIdError as err:
        raise InputError(f"--trust-domain: {err}") from err
    store = _store(trust_dir)
    vault, pca = backend_settings(backend, **settings)
    if backend == "local":
        bundle = store.init(domain, ttl=ttl, force=force)
    else:
        bundle = store.init_remote(domain, vault=vault, aws_pca=pca, force=force)
    log.info("created root CA %s for %s", bundle.fingerprints()[0][:16], domain)
    _emit(
        output,
        store.describe(),
        (
            f"Created root CA for trust domain {domain} in {store.path}\n"
            if backend == "local"
            else f"Using the root CA in {backend} for trust domain {domain} ({store.path})\n"
        )
        + f"  root:   {store.config().active_root}"
        f" (valid until {bundle.roots[0].not_valid_after_utc:%Y-%m-%d})\n"
        f"  bundle: {store.bundle_pem_path}",
    )


@trust.command("intermediate")
@click.option("--cluster", required=True, help="Member cluster name (lowercase DNS label).")
@click.option(
    "--ttl", type=DURATION, default="8760h", show_default=True, help="Intermediate CA lifetime."
)
@dir_option
@force_option
@output_option(("text", "json", "yaml"), "text")
def intermediate_cmd(
    cluster: str, ttl: timedelta, trust_dir: Path | None, force: bool, output: str
) -> None:
    """Create the intermediate CA of a cluster, signed by the root (CA:true, pathlen 0)."""
    store = _store(trust_dir)
    cert = store.create_intermediate(cluster, ttl=ttl, force=force)
    d = store.intermediate_dir(cluster)
    log.info("created intermediate CA for %s, fingerprint %s", cluster, pki.fingerprint(cert)[:16])
    data: dict[str, object] = {
        "cluster": cluster,
        "certificate": str(d / "ca.pem"),
        "key": str(d / "ca-key.pem"),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "fingerprint": pki.fingerprint(cert),
    }
    _emit(
        output,
        data,
        f"Created intermediate CA for cluster {cluster}\n"
        f"  certificate: {d / 'ca.pem'}\n  key:         {d / 'ca-key.pem'} (0600)\n"
        f"  valid until: {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
    )


@trust.command("issue")
@click.option("--cluster", required=True, help="Cluster whose intermediate CA signs.")
@click.option("--spiffe-id", required=True, help="spiffe://<trust-domain>/ns/<ns>/sa/<sa>")
@click.option("--ttl", type=DURATION, default="24h", show_default=True, help="SVID lifetime.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for svid.pem, svid-key.pem and bundle.pem.",
)
@dir_option
@force_option
@output_option(("text", "json", "yaml"), "text")
def issue_cmd(
    cluster: str,
    spiffe_id: str,
    ttl: timedelta,
    out_dir: Path,
    trust_dir: Path | None,
    force: bool,
    output: str,
) -> None:
    """Issue a workload X.509-SVID.

    Writes svid.pem (leaf then intermediate), svid-key.pem (0600) and bundle.pem to --out.
    """
    try:
        sid = SpiffeId.parse(spiffe_id)
    except InvalidSpiffeIdError as err:
        raise InputError(f"--spiffe-id: {err}") from err
    store = _store(trust_dir)
    svid = store.issue_svid(cluster, sid, ttl=ttl)
    files = TrustDirectory.write_svid(svid, store.bundle(), out_dir, force=force)
    log.info("issued %r", svid)
    data: dict[str, object] = {
        "spiffe_id": str(sid),
        "cluster": cluster,
        "not_after": svid.not_after.isoformat(),
        "svid": str(files.chain),
        "key": str(files.key),
        "bundle": str(files.bundle),
    }
    _emit(
        output,
        data,
        f"Issued X.509-SVID {sid}\n  chain:  {files.chain}\n  key:    {files.key} (0600)\n"
        f"  bundle: {files.bundle}\n  valid until: {svid.not_after:%Y-%m-%d %H:%M} UTC",
    )


@trust.command("bundle")
@output_option(
    ("pem", "spiffe"), "pem", "pem: concatenated roots; spiffe: SPIFFE bundle (JWK Set)."
)
@dir_option
def bundle_cmd(output: str, trust_dir: Path | None) -> None:
    """Print the trust bundle (every root currently trusted)."""
    bundle = _store(trust_dir).bundle()
    if output == "pem":
        click.echo(bundle.to_pem().decode(), nl=False)
    else:
        click.echo(bundle.to_spiffe_json(), nl=False)


@trust.command("federate")
@click.option("--with", "domain", required=True, metavar="DOMAIN", help="The other trust domain.")
@click.option("--bundle-endpoint", default=None, metavar="URL", help="Its SPIFFE bundle endpoint.")
@click.option("--profile", type=click.Choice(PROFILES), default="https_spiffe", show_default=True)
@click.option("--endpoint-spiffe-id", default=None, metavar="ID", help="https_spiffe: the"
              " endpoint's SPIFFE ID.  [default: DOMAIN's meshfed controller]")  # fmt: skip
@click.option("--bundle-file", type=PATH, default=None, help="DOMAIN's bundle (SPIFFE JSON or"
              " PEM), to authenticate the first fetch.")  # fmt: skip
@click.option("--remove", is_flag=True, help="End the federation with DOMAIN instead.")
@controller_option
@admin_token_option
def federate_cmd(
    domain: str, bundle_endpoint: str | None, profile: str, endpoint_spiffe_id: str | None,
    bundle_file: Path | None, remove: bool, controller: str | None, token: str | None,
) -> None:  # fmt: skip
    """Trust the SVIDs of another trust domain (SPIFFE federation): the controller fetches
    DOMAIN's bundle from its bundle endpoint at its refresh hint and sends it to every
    cluster; its workloads are then accepted only where an AuthorizationPolicy names them
    (spiffe://DOMAIN/...). Applies a TrustDomainFederation document (SPIRE's
    ClusterFederatedTrustDomain is accepted too); 'meshfed get trustdomains' shows it."""
    url, tok = controller_target(controller, token)
    if remove:
        call("DELETE", url, f"/v1/trustdomains/{domain}", token=tok)
        return click.echo(f"federation with {domain} removed")
    if bundle_endpoint is None:
        raise InputError("--bundle-endpoint is required (unless --remove)")
    try:
        bundle = bundle_file.read_text() if bundle_file else None
        sid = (
            (endpoint_spiffe_id or controller_spiffe_id(domain)) if profile != "https_web" else None
        )
        doc = federation_document(domain, bundle_endpoint, profile, sid, bundle)
    except ValidationError as err:
        raise InputError(validation_problems(err, "")[0].lstrip(": ")) from err
    except OSError as err:
        raise InputError(f"--bundle-file: {err.strerror}") from err
    text = yaml.safe_dump(doc.model_dump(by_alias=True, mode="json", exclude_none=True))
    result = call("POST", url, "/v1/apply", token=tok, body=text)
    state = "configured" if result.get("applied") else "unchanged"
    click.echo(f"{doc.kind} {doc.metadata.name} {state}: {domain} via {bundle_endpoint}")


@trust.command("rotate-root")
@click.option(
    "--retire-old",
    is_flag=True,
    help="Second step: drop the old roots from the bundle and delete their keys.",
)
@click.option("--publish-only", is_flag=True, help="First step when other trust domains"
              " federate with this one: only add a new root to the bundle.")  # fmt: skip
@click.option("--to", "to", type=click.Choice(["local", "vault", "aws-pca"]), default=None,
              help="Move the root to this backend: its root signs from now on.")  # fmt: skip
@backend_options
@click.option(
    "--ttl", type=DURATION, default="87600h", show_default=True, help="New root lifetime."
)
@click.option(
    "--controller-state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The controller's state, whose joined clusters --retire-old checks too."
    "  [default: $MESHFED_HOME/controller.db, if present]",
)
@dir_option
@output_option(("text", "json", "yaml"), "text")
def rotate_root_cmd(
    retire_old: bool, publish_only: bool, to: str | None, ttl: timedelta,
    controller_state: Path | None, trust_dir: Path | None, output: str, **settings: Any,
) -> None:  # fmt: skip
    """Rotate the root CA without downtime, in two steps (three with federated meshes).

    With --publish-only (meshes federated with this trust domain): add a new root to the
    bundle without signing with it; run again without it once every federated mesh had its
    refresh hint (--bundle-refresh-hint) to fetch it. Without --retire-old: create a new root
    (or take the published one), trust both roots, and re-issue every cluster's intermediate
    under the new one; certificates chained to either root verify meanwhile. After every
    workload has renewed its SVID, run again with --retire-old to stop trusting the old
    root. It is refused (exit 2, naming them) while a cluster that joined the controller
    still chains only to the old root, or was re-signed under the new one less than 40 s
    ago (its workloads renew within about 20 s of that); it says how long to wait.
    """
    store = _store(trust_dir)
    if retire_old:
        result = retire_old_roots(store, joined_intermediates(controller_state))
        text = (
            f"Retired roots {', '.join(result.retired_roots)}; the bundle now holds only"
            f" {result.new_root}"
        )
    elif to is not None:
        vault, pca = backend_settings(to, **settings)
        result = move_root(store, vault=vault, aws_pca=pca, root_ttl=ttl)
        text = f"The {to} root {result.new_root} signs now; then: rotate-root --retire-old"
    elif publish_only:
        result = publish_next_root(store, root_ttl=ttl)
        text = f"Published root {result.new_root}; the old root still signs. Next: rotate-root"
    else:
        result = begin_root_rotation(store, root_ttl=ttl)
        text = (
            f"New root {result.new_root} is active;"
            f" the bundle trusts {', '.join(result.bundle_roots)}\n"
            f"Re-issued intermediates: {', '.join(result.reissued_clusters) or '(none)'}\n"
            "When every workload has renewed its SVID, run: meshfed trust rotate-root --retire-old"
        )
    data: dict[str, object] = {
        "active_root": result.bundle_roots[-1],  # the signing root stays last
        **({"published_root": result.new_root} if publish_only else {}),
        "bundle_roots": list(result.bundle_roots),
        "retired_roots": list(result.retired_roots),
        "reissued_clusters": list(result.reissued_clusters),
    }
    _emit(output, data, text)
