"""The only module that talks to Vault (hvac): login and the three PKI calls meshfed uses.
Everything else in :mod:`trust` goes through :class:`VaultPkiClient`, so running against a
real Vault instead of the test fake changes nothing outside this file.

Vault API used (https://developer.hashicorp.com/vault/api-docs/secret/pki):
``GET /v1/<mount>/ca/pem``, ``GET /v1/<mount>/ca_chain``,
``POST /v1/<mount>/root/sign-intermediate`` (or ``/v1/<mount>/intermediate/...`` through the
same call when Vault's CA is itself an intermediate: ``ca_chain`` then carries the chain);
auth: token, ``POST /v1/auth/approle/login``, ``POST /v1/auth/kubernetes/login``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import hvac
import hvac.exceptions
import requests

from trust.errors import SigningRefusedError, TrustBackendError
from trust.pki import CLOCK_SKEW_ALLOWANCE

AuthMethod = Literal["token", "approle", "kubernetes"]
KUBERNETES_JWT = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True, slots=True)
class VaultSettings:
    """Where Vault is and how to log in; secrets come from the environment, never a file:
    ``VAULT_TOKEN`` (token), ``VAULT_ROLE_ID`` + ``VAULT_SECRET_ID`` (approle), the service
    account JWT (kubernetes, role ``role``)."""

    address: str
    mount: str = "pki"
    auth: AuthMethod = "token"
    role: str = ""
    namespace: str | None = None


@contextmanager
def _vault(what: str, *, login: bool = False) -> Iterator[None]:
    try:
        yield
    except hvac.exceptions.VaultDown as err:
        raise TrustBackendError(
            f"{what}: Vault is sealed or down ({err}); retry once it is unsealed", retryable=True
        ) from err
    except hvac.exceptions.RateLimitExceeded as err:
        raise TrustBackendError(
            f"{what}: Vault rate limit exceeded; retry in a few seconds", retryable=True
        ) from err
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as err:
        raise TrustBackendError(f"{what}: permission denied by Vault ({err})") from err
    except hvac.exceptions.InvalidRequest as err:
        if login:
            raise TrustBackendError(f"{what}: Vault refused the login ({err})") from err
        raise SigningRefusedError(f"{what}: Vault refused the request ({err})") from err
    except hvac.exceptions.VaultError as err:
        raise TrustBackendError(f"{what}: Vault error ({err})", retryable=True) from err
    except requests.RequestException as err:
        raise TrustBackendError(f"{what}: Vault unreachable ({err})", retryable=True) from err


class VaultPkiClient:
    """A logged-in hvac client for one PKI mount."""

    def __init__(self, settings: VaultSettings, *, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        environ = env if env is not None else dict(os.environ)
        self._client = hvac.Client(url=settings.address, namespace=settings.namespace, timeout=10)
        with _vault(f"logging in to Vault at {settings.address} ({settings.auth})", login=True):
            if settings.auth == "token":
                token = environ.get("VAULT_TOKEN")
                if not token:
                    raise TrustBackendError("Vault auth token: set VAULT_TOKEN")
                self._client.token = token
            elif settings.auth == "approle":
                role_id, secret_id = environ.get("VAULT_ROLE_ID"), environ.get("VAULT_SECRET_ID")
                if not role_id or not secret_id:
                    raise TrustBackendError(
                        "Vault auth approle: set VAULT_ROLE_ID and VAULT_SECRET_ID"
                    )
                self._client.auth.approle.login(role_id=role_id, secret_id=secret_id)
            else:
                jwt_path = Path(environ.get("VAULT_K8S_JWT_PATH", str(KUBERNETES_JWT)))
                try:
                    jwt = jwt_path.read_text().strip()
                except OSError as err:
                    raise TrustBackendError(
                        f"Vault auth kubernetes: cannot read {jwt_path}"
                    ) from err
                self._client.auth.kubernetes.login(role=settings.role, jwt=jwt)

    def ca_pem(self) -> str:
        """The PKI mount's CA certificate (PEM)."""
        with _vault(f"reading the CA of Vault mount {self.settings.mount}"):
            engine = self._client.secrets.pki
            return str(engine.read_ca_certificate(mount_point=self.settings.mount))  # type: ignore[no-untyped-call]

    def crl_pem(self) -> str:
        """The PKI mount's CRL (PEM; ``GET /v1/<mount>/crl/pem``, unauthenticated in Vault)."""
        with _vault(f"reading the CRL of Vault mount {self.settings.mount}"):
            engine = self._client.secrets.pki
            return str(engine.read_crl(mount_point=self.settings.mount))  # type: ignore[no-untyped-call]

    def sign_intermediate(
        self,
        csr_pem: str,
        common_name: str,
        ttl_s: int,
        uri_sans: str,
        *,
        permitted_dns_domains: str = "",
        organization: str = "",
        ou: str = "",
    ) -> dict[str, Any]:
        """``root/sign-intermediate``: ``{"certificate", "issuing_ca", "ca_chain"}`` (PEM).
        ``permitted_dns_domains`` (comma-separated) becomes the certificate's nameConstraints;
        ``organization`` and ``ou`` its subject's O and OU (Vault orders them O, OU, CN)."""
        with _vault(f"signing an intermediate with Vault mount {self.settings.mount}"):
            response = self._client.secrets.pki.sign_intermediate(  # type: ignore[no-untyped-call]
                csr=csr_pem,
                common_name=common_name,
                extra_params={
                    "ttl": f"{ttl_s}s",
                    # backdated as a local root backdates (pki.CLOCK_SKEW_ALLOWANCE; Vault's
                    # default is 30 s), so that the re-sign time meshfed reads back from
                    # notBefore (root_rotation._issued_at) holds for Vault's too
                    "not_before_duration": f"{int(CLOCK_SKEW_ALLOWANCE.total_seconds())}s",
                    "format": "pem",
                    "uri_sans": uri_sans,
                    "max_path_length": 0,
                    **(
                        {"permitted_dns_domains": permitted_dns_domains}
                        if permitted_dns_domains
                        else {}
                    ),
                    **({"organization": organization} if organization else {}),
                    **({"ou": ou} if ou else {}),
                },
                mount_point=self.settings.mount,
            )
        data: dict[str, Any] = response["data"]
        return data
