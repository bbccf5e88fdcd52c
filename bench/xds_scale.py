"""N ADS streams x S services (3 clusters, E endpoints each) against one control plane,
this checkout side by side with an earlier revision in the same run.

The control plane (``meshfed controlplane serve``, health checks off) holds S services, each
with E local endpoints (WorkloadEntries) and imported from two more clusters, ``west`` and
``gcp``, through their gateways (ServiceImports): a sidecar gets 4 clusters and 4 assignments
per service (the service's, and one subset per serving cluster). N in-process clients, all
of one proxy class, behave like Envoy: wildcard CDS and LDS, then EDS of every cluster and RDS
``outbound``, and they ACK everything, over mutual TLS with an SVID. They read responses with
a light message type that skips the resources' contents (the clients share the 2 cores with
the server; parsing 4,000 clusters per client would measure the clients).

Measured, per code and size:

- ``initial s``: from opening the first stream until all N hold CDS, EDS, LDS and RDS (one
  stream opens first and is served alone, the others once it holds everything; its push
  builds the class's snapshot);
- ``CP cpu``: CPU seconds the control plane used meanwhile (user + system; above the wall
  time when gRPC's threads work in parallel, well below it when the clients are the limit);
- ``class MiB``: the control plane's RSS growth over the first stream's push: the class's
  snapshot, shared by every stream of the class;
- ``update p50/p99 ms``: one new endpoint of one service, posted to the API, until each
  stream received the EDS response carrying it; ``--updates`` changes, N samples each. With
  ``--change service``: one new service (one endpoint), until each stream holds its route
  (RDS) and, having subscribed to the new cluster's EDS as Envoy does, its endpoints;
- ``KiB/proxy``: the control plane's RSS growth from the first stream's push to the end of
  the initial push, divided by the N - 1 other streams (it holds the push's buffers, some
  freed later);
- ``KiB idle``: the same after the updates, every stream idle: what holding a proxy costs;
- ``EDS bytes``: the size of the EDS response one update sent to one stream; with
  ``--change service``, every byte one stream received for the change.

Each kind gets a control plane of its own. The baseline is the code of ``--baseline-rev``
(default ``ff34650``, before issue #37), run from a ``git worktree`` with the same Python,
clients and machine. A phase that does not
finish within ``--timeout`` s is reported as such.

With ``--floor``, each of this checkout's rows is followed by one of ``bench/xds_floor.py``:
the same clients' initial push from a server that only sends the bytes this control plane
sent its first stream (no registry, snapshot or state machine: gRPC, HTTP/2 and TLS alone),
its CPU and RSS; "EDS bytes" is then the bytes of one stream's whole push. The gap between
the two rows is what the control plane itself costs.

    python bench/xds_scale.py [--services 100,300,1000] [--clients 1000] [--kind sotw] [--floor]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, descriptor_pb2, message_factory

from bench import xds_floor
from bench._common import (
    client_channel_options,
    client_credentials,
    cpu_s,
    free_port,
    init_trust,
    percentile,
    post,
    rss_mib,
    start_controlplane,
    stop,
    token,
    worktree,
)
from federation.controlplane import resource

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"


def _light_type() -> type:
    """Response types that read what a client acts on and keep resources as raw bytes:
    ``version_info``/``system_version_info`` (1), ``resources`` (2), ``type_url`` (4),
    ``nonce`` (5) -- the field numbers of ``DiscoveryResponse`` and
    ``DeltaDiscoveryResponse``."""
    proto = descriptor_pb2.FileDescriptorProto(name="bench_light.proto", package="benchlight")
    label, string, raw = (
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    )
    message = proto.message_type.add(name="Response")
    message.field.add(name="version_info", number=1, type=string, label=label)
    message.field.add(
        name="resources",
        number=2,
        type=raw,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    message.field.add(name="type_url", number=4, type=string, label=label)
    message.field.add(name="nonce", number=5, type=string, label=label)
    return message_factory.GetMessages([proto])["benchlight.Response"]  # type: ignore[no-any-return]


LIGHT = _light_type()


def documents(services: int, endpoints: int) -> list[str]:
    """WorkloadEntries and ServiceImports of ``services`` services."""
    docs = []
    for s in range(services):
        for e in range(endpoints):
            docs.append(
                "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
                f"metadata: {{name: svc{s}-{e}, namespace: demo}}\n"
                f"spec: {{service: svc{s}, address: 10.{s // 250}.{s % 250}.{e + 1},"
                " tlsMode: disabled, locality: aws/us-east-1/us-east-1a,"
                " healthCheck: {type: none}, ports: [{name: http, port: 8080}]}\n"
            )
        docs.append(
            "apiVersion: meshfed.io/v1alpha1\nkind: ServiceImport\n"
            f"metadata: {{name: svc{s}, namespace: demo}}\n"
            "spec:\n  ports: [{name: http, port: 8080}]\n"
            f"  serviceAccounts: [svc{s}]\n  clusters:\n"
            f"  - {{cluster: west, gateway: '10.200.0.1:15443', network: west,"
            f" locality: aws/eu-west-1/eu-west-1a, endpoints: {endpoints}}}\n"
            f"  - {{cluster: gcp, gateway: '10.201.0.1:15443', network: gcp,"
            f" locality: gcp/europe-west1/europe-west1-b, endpoints: {endpoints}}}\n"
        )
    return docs


def new_service(tag: str, service: int) -> str:
    """A service of its own with one endpoint: the change ``--change service`` times."""
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
        f"metadata: {{name: new-{tag}, namespace: demo}}\n"
        f"spec: {{service: new-{tag}, address: 10.251.0.{service % 250 + 1},"
        " tlsMode: disabled, locality: aws/us-east-1/us-east-1a,"
        " healthCheck: {type: none}, ports: [{name: http, port: 8080}]}\n"
    )


def extra_workload(tag: str, service: int) -> str:
    """One more endpoint of ``svc<service>``: the change whose propagation is timed."""
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
        f"metadata: {{name: extra-{tag}, namespace: demo}}\n"
        f"spec: {{service: svc{service}, address: 10.250.0.{service % 250 + 1},"
        " tlsMode: disabled, locality: aws/us-east-1/us-east-1a,"
        " healthCheck: {type: none}, ports: [{name: http, port: 8080}]}\n"
    )


#: --profile-updates: where py-spy writes the control plane's stacks during the updates
PROFILE_DIR: Path | None = None


#: --profile-initial: where py-spy writes the control plane's stacks during the initial push
PROFILE_INITIAL_DIR: Path | None = None


def _profile(pid: int, label: str, where: Path | None = None) -> subprocess.Popen[bytes] | None:
    """py-spy recording the control plane (``pid``) into ``<where>/<label>.txt`` (default
    ``PROFILE_DIR``; collapsed stacks, idle frames left out), or None without a directory."""
    where = where or PROFILE_DIR
    if where is None:
        return None
    where.mkdir(parents=True, exist_ok=True)
    out = where / f"{label}.txt"
    spy = Path(sys.executable).parent / "py-spy"
    argv = [str(spy), "record", "-p", str(pid), "-r", "100", "--format", "raw", "-o", str(out)]
    return subprocess.Popen([*argv, "--nonblocking"], stdout=subprocess.DEVNULL)


_NAMES: dict[tuple[str, str, int], list[str]] = {}


def _read_names(resp, name_of) -> list[str]:  # type: ignore[no-untyped-def]
    """The names of a response's resources (``name_of`` reads one), read once per type,
    version and count: every stream of the class is sent the same responses, and reading
    4,000 resources in each of 1,000 clients measured the clients, not the server (delta's
    initial push at 1,000 services, same server code: 38.1 s with every client reading,
    24.4 s so)."""
    key = (resp.type_url, resp.version_info, len(resp.resources))
    names = _NAMES.get(key)
    if names is None:
        names = _NAMES[key] = [name_of(r) for r in resp.resources]
    return names


def _cluster_names(resp) -> list[str]:  # type: ignore[no-untyped-def]
    """The cluster names of a SotW CDS response."""
    return _read_names(resp, lambda r: cluster_pb2.Cluster.FromString(_any_value(r)).name)


def _assignment_names(resp) -> list[str]:  # type: ignore[no-untyped-def]
    """The cluster names of a SotW EDS response."""
    return _read_names(
        resp, lambda r: endpoint_pb2.ClusterLoadAssignment.FromString(_any_value(r)).cluster_name
    )


def _delta_names(resp) -> list[str]:  # type: ignore[no-untyped-def]
    """The names of a delta response's resources (``Resource`` messages: field 3)."""
    return _read_names(resp, lambda r: discovery_pb2.Resource.FromString(r).name)


def _any_value(raw: bytes) -> bytes:
    return any_pb2.Any.FromString(raw).value


class Client:
    """One Envoy-like ADS client (SotW or delta) of the bench's one proxy class."""

    def __init__(self, i: int, kind: str) -> None:
        self.kind = kind
        self.node = base_pb2.Node(id=f"bench-{i}")
        self.node.metadata.update(
            {
                "meshfed.io/role": "sidecar",
                "meshfed.io/namespace": "demo",
                "meshfed.io/service_account": "bench",
                "meshfed.io/identity_dir": "/run/meshfed/identity",
            }
        )
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.types: set[str] = set()
        self.complete = asyncio.Event()
        self.changed = asyncio.Event()
        self.watching = False
        self.changed_at = 0.0
        self.eds_bytes = 0
        self.service_change = False  # watch for a new service (RDS + its EDS), not an endpoint
        self.route_at = self.new_eds_at = 0.0
        self.new_names: set[str] = set()  # the new clusters whose EDS it subscribed to

    async def requests(self):  # type: ignore[no-untyped-def]
        while True:
            yield await self.queue.get()

    def _request(self, type_url: str, names: list[str], first: bool = False) -> object:
        if self.kind == "sotw":
            req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
        else:
            req = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_subscribe=names
            )
        if first:
            req.node.CopyFrom(self.node)
        return req

    async def run(self, channel: grpc.aio.Channel) -> None:
        method = "StreamAggregatedResources" if self.kind == "sotw" else "DeltaAggregatedResources"
        call = channel.stream_stream(
            ADS + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=LIGHT.FromString,
        )(self.requests())
        self.queue.put_nowait(self._request(resource.CLUSTER, [], first=True))
        self.queue.put_nowait(self._request(resource.LISTENER, []))
        names: dict[str, list[str]] = {}
        async for resp in call:
            t = resp.type_url
            if self.watching and not self.changed.is_set():
                self._watched(resp)
            if self.kind == "sotw":
                ack: object = discovery_pb2.DiscoveryRequest(
                    type_url=t,
                    version_info=resp.version_info,
                    response_nonce=resp.nonce,
                    resource_names=names.get(t, []),
                )
            else:
                ack = discovery_pb2.DeltaDiscoveryRequest(type_url=t, response_nonce=resp.nonce)
            self.queue.put_nowait(ack)
            if t == resource.CLUSTER and resource.ENDPOINT not in names:
                if self.kind == "sotw":
                    names[resource.ENDPOINT] = _cluster_names(resp)
                else:
                    names[resource.ENDPOINT] = _delta_names(resp)
                self.queue.put_nowait(self._request(resource.ENDPOINT, names[resource.ENDPOINT]))
            elif t == resource.CLUSTER and self.watching and self.service_change:
                self._subscribe_new(resp, names)
            if t == resource.LISTENER and resource.ROUTE not in names:
                names[resource.ROUTE] = ["outbound"]
                self.queue.put_nowait(self._request(resource.ROUTE, ["outbound"]))
            self.types.add(t)
            if len(self.types) == 4:
                self.complete.set()

    def watch(self, service_change: bool) -> None:
        """Start watching for the next change (a new service, or a new endpoint)."""
        self.changed.clear()
        self.service_change = service_change
        self.route_at = self.new_eds_at = 0.0
        self.eds_bytes, self.new_names = 0, set()
        self.watching = True

    def _watched(self, resp) -> None:  # type: ignore[no-untyped-def]
        """Count and time a response received while a change is watched."""
        t, now = resp.type_url, time.perf_counter()
        if not self.service_change:
            if t == resource.ENDPOINT:
                self.changed_at, self.eds_bytes = now, resp.ByteSize()
                self.changed.set()
            return
        self.eds_bytes += resp.ByteSize()
        if t == resource.ROUTE:
            self.route_at = now
        elif t == resource.ENDPOINT and self.new_names and self.new_names & set(self._names(resp)):
            self.new_eds_at = now
        if self.route_at and self.new_eds_at:
            self.changed_at = max(self.route_at, self.new_eds_at)
            self.changed.set()

    def _subscribe_new(self, resp, names: dict[str, list[str]]) -> None:  # type: ignore[no-untyped-def]
        """Ask for the EDS of clusters a later CDS added, as Envoy does: delta subscribes
        to the new names, SotW asks again for every name."""
        if self.kind == "sotw":
            now = _cluster_names(resp)
            added = set(now) - set(names[resource.ENDPOINT])
            names[resource.ENDPOINT] = now
            if added:
                self.queue.put_nowait(self._request(resource.ENDPOINT, now))
        else:
            added = set(_delta_names(resp)) - set(names[resource.ENDPOINT])
            names[resource.ENDPOINT] = [*names[resource.ENDPOINT], *sorted(added)]
            if added:
                self.queue.put_nowait(self._request(resource.ENDPOINT, sorted(added)))
        self.new_names |= added

    def _names(self, resp) -> list[str]:  # type: ignore[no-untyped-def]
        return _delta_names(resp) if self.kind == "delta" else _assignment_names(resp)


async def measure(
    n: int, kind: str, services: int, updates: int, xds: int, api: int, tok: str, pid: int,
    home: Path, timeout: float, change: str = "endpoint",
) -> dict[str, object]:  # fmt: skip
    rss_before, cpu_before = rss_mib(pid), cpu_s(pid)
    creds = client_credentials(home, "east", "demo", "bench")
    options = [*client_channel_options("east"), ("grpc.max_receive_message_length", 1 << 28)]
    channels = [
        grpc.aio.secure_channel(f"127.0.0.1:{xds}", creds, options) for _ in range(max(1, n // 100))
    ]
    clients = [Client(i, kind) for i in range(n)]
    result: dict[str, object] = {}
    started = time.perf_counter()
    # one stream first: its push builds the class's snapshot, which every stream shares, so
    # what the others add is what a proxy costs (KiB/proxy), apart from the class (MiB)
    tasks = [asyncio.create_task(clients[0].run(channels[0]))]
    try:
        ready = asyncio.ensure_future(clients[0].complete.wait())
        await asyncio.wait([ready, tasks[0]], timeout=timeout, return_when="FIRST_COMPLETED")
        ready.cancel()
        if not clients[0].complete.is_set():
            result["initial_s"] = f"first stream: >{timeout:.0f} or failed"
            return result
        rss_one = rss_mib(pid)
        result["class_mib"] = rss_one - rss_before
        initial_profiler = (
            _profile(pid, f"{kind}-{services}x{n}-initial", PROFILE_INITIAL_DIR)
            if PROFILE_INITIAL_DIR is not None
            else None
        )
        tasks += [
            asyncio.create_task(c.run(channels[i % len(channels)]))
            for i, c in enumerate(clients[1:], 1)
        ]
        everyone = asyncio.ensure_future(asyncio.gather(*(c.complete.wait() for c in clients)))
        done, _ = await asyncio.wait(
            [everyone, *tasks], timeout=timeout, return_when="FIRST_COMPLETED"
        )
        if everyone not in done:
            everyone.cancel()
            failed = [t for t in done if t is not everyone]
            result["initial_s"] = (
                f"error: {failed[0].exception()!r}" if failed else f">{timeout:.0f}"
            )
            return result
        result["initial_s"] = time.perf_counter() - started
        result["initial_cpu_s"] = cpu_s(pid) - cpu_before
        if initial_profiler is not None:
            initial_profiler.send_signal(signal.SIGINT)
            initial_profiler.wait(timeout=60)
        others = n - 1  # the streams opened after the first
        result["rss_per_proxy_kib"] = (rss_mib(pid) - rss_one) * 1024 / others if others else "-"
        samples: list[float] = []
        profiler = _profile(pid, f"{kind}-{services}x{n}")
        for u in range(updates):
            for c in clients:
                c.watch(change == "service")
            posted = time.perf_counter()
            await asyncio.to_thread(post, api, "/v1/apply", _change(change, n, u, services), tok)
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(c.changed.wait() for c in clients)), timeout
                )
            except TimeoutError:
                result["update"] = f">{timeout:.0f}"
                return result
            samples += [(c.changed_at - posted) * 1000 for c in clients]
            result["eds_bytes"] = clients[0].eds_bytes
            for c in clients:
                c.watching = False
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            profiler.wait(timeout=60)
        result["update_p50_ms"] = percentile(samples, 50)
        result["update_p99_ms"] = percentile(samples, 99)
        # after the updates, every stream idle: what a proxy costs to hold, not to push to
        result["rss_idle_kib"] = (rss_mib(pid) - rss_one) * 1024 / others if others else "-"
        return result
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()
        for u in range(updates):
            await asyncio.to_thread(post, api, "/v1/delete", _change(change, n, u, services), tok)


def _change(change: str, n: int, u: int, services: int) -> str:
    """The document of update ``u``: a new endpoint of a service, or a new service."""
    maker = new_service if change == "service" else extra_workload
    return maker(f"{n}-{u}", (u * 37) % services)


def run_code(
    label: str, tree: Path | None, work: Path, args: argparse.Namespace
) -> list[tuple[str, int, str, dict[str, object]]]:
    rows = []
    for services in (int(x) for x in args.services.split(",")):
        docs = documents(services, args.endpoints)
        # a control plane of its own per kind: the RSS columns of the second would otherwise
        # start from what the first left (its class's snapshot, memory freed late)
        for kind in args.kind.split(","):
            home = work / f"{label}-{services}-{kind}"
            init_trust(home, ["east"])
            xds, api = free_port(), free_port()
            cp = start_controlplane(home, "east", xds, api, health=False, tree=tree)
            captured: dict[str, bytes] = {}
            try:
                tok = token(home, "east")
                for i in range(0, len(docs), 900):
                    post(api, "/v1/apply", "---\n".join(docs[i : i + 900]), tok)
                for n in (int(x) for x in args.clients.split(",")):
                    r = asyncio.run(
                        measure(n, kind, services, args.updates, xds, api, tok, cp.pid, home,
                                args.timeout, args.change)
                    )  # fmt: skip
                    rows.append((label, services, f"{kind} x{n}", r))
                    _print_row(rows[-1])
                if args.floor and tree is None:
                    names_of = _cluster_names if kind == "sotw" else _delta_names
                    request = Client(-1, kind)._request
                    captured = asyncio.run(
                        xds_floor.capture(xds, home, kind, request, LIGHT, names_of)
                    )
            finally:
                stop(cp)
            if captured:
                rows += floor_rows(captured, home, kind, services, args)
    return rows


def floor_rows(
    captured: dict[str, bytes], home: Path, kind: str, services: int, args: argparse.Namespace
) -> list[tuple[str, int, str, dict[str, object]]]:
    """The initial push of the same bytes by a server that only sends them
    (:mod:`bench.xds_floor`), to the same clients: the wire's floor."""
    rows = []
    port = free_port()
    floor = xds_floor.start({kind: captured}, home, port)
    try:
        xds_floor.wait_listening(port, 30)
        for n in (int(x) for x in args.clients.split(",")):
            r = asyncio.run(measure(n, kind, services, 0, port, 0, "", floor.pid, home,
                                    args.timeout))  # fmt: skip
            r.pop("update_p50_ms", None)
            r.pop("update_p99_ms", None)
            r.pop("rss_idle_kib", None)
            r["eds_bytes"] = sum(len(b) for b in captured.values())
            rows.append(("floor (bytes only)", services, f"{kind} x{n}", r))
            _print_row(rows[-1])
    finally:
        stop(floor)
    return rows


def _fmt(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, float | int) else str(value)


def _print_row(row: tuple[str, int, str, dict[str, object]]) -> None:
    label, services, streams, r = row
    print(
        f"{label:<22}{services:>9}{streams:>12}"
        f"{_fmt(r.get('initial_s', '-'), '.2f'):>11}"
        f"{_fmt(r.get('initial_cpu_s', '-'), '.1f'):>8}"
        f"{_fmt(r.get('class_mib', '-'), '.0f'):>10}"
        f"{_fmt(r.get('update_p50_ms', r.get('update', '-')), '.0f'):>10}"
        f"{_fmt(r.get('update_p99_ms', r.get('update', '-')), '.0f'):>10}"
        f"{_fmt(r.get('rss_per_proxy_kib', '-'), '.1f'):>10}"
        f"{_fmt(r.get('rss_idle_kib', '-'), '.1f'):>9}"
        f"{_fmt(r.get('eds_bytes', '-'), 'd'):>12}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", default="100,300,1000")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--clients", default="1000")
    parser.add_argument("--kind", default="sotw", help="sotw, delta or sotw,delta")
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument(
        "--change",
        choices=("endpoint", "service"),
        default="endpoint",
        help="what each update is: a new endpoint of a service, or a new service",
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--baseline-rev", default="ff34650")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also push the same bytes from a server that only sends them (bench/xds_floor.py)",
    )
    parser.add_argument(
        "--profile-updates",
        type=Path,
        metavar="DIR",
        help="record the control plane with py-spy during the updates (collapsed stacks)",
    )
    parser.add_argument(
        "--profile-initial",
        type=Path,
        metavar="DIR",
        help="record the control plane with py-spy during the initial push (collapsed stacks)",
    )
    args = parser.parse_args()
    global PROFILE_DIR, PROFILE_INITIAL_DIR
    PROFILE_DIR = args.profile_updates
    PROFILE_INITIAL_DIR = args.profile_initial
    print(
        f"xDS scale: services x {args.endpoints} endpoints in 3 clusters, one control plane,"
        " Envoy-like clients of one proxy class (mTLS, ACKs)"
    )
    print(
        f"{'code':<22}{'services':>9}{'streams':>12}{'initial s':>11}{'CP cpu':>8}{'class MiB':>10}{'upd p50':>10}"
        f"{'upd p99':>10}{'KiB/proxy':>10}{'KiB idle':>9}{'EDS bytes':>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.no_baseline:
            with worktree(args.baseline_rev, work / "baseline") as before:
                run_code(f"baseline {args.baseline_rev}", before, work, args)
        run_code("this checkout", None, work, args)


if __name__ == "__main__":
    main()
