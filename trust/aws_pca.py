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
from datetime import datetime, timedelta
from typing import Any

import boto3
import botocore.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trust import pki
from trust.authority import sign_with_remote_root
from trust.bundle import TrustBundle
from trust.errors import SigningRefusedError, TrustBackendError
from trust.revocation import root_crl_problem
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
    """The acm-pca calls meshfed makes, for one CA (and the S3 read of the CRL it writes)."""

    def __init__(self, ca_arn: str, region: str, client: Any = None, s3: Any = None) -> None:
        self.ca_arn = ca_arn
        self.region = region
        self._client = client or boto3.client("acm-pca", region_name=region)
        self._s3 = s3

    def crl_pem(self) -> bytes:
        """The CA's current CRL, as PEM: AWS Private CA writes it (DER) to the S3 bucket of
        its ``RevocationConfiguration.CrlConfiguration``, at ``crl/<CA id>.crl`` (User Guide,
        "Planning a certificate revocation list": the CRL Distribution Point it puts in the
        certificates it issues names that object).

        Raises:
            TrustBackendError: CRLs are not enabled on the CA (with how to enable them), the
                object is missing or unreadable (S3 permissions), or not a DER CRL.
        """
        with _pca(f"reading AWS Private CA {self.ca_arn}"):
            ca = self._client.describe_certificate_authority(CertificateAuthorityArn=self.ca_arn)
        revocation = ca["CertificateAuthority"].get("RevocationConfiguration", {})
        crl = revocation.get("CrlConfiguration", {})
        if not crl.get("Enabled") or not crl.get("S3BucketName"):
            raise TrustBackendError(
                f"AWS Private CA {self.ca_arn} publishes no CRL; federated trust domains need"
                " one per root: aws acm-pca update-certificate-authority"
                " --revocation-configuration"
                " 'CrlConfiguration={Enabled=true,S3BucketName=BUCKET}'"
            )
        bucket, key = crl["S3BucketName"], f"crl/{self.ca_arn.rsplit('/', 1)[-1]}.crl"
        if self._s3 is None:
            self._s3 = boto3.client("s3", region_name=self.region)
        with _pca(f"reading AWS Private CA's CRL s3://{bucket}/{key}"):
            der = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
        except ValueError as err:
            raise TrustBackendError(f"s3://{bucket}/{key}: not a DER CRL ({err})") from err

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

    def root_crl(self, root: x509.Certificate, *, now: datetime | None = None) -> bytes:
        """The CA's CRL (PEM) for ``root``, as AWS Private CA published it to S3
        (:meth:`PcaClient.crl_pem`): what Envoy's SPIFFE validator needs for the root of
        every chain once federated bundles are in force
        (:meth:`trust.store.TrustDirectory.root_crls`). AWS Private CA renews it itself
        (``ExpirationInDays``).

        Raises:
            TrustBackendError: no CRL published or readable, or it is not ``root``'s, or it
                has expired.
        """
        pem = self.client.crl_pem()
        source = f"AWS Private CA {self.client.ca_arn}'s CRL"
        problem = root_crl_problem(pem, root, source=source, now=now)
        if problem is not None:
            raise TrustBackendError(problem)
        return pem

    def trust_bundle(self) -> TrustBundle:
        """See :class:`RootAuthority`."""
        return self.bundle

    def __repr__(self) -> str:
        return f"AwsPcaRootAuthority({self.client.ca_arn})"
