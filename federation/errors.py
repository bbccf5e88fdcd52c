"""Exceptions raised by :mod:`federation`, and the rules of meshfed's exception tree.

Every exception meshfed raises on purpose derives from :class:`trust.errors.MeshfedError`
(defined in the bottom layer so that every package can use it); ``retryable`` says whether
trying again can help, and the CLI prints one ``Error: ...`` line and exits with 1
(retryable) or 2 (change the input first). Below it: :class:`FederationError` (this module
and the federation's packages), ``TrustError`` (``trust/errors.py``), ``ProviderError``
(``providers/errors.py``) and ``DataPlaneError`` (``federation/agent/errors.py``). The whole
tree, generated from the classes themselves, is drawn in ``docs/architecture.md`` ("Errors";
``make docs``).

Library errors (``grpc``, ``aiohttp``, SDKs, ``OSError``) are translated at the edge into
one of these and chained as ``__cause__``.
"""

from __future__ import annotations

from trust.errors import MeshfedError


class FederationError(MeshfedError):
    """Base of every error raised by :mod:`federation`."""


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


class ConfigError(FederationError):
    """A setting of a program (controller, control plane, proxy agent, install) is invalid:
    the message names its flag (e.g. ``--locality``) and the reason; nothing was started,
    registered or written. Not retryable (exit code 2)."""


class ListenError(FederationError):
    """A server cannot listen on the address it was given: the message names the flag
    (e.g. ``--xds-listen``), the address and the reason (address in use, not an address of
    this host, permission denied); nothing was started. Retryable (exit code 1): the
    address may be free later."""

    retryable = True


class ProxyBuildError(FederationError):
    """A proxy's configuration could not be generated (its stream is refused; the cause is
    chained and logged; other proxies are unaffected)."""


class ApiError(FederationError):
    """A meshfed HTTP API answered with an error status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class UnreachableError(ApiError):
    """The API could not be reached; retrying later may help."""

    retryable = True


class OptimizerError(FederationError):
    """The linear program's solver returned no optimum (not expected: the program is always
    feasible and bounded); the controller keeps the previous plan."""

    retryable = True


class BundleFetchError(FederationError):
    """A foreign trust domain's SPIFFE bundle could not be fetched from its bundle endpoint
    (unreachable, refused authentication, another answer than a bundle); the bundle held
    stays in force and the next refresh tries again."""

    retryable = True


class BillingExportError(FederationError):
    """A cloud billing export given to ``meshfed cost reconcile`` cannot be read: not a CSV,
    a required column missing, or a number that is not one (the message names the file, line
    and column)."""
