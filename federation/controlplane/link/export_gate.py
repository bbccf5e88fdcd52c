"""Make before break across clusters: a newly exported service is reported to the controller
only once this cluster's east-west gateways can route it.

Other clusters reach an exported service through this cluster's gateways: one filter chain
per exported service port (:mod:`federation.controlplane.generate.gateway`), which a
gateway's Envoy serves only after it has warmed the service's cluster. Reported at once, a
new export raced its own gateway: callers elsewhere (their control planes 100-200 ms away)
sent their first active health check while the gateway had no filter chain for its SNI yet;
the connection was closed, the check failed and was retried 250 ms later
(``health_check.network_failure`` counted on issue 37's isolated bed: about one add in
five), and a caller without active health checks (a proxyless gRPC client) had its first
connection reset. What the wait costs: the gateway's build and ACK come before the report
instead of beside the remote path (the trace's report hop, p50 +13 to +30 ms on that bed;
docs/benchmarks.md, where no gain in the adds' latency could be shown either).

:class:`ExportGate` holds such a service back from the report until every gateway connected
to this control plane holds (every xDS type ACKed) a snapshot built from a registry version
at least the one the service first appeared in, or for at most :data:`HOLD_S`: a gateway that
is stuck or slow must not hide the service for ever (released that way, it is logged as a
warning naming the export: a gateway that does not ACK its configuration). The same holds
for an exported service that comes back from no serving endpoint (scaled to zero and up
again: it stays reported meanwhile,
:attr:`~federation.controlplane.registry.RegistryState.retained`, and its gateway keeps the
filter chain but has no endpoint to pass a connection to): the
report carries its last entry, without endpoints, until the gateways hold the endpoints'
version -- else callers elsewhere add the gateway as a host, check it at once, and the
check fails through a gateway that has nothing to route it to. Nothing else of the report
waits: more endpoints of a service that has some (the gateway routes to whichever endpoints
it knows), removals, exports and health go out at once.
A cluster without a gateway on this control plane (``ready`` answers None) holds nothing
back, and neither does the first report after a start (the controller may know its services
from before: a report without them would withdraw them everywhere). Istio and Linkerd
announce an export as soon as it exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from federation.sync.messages import ClusterReport, ServiceKey, ServiceReport

log = logging.getLogger(__name__)

#: Longest time (s) a new export waits for the gateways before it is reported anyway.
HOLD_S = 3.0

#: ``ready(version)``: True when every gateway of this control plane holds a snapshot of a
#: registry version >= ``version``, False when one does not yet, None without a gateway.
GatewaysReady = Callable[[int], bool | None]


class ExportGate:
    """The report's services, less the new exports the gateways cannot route yet, and with
    the last entry of those coming back from no endpoint that the gateways cannot route yet.

    ``apply`` is called with every report built (it remembers which services went out),
    ``deadline`` says when the oldest one held back is released regardless.
    """

    def __init__(self, ready: GatewaysReady, hold_s: float = HOLD_S) -> None:
        self._ready = ready
        self._hold_s = hold_s
        # the entry of each exported service the last report carried; None before the first
        # report, which holds nothing back: after a restart the controller knows them
        # already, and a report without them would withdraw them everywhere
        self._sent: dict[ServiceKey, ServiceReport] | None = None
        self._new: dict[ServiceKey, tuple[int, float]] = {}  # held: (version, monotonic s)

    def apply(self, report: ClusterReport, version: int, now: float) -> ClusterReport:
        """``report`` (built from registry ``version`` at monotonic ``now`` s) without the
        exported services that are new since the last report, and with the last entry of
        those that come back from no serving endpoint, while the gateways do not hold them
        yet (see the module docstring)."""
        exported = set(report.export_keys())
        offered = {s.key: s for s in report.services if s.key in exported}
        sent = dict(offered) if self._sent is None else self._sent
        waiting = set(offered) - set(sent)  # new exports
        waiting |= {  # back from no endpoint
            key
            for key, service in offered.items()
            if key in sent and service.healthy_endpoints > 0 and sent[key].healthy_endpoints == 0
        }
        self._new = {k: v for k, v in self._new.items() if k in waiting}
        held: set[ServiceKey] = set()
        for key in sorted(waiting):
            since_version, since = self._new.get(key, (version, now))
            ready = self._ready(since_version)
            if ready is False and now - since < self._hold_s:
                self._new[key] = (since_version, since)
                held.add(key)
            elif self._new.pop(key, None) is not None:  # held back before: say how long
                _log_release(key, since_version, now - since, ready)
        services = [
            sent[s.key] if s.key in held and s.key in sent else s
            for s in report.services
            if s.key not in held or s.key in sent
        ]
        self._sent = {s.key: s for s in services if s.key in exported}
        if not held:
            return report
        return report.model_copy(update={"services": services})

    def deadline(self) -> float | None:
        """Monotonic s when the oldest held-back service is reported anyway; None when none
        is held back."""
        if not self._new:
            return None
        return min(since for _, since in self._new.values()) + self._hold_s


def _log_release(key: ServiceKey, version: int, waited_s: float, ready: bool | None) -> None:
    if ready is False:
        log.warning(
            "export %s/%s reported after %.1f s without every gateway holding it (registry"
            " v%d): a gateway does not ACK its configuration",
            *key, waited_s, version,
        )  # fmt: skip
    else:
        log.debug("export %s/%s reported %.3f s later, its gateways ready", *key, waited_s)
