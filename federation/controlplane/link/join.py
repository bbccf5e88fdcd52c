"""Joining the federation: one CSR for the cluster's intermediate CA, one token, once.

The intermediate's private key is generated here and never sent (0600 in ``<state_dir>/ca``);
``POST /v1/join`` carries the CSR and the secret of the one-time join token from
``meshfed cluster join``. The token also pins the federation's root
(:mod:`federation.sync.join_token`), as kubeadm's discovery does: the control plane reads the
public bundle (``GET /v1/bundle``, TLS not yet verified), refuses it unless it holds the
pinned root, and then sends the token only over TLS verified against that bundle and the
controller's DNS name ``controller.meshfed.internal``. An answer whose bundle lacks the root,
or whose intermediate does not chain to it, is refused too; nothing is stored then.

A join token is never sent in clear text across a network: an ``http://`` controller URL is
refused before anything is sent unless its host is a loopback address (a controller started
with ``--insecure-http``, which itself listens only on loopback). The pin alone does not
protect plain HTTP: the public bundle it checks is public, so anyone on the path could
answer with it and read the token.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from federation.client import ClientTls, request_json, split_urls, tls_context, unverified_tls
from federation.errors import ApiError, FederationError, UnreachableError
from federation.netaddr import is_loopback, parse_host_port
from federation.sync.identity import CONTROLLER_SERVER_NAME
from federation.sync.join_token import MalformedTokenError, split_join_token
from trust import pki
from trust.bundle import TrustBundle
from trust.cluster_ca import ClusterCaDirectory
from trust.errors import TrustError
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
        sync_addresses: every live controller replica's sync service (``host:port``), as the
            controller last said; the link fails over between them (empty: ``sync_address``
            only, a state written before replicas existed).
    """

    cluster: str
    trust_domain: str
    controller: str
    sync_address: str
    sync_server_name: str
    lease_seconds: float
    sync_addresses: list[str] = field(default_factory=list)


def controller_urls(controller: str) -> list[str]:
    """``--controller`` as URLs: one or several (comma-separated replicas), each as
    :func:`controller_url` takes it.

    Raises:
        ValueError: an entry is not HOST:PORT or a URL.
    """
    return [controller_url(c) for c in split_urls(controller)]


def controller_url(controller: str) -> str:
    """``HOST:PORT`` (HTTPS) or ``http(s)://HOST:PORT[/]`` -> ``http(s)://HOST:PORT``.

    Raises:
        ValueError: not HOST:PORT.
    """
    if controller.startswith(("http://", "https://")):
        return controller.rstrip("/")
    parse_host_port(controller, what="--controller")
    return f"https://{controller}"


def plain_http_problem(url: str) -> str | None:
    """Why a join token must not be sent to ``url``, or None: plain ``http://`` to a host
    that is not a loopback address (see the module docstring). Pure."""
    if not url.startswith("http://"):
        return None
    host = urlsplit(url).hostname or ""
    if is_loopback(host):
        return None
    return (
        f"refusing to send the join token over plain HTTP to {host}: use the controller's"
        " https:// address (plain http:// is only for a loopback controller)"
    )


async def join(
    state_dir: Path, cluster: str, controller: str, token: str, trust_domain: str | None
) -> JoinInfo:
    """Join the federation; writes ``<state_dir>/ca`` (key 0600, chain, bundle).

    The caller persists the returned info (:func:`federation.controlplane.link.state.save`).

    Args:
        controller: the controller's API, ``HOST:PORT`` (HTTPS) or an ``https://`` /
            ``http://`` URL (the latter for a controller started with ``--insecure-http``);
            several replicas comma-separated, tried in order while one cannot be reached.
        trust_domain: asked for in the CSR; None takes the one the controller announces.

    Raises:
        JoinError: the controller refused (the message says why) or none can be reached.
    """
    urls = controller_urls(controller)
    for i, url in enumerate(urls):
        try:
            return await _join_one(state_dir, cluster, url, token, trust_domain)
        except JoinError as err:
            if not err.retryable or i == len(urls) - 1:
                raise
            log.warning("%s; trying the next controller replica", err)
    raise JoinError("--controller: no controller address given")


async def _join_one(
    state_dir: Path, cluster: str, url: str, token: str, trust_domain: str | None
) -> JoinInfo:
    problem = plain_http_problem(url)
    if problem is not None:
        raise JoinError(f"--controller: {problem}")
    try:
        secret, pin = split_join_token(token)
    except MalformedTokenError as err:
        raise JoinError(f"--join-token: {err}") from err
    try:
        # the pin first: the token goes only to a controller that shows the pinned root ...
        https = url.startswith("https://")
        discovery = unverified_tls() if https else None
        public = await request_json("GET", url + "/v1/bundle", None, tls=discovery)
        pinned_root = check_pinned_root(public, pin, url)
        trust_domain = trust_domain or str(public["trustDomain"])
        ca_dir = ClusterCaDirectory(state_dir / "ca")
        csr = ca_dir.new_csr(TrustDomain(trust_domain), cluster)
        body = json.dumps({"cluster": cluster, "token": secret, "csr": csr.decode()})
        # ... and over TLS verified against that root alone (not the rest of an unverified
        # bundle), by the controller's DNS name
        pinned = ClientTls(tls_context(pinned_root), CONTROLLER_SERVER_NAME) if https else None
        answer = await request_json(
            "POST", url + "/v1/join", None, body, token_hint=False, tls=pinned
        )
    except (FederationError, KeyError) as err:
        failure = JoinError(f"joining the federation at {url} failed: {err}")
        # unreachable, or a replica that lost its database (503): another may answer
        failure.retryable = isinstance(err, UnreachableError) or (
            isinstance(err, ApiError) and err.status == 503
        )
        raise failure from err
    check_pinned_root(answer, pin, url)
    ca_dir.store(answer["certificateChain"].encode(), answer["trustBundle"].encode())
    log.info("joined the federation at %s as %s (trust domain %s)", url, cluster, trust_domain)
    return JoinInfo(
        cluster=cluster,
        trust_domain=answer["trustDomain"],
        controller=url,
        sync_address=answer["syncAddress"],
        sync_server_name=answer["syncServerName"],
        lease_seconds=float(answer["leaseSeconds"]),
        sync_addresses=[str(a) for a in answer.get("syncAddresses", [])],
    )


def check_pinned_root(answer: dict[str, Any], pin: str, url: str) -> bytes:
    """Refuse an answer (``GET /v1/bundle`` or the join's) unless its trust bundle holds the
    pinned root and, for the join's, the signed intermediate chains to a root of that bundle.
    Returns the pinned root certificate (PEM).

    Raises:
        JoinError: the pin does not match (names both), or the answer is malformed.
    """
    try:
        td = TrustDomain(str(answer["trustDomain"]))
        bundle = TrustBundle.from_pem(td, str(answer["trustBundle"]).encode(), source=url)
        chain_pem = str(answer.get("certificateChain", ""))
        chain = pki.load_certificates(chain_pem.encode(), source=url) if chain_pem else []
    except (KeyError, TrustError) as err:
        raise JoinError(f"joining the federation at {url}: malformed answer: {err}") from err
    if pin not in bundle.fingerprints():
        raise JoinError(
            f"the controller at {url} is not the federation the join token names: its roots"
            f" are sha256 {', '.join(bundle.fingerprints())}, the token pins {pin};"
            " nothing was stored"
        )
    if chain and not any(pki.issued_by(chain[-1], root) for root in bundle.roots):
        raise JoinError(f"the intermediate from {url} does not chain to its trust bundle")
    return pki.certificates_to_pem([r for r in bundle.roots if pki.fingerprint(r) == pin])
