"""Joining the federation: one CSR for the cluster's intermediate CA, one token, once.

The intermediate's private key is generated here and never sent (0600 in ``<state_dir>/ca``);
``POST /v1/join`` carries the CSR and the one-time join token from ``meshfed cluster join``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from federation.client import request_json
from federation.errors import FederationError, UnreachableError
from federation.netaddr import parse_host_port
from trust.cluster_ca import ClusterCaDirectory
from trust.spiffe import TrustDomain

log = logging.getLogger(__name__)


class JoinError(FederationError):
    """The control plane could not join (bad token, refused CSR, unreachable controller);
    ``retryable`` is True only when the controller could not be reached."""


@dataclass(frozen=True, slots=True)
class JoinInfo:
    """What a joined control plane remembers (``federation.json`` ``join``).

    Attributes:
        controller: the controller's API URL (``http://host:port``).
        sync_address / sync_server_name: ``host:port`` of the sync service and the DNS name
            its certificate carries.
        lease_seconds: the heartbeat lease (s); reports go out at least every third of it.
    """

    cluster: str
    trust_domain: str
    controller: str
    sync_address: str
    sync_server_name: str
    lease_seconds: float


def controller_url(controller: str) -> str:
    """``HOST:PORT`` or ``http(s)://HOST:PORT[/]`` -> ``http(s)://HOST:PORT``.

    Raises:
        ValueError: not HOST:PORT.
    """
    if controller.startswith(("http://", "https://")):
        return controller.rstrip("/")
    parse_host_port(controller, what="--controller")
    return f"http://{controller}"


async def join(
    state_dir: Path, cluster: str, controller: str, token: str, trust_domain: str | None
) -> JoinInfo:
    """Join the federation; writes ``<state_dir>/ca`` (key 0600, chain, bundle).

    The caller persists the returned info (:func:`federation.controlplane.link.state.save`).

    Args:
        controller: the controller's API, ``HOST:PORT`` or ``http://HOST:PORT``.
        trust_domain: asked for in the CSR; None takes the one the controller announces.

    Raises:
        JoinError: the controller refused (the message says why) or cannot be reached.
    """
    url = controller_url(controller)
    try:
        if trust_domain is None:
            health = await request_json("GET", url + "/healthz", None)
            trust_domain = str(health["trustDomain"])
        ca_dir = ClusterCaDirectory(state_dir / "ca")
        csr = ca_dir.new_csr(TrustDomain(trust_domain), cluster)
        body = json.dumps({"cluster": cluster, "token": token, "csr": csr.decode()})
        answer = await request_json("POST", url + "/v1/join", None, body, token_hint=False)
    except (FederationError, KeyError) as err:
        failure = JoinError(f"joining the federation at {url} failed: {err}")
        failure.retryable = isinstance(err, UnreachableError)
        raise failure from err
    ca_dir.store(answer["certificateChain"].encode(), answer["trustBundle"].encode())
    log.info("joined the federation at %s as %s (trust domain %s)", url, cluster, trust_domain)
    return JoinInfo(
        cluster=cluster,
        trust_domain=answer["trustDomain"],
        controller=url,
        sync_address=answer["syncAddress"],
        sync_server_name=answer["syncServerName"],
        lease_seconds=float(answer["leaseSeconds"]),
    )
