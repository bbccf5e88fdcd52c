"""N ADS clients x M services against one ``meshfed controlplane serve`` process.

Each client is an in-process grpc.aio SotW stream that behaves like Envoy: wildcard CDS and
LDS, then EDS for the clusters and RDS for the routes it got, and ACKs every response, over
mutual TLS with an SVID (secrets are files, never xDS). Measured: time until all N hold the full snapshot (initial push), time until
all N saw one registry change (update push), and the control plane's RSS growth per connected
proxy. N=1 is the baseline the larger runs are compared with, in the same run.

    python bench/xds_scale.py [--clients 1,100,1000] [--services 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from bench._common import (
    client_channel_options,
    client_credentials,
    free_port,
    init_trust,
    post,
    rss_mib,
    start_controlplane,
    stop,
    token,
)
from federation.controlplane import resource


def extra_workload(tag: str) -> str:
    """One more endpoint for svc0: the registry change whose propagation is timed."""
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
        f"metadata: {{name: extra-{tag}, namespace: demo}}\n"
        "spec: {service: svc0, address: 127.0.3.1, tlsMode: disabled,"
        " locality: aws/us-east-1/us-east-1a, healthCheck: {type: none},"
        " ports: [{name: http, port: 8080}]}\n"
    )


def workloads(m: int) -> str:
    docs = []
    for i in range(m):
        docs.append(
            "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
            f"metadata: {{name: svc{i}-1, namespace: demo}}\n"
            f"spec: {{service: svc{i}, address: 127.0.2.{1 + i % 250}, tlsMode: disabled,"
            " locality: aws/us-east-1/us-east-1a, healthCheck: {type: none},"
            " ports: [{name: http, port: 8080}]}\n"
        )
    return "---\n".join(docs)


class Client:
    """One Envoy-like SotW ADS client."""

    def __init__(self, i: int) -> None:
        self.node = base_pb2.Node(id=f"bench-{i}")
        self.node.metadata.update(
            {
                "meshfed.io/role": "sidecar",
                "meshfed.io/namespace": "demo",
                "meshfed.io/service_account": "bench",
                "meshfed.io/identity_dir": "/run/meshfed/identity",
            }
        )
        self.queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
        self.versions: dict[str, str] = {}
        self.complete = asyncio.Event()
        self.changed = asyncio.Event()
        self.watch_eds: str | None = None

    async def requests(self):  # type: ignore[no-untyped-def]
        while True:
            yield await self.queue.get()

    async def run(self, channel: grpc.aio.Channel) -> None:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.StreamAggregatedResources(self.requests())
        await self.queue.put(
            discovery_pb2.DiscoveryRequest(node=self.node, type_url=resource.CLUSTER)
        )
        await self.queue.put(discovery_pb2.DiscoveryRequest(type_url=resource.LISTENER))
        names: dict[str, list[str]] = {}
        async for resp in call:
            t = resp.type_url
            first = t not in self.versions
            if (
                self.watch_eds is not None
                and t == resource.ENDPOINT
                and resp.version_info != self.watch_eds
            ):
                self.changed.set()
            self.versions[t] = resp.version_info
            await self.queue.put(
                discovery_pb2.DiscoveryRequest(
                    type_url=t,
                    version_info=resp.version_info,
                    response_nonce=resp.nonce,
                    resource_names=names.get(t, []),
                )
            )
            if t == resource.CLUSTER and first:
                names[resource.ENDPOINT] = [r.value and _name(r) for r in resp.resources]
                await self.queue.put(
                    discovery_pb2.DiscoveryRequest(
                        type_url=resource.ENDPOINT, resource_names=names[resource.ENDPOINT]
                    )
                )
            if t == resource.LISTENER and first:
                names[resource.ROUTE] = ["outbound"]
                await self.queue.put(
                    discovery_pb2.DiscoveryRequest(
                        type_url=resource.ROUTE, resource_names=["outbound"]
                    )
                )
            if len(self.versions) == 4:
                self.complete.set()


def _name(packed) -> str:  # type: ignore[no-untyped-def]
    from envoy.config.cluster.v3 import cluster_pb2

    c = cluster_pb2.Cluster()
    packed.Unpack(c)
    return str(c.name)


async def measure(
    n: int, m: int, xds: int, api: int, tok: str, pid: int, home: Path
) -> dict[str, float]:
    rss_before = rss_mib(pid)
    creds = client_credentials(home, "east", "demo", "bench")
    channels = [
        grpc.aio.secure_channel(f"127.0.0.1:{xds}", creds, client_channel_options("east"))
        for _ in range(max(1, n // 100))
    ]
    clients = [Client(i) for i in range(n)]
    started = time.perf_counter()
    tasks = [asyncio.create_task(c.run(channels[i % len(channels)])) for i, c in enumerate(clients)]
    await asyncio.wait_for(asyncio.gather(*(c.complete.wait() for c in clients)), 600)
    initial = time.perf_counter() - started
    await asyncio.sleep(1)
    rss_after = rss_mib(pid)
    for c in clients:
        c.watch_eds = c.versions[resource.ENDPOINT]
    started = time.perf_counter()
    await asyncio.to_thread(post, api, "/v1/apply", extra_workload(str(n)), tok)
    await asyncio.wait_for(asyncio.gather(*(c.changed.wait() for c in clients)), 600)
    update = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ch in channels:
        await ch.close()
    await asyncio.to_thread(post, api, "/v1/delete", extra_workload(str(n)), tok)
    return {
        "initial_s": initial,
        "update_s": update,
        "rss_per_proxy_kib": (rss_after - rss_before) * 1024 / n,
        "rss_mib": rss_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,100,1000")
    parser.add_argument("--services", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        init_trust(home, ["east"])
        xds, api = free_port(), free_port()
        cp = start_controlplane(home, "east", xds, api, health=False)
        try:
            tok = token(home, "east")
            post(api, "/v1/apply", workloads(args.services), tok)
            print(
                f"xDS scale: {args.services} services, SotW clients acting as Envoy sidecars (mTLS; CDS/EDS/LDS/RDS, ACKs)"
            )
            print(
                f"{'clients':>8}{'initial push s':>16}{'update push s':>15}{'CP RSS MiB':>12}{'RSS/proxy KiB':>15}"
            )
            for n in (int(x) for x in args.clients.split(",")):
                r = asyncio.run(measure(n, args.services, xds, api, tok, cp.pid, home))
                print(
                    f"{n:>8}{r['initial_s']:>16.2f}{r['update_s']:>15.2f}{r['rss_mib']:>12.1f}{r['rss_per_proxy_kib']:>15.1f}"
                )
        finally:
            stop(cp)


if __name__ == "__main__":
    main()
