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
from federation.install.images import pinned_image
from federation.install.manifests import InstallOptions
from federation.model.locality import Locality
from federation.model.workload import DNS_LABEL


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
    allow_tag: bool = False,
    require_image: bool = False,
) -> InstallOptions:
    """The :class:`InstallOptions` of ``meshfed install`` / ``uninstall``'s flags (each
    argument is the flag of that name; ``crds`` is ``--crds/--no-crds``). ``require_image``:
    install writes ``image`` into manifests, so it must be given, by digest unless
    ``allow_tag`` (:func:`federation.install.images.pinned_image`); uninstall ignores it.

    Raises:
        ConfigError: a value is malformed or conflicts with another (named by its flag).
    """
    if require_image:
        try:
            pinned_image(image, allow_tag=allow_tag)
        except ValueError as err:
            raise ConfigError(str(err) if image else "--image is required") from err
    try:
        validate_member_name(cluster)  # as the controller checks member names
    except ValueError as err:
        raise ConfigError(f"--cluster: {cluster!r} is not a member name ({err})") from err
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
    cidrs = tuple(c.strip() for c in gateway_allowed_cidrs.split(",") if c.strip())
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError as err:
            raise ConfigError(f"--gateway-allowed-cidrs: {err}") from err
    if gateway_ip:
        try:
            ipaddress.ip_address(gateway_ip)
        except ValueError as err:
            raise ConfigError(f"--gateway-ip: {err}") from err
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
