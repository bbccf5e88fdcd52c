"""The agent's copy of the cluster-set name table: ``meshfed.names.v1.NameService/Watch`` on
its control plane's xDS port (mutual TLS with the proxy's SVID, as its traffic reports), kept
for the pod's DNS (:mod:`federation.agent.dns`). A lost stream is opened again after 0.5 s,
doubling up to 5 s; the table held stays in force meanwhile (a resolver answers from the
last table it had, as Envoy keeps its last configuration).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from federation.sync.proto import names_pb2, names_pb2_grpc

log = logging.getLogger(__name__)

RETRY_S = (0.5, 5.0)


class NameWatch:
    """The latest name table (``table``, ``version``; empty and 0 until the first arrives).

    Args:
        channel: returns a channel to the control plane's xDS port (called for each attempt:
            it follows SVID renewals).
        node_id: the proxy's xDS node id (for the control plane's logs).
    """

    def __init__(self, channel: Callable[[], grpc.aio.Channel], node_id: str) -> None:
        self.channel = channel
        self.node_id = node_id
        self.table: dict[str, tuple[str, ...]] = {}
        self.version = 0
        self.received = asyncio.Event()

    async def run(self) -> None:
        """Watch until cancelled."""
        delay = RETRY_S[0]
        while True:
            try:
                stub = names_pb2_grpc.NameServiceStub(self.channel())  # type: ignore[no-untyped-call]
                async for message in stub.Watch(names_pb2.WatchNames(node_id=self.node_id)):
                    self.table = {e.name.lower(): tuple(e.ips) for e in message.entries}
                    self.version = message.version
                    self.received.set()
                    delay = RETRY_S[0]
            except grpc.aio.AioRpcError as err:
                log.warning("name table watch: %s; again in %.1f s", err.code().name, delay)
            await asyncio.sleep(delay)
            delay = min(RETRY_S[1], delay * 2)
