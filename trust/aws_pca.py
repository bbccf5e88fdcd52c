"""The root of trust in AWS Private CA (boto3 ``acm-pca``): cluster intermediates are issued
with the ``SubordinateCACertificate_PathLen0/V1`` template; the trust bundle is the CA's
certificate (``get_certificate_authority_certificate``), read at
``meshfed trust init --backend aws-pca`` and kept in the trust directory. botocore errors are
translated into :class:`trust.errors.TrustBackendError` here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import botocore.exceptions
from cryptography import x509

from trust import pki
from trust.authority import sign_with_remote_root
from trust.bundle import TrustBundle
from trust.errors import SigningRefusedError, TrustBackendError
from trust.spiffe import TrustDomain

SUBORDINATE_TEMPLATE = "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1"
_THROTTLED = {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
_DENIED = {"AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId"}


@contextmanager
def _pca(what: str) -> Iterator[None]:
    try:
        yield
    except botocore.exceptions.NoCredentialsError as err:
        raise TrustBackendError(f"{what}: no AWS credentials") from err
    except (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectTimeoutError,
    ) as err:
        raise TrustBackendError(
            f"{what}: AWS Private CA unreachable ({err})", retryable=True
        ) from err
    except botocore.exceptions.ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        message = err.response.get("Error", {}).get("Message", "")
        if code in _THROTTLED:
            raise TrustBackendError(
                f"{what}: throttled; retry in a few seconds", retryable=True
            ) from err
        if code in _DENIED:
            raise TrustBackendError(f"{what}: access denied ({message})") from err
        if code in ("MalformedCSRException", "InvalidRequestException", "InvalidStateException"):
            raise SigningRefusedError(f"{what}: {code}: {message}") from err
        raise TrustBackendError(f"{what}: {code}: {message}") from err


class PcaClient:
    """The acm-pca calls meshfed makes, for one CA."""

    def __init__(self, ca_arn: str, region: str, client: Any = None) -> None:
        self.ca_arn = ca_arn
        self.region = region
        self._client = client or boto3.client("acm-pca", region_name=region)

    def ca_pem(self) -> str:
        """The CA's certificate and, for a subordinate CA, its chain (PEM)."""
        with _pca(f"reading AWS Private CA {self.ca_arn}"):
            answer = self._client.get_certificate_authority_certificate(
                CertificateAuthorityArn=self.ca_arn
            )
        return "\n".join(
            p for p in (answer["Certificate"], answer.get("CertificateChain", "")) if p
        )

    def issue_subordinate(self, csr_pem: bytes, days: int, wait_s: float = 30) -> tuple[str, str]:
        """Issue with the PathLen0 subordinate template; ``(certificate, chain)`` PEM.

        notBefore is the issuance time minus :data:`trust.pki.CLOCK_SKEW_ALLOWANCE` (5 min),
        as a local root and Vault (``not_before_duration``) backdate, passed as
        ``ValidityNotBefore`` (``ABSOLUTE``, epoch seconds): by default AWS Private CA
        backdates by 60 minutes (API reference, IssueCertificate, ValidityNotBefore), and
        ``rotate-root --retire-old`` reads when a cluster was re-signed from notBefore."""
        not_before = pki.utcnow() - pki.CLOCK_SKEW_ALLOWANCE
        with _pca(f"issuing an intermediate with AWS Private CA {self.ca_arn}"):
            arn = self._client.issue_certificate(
                CertificateAuthorityArn=self.ca_arn,
                Csr=csr_pem,
                SigningAlgorithm="SHA256WITHECDSA",
                TemplateArn=SUBORDINATE_TEMPLATE,
                Validity={"Value": days, "Type": "DAYS"},
                ValidityNotBefore={"Value": int(not_before.timestamp()), "Type": "ABSOLUTE"},
            )["CertificateArn"]
            deadline = time.monotonic() + wait_s
            while True:  # issuance is asynchronous: RequestInProgressException until done
                try:
                    answer = self._client.get_certificate(
                        CertificateAuthorityArn=self.ca_arn, CertificateArn=arn
                    )
                    return answer["Certificate"], answer.get("CertificateChain", "")
                except botocore.exceptions.ClientError as err:
                    code = err.response.get("Error", {}).get("Code", "")
                    if code != "RequestInProgressException" or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)


@dataclass(frozen=True, slots=True, repr=False)
class AwsPcaRootAuthority:
    """:class:`trust.authority.RootAuthority` backed by an AWS Private CA."""

    client: PcaClient
    bundle: TrustBundle

    @property
    def trust_domain(self) -> TrustDomain:
        """See :class:`RootAuthority`."""
        return self.bundle.trust_domain

    def sign_intermediate_csr(
        self,
        csr: x509.CertificateSigningRequest,
        cluster: str,
        ttl: timedelta = pki.DEFAULT_INTERMEDIATE_TTL,
    ) -> tuple[x509.Certificate, ...]:
        """Have AWS Private CA issue a cluster's intermediate (PathLen0 template).

        It carries no nameConstraints (they need PCA's API passthrough templates, which the
        moto server we test against does not model), so its SVIDs make no cluster claim and
        AuthorizationPolicy ``clusters`` rules never match them (docs/policy.md).

        Raises:
            SigningRefusedError: bad CSR, foreign trust domain, or a non-CA certificate back.
            TrustBackendError: throttled, unreachable or access denied.
        """

        def issue(csr_pem: bytes, _cluster: str, ttl: timedelta) -> tuple[str, str]:
            # the subject comes from the CSR: the PathLen0 template keeps it
            return self.client.issue_subordinate(csr_pem, max(1, int(ttl.total_seconds() // 86400)))

        return sign_with_remote_root(csr, cluster, ttl, self.bundle, "AWS Private CA", issue)

    def trust_bundle(self) -> TrustBundle:
        """See :class:`RootAuthority`."""
        return self.bundle

    def __repr__(self) -> str:
        return f"AwsPcaRootAuthority({self.client.ca_arn})"
