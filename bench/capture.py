"""What transparent capture costs (issue 38), on the isolated bed, both paths in one run.

From the frontend's pod (cluster A) to A's own echo replica -- the same hops either way:
frontend sidecar -> echo sidecar (mTLS) -> echo app:

1. **explicit** (the baseline): wrk -> ``http://127.0.0.1:15001/`` with the service's name
   as Host, the way an application reaches the mesh without capture;
2. **captured**: wrk -> ``http://echo.demo.svc.clusterset.local:8080/``, resolved by the
   pod's DNS (the agent) and redirected by the pod's nftables rules into the same listener.

The two are measured in alternating rounds (``--rounds`` of ``--duration`` s each, wrk with
``--connections`` connections in the pod); printed: the medians of req/s, p50 and p99, the
ratios of the medians captured/explicit (targets: req/s >= 0.95x, p99 <= 1.10x), and the
median of each round's own ratio (less moved by the drift between rounds).

Then DNS from the same pod, ``--queries`` sequential queries for the clusterset name (A),
over UDP: to the agent's resolver on ``127.0.0.1:15053`` itself (the baseline: no capture),
and to the pod's resolver address on port 53, which the rules redirect to the agent (what an
application does): p50 and p99 of each (target p99 <= 2 ms).

    sudo .venv/bin/python bench/capture.py [--rounds 9] [--duration 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile
from bench.dataplane import ensure_wrk, parse_wrk
from federation.agent.dns import upstream_resolver
from tests.integration.isolated import IsolatedFederation, federation_file, isolated_federation

NAME = "echo.demo.svc.clusterset.local"

#: Run in the pod: sequential A queries to HOST:PORT, latencies (ms) as JSON.
DNS_CLIENT = """
import json, socket, sys, time
from dnslib import DNSRecord
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
query = DNSRecord.question(sys.argv[4], "A")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
ms = []
for i in range(count):
    query.header.id = i % 65536
    t0 = time.perf_counter()
    s.sendto(query.pack(), (host, port))
    answer = DNSRecord.parse(s.recv(4096))
    ms.append((time.perf_counter() - t0) * 1000)
    assert answer.rr, answer
print(json.dumps(ms))
"""


def in_pod(fed: IsolatedFederation, argv: list[str], timeout_s: float) -> str:
    """stdout of ``argv`` run as root in the frontend's pod.

    Raises:
        RuntimeError: it failed.
    """
    rc, out = fed.in_pod("sidecar-frontend", argv, timeout_s=timeout_s)
    if rc != 0:
        raise RuntimeError(f"{argv[0]} failed ({rc}): {out[-2000:]}")
    return out


def wrk_in_pod(
    fed: IsolatedFederation, url: str, host: str | None, duration: int, connections: int
) -> dict[str, float]:
    """One wrk run in the frontend's pod (see :func:`bench.dataplane.parse_wrk`)."""
    argv = [ensure_wrk(), "--latency", "-t2", f"-c{connections}", f"-d{duration}s"]
    argv += ["-H", f"Host: {host}"] if host else []
    out = in_pod(fed, [*argv, url], duration + 60)
    return parse_wrk(out, duration)


def dns_latencies(fed: IsolatedFederation, host: str, port: int, count: int) -> list[float]:
    """Latencies (ms) of ``count`` sequential A queries for :data:`NAME` to ``host:port``."""
    out = in_pod(fed, [sys.executable, "-c", DNS_CLIENT, host, str(port), str(count), NAME], 120)
    return [float(v) for v in json.loads(out.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--queries", type=int, default=5000)
    args = parser.parse_args()
    spec = federation_file(replicas=1, rps=1)
    with tempfile.TemporaryDirectory() as tmp, isolated_federation(Path(tmp), spec) as fed:
        paths = {
            "explicit": ("http://127.0.0.1:15001/", f"{NAME}:8080"),
            "captured": (f"http://{NAME}:8080/", None),
        }
        runs: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
        for _ in range(2):  # warm-up, not counted
            for url, host in paths.values():
                wrk_in_pod(fed, url, host, 2, args.connections)
        for r in range(args.rounds):
            for name, (url, host) in paths.items():
                runs[name].append(wrk_in_pod(fed, url, host, args.duration, args.connections))
                last = runs[name][-1]
                print(
                    f"round {r + 1} {name:<9} {last['rps']:>9.0f} req/s  p50 {last['p50']:.2f} ms"
                    f"  p99 {last['p99']:.2f} ms  non-2xx {last['non2xx']:.0f}",
                    flush=True,
                )
        med = {
            name: {k: statistics.median(run[k] for run in rs) for k in ("rps", "p50", "p99")}
            for name, rs in runs.items()
        }
        print(
            f"\nA's frontend pod -> A's echo ({args.rounds} alternating rounds of"
            f" {args.duration} s, wrk -c{args.connections}; medians)"
        )
        print(f"{'path':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
        for name, m in med.items():
            print(f"{name:<10}{m['rps']:>10.0f}{m['p50']:>9.2f}{m['p99']:>9.2f}")
        e, c = med["explicit"], med["captured"]
        print(
            f"captured / explicit: req/s x{c['rps'] / e['rps']:.3f} (target >= 0.95),"
            f" p50 x{c['p50'] / e['p50']:.3f}, p99 x{c['p99'] / e['p99']:.3f} (target <= 1.10)"
        )
        paired = {
            k: statistics.median(
                c_run[k] / e_run[k]
                for e_run, c_run in zip(runs["explicit"], runs["captured"], strict=True)
            )
            for k in ("rps", "p99")
        }
        print(
            f"median of the rounds' own ratios (each round's pair ran back to back):"
            f" req/s x{paired['rps']:.3f}, p99 x{paired['p99']:.3f}"
        )
        resolver = upstream_resolver() or "127.0.0.53"
        print(f"\nDNS: {args.queries} sequential A queries for {NAME} from the pod")
        print(f"{'to':<34}{'p50 ms':>9}{'p99 ms':>9}")
        for label, host, port in (
            ("agent at 127.0.0.1:15053 (base)", "127.0.0.1", 15053),
            (f"{resolver}:53 (captured)", resolver, 53),
        ):
            ms = dns_latencies(fed, host, port, args.queries)
            print(f"{label:<34}{percentile(ms, 50):>9.3f}{percentile(ms, 99):>9.3f}", flush=True)


if __name__ == "__main__":
    main()
