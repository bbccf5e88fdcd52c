"""Workload tokens: the credential of a workload's first certificate request.

A token is ``mfw_<secret>`` (256 random bits, URL-safe base64), minted by an operator with
``meshfed workload token`` for one (namespace, service account) of one cluster -- the VM
onboarding model of Istio (``istioctl x workload entry configure`` + a bootstrap token). The
control plane stores only the token's SHA-256, its identity, its expiry and whether it is
single-use; a redeemed single-use token is marked used in the same write that checks it.

Decisions (:func:`refusal`) are pure; :class:`TokenStore` is the file that holds the records
(``<state_dir>/workload-tokens.json``, mode 0600).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from federation.errors import FederationError
from trust.files import KEY_FILE_MODE, write_atomic

PREFIX = "mfw_"
#: Default lifetime of a minted token.
DEFAULT_TTL = timedelta(hours=1)
#: Longest lifetime ``meshfed workload token --ttl`` accepts.
MAX_TTL = timedelta(days=7)


class TokenRefusedError(FederationError):
    """A certificate request's token is unknown, expired, used, or for another identity.

    The message is safe to return to the caller (it never contains the token)."""


class WorkloadToken(BaseModel):
    """What the control plane keeps of a minted token.

    Attributes:
        digest: SHA-256 (hex) of the whole token text.
        namespace / service_account: the identity the token may obtain.
        expires_at: UTC; the token is refused from then on.
        single_use: refused after its first successful use.
        used_at: when a single-use token was redeemed (None before).
    """

    model_config = ConfigDict(extra="forbid")

    digest: str
    namespace: str
    service_account: str
    expires_at: datetime
    single_use: bool = True
    used_at: datetime | None = None


def token_digest(token: str) -> str:
    """SHA-256 (hex) of ``token`` as stored."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_token() -> str:
    """A fresh ``mfw_<secret>``."""
    return PREFIX + secrets.token_urlsafe(32)


def refusal(
    record: WorkloadToken | None, namespace: str, service_account: str, now: datetime
) -> str | None:
    """Why a token may not obtain ``namespace``/``service_account`` now, or None.

    The reasons never include the token itself."""
    if record is None:
        return "unknown workload token (mint one with 'meshfed workload token')"
    if now >= record.expires_at:
        return f"workload token expired at {record.expires_at.isoformat()}"
    if record.single_use and record.used_at is not None:
        return f"single-use workload token already used at {record.used_at.isoformat()}"
    if (record.namespace, record.service_account) != (namespace, service_account):
        return (
            f"workload token is for ns/{record.namespace}/sa/{record.service_account},"
            f" not ns/{namespace}/sa/{service_account}"
        )
    return None


class TokenStore:
    """The workload tokens of one control plane, in ``path`` (JSON, 0600, digests only).

    Thread-safe: mint and redeem hold one lock around read-check-write, so a single-use
    token is redeemed at most once even by concurrent requests.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, WorkloadToken]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text())
            records = [WorkloadToken.model_validate(r) for r in raw.get("tokens", [])]
        except (ValueError, ValidationError) as err:
            raise FederationError(f"{self.path}: not a workload token file ({err})") from err
        return {r.digest: r for r in records}

    def _save(self, records: dict[str, WorkloadToken], now: datetime) -> None:
        # expired tokens are dropped: they can never be redeemed again
        kept = [r.model_dump(mode="json") for r in records.values() if r.expires_at > now]
        write_atomic(self.path, json.dumps({"tokens": kept}, indent=1).encode(), KEY_FILE_MODE)

    def mint(
        self,
        namespace: str,
        service_account: str,
        *,
        ttl: timedelta = DEFAULT_TTL,
        single_use: bool = True,
        now: datetime | None = None,
    ) -> tuple[str, WorkloadToken]:
        """A new token and its record (stored before returning).

        Raises:
            ValueError: ``ttl`` is not positive or longer than :data:`MAX_TTL`.
            OSError: the file cannot be written.
        """
        if not timedelta(0) < ttl <= MAX_TTL:
            raise ValueError(f"token ttl must be more than 0 and at most {MAX_TTL}, not {ttl}")
        now = now or datetime.now(UTC)
        token = new_token()
        record = WorkloadToken(
            digest=token_digest(token),
            namespace=namespace,
            service_account=service_account,
            expires_at=now + ttl,
            single_use=single_use,
        )
        with self._lock:
            records = self._load()
            records[record.digest] = record
            self._save(records, now)
        return token, record

    def redeem(
        self, token: str, namespace: str, service_account: str, *, now: datetime | None = None
    ) -> WorkloadToken:
        """Check ``token`` for this identity and, if single-use, mark it used.

        Raises:
            TokenRefusedError: see :func:`refusal`.
            OSError: the file cannot be written.
        """
        now = now or datetime.now(UTC)
        with self._lock:
            records = self._load()
            record = records.get(token_digest(token))
            reason = refusal(record, namespace, service_account, now)
            if reason is not None or record is None:
                raise TokenRefusedError(reason or "unknown workload token")
            if record.single_use:
                record = record.model_copy(update={"used_at": now})
                records[record.digest] = record
                self._save(records, now)
        return record

    def count(self) -> int:
        """How many unexpired tokens are stored."""
        now = datetime.now(UTC)
        with self._lock:
            return sum(1 for r in self._load().values() if r.expires_at > now)
