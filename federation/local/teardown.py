"""Ending a local federation (``meshfed down``, Ctrl-C of ``meshfed up``) and picking the
demo's echo processes (``meshfed demo kill|revive``): what the CLI asks of the record."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from federation.errors import ConfigError
from federation.local.netns import namespaces_of
from federation.local.placement import release_network
from federation.local.processes import ProcessRecord, Record, stop_processes, unrecorded


@dataclass(frozen=True, slots=True)
class TearDown:
    """What :func:`tear_down` did: the names of the processes it stopped, the network
    namespaces that existed (pods' included), and what could not be removed (empty when all
    went)."""

    stopped: list[str]
    namespaces: list[str]
    left: list[str]


def tear_down(
    home: Path,
    record: Record,
    also: Sequence[ProcessRecord] = (),
    progress: Callable[[str], None] | None = None,
) -> TearDown:
    """Stop the processes of ``record`` and ``also`` (e.g. what ``demo revive`` recorded
    since), any process started for ``home`` that no record names, and remove the isolated
    network; the record file goes when nothing is left (``meshfed down`` can run again).
    ``progress`` hears what is still awaited every few seconds (:func:`stop_processes`)."""
    processes = list({p.pid: p for p in [*record.processes, *also]}.values())
    stopped = stop_processes([*processes, *unrecorded(home, processes)], progress=progress)
    network = record.info.get("network", {})
    made = namespaces_of(network["key"]) if network else []
    left = release_network(network, home)
    if not left:
        record.path.unlink(missing_ok=True)
    return TearDown(stopped, made, left)


def echo_processes(record: Record, target: str) -> list[ProcessRecord]:
    """The recorded processes of ``target`` (``CLUSTER/echo``): its replicas' apps and
    sidecars.

    Raises:
        ConfigError: not ``CLUSTER/echo``, or no such cluster (the message lists them).
    """
    cluster, _, service = target.partition("/")
    if service != "echo":
        raise ConfigError(f"{target!r}: give CLUSTER/echo (the demo's service)")
    found = [p for p in record.processes if p.cluster == cluster and p.role.startswith("echo-")]
    if not found:
        clusters = sorted({p.cluster for p in record.processes if p.cluster})
        raise ConfigError(f"{target!r}: no such cluster (clusters: {', '.join(clusters)})")
    return found
