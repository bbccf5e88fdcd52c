"""The sidecar injector the control plane serves (issue #20): ``POST /inject`` over HTTPS,
AdmissionReview ``admission.k8s.io/v1`` in, an RFC 6902 JSONPatch out
(:func:`federation.controlplane.kube.inject.admission_response`).

- **TLS**: a certificate for the control plane's in-cluster DNS name
  (:data:`~federation.controlplane.kube.pod.CONTROLPLANE_HOST`), 24 h, re-issued at
  half life, from a CA of the injector's own (made once, 1 year, key 0600 in
  ``<state_dir>/webhook-tls``). Not from the cluster's intermediate: its nameConstraints
  permit only ``<cluster>.cluster.meshfed.internal`` names (so a cluster cannot issue for
  another's), and an in-cluster Service name is outside them. The injector's CA is in no
  trust bundle, so it authenticates nothing in the mesh; the API server trusts it through
  the ``caBundle`` of the MutatingWebhookConfiguration, which the control plane keeps equal
  to it (:func:`sync_ca_bundle`).
- **Only labelled namespaces**: a pod in a namespace without ``meshfed.io/inject=enabled``
  is allowed unchanged, whatever the webhook configuration's selector says.
- A body that is not an AdmissionReview gets 400; the injector never refuses a pod (it
  answers ``allowed: true`` with or without a patch), so it cannot block a namespace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from federation.controlplane.kube.inject import admission_response
from federation.controlplane.kube.pod import CONTROLPLANE_HOST, INJECT_LABEL
from federation.serving import load_certificate
from trust import pki
from trust.authority import load_key_file
from trust.files import CERT_FILE_MODE, KEY_FILE_MODE, ensure_dir, write_atomic
from trust.spiffe import TrustDomain

log = logging.getLogger(__name__)

#: Lifetime of the injector's serving certificate and of its CA.
WEBHOOK_CERT_TTL = timedelta(hours=24)
WEBHOOK_CA_TTL = timedelta(days=365)
WEBHOOK_NAME = "meshfed-sidecar-injector"


class WebhookCertificate:
    """The injector's serving certificate (see the module docstring).

    Args:
        trust_domain: the mesh's (named in the CA's certificate).
        directory: the injector CA's key (0600) and certificate, made once and kept, and the
            serving key (0600) and chain.
        dns_names: names the serving certificate carries.
    """

    def __init__(
        self,
        trust_domain: TrustDomain,
        directory: Path,
        dns_names: tuple[str, ...] = (CONTROLPLANE_HOST,),
    ) -> None:
        self._td = trust_domain
        self._dir = directory
        self._names = dns_names
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca_pem = b""
        #: Whether this replica may make a new CA when the old one is due (only the leader
        #: of several does; the others take it from the shared Secret:
        #: :mod:`federation.controlplane.kube.replicas`).
        self.may_make_ca: Callable[[], bool] = lambda: True

    def ca(self) -> tuple[Any, pki.IssuerKey]:
        """The injector CA's certificate and key (made, or re-made a day before it ends when
        :attr:`may_make_ca`)."""
        key_path, cert_path = self._dir / "ca-key.pem", self._dir / "ca.pem"
        if key_path.exists() and cert_path.exists():
            key = load_key_file(key_path)
            cert = pki.load_certificates(cert_path.read_bytes(), source=str(cert_path))[0]
            due = pki.utcnow() >= cert.not_valid_after_utc - WEBHOOK_CERT_TTL
            if not due or not self.may_make_ca():
                return cert, key
        key = pki.generate_private_key()
        cert = pki.root_certificate(
            key, self._td, now=pki.utcnow(), ttl=WEBHOOK_CA_TTL,
            common_name="meshfed sidecar injector CA",
        )  # fmt: skip
        ensure_dir(self._dir)
        write_atomic(key_path, pki.private_key_to_pem(key), KEY_FILE_MODE)
        write_atomic(cert_path, pki.certificates_to_pem([cert]), CERT_FILE_MODE)
        return cert, key

    def issue(self) -> None:
        """Issue a serving certificate and load it into :attr:`context` (new handshakes use
        it); :attr:`ca_pem` is what verifies it."""
        ca_cert, ca_key = self.ca()
        key = pki.generate_private_key()
        spiffe_id = self._td.workload_id("meshfed-system", "sidecar-injector")
        leaf = pki.leaf_certificate(
            pki.build_csr(key, spiffe_id=spiffe_id), spiffe_id, issuer_cert=ca_cert,
            issuer_key=ca_key, now=pki.utcnow(), ttl=WEBHOOK_CERT_TTL, dns_names=self._names,
        )  # fmt: skip
        load_certificate(
            self.context, self._dir, pki.private_key_to_pem(key), pki.certificates_to_pem([leaf])
        )
        self.ca_pem = pki.certificates_to_pem([ca_cert])

    async def renew_forever(self, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Re-issue at half life until cancelled (after awaiting ``before``, which may bring
        the CA up to date)."""
        while True:
            await asyncio.sleep(WEBHOOK_CERT_TTL.total_seconds() / 2)
            if before is not None:
                await before()
            self.issue()
            log.info("re-issued the injector's certificate")


def make_app(
    cluster: str, image: str, namespace_labels: Callable[[str], Mapping[str, str] | None]
) -> web.Application:
    """The injector (``POST /inject``); ``namespace_labels`` returns a namespace's labels
    (None when unknown: not injected)."""

    async def inject(request: web.Request) -> web.Response:
        try:
            review = json.loads(await request.read())
            namespace = str(review["request"].get("namespace", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            return web.json_response({"error": "not an AdmissionReview"}, status=400)
        labels = namespace_labels(namespace) or {}
        enabled = labels.get(INJECT_LABEL) == "enabled"
        answer = admission_response(review, cluster, image, inject=enabled)
        patched = "patch" in answer["response"]
        log.info("admission of a pod in %s: %s", namespace, "injected" if patched else "unchanged")
        return web.json_response(answer)

    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.router.add_post("/inject", inject)
    return app


async def sync_ca_bundle(api: k8s.ApiClient, bundle_pem: bytes) -> bool:
    """Put ``bundle_pem`` (the injector's CA) in the MutatingWebhookConfiguration
    :data:`WEBHOOK_NAME`'s ``caBundle`` when it differs; True when it was written. Absent
    (not installed by ``meshfed install``): nothing to do.

    Raises:
        ApiException: the API server refused (other than 404).
    """
    admission = k8s.AdmissionregistrationV1Api(api)
    try:
        config = await admission.read_mutating_webhook_configuration(WEBHOOK_NAME)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    wanted = base64.b64encode(bundle_pem).decode()
    changed = False
    for hook in config.webhooks or []:
        if hook.client_config.ca_bundle != wanted:
            hook.client_config.ca_bundle = wanted
            changed = True
    if changed:
        await admission.replace_mutating_webhook_configuration(WEBHOOK_NAME, config)
        log.info("caBundle of %s set to the trust bundle", WEBHOOK_NAME)
    return changed


def namespace_labels_of(objects: Mapping[tuple[str, str], Any]) -> Callable[[str], Any]:
    """A lookup of a namespace's labels in a reflector's objects (cluster-scoped:
    ``("", name)``)."""

    def labels(namespace: str) -> Mapping[str, str] | None:
        found = objects.get(("", namespace))
        return None if found is None else (found.get("metadata") or {}).get("labels") or {}

    return labels
