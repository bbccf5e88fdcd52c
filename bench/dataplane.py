"""Data-plane cost of meshfed's chain, measured with one load generator (wrk) in one run.

Three paths to the same backend (an Envoy answering ``200 ok`` by ``direct_response``, so the
backend is not the bottleneck):

1. direct: wrk -> backend.
2. static: wrk -> client sidecar -> east-west gateway -> server sidecar -> backend, three Envoys
   with hand-written static configuration: mTLS between the sidecars with SVIDs from our CA,
   speaking HTTP/2 with a PING every 200 ms as meshfed's sidecars do (since issue 37; it was
   HTTP/1.1 before, an unfair baseline), SNI passthrough at the gateway. The baseline for
   what the hops cost.
3. meshfed: the same hops configured by two ``meshfed controlplane serve`` processes over xDS
   (mutual TLS) and run by ``meshfed proxy sidecar|gateway`` agents, which obtain their SVIDs
   with workload tokens (ServiceExport / ServiceImport).

Prints requests/s and p50/p99 latency per path and the ratios meshfed/static and
meshfed/direct. A fourth path, **static-rbac**, is the static chain with the RBAC filters
meshfed generates for two AuthorizationPolicies (ALLOW the caller's principal, DENY one path)
on the server sidecar; it and **static** are then measured in alternating rounds and their
median ratios printed (the cost of enforcing AuthorizationPolicy): req/s and latency, and the
server sidecar's CPU time per request (``/proc/<pid>/stat``), which the other processes
sharing the CPUs disturb less than throughput. A fifth, **meshfed-notel**, is the meshfed
chain with control planes started ``--no-telemetry`` (no access-log stream, nothing
counted); it and **meshfed** are measured in alternating rounds (the cost of issue #17's
traffic counting): req/s, p50, p99, and CPU time per request of the caller's Envoy (which
writes the traffic log), of its agent (which counts it) and of its control plane (which
classifies the agent's reports). Then, as Istio reports it, each path at a fixed request
rate (``--fixed-rps``, 1,000 by default; h2load from Debian's nghttp2-client, HTTP/1.1, 10
connections, each request's time from its log): p50/p90/p99 and what each chain adds over
direct. Installs wrk and h2load from Debian if they are missing.

    python bench/dataplane.py [--duration 10] [--connections 16] [--telemetry-rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    MESHFED,
    LocalPlane,
    free_port,
    init_trust,
    percentile,
    post,
    start_controlplane,
    stop,
    token,
)
from federation.agent.envoy_process import EnvoyProcess
from trust.spiffe import SpiffeId
from trust.store import TrustDirectory

HOST = "echo.demo.svc.clusterset.local"
AUTHZ_POLICIES = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-probe, namespace: demo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/probe-denied"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: demo}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: ["example.org/ns/demo/sa/frontend"]}}]}]
"""
SNI = f"outbound_.8080_._.{HOST}"


def ensure_wrk() -> str:
    return ensure_tool("wrk", "wrk")


def ensure_tool(name: str, package: str) -> str:
    """``name`` on PATH, installed from Debian's ``package`` if missing."""
    found = shutil.which(name)
    if found:
        return found
    print(f"installing {name} (Debian package {package})...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=False, capture_output=True)
    if not shutil.which(name):
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package], check=True, capture_output=True
        )
    return str(shutil.which(name))


def fixed_rate(url: str, rps: int, duration: int, work: Path) -> dict[str, float]:
    """``rps`` requests/s for ``duration`` s over 10 HTTP/1.1 connections (h2load --rps per
    connection), every request's time from h2load's log: p50/p90/p99 ms, requests, and the
    requests that did not answer 2xx."""
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    subprocess.run(
        [ensure_tool("h2load", "nghttp2-client"), "--h1", "-c", "10", "--rps", str(rps // 10),
         "-D", str(duration), "-H", f":authority: {HOST}", f"--log-file={log}", url],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    ms = [int(r[2]) / 1000 for r in rows]
    return {
        "requests": float(len(rows)),
        "failed": float(sum(1 for r in rows if not r[1].startswith("2"))),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
    }


def wrk(
    url: str, duration: int, connections: int, host: str = HOST, headers: tuple[str, ...] = ()
) -> dict[str, float]:
    """One wrk run (``Host: host`` and ``headers``, each ``Name: value``): requests, req/s,
    p50/p99 ms, non-2xx responses."""
    out = subprocess.run(
        [
            ensure_wrk(),
            "--latency",
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "-H",
            f"Host: {host}",
            *(arg for h in headers for arg in ("-H", h)),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(out, duration)


def parse_wrk(out: str, duration: int) -> dict[str, float]:
    """wrk's ``--latency`` report: requests, req/s, p50/p99 ms, non-2xx responses."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def ms(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "requests": float(total.group(1)) if total else rps * duration,
        "rps": rps,
        "p50": ms("50"),
        "p99": ms("99"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def envoy_child(agent: int) -> int:
    """The pid of the Envoy an agent runs (its child process)."""
    for task in Path(f"/proc/{agent}/task").iterdir():
        for child in (task / "children").read_text().split():
            if "envoy" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
                return int(child)
    raise RuntimeError(f"agent {agent} runs no Envoy")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _addr(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _static_cluster(
    name: str, host: str, port: int, tls: dict[str, Any] | None = None
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _addr(host, port)}}]}],
        },
    }
    if tls:
        c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    return c


def _hcm(route: dict[str, Any], filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "http",
            "codec_type": "AUTO",
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, **route}],
                    }
                ]
            },
            "http_filters": [
                *(filters or []),
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                },
            ],
        },
    }


def _bootstrap(
    admin: int, listeners: list[dict[str, Any]], clusters: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "admin": {"address": _addr("127.0.0.1", admin)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def backend(admin: int, port: int) -> dict[str, Any]:
    return _bootstrap(
        admin,
        [
            {
                "name": "backend",
                "address": _addr("127.0.0.1", port),
                "filter_chains": [
                    {
                        "filters": [
                            _hcm(
                                {
                                    "direct_response": {
                                        "status": 200,
                                        "body": {"inline_string": "ok"},
                                    }
                                }
                            )
                        ]
                    }
                ],
            }
        ],
        [],
    )


def rbac_http_filters() -> list[dict[str, Any]]:
    """The RBAC filters meshfed generates for an ALLOW policy for the caller's principal plus
    a DENY policy for one path (the server sidecar of the "static-rbac" path runs them)."""
    from google.protobuf import json_format

    from federation.controlplane.generate.rbac import rbac_filters
    from federation.model.documents import load_documents

    policies = load_documents(AUTHZ_POLICIES, source="bench")
    return [json_format.MessageToDict(f) for f in rbac_filters(policies, (8080,))]  # type: ignore[arg-type]


def static_chain(
    files: dict[str, Path],
    ports: dict[str, int],
    server_filters: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Client sidecar, gateway and server sidecar with static config (mTLS, SNI passthrough);
    ``server_filters``: HTTP filters before the server sidecar's router."""

    def common(name: str) -> dict[str, Any]:
        return {
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(files[f"{name}-chain"])},
                    "private_key": {"filename": str(files[f"{name}-key"])},
                }
            ],
            "validation_context": {"trusted_ca": {"filename": str(files["bundle"])}},
        }

    client = _bootstrap(
        ports["client_admin"],
        [
            {
                "name": "out",
                "address": _addr("127.0.0.1", ports["client"]),
                "filter_chains": [{"filters": [_hcm({"route": {"cluster": "to_gw"}})]}],
            }
        ],
        [
            {
                **_static_cluster(
                    "to_gw",
                    "127.0.0.1",
                    ports["gateway"],
                    {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": SNI,
                        "common_tls_context": {**common("client"), "alpn_protocols": ["h2"]},
                    },
                ),
                # what meshfed's sidecars speak to each other (clusters.protocol_options):
                # HTTP/2 with a PING every 200 ms
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {
                            "http2_protocol_options": {
                                "connection_keepalive": {"interval": "0.2s", "timeout": "1s"}
                            }
                        },
                    }
                },
            }
        ],
    )
    gateway = _bootstrap(
        ports["gateway_admin"],
        [
            {
                "name": "gw",
                "address": _addr("127.0.0.1", ports["gateway"]),
                "listener_filters": [
                    {
                        "name": "envoy.filters.listener.tls_inspector",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
                        },
                    }
                ],
                "filter_chains": [
                    {
                        "filter_chain_match": {"server_names": [SNI]},
                        "filters": [
                            {
                                "name": "envoy.filters.network.tcp_proxy",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                    "stat_prefix": "gw",
                                    "cluster": "to_server",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
        [_static_cluster("to_server", "127.0.0.1", ports["server"])],
    )
    server = _bootstrap(
        ports["server_admin"],
        [
            {
                "name": "in",
                "address": _addr("127.0.0.1", ports["server"]),
                "filter_chains": [
                    {
                        "filters": [_hcm({"route": {"cluster": "app"}}, server_filters)],
                        "transport_socket": {
                            "name": "envoy.transport_sockets.tls",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                                "require_client_certificate": True,
                                "common_tls_context": {
                                    **common("server"),
                                    "alpn_protocols": ["h2", "http/1.1"],
                                },
                            },
                        },
                    }
                ],
            }
        ],
        [_static_cluster("app", "127.0.0.1", ports["backend"])],
    )
    return [client, gateway, server]


def wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, headers={"Host": HOST})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not answering 200")


def meshfed_chain(
    home: Path,
    backend_port: int,
    suffix: str,
    procs: list[subprocess.Popen[bytes]],
    cps: list[subprocess.Popen[bytes]],
    cp_flags: tuple[str, ...] = (),
) -> tuple[str, list[int]]:
    """Clusters ``east<suffix>`` and ``west<suffix>``: two control planes (with ``cp_flags``),
    a gateway agent and two sidecar agents, echo exported from west and imported by east.
    Processes are appended to ``procs`` / ``cps`` (the caller stops them).

    Returns:
        The client sidecar's outbound URL, and the pids of the east control plane and of the
        client sidecar's agent.
    """
    east_name, west_name = f"east{suffix}", f"west{suffix}"
    env = dict(os.environ, MESHFED_HOME=str(home))
    east_x, east_a, west_x, west_a = free_port(), free_port(), free_port(), free_port()
    started = [
        start_controlplane(home, east_name, east_x, east_a, extra=cp_flags),
        start_controlplane(home, west_name, west_x, west_a, extra=cp_flags),
    ]
    cps.extend(started)
    gw = free_port("127.0.2.1")
    client_out = free_port()
    east = LocalPlane(home, east_name, east_x, east_a)
    west = LocalPlane(home, west_name, west_x, west_a)
    tokens = [  # one workload token per agent, as an operator mints them
        west.mint("meshfed-system", "eastwest-gateway"),
        west.mint("demo", "echo"),
        east.mint("demo", "frontend"),
    ]
    server_ip, client_ip = (
        ("127.0.2.11", "127.0.1.10") if not suffix else ("127.0.2.12", "127.0.1.11")
    )
    agents = [
        [
            MESHFED, "proxy", "gateway", "--cluster", west_name,
            "--controlplane", f"127.0.0.1:{west_x}", "--listen", f"127.0.2.1:{gw}",
        ],
        [
            MESHFED, "proxy", "sidecar", "--cluster", west_name,
            "--controlplane", f"127.0.0.1:{west_x}", "--service", "echo", "-n", "demo",
            "--app-port", str(backend_port), "--service-port", "8080",
            "--address", server_ip, "--inbound-port", str(free_port(server_ip)),
        ],
        [
            MESHFED, "proxy", "sidecar", "--cluster", east_name,
            "--controlplane", f"127.0.0.1:{east_x}", "--service", "frontend", "-n", "demo",
            "--app-port", str(free_port()), "--address", client_ip,
            "--inbound-port", str(free_port(client_ip)), "--outbound-port", str(client_out),
        ],
    ]  # fmt: skip
    for argv, tok in zip(agents, tokens, strict=True):
        procs.append(
            subprocess.Popen(
                argv,
                env=dict(env, MESHFED_WORKLOAD_TOKEN=tok),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    post(
        west_a,
        "/v1/apply",
        "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n"
        "metadata: {name: echo, namespace: demo}\n",
        token(home, west_name),
    )
    post(
        east_a,
        "/v1/apply",
        "apiVersion: meshfed.io/v1alpha1\nkind: ServiceImport\n"
        "metadata: {name: echo, namespace: demo}\nspec:\n  ports: [{name: http, port: 8080}]\n"
        "  serviceAccounts: [echo]\n"
        f"  clusters: [{{cluster: {west_name}, gateway: '127.0.2.1:{gw}',"
        " locality: aws/eu-west-1/eu-west-1a, endpoints: 1}]\n",
        token(home, east_name),
    )
    return f"http://127.0.0.1:{client_out}/", [started[0].pid, procs[-1].pid]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rbac-rounds", type=int, default=3)
    parser.add_argument("--telemetry-rounds", type=int, default=5)
    parser.add_argument("--fixed-rps", type=int, default=1000)
    args = parser.parse_args()
    ensure_wrk()
    envoys: list[EnvoyProcess] = []
    procs: list[subprocess.Popen[bytes]] = []
    cps: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        try:
            init_trust(home, ["east", "west", "east-notel", "west-notel"])
            store = TrustDirectory(home / "trust")
            files: dict[str, Path] = {"bundle": home / "trust" / "bundle.pem"}
            for name, cluster, sa in (("client", "east", "frontend"), ("server", "west", "echo")):
                svid = store.issue_svid(
                    cluster, SpiffeId.parse(f"spiffe://example.org/ns/demo/sa/{sa}")
                )
                out = TrustDirectory.write_svid(svid, store.bundle(), work / name)
                files[f"{name}-chain"], files[f"{name}-key"] = out.chain, out.key
            ports = {
                k: free_port()
                for k in (
                    "backend",
                    "backend_admin",
                    "client",
                    "client_admin",
                    "gateway",
                    "gateway_admin",
                    "server",
                    "server_admin",
                )
            }

            by_name: dict[str, EnvoyProcess] = {}

            def envoy(name: str, bootstrap: dict[str, Any], admin: int) -> None:
                e = EnvoyProcess(bootstrap, work / name, base_id=admin, admin_port=admin)
                e.start()
                envoys.append(e)
                by_name[name] = e
                e.wait_ready(30)

            envoy(
                "backend", backend(ports["backend_admin"], ports["backend"]), ports["backend_admin"]
            )
            for name, boot in zip(
                ("static-client", "static-gateway", "static-server"),
                static_chain(files, ports),
                strict=True,
            ):
                envoy(name, boot, boot["admin"]["address"]["socket_address"]["port_value"])
            # the same static chain with meshfed's RBAC filters on the server sidecar
            rbac_ports = {
                k: (v if k.startswith("backend") else free_port()) for k, v in ports.items()
            }
            for name, boot in zip(
                ("rbac-client", "rbac-gateway", "rbac-server"),
                static_chain(files, rbac_ports, rbac_http_filters()),
                strict=True,
            ):
                envoy(name, boot, boot["admin"]["address"]["socket_address"]["port_value"])

            # meshfed: two control planes, a gateway agent, two sidecar agents; and the same
            # with control planes that count no traffic (--no-telemetry)
            meshfed_url, cp_pids = meshfed_chain(home, ports["backend"], "", procs, cps)
            notel_url, notel_pids = meshfed_chain(
                home, ports["backend"], "-notel", procs, cps, ("--no-telemetry",)
            )
            urls = {
                "direct": f"http://127.0.0.1:{ports['backend']}/",
                "static": f"http://127.0.0.1:{ports['client']}/",
                "static-rbac": f"http://127.0.0.1:{rbac_ports['client']}/",
                "meshfed": meshfed_url,
                "meshfed-notel": notel_url,
            }
            for url in urls.values():
                wait_http(url)
            results = {}
            for name, url in urls.items():
                wrk(url, 2, args.connections)  # warm up
                results[name] = wrk(url, args.duration, args.connections)
            print(
                f"data plane: wrk --latency -t2 -c{args.connections} -d{args.duration}s; backend = Envoy direct_response"
            )
            print(f"{'path':<9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
            for name, r in results.items():
                print(
                    f"{name:<9}{r['rps']:>10.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['non2xx']:>9.0f}"
                )
            rounds: dict[str, list[dict[str, float]]] = {"static": [], "static-rbac": []}
            servers = {"static": by_name["static-server"], "static-rbac": by_name["rbac-server"]}
            for _ in range(args.rbac_rounds):  # alternate: the two differ by RBAC only
                for name, runs in rounds.items():
                    process = servers[name].process
                    assert process is not None
                    before = cpu_seconds(process.pid)
                    run = wrk(urls[name], args.duration, args.connections)
                    # the server sidecar's CPU per request: what the RBAC filters add there,
                    # less sensitive than req/s to the other processes sharing the CPUs
                    run["cpu_us"] = (cpu_seconds(process.pid) - before) * 1e6 / run["requests"]
                    runs.append(run)
            med = {
                name: {
                    k: percentile([r[k] for r in runs], 50) for k in ("rps", "p50", "p99", "cpu_us")
                }
                for name, runs in rounds.items()
            }
            a, b = med["static-rbac"], med["static"]
            print(
                f"static-rbac/static ({args.rbac_rounds} alternating rounds, median):"
                f" req/s x{a['rps'] / b['rps']:.3f}, p50 x{a['p50'] / b['p50']:.3f},"
                f" p99 x{a['p99'] / b['p99']:.3f}"
            )
            print(
                "server sidecar CPU per request (median): static"
                f" {b['cpu_us']:.1f} us, static-rbac {a['cpu_us']:.1f} us:"
                f" x{a['cpu_us'] / b['cpu_us']:.3f}; rounds static"
                f" {[round(r['cpu_us'], 1) for r in rounds['static']]},"
                f" static-rbac {[round(r['cpu_us'], 1) for r in rounds['static-rbac']]}"
            )
            tel: dict[str, list[dict[str, float]]] = {"meshfed": [], "meshfed-notel": []}
            east_cp = {"meshfed": cp_pids[0], "meshfed-notel": notel_pids[0]}
            agent = {"meshfed": cp_pids[1], "meshfed-notel": notel_pids[1]}
            caller = {
                "meshfed": envoy_child(cp_pids[1]),
                "meshfed-notel": envoy_child(notel_pids[1]),
            }
            for _ in range(args.telemetry_rounds):  # alternate: the two differ by telemetry only
                for name, runs in tel.items():
                    pids = (east_cp[name], caller[name], agent[name])
                    before = [cpu_seconds(pid) for pid in pids]
                    run = wrk(urls[name], args.duration, args.connections)
                    n = run["requests"]
                    after = [cpu_seconds(pid) for pid in pids]
                    for key, a, b in zip(
                        ("cp_us", "envoy_us", "agent_us"), after, before, strict=True
                    ):
                        run[key] = (a - b) * 1e6 / n
                    runs.append(run)
            keys = ("rps", "p50", "p99", "cp_us", "envoy_us", "agent_us")
            tmed = {
                name: {k: percentile([r[k] for r in runs], 50) for k in keys}
                for name, runs in tel.items()
            }
            on, off = tmed["meshfed"], tmed["meshfed-notel"]
            print(
                f"telemetry on/off ({args.telemetry_rounds} alternating rounds, median):"
                f" req/s {on['rps']:.0f}/{off['rps']:.0f} x{on['rps'] / off['rps']:.3f},"
                f" p50 x{on['p50'] / off['p50']:.3f}, p99 {on['p99']:.2f}/{off['p99']:.2f} ms"
                f" x{on['p99'] / off['p99']:.3f}; caller's control plane CPU per request"
                f" {on['cp_us']:.1f} / {off['cp_us']:.1f} us, caller's Envoy"
                f" {on['envoy_us']:.1f} / {off['envoy_us']:.1f} us, caller's agent"
                f" {on['agent_us']:.1f} / {off['agent_us']:.1f} us; rounds on"
                f" {[round(r['rps']) for r in tel['meshfed']]}, off"
                f" {[round(r['rps']) for r in tel['meshfed-notel']]}"
                f"; p99 on {[round(r['p99'], 2) for r in tel['meshfed']]}, off"
                f" {[round(r['p99'], 2) for r in tel['meshfed-notel']]}"
            )
            m, s, d = results["meshfed"], results["static"], results["direct"]
            print(
                f"meshfed/static: req/s x{m['rps'] / s['rps']:.2f}, p50 x{m['p50'] / s['p50']:.2f}, p99 x{m['p99'] / s['p99']:.2f}"
            )
            print(
                f"meshfed/direct: req/s x{m['rps'] / d['rps']:.2f}, p50 x{m['p50'] / d['p50']:.2f}, p99 x{m['p99'] / d['p99']:.2f}"
            )
            print(
                json.dumps(
                    {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in results.items()}
                )
            )
            fixed = {
                name: fixed_rate(urls[name], args.fixed_rps, args.duration, work)
                for name in ("direct", "static", "static-rbac", "meshfed")
            }
            print(
                f"\nfixed rate: {args.fixed_rps} req/s for {args.duration} s (h2load --h1, 10"
                " connections); ms, and added over direct"
            )
            print(
                f"{'path':<12}{'requests':>9}{'failed':>7}{'p50':>8}{'p90':>8}{'p99':>8}"
                f"{'+p50':>8}{'+p90':>8}{'+p99':>8}"
            )
            base = fixed["direct"]
            for name, r in fixed.items():
                print(
                    f"{name:<12}{r['requests']:>9.0f}{r['failed']:>7.0f}{r['p50']:>8.3f}"
                    f"{r['p90']:>8.3f}{r['p99']:>8.3f}{r['p50'] - base['p50']:>8.3f}"
                    f"{r['p90'] - base['p90']:>8.3f}{r['p99'] - base['p99']:>8.3f}"
                )
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            for e in envoys:
                e.stop(drain=False)
            for cp in cps:
                stop(cp)


if __name__ == "__main__":
    main()
