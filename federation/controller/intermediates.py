"""Joined clusters' intermediate CAs, re-signed over the sync channel.

A joined control plane keeps its intermediate key and reports a CSR for that same key with
every report. The controller has the active root re-sign the intermediate when it is not
signed by the active root (after ``meshfed trust rotate-root``) or half its lifetime has
passed (intermediates are short-lived: 7 days by default), and sends the new certificate in
the cluster's next update. The key never changes, so the SVIDs and CRLs the cluster issued
stay valid; its workloads renew their SVIDs to carry the new chain within seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from federation.controller.store import ClusterRecord, ControllerStore, StoreError
from federation.errors import NotFoundError
from trust.authority import RootAuthority
from trust.bundle import TrustBundle
from trust.errors import TrustError
from trust.root_rotation import resign_intermediate, resign_needed

log = logging.getLogger(__name__)

#: Lifetime of the intermediates the controller signs (at join and on renewal).
DEFAULT_INTERMEDIATE_TTL = timedelta(days=7)


class IntermediateSigner:
    """See the module docstring.

    Args:
        store: the controller's state (the intermediate recorded per cluster).
        root: returns the root authority now (it changes with a root rotation).
        ttl: lifetime of signed intermediates.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        store: ControllerStore,
        root: Callable[[], RootAuthority],
        *,
        ttl: timedelta = DEFAULT_INTERMEDIATE_TTL,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.root = root
        self.ttl = ttl
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def due(
        self, cluster: str, record: ClusterRecord | None = None, bundle: TrustBundle | None = None
    ) -> str | None:
        """Why ``cluster``'s intermediate must be re-signed now, or None (``record``: the
        cluster as just read, saving a query; ``bundle``: the root authority's trust bundle,
        read once for a pass over every member -- reading it loads the root)."""
        if record is None:
            try:
                record = self.store.cluster(cluster)
            except NotFoundError:
                return None
        if not record.intermediate_pem:
            return None
        try:
            return resign_needed(
                record.intermediate_pem.encode(),
                bundle or self.root().trust_bundle(),
                self._now(),
            )
        except TrustError as err:
            log.error("cannot check the intermediate of %s: %s", cluster, err)
            return None

    def resign(self, cluster: str, csr_pem: str, fence: tuple[str, int] | None = None) -> bool:
        """Re-sign ``cluster``'s intermediate from its reported CSR if :meth:`due`; True when
        a new certificate was recorded (with ``fence``, only by the leader of that term:
        :meth:`federation.controller.store.SqlStore.set_intermediate`). Refusals are
        logged, never raised (the cluster keeps its current intermediate)."""
        reason = self.due(cluster)
        if reason is None or not csr_pem:
            return False
        record = self.store.cluster(cluster)
        assert record.intermediate_pem is not None
        try:
            chain = resign_intermediate(
                self.root(), csr_pem.encode(), record.intermediate_pem.encode(), cluster, self.ttl
            )
        except TrustError as err:
            log.error("not re-signing the intermediate of %s: %s", cluster, err)
            return False
        try:
            self.store.set_intermediate(cluster, chain.decode(), fence)
        except StoreError as err:  # NotLeaderError: deposed meanwhile; the new leader re-signs
            log.warning("re-signed intermediate of %s not recorded: %s", cluster, err)
            return False
        log.info("root re-signed the intermediate CA of %s (%s)", cluster, reason)
        return True
