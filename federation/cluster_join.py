"""``meshfed cluster join``'s request and its next step: what the flags (and a cloud's
description of the cluster) make of ``POST /v1/clusters``, and the command that completes
the join. Pure."""

from __future__ import annotations

from typing import Any

from federation.errors import ConfigError
from federation.model.locality import Locality
from federation.netaddr import parse_host_port


def join_request(
    name: str,
    locality: str | None,
    network: str | None,
    gateway: str | None,
    provider: str | None,
    token_ttl_s: float,
) -> dict[str, Any]:
    """The body of ``POST /v1/clusters``: ``network`` defaults to ``default``, ``provider``
    to ``local``, ``gateway`` to none (the cluster's control plane reports it).

    Raises:
        ConfigError: no locality, or a locality or gateway that does not parse (names the
            flag).
    """
    if locality is None:
        raise ConfigError("--locality is required (or use --from)")
    try:
        Locality.parse(locality)
        if gateway:
            parse_host_port(gateway, what="--gateway")
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return {
        "name": name,
        "locality": locality,
        "network": network or "default",
        "gateway": gateway or "",
        "provider": provider or "local",
        "tokenTtlSeconds": token_ttl_s,
    }


def next_step(body: dict[str, Any], controller_url: str) -> str:
    """How to complete the join of the cluster ``body`` registered: start its control plane
    (a gateway was given: a cluster of processes) or install meshfed into it (Kubernetes)."""
    name, locality, network = body["name"], body["locality"], body["network"]
    if body["gateway"]:
        host = controller_url.split("://", 1)[-1]
        return (
            f"start its control plane with:\n  meshfed controlplane serve --cluster {name}"
            f" --locality {locality} --network {network} --gateway {body['gateway']}"
            f" --controller {host} --join-token <token>"
        )
    return (
        f"install meshfed into the cluster with:\n  meshfed install --cluster {name}"
        f" --locality {locality} --network {network} --provider {body['provider']}"
        f" --controller {controller_url} --join-token <token> --image REPO@sha256:<digest>"
        " | kubectl apply -f -"
    )
