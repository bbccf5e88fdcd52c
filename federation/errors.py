"""Exceptions raised by :mod:`federation`.

::

    FederationError                 base; .retryable says whether trying again can help
    ├── InvalidDocumentError        a resource document is invalid (names index, field, reason)
    ├── NotFoundError               a named resource does not exist
    ├── InconsistentSnapshotError   an xDS snapshot references a missing resource
    └── ApiError                    a meshfed HTTP API answered with an error
        └── UnreachableError        the API could not be reached (retryable)

Errors from :mod:`trust` pass through unchanged; library errors are chained as causes.
"""

from __future__ import annotations


class FederationError(Exception):
    """Base of every error raised by :mod:`federation`."""

    retryable: bool = False


class InvalidDocumentError(FederationError, ValueError):
    """A resource document is invalid; nothing was applied.

    Attributes:
        problems: every problem found, each naming document, field path and reason.
    """

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class NotFoundError(FederationError, KeyError):
    """A named resource does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class ConflictError(FederationError):
    """The request conflicts with what exists (e.g. a cluster name already taken)."""


class UnauthenticatedError(FederationError):
    """A credential (join token, API token) is missing, invalid, used or expired."""


class InconsistentSnapshotError(FederationError):
    """An xDS snapshot references a resource it does not contain (never published)."""


class ApiError(FederationError):
    """A meshfed HTTP API answered with an error status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class UnreachableError(ApiError):
    """The API could not be reached; retrying later may help."""

    retryable = True
