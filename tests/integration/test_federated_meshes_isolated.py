"""Issue 43, proof 1 on the isolated bed: two meshfed federations with different roots --
``a.example`` and ``b.example`` -- each started by ``meshfed up --isolate`` from its own home,
each in its own block of the emulated internet, reaching each other only as over the internet
(the link emulators' exchange: a controller's API port and a gateway's port, nothing else).

After ``meshfed trust federate`` both ways (each controller fetches the other's bundle from
its bundle endpoint, across the exchange), an unchanged ``curl`` in b's frontend pod calls
a's exported echo by name through a's east-west gateway: denied by a's echo until an
AuthorizationPolicy names b's frontend, then served by a; an SVID of a third domain fails
the handshake at a's echo through the same gateway.

The module's clusters use their own address ranges (127.0.41-42.0/24), so it may run beside
the other isolated-bed modules: that it can is what the blocks and the exchange are for.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.isolated import IsolatedFederation, isolated_federation, wait_for
from trust.authority import issue_svid
from trust.spiffe import SpiffeId, TrustDomain
from trust.store import TrustDirectory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning"),
]

ECHO_HOST = "echo.demo.svc.clusterset.local"
ECHO_SNI = f"outbound_.8080_._.{ECHO_HOST}"
CURL = ["curl", "-sS", "-i", "--max-time", "10", f"http://{ECHO_HOST}:8080/"]


def _federation(domain: str, cluster: str, region: str, third: int, echo_ns: str) -> dict[str, Any]:
    """A one-cluster LocalFederation of trust domain ``domain``; its echo in ``echo_ns``."""
    return {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "LocalFederation",
        "metadata": {"name": domain.split(".", maxsplit=1)[0]},
        "spec": {
            "trustDomain": domain,
            "clusters": [
                {
                    "name": cluster,
                    "provider": "aws",
                    "region": f"aws/{region}",
                    "zones": [f"{region}a"],
                    "addressRange": f"127.0.{third}.0/24",
                }
            ],
            "echo": {"namespace": echo_ns, "replicasPerCluster": 1},
            "frontend": {
                "cluster": cluster,
                "rps": 1,
                "target": f"echo.{echo_ns}.svc.clusterset.local",
            },
        },
    }


def _status(output: str) -> int:
    found = re.search(r"^HTTP/[\d.]+ (\d{3})", output, re.MULTILINE)
    return int(found.group(1)) if found else 0


def _apply(fed: IsolatedFederation, name: str, text: str) -> str:
    path = fed.home / f"{name}.yaml"
    path.write_text(text)
    return fed.meshfed("apply", "-f", str(path))


def _controller(fed: IsolatedFederation) -> str:
    """``https://<controller's public address>:15080`` of a federation on the bed."""
    return f"https://{fed.plan.node('controller').public}:15080"


#: Run in a cluster's namespace: a TLS client with an SVID (argv: address, port, SNI, CA
#: file, chain, key) -- "handshake refused", or the HTTP status a GET / got.
HANDSHAKE = """
import socket, ssl, sys
address, port, sni, ca, chain, key = sys.argv[1:]
context = ssl.create_default_context(cafile=ca)
context.check_hostname = False
context.load_cert_chain(chain, key)
try:
    with socket.create_connection((address, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(b"GET / HTTP/1.1\\r\\nHost: echo.demo.svc.clusterset.local\\r\\n"
                        b"Connection: close\\r\\n\\r\\n")
            print(tls.recv(65536).split(b" ")[1].decode())
except (ssl.SSLError, ConnectionResetError, IndexError) as err:
    print("handshake refused")
    print(err, file=sys.stderr)
"""


#: Run in a cluster's namespace: a TCP connect to argv's address and port, 3 s at most --
#: "connected", "refused" (a RST came back: the packet got there), "dropped" (silence: the
#: emulator dropped it) or "unreachable" (no route from here).
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("dropped")
except OSError:
    print("unreachable")
"""


def test_a_workload_of_another_federation_is_served_through_the_gateway_only_when_named(
    tmp_path: Path,
) -> None:
    a_spec = _federation("a.example", "a-east", "us-east-1", 41, "demo")
    b_spec = _federation("b.example", "b-west", "us-west-2", 42, "partner")
    with (
        isolated_federation(tmp_path / "a", a_spec) as a,
        isolated_federation(tmp_path / "b", b_spec) as b,
    ):
        assert a.plan.block != b.plan.block, (a.plan.block, b.plan.block)
        a_trust = TrustDirectory(a.home / "trust")
        b_trust = TrustDirectory(b.home / "trust")
        # each controller fetches the other's bundle over the emulated internet
        for here, there, domain, trust in (
            (a, b, "b.example", b_trust),
            (b, a, "a.example", a_trust),
        ):
            here.meshfed(
                "trust", "federate", "--with", domain,
                "--bundle-endpoint", f"{_controller(there)}/v1/spiffe-bundle",
                "--bundle-file", str(trust.bundle_spiffe_path),
            )  # fmt: skip

        def fetched(fed: IsolatedFederation, domain: str) -> bool:
            rows = {r["trustDomain"]: r for r in fed.json("status")["trustDomains"]}
            row = rows.get(domain, {})
            return bool(row.get("fetchedAt")) and not row.get("error") and row.get("inForce")

        wait_for(lambda: fetched(a, "b.example") and fetched(b, "a.example"), 30, "bundles fetched")
        gateway = a.plan.node("a-east").public
        _apply(
            b, "echo-of-a",
            f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo-of-a, namespace: demo}}
spec:
  hosts: [{ECHO_HOST}]
  location: MESH_INTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {gateway}, ports: {{http: 15443}}}}]
  subjectAltNames: [spiffe://a.example/ns/demo/sa/echo]
""",
        )  # fmt: skip

        def answer(status: int) -> str:
            """curl's output when it got ``status``, else empty."""
            out = b.in_pod("sidecar-frontend", CURL)[1]
            return out if _status(out) == status else ""

        # b's frontend reaches a's echo (both bundles in force) and is refused: no policy
        denied = wait_for(lambda: answer(403), 60, "b's frontend refused by a's echo")
        assert "RBAC" in denied or _status(denied) == 403, denied
        _apply(
            a, "partner",
            """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: partner, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - from: [{source: {principals: ["b.example/ns/demo/sa/frontend"]}}]
  - from: [{source: {namespaces: ["demo"]}}]
""",
        )  # fmt: skip
        served = wait_for(lambda: answer(200), 30, "b's frontend served by a")
        body = json.loads(served.split("\n\n", 1)[1])
        assert body["cluster"] == "a-east", body
        assert "URI=spiffe://b.example/ns/demo/sa/frontend" in body["xfcc"], body

        # an SVID sent from b's cluster straight to a's gateway (a client of its own): of
        # b.example, named by the policy, it is served; of a third domain, refused at the
        # handshake by a's echo
        third = TrustDirectory(tmp_path / "c-trust")
        third.init(TrustDomain("c.example"))
        probes = {
            "b.example": _svid(b_trust, "spiffe://b.example/ns/demo/sa/frontend", tmp_path),
            "c.example": _svid(third, "spiffe://c.example/ns/demo/sa/frontend", tmp_path),
        }
        argv = [sys.executable, "-c", HANDSHAKE, gateway, "15443", ECHO_SNI,
                str(a_trust.path / "bundle.pem")]  # fmt: skip
        seen = {}
        for domain, (chain, key) in probes.items():
            done = subprocess.run(
                ["ip", "netns", "exec", b.netns("b-west"), *argv, str(chain), str(key)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            seen[domain] = done.stdout.strip() or done.stderr
        assert seen == {"b.example": "200", "c.example": "handshake refused"}, seen

        # the attack: from b's cluster, anything of a but its gateway and controller ports.
        # a's private range is not routed on the internet; another port of a's public
        # addresses is dropped by a's emulator (silence, where a leak would bring a RST
        # back: nothing listens there); a's gateway port answers
        def connect(address: str, port: int) -> str:
            done = subprocess.run(
                ["ip", "netns", "exec", b.netns("b-west"), sys.executable, "-c", CONNECT,
                 address, str(port)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            return done.stdout.strip() or done.stderr

        a_cp = a.plan.address("a-east", 2)
        controller = a.plan.node("controller").public
        assert connect(a_cp, 15010) == "unreachable"
        assert connect(gateway, 15010) == "dropped"
        assert connect(controller, 22) == "dropped"
        assert connect(gateway, 15443) == "connected"


def _svid(trust: TrustDirectory, sid: str, out: Path) -> tuple[Path, Path]:
    """An SVID ``sid`` from a new intermediate ``probe`` of ``trust``: chain and key files."""
    if "probe" not in trust.clusters():
        trust.create_intermediate("probe", ttl=timedelta(days=1))
    svid = issue_svid(trust.cluster_authority("probe"), SpiffeId.parse(sid), timedelta(hours=1))
    name = SpiffeId.parse(sid).trust_domain.name
    chain, key = out / f"{name}.pem", out / f"{name}-key.pem"
    chain.write_bytes(svid.chain_pem())
    key.touch(mode=0o600)
    key.write_bytes(svid.private_key_pem())
    return chain, key
