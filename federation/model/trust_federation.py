"""``TrustDomainFederation``: trust another trust domain's SVIDs, its bundle fetched from its
SPIFFE bundle endpoint (SPIFFE_Federation.md section 5.1's endpoint parameters)::

    apiVersion: meshfed.io/v1alpha1
    kind: TrustDomainFederation
    metadata: {name: b-example}
    spec:
      trustDomain: b.example
      bundleEndpointURL: https://controller.b.example:15080/v1/spiffe-bundle
      bundleEndpointProfile:
        type: https_spiffe                   # or https_web
        endpointSPIFFEID: spiffe://b.example/ns/meshfed-system/sa/controller
      trustDomainBundle: |                   # the bundle once (SPIFFE JSON or PEM)
        {"keys": [...], "spiffe_sequence": 1}

The fields are those of SPIRE's ``ClusterFederatedTrustDomain`` (spire-controller-manager,
``spire.spiffe.io/v1alpha1``), and that document is accepted as it is (``className``, which
selects a SPIRE server, is ignored). Cluster-scoped in SPIRE: ``metadata.namespace`` is
ignored by the controller.

Checked here (pure): the trust domain, the URL (``https``, no userinfo), the profile and its
endpoint SPIFFE ID (required for ``https_spiffe``, refused for ``https_web``), and the bundle,
which must parse and hold at least one root; a self-serving ``https_spiffe`` endpoint needs
it (there is no other way to authenticate the first fetch, section 5.2.2.2). Checked by the
controller: the trust domain is not its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from federation.model.workload import ObjectMeta, _Strict
from trust.bundle import TrustBundle
from trust.errors import InvalidCertificateError
from trust.federation import BundleEndpoint, foreign_root_problem, parse_endpoint
from trust.spiffe import TrustDomain


class BundleEndpointProfileSpec(_Strict):
    """``spec.bundleEndpointProfile``."""

    type: Literal["https_web", "https_spiffe"]
    endpoint_spiffe_id: str | None = Field(default=None, alias="endpointSPIFFEID")


class TrustDomainFederationSpec(_Strict):
    """``spec`` of a TrustDomainFederation (see the module docstring)."""

    trust_domain: str = Field(alias="trustDomain")
    bundle_endpoint_url: str = Field(alias="bundleEndpointURL")
    bundle_endpoint_profile: BundleEndpointProfileSpec = Field(alias="bundleEndpointProfile")
    trust_domain_bundle: str | None = Field(default=None, alias="trustDomainBundle")
    class_name: str | None = Field(default=None, alias="className")

    @model_validator(mode="after")
    def _parameters(self) -> TrustDomainFederationSpec:
        endpoint = self.endpoint()  # raises ValueError naming the problem
        bundle = self.bootstrap_bundle()
        if bundle is not None and not bundle.roots:
            raise ValueError("trustDomainBundle: holds no root certificate")
        problem = foreign_root_problem(bundle) if bundle is not None else None
        if problem:
            raise ValueError(f"trustDomainBundle: {problem}")
        if endpoint.self_serving and bundle is None:
            raise ValueError(
                "trustDomainBundle: required with profile https_spiffe when the endpoint's"
                f" SPIFFE ID is in {endpoint.trust_domain} itself (the first fetch is"
                " authenticated with it; get it with 'meshfed trust bundle -o spiffe' there)"
            )
        return self

    def endpoint(self) -> BundleEndpoint:
        """The endpoint parameters.

        Raises:
            ValueError: as :func:`trust.federation.parse_endpoint`.
        """
        profile = self.bundle_endpoint_profile
        return parse_endpoint(
            self.trust_domain,
            self.bundle_endpoint_url,
            profile.type,
            profile.endpoint_spiffe_id,
        )

    def bootstrap_bundle(self) -> TrustBundle | None:
        """``trustDomainBundle`` as a bundle of ``trustDomain`` (SPIFFE JSON when it starts
        with ``{``, else PEM), or None.

        Raises:
            ValueError: it does not parse (:class:`InvalidCertificateError` is one).
        """
        text = (self.trust_domain_bundle or "").strip()
        if not text:
            return None
        domain = TrustDomain.parse(self.trust_domain)
        try:
            if text.startswith("{"):
                return TrustBundle.from_spiffe_json(domain, text)
            return TrustBundle.from_pem(domain, text.encode(), source="trustDomainBundle")
        except InvalidCertificateError as err:
            raise ValueError(f"trustDomainBundle: {err}") from err


class TrustDomainFederation(_Strict):
    """A ``TrustDomainFederation`` (``meshfed.io/v1alpha1``) or SPIRE's
    ``ClusterFederatedTrustDomain`` (``spire.spiffe.io/v1alpha1``) document."""

    api_version: Literal["meshfed.io/v1alpha1", "spire.spiffe.io/v1alpha1"] = Field(
        alias="apiVersion"
    )
    kind: Literal["TrustDomainFederation", "ClusterFederatedTrustDomain"]
    metadata: ObjectMeta
    spec: TrustDomainFederationSpec


def federation_document(
    trust_domain: str,
    url: str,
    profile: str,
    endpoint_spiffe_id: str | None = None,
    bundle: str | None = None,
    name: str | None = None,
) -> TrustDomainFederation:
    """The ``TrustDomainFederation`` ``meshfed trust federate`` applies: named ``name`` or
    after the domain (``b.example`` -> ``b-example``).

    Raises:
        pydantic.ValidationError: a parameter is invalid (as applying the document would
            say).
    """
    spec: dict[str, object] = {
        "trustDomain": trust_domain,
        "bundleEndpointURL": url,
        "bundleEndpointProfile": {
            "type": profile,
            **({"endpointSPIFFEID": endpoint_spiffe_id} if endpoint_spiffe_id else {}),
        },
        **({"trustDomainBundle": bundle} if bundle else {}),
    }
    default_name = trust_domain.lower().replace(".", "-").replace("_", "-")[:63].strip("-")
    return TrustDomainFederation.model_validate(
        {
            "apiVersion": "meshfed.io/v1alpha1",
            "kind": "TrustDomainFederation",
            "metadata": {"name": name or default_name},
            "spec": spec,
        }
    )
