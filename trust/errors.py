"""The root of meshfed's exception tree, and the exceptions raised by :mod:`trust`.

:class:`MeshfedError` is the base of every exception any meshfed package raises on purpose;
it lives here, in the bottom layer, so that every package can derive from it. The whole tree
is drawn in :mod:`federation.errors`.

Every error of :mod:`trust` names the offending input and the rule it broke, never includes
private key material, and says through ``retryable`` whether trying again can help::

    MeshfedError
    └── TrustError                  base of trust; .retryable is False unless stated
        ├── InvalidSpiffeIdError        a SPIFFE ID breaks the SPIFFE ID spec
        │   └── InvalidTrustDomainError a trust domain name breaks it
        ├── InvalidCertificateError     a certificate, CSR or bundle is malformed
        ├── SigningRefusedError         a CSR was well-formed but the CA will not sign it
        ├── VerificationError           a chain does not verify against a trust bundle
        ├── TrustBackendError           Vault or AWS Private CA failed (sealed, denied, ...)
        └── TrustStoreError             the trust directory is missing, incomplete, clobbered
            └── KeyMaterialExistsError  refusing to overwrite existing keys without ``force``

Errors of third-party libraries (``cryptography``, ``OSError``) are chained as ``__cause__``.
"""

from __future__ import annotations


class MeshfedError(Exception):
    """Base of every exception meshfed raises on purpose.

    Attributes:
        retryable: True when the same call may succeed later (a backend or peer was
            unreachable, rate limited); False when the input must change first. The CLI exits
            with 1 for retryable errors and 2 for the others.
    """

    retryable: bool = False


class TrustError(MeshfedError):
    """Base of every error raised by :mod:`trust`.

    Attributes:
        retryable: True when the same call may succeed later (e.g. a backend was unreachable);
            False when the input must change first.
    """

    retryable: bool = False


class InvalidSpiffeIdError(TrustError, ValueError):
    """A SPIFFE ID or trust domain breaks the SPIFFE ID specification (SPIFFE-ID.md, section 2)."""

    what = "SPIFFE ID"

    def __init__(self, value: str, rule: str) -> None:
        self.value = value
        self.rule = rule
        super().__init__(f"invalid {self.what} {value!r}: {rule}")


class InvalidTrustDomainError(InvalidSpiffeIdError):
    """A trust domain name breaks the SPIFFE ID specification (SPIFFE-ID.md, section 2.1)."""

    what = "trust domain"


class InvalidCertificateError(TrustError, ValueError):
    """A certificate, CSR, key or bundle is malformed or breaks the X.509-SVID specification."""


class SigningRefusedError(TrustError):
    """A CA refused to sign a request (bad CSR signature, foreign trust domain, expired CA)."""


class VerificationError(TrustError):
    """A certificate chain does not verify against a trust bundle."""


class TrustStoreError(TrustError):
    """The on-disk trust directory is missing, incomplete, or cannot be written."""


class KeyMaterialExistsError(TrustStoreError):
    """Existing key material would be overwritten; ``force=True`` (``--force``) replaces it."""


class TrustBackendError(TrustError):
    """A remote root of trust (Vault PKI, AWS Private CA) failed: sealed or unreachable and
    rate limited are retryable; permission denied is not."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
