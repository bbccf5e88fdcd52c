"""What an Istio ``Sidecar`` resource saves one proxy (issue #40): S services of 10 endpoints
each in the registry, one caller sidecar generated without a Sidecar (the baseline: every
service) and with one whose ``egress`` names two hosts, in the same run.

Measured per S, in-process (``federation.controlplane.generate.proxy_config.generate``, a
fresh push context each run, as a registry change makes one):

- ``generate ms``: median of ``--runs`` builds of the caller's whole configuration;
- ``clusters``: outbound clusters sent to it (CDS);
- ``bytes``: the serialized size of all its resources (what an SotW stream carries on the
  first push).

    python bench/sidecar_scope.py [--services 100,1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from federation.controlplane import resource
from federation.controlplane.generate.common import MeshContext
from federation.controlplane.generate.proxy_config import generate
from federation.controlplane.registry import ServiceRegistry
from federation.model.documents import load_documents
from federation.model.locality import Locality
from federation.sync.node import ProxyDescription

MESH = MeshContext("east", "example.org", Locality("aws/us-east-1", "us-east-1a"))
CALLER = ProxyDescription(
    "sidecar~demo~client", "sidecar", "demo", "", "frontend",
    Locality("aws/us-east-1", "us-east-1a"), identity_dir="/run/meshfed/identity",
)  # fmt: skip
SCOPE = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: demo}
spec:
  egress: [{hosts: ["./svc-0.demo.svc.cluster.local", "./svc-1.demo.svc.cluster.local"]}]
"""


def _registry(services: int, endpoints: int = 10) -> ServiceRegistry:
    docs = []
    for s in range(services):
        for e in range(endpoints):
            docs.append(
                "apiVersion: meshfed.io/v1alpha1\nkind: WorkloadEntry\n"
                f"metadata: {{name: svc-{s}-{e}, namespace: demo}}\n"
                f"spec: {{service: svc-{s}, address: 10.{s // 250}.{s % 250}.{e + 1},"
                f" serviceAccount: svc-{s}, locality: aws/us-east-1/us-east-1a,"
                " ports: [{name: http, port: 8080}]}\n"
            )
    registry = ServiceRegistry()
    for i in range(0, len(docs), 1000):  # a stream holds at most 1,000 documents
        registry.apply(load_documents("---\n".join(docs[i : i + 1000])))
    return registry


def _measure(registry: ServiceRegistry, runs: int) -> tuple[float, int, int]:
    times, out = [], {}
    for _ in range(runs):
        started = time.perf_counter()
        out = generate(MESH, registry.state, CALLER)
        times.append((time.perf_counter() - started) * 1000)
    clusters = sum(1 for c in out[resource.CLUSTER] if c.name.startswith("outbound|"))
    size = sum(m.ByteSize() for messages in out.values() for m in messages)
    return statistics.median(times), clusters, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", default="100,1000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'services':>8} {'sidecar':<22} {'generate ms':>11} {'clusters':>8} {'bytes':>10}")
    for services in (int(s) for s in args.services.split(",")):
        registry = _registry(services)
        for label in ("none (baseline)", "egress: 2 hosts"):
            if label.startswith("egress"):
                registry.set_federation([], [], sidecars=load_documents(SCOPE))  # type: ignore[arg-type]
            ms, clusters, size = _measure(registry, args.runs)
            print(f"{services:>8} {label:<22} {ms:>11.1f} {clusters:>8} {size:>10}")


if __name__ == "__main__":
    main()
