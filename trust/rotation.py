"""Keeping an X.509-SVID fresh: renew at half life (with jitter) and notify subscribers.

Used by the cluster control plane (per proxy, served over SDS) and by the proxy agent (files
for proxyless gRPC). Root rotation is in :mod:`trust.root_rotation`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime

from trust import pki
from trust.errors import TrustError
from trust.svid import X509Svid

log = logging.getLogger(__name__)

Subscriber = Callable[[X509Svid], None]
Issuer = Callable[[], Awaitable[X509Svid]]
Sleep = Callable[[float], Awaitable[None]]


class SvidRotator:
    """Issues an SVID, then renews it at half its lifetime minus jitter, forever.

    Args:
        issue: async callable returning a fresh SVID (e.g. wraps a ``CertificateAuthority``).
        jitter: fraction of the lifetime subtracted at random from the half-life (0.1 = up to
            10%), see :func:`trust.pki.renewal_time`.
        retry_delay_s: seconds to wait after a failed issuance before trying again; the
            current SVID is kept and still served meanwhile.
        now, sleep, rng: injected clock, sleep and random source (tests use fakes).

    Subscribers are called synchronously, in subscription order, with each new SVID; an
    exception in one is logged and does not stop the others.
    """

    def __init__(
        self,
        issue: Issuer,
        *,
        jitter: float = pki.DEFAULT_RENEWAL_JITTER,
        retry_delay_s: float = 5.0,
        now: Callable[[], datetime] = pki.utcnow,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._issue = issue
        self._jitter = jitter
        self._retry_delay_s = retry_delay_s
        self._now = now
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._subscribers: list[Subscriber] = []
        self._current: X509Svid | None = None
        self.renewals = 0

    @property
    def current(self) -> X509Svid | None:
        """The SVID in force, or None before the first issuance succeeded."""
        return self._current

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every new SVID (and now, if one exists). Returns its remover."""
        self._subscribers.append(callback)
        if self._current is not None:
            callback(self._current)
        return lambda: self._subscribers.remove(callback)

    async def rotate_once(self) -> X509Svid:
        """Issue a new SVID now, make it current, notify subscribers.

        Raises:
            TrustError: issuance failed (the previous SVID stays current).
        """
        svid = await self._issue()
        self._current = svid
        self.renewals += 1
        log.info("issued SVID for %s, valid until %s", svid.spiffe_id, svid.not_after.isoformat())
        for callback in list(self._subscribers):
            try:
                callback(svid)
            except Exception:
                log.exception("SVID subscriber %r failed", callback)
        return svid

    def seconds_until_renewal(self) -> float:
        """Seconds from now until the current SVID should be renewed (0 if none or overdue)."""
        if self._current is None:
            return 0.0
        at = self._current.renew_at(jitter=self._jitter, rng=self._rng)
        return max(0.0, (at - self._now()).total_seconds())

    async def run(self, max_renewals: int | None = None) -> None:
        """Renew until cancelled (or ``max_renewals`` issuances, for tests)."""
        while max_renewals is None or self.renewals < max_renewals:
            await self._sleep(self.seconds_until_renewal())
            try:
                await self.rotate_once()
            except TrustError as err:
                log.warning("SVID renewal failed (%s); retrying in %.1fs", err, self._retry_delay_s)
                await self._sleep(self._retry_delay_s)
