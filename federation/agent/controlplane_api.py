"""The proxy agent's client of its control plane's HTTP API.

- :func:`api_url` -- where the API is;
- :func:`fetch_bootstrap` -- ``GET /v1/bootstrap``: the public facts a proxy starts from
  (trust domain, trust bundle, certificate service, server name, cluster locality);
- :class:`Registration` -- applies a sidecar's WorkloadEntry (``POST /v1/apply``) before Envoy
  starts and deletes it (``POST /v1/delete``) on stop.

Errors are :mod:`federation.client`'s (``ApiError``, ``UnreachableError``) and
:class:`~federation.errors.ConfigError` for a ``--trust-bundle`` that cannot be
read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from federation.agent.config import IdentityOptions
from federation.ca.names import control_plane_server_name
from federation.client import (
    CA_FILE_ENV,
    ClientTls,
    call,
    local_control_plane,
    request_json,
    tls_context,
    unverified_tls,
)
from federation.paths import meshfed_home

log = logging.getLogger(__name__)

#: The control plane API's default port (``meshfed controlplane serve --api-listen``).
API_PORT = 15014


def api_url(cluster: str, xds_host: str, explicit: str | None) -> str:
    """The control plane's API URL: ``explicit``; else the ``api`` of
    ``$MESHFED_HOME/controlplanes/CLUSTER/endpoint.json`` (a control plane on this host);
    else ``https://XDS_HOST:15014``."""
    if explicit:
        return explicit
    endpoint = meshfed_home() / "controlplanes" / cluster / "endpoint.json"
    if endpoint.exists():
        return str(json.loads(endpoint.read_text())["api"])
    return f"https://{xds_host}:{API_PORT}"


def fetch_bootstrap(
    url: str, cluster: str, token: str | None, identity: IdentityOptions
) -> tuple[dict[str, Any], ClientTls | None]:
    """The control plane's public ``/v1/bootstrap`` and how to verify its API from then on.

    The API is HTTPS with a certificate for ``controlplane.<cluster>.cluster.meshfed.
    internal`` from the cluster's CA. A control plane on this host is verified as its
    ``endpoint.json`` says; else against ``--trust-bundle`` (or ``$MESHFED_CA_FILE``) by that
    name; with neither, the public bootstrap is read without verification (it holds only
    public facts, as the controller's ``/v1/bundle`` for a join) and every later call --
    those carrying the API token -- is verified against the bundle it returned.

    Returns:
        ``(bootstrap document, TLS for later calls or None for the defaults)``.
    """
    if not url.startswith("https://") or local_control_plane(url, None) is not None:
        return call("GET", url, "/v1/bootstrap", token=token), None
    name = control_plane_server_name(cluster)
    bundle = identity.trust_bundle_pem()
    if bundle is not None or os.environ.get(CA_FILE_ENV):
        ca_file = None if bundle is not None else os.environ[CA_FILE_ENV]
        tls = ClientTls(tls_context(bundle, ca_file), name)
        return call("GET", url, "/v1/bootstrap", token=token, tls=tls), tls
    # no token on an unverified connection, not even $MESHFED_TOKEN (call() would add it)
    info = asyncio.run(request_json("GET", url + "/v1/bootstrap", None, tls=unverified_tls()))
    return info, ClientTls(tls_context(str(info["trustBundle"]).encode()), name)


@dataclass(frozen=True, slots=True)
class Registration:
    """A sidecar's WorkloadEntry at its control plane: :meth:`register` before Envoy starts,
    :meth:`deregister` on stop (the supervisor's hooks). ``body`` is the entry as YAML;
    ``enabled`` False (a Kubernetes pod, whose EndpointSlice registers it) makes both no-ops.
    """

    url: str
    token: str | None
    tls: ClientTls | None
    body: str
    label: str
    enabled: bool = True

    async def register(self) -> None:
        """``POST /v1/apply`` the entry (from a thread: :func:`federation.client.call`
        blocks)."""
        if not self.enabled:
            return
        await asyncio.to_thread(
            call, "POST", self.url, "/v1/apply", token=self.token, body=self.body, tls=self.tls
        )
        log.info("registered workload %s with %s", self.label, self.url)

    async def deregister(self) -> None:
        """``POST /v1/delete`` the entry."""
        if not self.enabled:
            return
        await asyncio.to_thread(
            call, "POST", self.url, "/v1/delete", token=self.token, body=self.body, tls=self.tls
        )
        log.info("deregistered workload %s", self.label)
