"""The flags of ``meshfed install`` / ``uninstall`` as :class:`InstallOptions`, checked as
the controller and the control plane will check them (member name, locality, controller
URLs, namespaces, CIDRs), so a bad value fails here and not in a crash-looping pod.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

from federation.controller.membership import validate_member_name
from federation.controlplane.link.join import controller_urls
from federation.errors import ConfigError
from federation.install.controller import ControllerInstall, prepare_trust, trust_files
from federation.install.ecosystem_crds import SETS
from federation.install.images import pinned_image
from federation.install.manifests import InstallOptions
from federation.model.locality import LOCALITY_PART, Locality
from federation.model.workload import DNS_LABEL
from federation.netaddr import parse_host_port
from federation.paths import default_trust_dir


def cidr_list(value: str, flag: str) -> tuple[str, ...]:
    """The comma-separated CIDRs of ``flag``, each checked.

    Raises:
        ConfigError: one is not a CIDR (naming ``flag``).
    """
    cidrs = tuple(c.strip() for c in value.split(",") if c.strip())
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError as err:
            raise ConfigError(f"{flag}: {err}") from err
    return cidrs


#: GCP resource names (RFC 1035 labels) and AWS Elastic IP allocation IDs.
_GCP_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
_EIP_ALLOCATION = re.compile(r"eipalloc-[0-9a-f]{8,17}")


def check_gateway_address(provider: str, value: str) -> None:
    """``--gateway-ip`` in the form the provider's load balancer takes
    (:func:`federation.install.manifests._load_balancer_address`): an IP address (local), a
    reserved address's name (gcp), Elastic IP allocation IDs, comma-separated (aws).

    Raises:
        ConfigError: another form, naming the one expected.
    """
    if provider == "gcp":
        if not _GCP_NAME.fullmatch(value):
            raise ConfigError(
                f"--gateway-ip {value!r}: on GCP give the reserved address's name (the"
                " google_compute_address), not its IP: GKE's"
                " networking.gke.io/load-balancer-ip-addresses takes names"
            )
    elif provider == "aws":
        bad = [v for v in value.split(",") if not _EIP_ALLOCATION.fullmatch(v.strip())]
        if bad:
            raise ConfigError(
                f"--gateway-ip {bad[0]!r}: on AWS give Elastic IP allocation IDs"
                " (eipalloc-..., one per public subnet, comma-separated): the NLB takes"
                " service.beta.kubernetes.io/aws-load-balancer-eip-allocations"
            )
    else:
        try:
            ipaddress.ip_address(value)
        except ValueError as err:
            raise ConfigError(f"--gateway-ip: {err}") from err


def install_options(
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
    ecosystem_crds: str = ",".join(SETS),
    allow_tag: bool = False,
    for_install: bool = False,
    zone_gateways: str = "",
) -> InstallOptions:
    """The :class:`InstallOptions` of ``meshfed install`` / ``uninstall``'s flags (each
    argument is the flag of that name; ``crds`` is ``--crds/--no-crds``; ``ecosystem_crds``
    is ``--ecosystem-crds``: comma-separated names of
    :data:`federation.install.ecosystem_crds.SETS`, or ``none``). ``for_install``:
    install writes ``cluster``, ``locality`` and ``image`` into manifests, so they must be
    given, the image by digest unless ``allow_tag``
    (:func:`federation.install.images.pinned_image`); uninstall needs none of them (what it
    deletes is named the same in every cluster) and checks only what it is given.

    Raises:
        ConfigError: a value is malformed or conflicts with another (named by its flag).
    """
    if for_install:
        for flag, value in (("--cluster", cluster), ("--locality", locality), ("--image", image)):
            if not value:
                raise ConfigError(f"{flag} is required")
        try:
            pinned_image(image, allow_tag=allow_tag)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    if cluster:
        try:
            validate_member_name(cluster)  # as the controller checks member names
        except ValueError as err:
            raise ConfigError(f"--cluster: {cluster!r} is not a member name ({err})") from err
    if locality:
        try:
            Locality.parse(locality)
        except ValueError as err:
            raise ConfigError(f"--locality: {err}") from err
    if controller:
        try:
            controller_urls(controller)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    if join_token_file is not None:
        if join_token:
            raise ConfigError("give --join-token or --join-token-file, not both")
        join_token = token_from_file(join_token_file)
    if join_token and not controller:
        raise ConfigError("--join-token needs --controller")
    namespaces = tuple(n.strip() for n in mesh_namespaces.split(",") if n.strip())
    for ns in namespaces:
        if not re.fullmatch(DNS_LABEL, ns):
            raise ConfigError(f"--mesh-namespaces: {ns!r} is not a namespace name")
    cidrs = cidr_list(gateway_allowed_cidrs, "--gateway-allowed-cidrs")
    ecosystem = tuple(n.strip() for n in ecosystem_crds.split(",") if n.strip())
    if ecosystem == ("none",):
        ecosystem = ()
    for name in ecosystem:
        if name not in SETS:
            raise ConfigError(
                f"--ecosystem-crds: {name!r} unknown (known: {', '.join(SETS)}, or none)"
            )
    if gateway_ip:
        check_gateway_address(provider, gateway_ip)
    zones = tuple(z.strip() for z in zone_gateways.split(",") if z.strip())
    for zone in zones:
        if not LOCALITY_PART.match(zone) or len(zone) > 47:  # meshfed-gateway-<zone>: 63
            raise ConfigError(f"--zone-gateways: {zone!r} is not a zone name")
    if zones and for_install and not Locality.parse(locality).region:
        raise ConfigError("--zone-gateways needs --locality with a region")
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
        ecosystem_crds=ecosystem,
        gateway_allowed_cidrs=cidrs,
        gateway_ip=gateway_ip,
        zone_gateways=zones,
    )


def token_from_file(path: Path) -> str:
    """The join token in ``--join-token-file``: the JSON ``meshfed cluster join -o json``
    prints (its ``token``), or the token alone.

    Raises:
        ConfigError: no join token (``mfj_...``) in it.
    """
    text = path.read_text().strip()
    if text.startswith("{"):
        try:
            token = json.loads(text).get("token", "")
        except ValueError as err:
            raise ConfigError(f"--join-token-file {path}: not JSON ({err})") from err
    else:
        token = text
    if not isinstance(token, str) or not token.startswith("mfj_"):
        raise ConfigError(f"--join-token-file {path}: no join token (mfj_...) in it")
    return token


def controller_install(
    trust_dir: Path | None,
    *,
    image: str,
    allow_tag: bool,
    sync_address: str,
    replicas: int,
    provider: str,
    allowed_cidrs: str,
) -> tuple[ControllerInstall, Path]:
    """``meshfed controller install``'s flags as :class:`ControllerInstall`, and the trust
    directory (default ``$MESHFED_HOME/trust``), its controller intermediate created when
    missing (:func:`federation.install.controller.prepare_trust`).

    Raises:
        ConfigError: a flag is malformed (named), or the trust directory has no root.
    """
    if not image:
        raise ConfigError("--image is required")
    try:
        pinned_image(image, allow_tag=allow_tag)
        if sync_address:
            parse_host_port(sync_address, what="--sync-address")
    except ValueError as err:
        raise ConfigError(str(err)) from err
    cidrs = cidr_list(allowed_cidrs, "--allowed-cidrs")
    trust = trust_dir or default_trust_dir()
    prepare_trust(trust)
    opts = ControllerInstall(
        image=image,
        trust_files=trust_files(trust),
        sync_address=sync_address,
        replicas=replicas,
        provider=provider,
        allowed_cidrs=cidrs,
    )
    return opts, trust
