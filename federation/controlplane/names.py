"""Cluster-set names: the table of ``<svc>.<ns>.svc.clusterset.local`` -> ClusterSetIPs that
captured pods resolve, and ``meshfed.names.v1.NameService/Watch``, which streams it.

:func:`name_table` is pure: every service of the registry whose import carries ClusterSetIPs
(MCS ``ServiceImport spec.ips``; an exporter has the import of its own service too), and
every ServiceEntry host with the address allocated to it. The
servicer runs on the xDS port (mutual TLS; the server's interceptor admits this cluster's
SVIDs only, as for ADS): a watch gets the whole table at once and again after each registry
change that changed it -- never a stale table after a newer one. Istio's agent gets the same
over xDS (``NameTable``, "NDS"); the table here holds only names and addresses, nothing
secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc

from federation.controlplane.registry import RegistryState, ServiceRegistry
from federation.model.service_entry import entry_addresses
from federation.model.workload import global_name
from federation.sync.proto import names_pb2, names_pb2_grpc

log = logging.getLogger(__name__)

NameTable = Mapping[str, tuple[str, ...]]


def name_table(state: RegistryState) -> dict[str, tuple[str, ...]]:
    """``{<svc>.<ns>.svc.clusterset.local: (ClusterSetIP, ...)}`` of every imported service
    with addresses, sorted by name; then every ServiceEntry host with its allocated address
    (:func:`federation.model.service_entry.entry_addresses`)."""
    table = {
        global_name(name, ns): tuple(imp.spec.ips)
        for (ns, name), imp in sorted(state.imports.items())
        if imp.spec.ips
    }
    for host, ip in entry_addresses(state.service_entries.values()).items():
        table.setdefault(host, (ip,))
    return table


class NameServicer(names_pb2_grpc.NameServiceServicer):
    """Streams :func:`name_table` of ``registry`` (see the module docstring)."""

    def __init__(self, registry: ServiceRegistry) -> None:
        self.table = name_table(registry.state)
        self._parts = (registry.state.imports, registry.state.service_entries)
        self.version = 1
        self._changed = asyncio.Event()  # set, and replaced, at each change
        registry.subscribe(self._on_state)

    def _on_state(self, state: RegistryState) -> None:
        parts = (state.imports, state.service_entries)  # what name_table reads
        if all(a is b for a, b in zip(parts, self._parts, strict=True)):
            return  # health, RTTs, workloads, policies: nothing of the table
        self._parts = parts
        table = name_table(state)
        if table == self.table:
            return
        self.table, self.version = table, self.version + 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def message(self) -> names_pb2.NameTable:
        """The current table as sent."""
        return names_pb2.NameTable(
            version=self.version,
            entries=[names_pb2.NameEntry(name=n, ips=ips) for n, ips in self.table.items()],
        )

    async def Watch(  # noqa: N802 - the RPC's name
        self, request: names_pb2.WatchNames, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[names_pb2.NameTable]:
        """The table now, then after every change, until the client goes."""
        log.debug("name table watch from %s", request.node_id[:256])
        while True:
            changed = self._changed
            yield self.message()
            await changed.wait()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        names_pb2_grpc.add_NameServiceServicer_to_server(self, server)  # type: ignore[no-untyped-call]
