"""Errors of :mod:`providers`: every SDK exception is translated into one of these at the edge
(``providers/aws.py``, ``providers/gcp.py``) and never leaks further.

::

    MeshfedError (trust/errors.py)
    └── ProviderError              base; .retryable, .retry_after_s (seconds or None)
        ├── ClusterNotFoundError   the named cluster (or load balancer) does not exist
        ├── AccessDeniedError      no credentials, or they may not do this
        ├── ThrottledError         rate limited (retryable; retry_after_s says when)
        ├── ProviderUnreachableError  the cloud API could not be reached (retryable)
        ├── ProviderConfigError    bad provider input (unknown cloud, missing region/project)
        └── PricingError           a price table file or PriceTable rate is invalid
"""

from __future__ import annotations

from trust.errors import MeshfedError


class ProviderError(MeshfedError):
    """Base of every provider error. ``provider`` is ``aws``, ``gcp`` or ``local``."""

    retryable: bool = False

    def __init__(self, message: str, *, provider: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.retry_after_s = retry_after_s


class ClusterNotFoundError(ProviderError):
    """The named cluster or resource does not exist."""


class AccessDeniedError(ProviderError):
    """Missing or insufficient credentials."""


class ThrottledError(ProviderError):
    """The API rate-limited the call; retry after ``retry_after_s``."""

    retryable = True


class ProviderUnreachableError(ProviderError):
    """The API endpoint could not be reached."""

    retryable = True


class ProviderConfigError(ProviderError):
    """The provider was asked for wrongly: an unknown cloud, a missing region or project, a
    malformed cluster reference."""


class PricingError(ProviderError, ValueError):
    """A price table file or a PriceTable document's rate is invalid (names the field)."""

    def __init__(self, message: str, *, provider: str = "pricing") -> None:
        super().__init__(message, provider=provider)
