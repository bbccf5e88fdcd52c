"""The RTT prober keeps the last measurement of a gateway that stops answering (issue #16:
during a partition the estimate would reorder priorities, and again after the heal), and
keeps the least of its recent probes, so a busy moment does not move the figure."""

from __future__ import annotations

import asyncio

from federation.controlplane.link import rtt
from federation.controlplane.registry import ServiceRegistry
from federation.model.documents import load_documents

IMPORT = """apiVersion: meshfed.io/v1alpha1
kind: ServiceImport
metadata: {name: echo, namespace: demo}
spec:
  ports: [{name: http, port: 8080}]
  serviceAccounts: [echo]
  clusters:
  - {cluster: west, gateway: '198.18.0.11:15443', network: west, locality: aws/eu-west-1/eu-west-1a, endpoints: 1}
"""


def probe(monkeypatch, answers: list[float | None]) -> list[tuple[float | None, float | None]]:
    """(reported, registry) RTT of cluster west after each probe answering ``answers``."""
    left = iter(answers)

    async def fake_connect(gateway: str, timeout_s: float = 2.0) -> float | None:
        assert gateway == "198.18.0.11:15443"
        return next(left)

    monkeypatch.setattr(rtt, "connect_time_ms", fake_connect)
    registry = ServiceRegistry()
    registry.apply(load_documents(IMPORT))
    prober = rtt.RttProber(registry)
    seen = []
    for _ in answers:
        asyncio.run(prober.probe_once())
        seen.append((prober.rtt_ms.get("west"), registry.state.rtt_ms.get("west")))
    return seen


def test_a_failed_probe_keeps_the_last_measurement(monkeypatch):
    assert probe(monkeypatch, [40.0, None, None]) == [(40.0, 40.0)] * 3


def test_a_busy_moment_does_not_move_the_rtt(monkeypatch):
    """Probes slowed by a loaded host (900 ms) leave the figure at the path's 40 ms."""
    assert probe(monkeypatch, [40.0, 900.0, 350.0, 41.0]) == [(40.0, 40.0)] * 4


def test_the_rtt_follows_a_longer_path_after_the_window(monkeypatch):
    """A path that really got longer (a new route: 40 -> 90 ms) is taken up once the last
    shorter probe left the window of :data:`rtt.RTT_WINDOW` probes."""
    seen = probe(monkeypatch, [40.0] + [90.0] * rtt.RTT_WINDOW)
    assert seen[rtt.RTT_WINDOW - 1] == (40.0, 40.0)
    assert seen[rtt.RTT_WINDOW] == (90.0, 90.0)


def test_the_kernels_handshake_rtt_is_read_from_tcp_info() -> None:
    """``tcpi_rtt`` of a loopback connection: the handshake's, far below a millisecond here
    (a struct offset off by one field would read a size or a counter instead)."""
    import socket

    from federation.controlplane.link.rtt import kernel_rtt_ms

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=2) as client:
            rtt = kernel_rtt_ms(client)
    assert rtt is not None and 0 < rtt < 5, rtt
