"""The join token: ``mfj_<secret>.<root pin>``. Pure.

``<secret>`` is 256 random bits (URL-safe base64); the controller stores only its SHA-256
and a control plane sends only the secret. ``<root pin>`` is the SHA-256 (hex) of the DER
of the federation's newest root certificate when the token was minted, as kubeadm's
``--discovery-token-ca-cert-hash``: a joining control plane refuses a trust bundle that does
not hold that root, so a token cannot make a cluster trust another (or a forged) controller.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from federation.errors import FederationError

PREFIX = "mfj_"
_PIN = re.compile(r"[0-9a-f]{64}")


class MalformedTokenError(FederationError, ValueError):
    """Not ``mfj_<secret>.<64 hex>``."""


def new_join_token(root_sha256: str) -> str:
    """A fresh token pinned to the root with SHA-256 (hex, lowercase) ``root_sha256``.

    Raises:
        ValueError: ``root_sha256`` is not 64 lowercase hex digits.
    """
    if not _PIN.fullmatch(root_sha256):
        raise ValueError(f"root pin {root_sha256!r} is not a SHA-256 in lowercase hex")
    return f"{PREFIX}{secrets.token_urlsafe(32)}.{root_sha256}"


def split_join_token(token: str) -> tuple[str, str]:
    """``(secret, root pin)`` of a token.

    Raises:
        MalformedTokenError: no ``mfj_`` prefix, or no root pin (a token minted before pins,
            or cut short when copied).
    """
    secret, sep, pin = token.strip().rpartition(".")
    if not sep or not secret.startswith(PREFIX) or not _PIN.fullmatch(pin):
        raise MalformedTokenError(
            "a join token is mfj_<secret>.<root sha256> (64 hex digits after the dot);"
            " mint a new one with 'meshfed cluster token NAME'"
        )
    return secret, pin


def join_token_secret(token: str) -> str:
    """The secret part of a token (the whole text when it has no pin)."""
    try:
        return split_join_token(token)[0]
    except MalformedTokenError:
        return token.strip()


def token_digest(secret: str) -> str:
    """SHA-256 hex of a token's secret: what the controller stores instead of it."""
    return hashlib.sha256(secret.encode()).hexdigest()
