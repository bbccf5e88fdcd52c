"""Issue #38 on the isolated bed: unchanged programs in pods of their own, their traffic
captured by real nftables rules into real Envoy sidecars, cluster-set names resolved by the
agent's DNS.

One federation (one echo replica per cluster; A's stopped, so A's callers are served from B)
serves the tests of this module, in order. Programs run as root in a pod -- as its app would
-- with no proxy setting: ``curl``, a gRPC client dialling ``dns:///``, Python's resolver.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
import threading
from pathlib import Path

import pytest

from federation.local.netns import run
from federation.local.netplan import pod_commands, pod_netns
from image import rootfs
from tests.integration.containers import (
    STATE,
    ForeignBed,
    image_archive,
    load,
    sidecar_args,
    state_dir,
)
from tests.integration.isolated import (
    REGIONS,
    A,
    B,
    C,
    IsolatedFederation,
    Result,
    federation_file,
    isolated_federation,
    wait_for,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # the sidecars of the pods a test adds are owned by the federation's record, as those of
    # ``meshfed up --detach`` are (``meshfed down`` stops them); the runner keeps no Popen
    pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning"),
]

NAME = "echo.demo.svc.clusterset.local"
CURL = ["curl", "-sS", "-i", "--max-time", "10"]
FRONTEND_ID = "spiffe://meshfed.local/ns/demo/sa/frontend"
DENY_FRONTEND = f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-frontend, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: echo}}}}
  action: DENY
  rules: [{{from: [{{source: {{principals: ["{FRONTEND_ID.removeprefix("spiffe://")}"]}}}}]}}]
"""


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """The module's federation, with A's echo replica stopped."""
    with isolated_federation(
        tmp_path_factory.mktemp("capture"), federation_file(replicas=1, rps=5)
    ) as f:
        f.meshfed("demo", "kill", f"{A}/echo")
        yield f


def _status(output: str) -> int:
    found = re.search(r"^HTTP/[\d.]+ (\d{3})", output, re.MULTILINE)
    return int(found.group(1)) if found else 0


def _served_by(output: str) -> str:
    found = re.search(r"^x-meshfed-served-by: ([^/\r\n]+)", output, re.MULTILINE | re.IGNORECASE)
    return found.group(1) if found else ""


def _apply(fed: IsolatedFederation, text: str, *, delete: bool = False) -> None:
    path = fed.home / "doc.yaml"
    path.write_text(text)
    fed.meshfed("delete" if delete else "apply", "-f", str(path))


def _grpc(fed: IsolatedFederation, count: int = 3) -> list[str]:
    """``<server name> <caller's SPIFFE ID>`` or ``ERROR:<code> -`` per call of a plain gRPC
    client (grpcio, its own DNS resolver) dialling ``dns:///<name>:9090``."""
    argv = [sys.executable, "-m", "federation.demo.echo_grpc", "call", "--count", str(count)]
    argv += ["--target", f"dns:///{NAME}:9090", "--interval", "0", "--timeout", "5"]
    rc, out = fed.in_pod("sidecar-frontend", argv)
    assert rc == 0, out
    return [line.split(" ", 1)[1] for line in out.splitlines() if re.match(r"^\d+\.\d+ ", line)]


def test_an_unchanged_http_and_grpc_client_is_served_by_b_over_mtls(fed) -> None:
    """Proof 1: the name resolves to its ClusterSetIP in the pod; ``curl`` to it and a gRPC
    client dialling ``dns:///`` are served by B, whose sidecar saw the frontend's SVID (mTLS:
    its app got it in ``x-forwarded-client-cert``); a DENY policy for the frontend gives 403
    and PERMISSION_DENIED."""
    rc, out = fed.in_pod("sidecar-frontend", ["getent", "ahostsv4", NAME])
    assert rc == 0, out
    address = ipaddress.ip_address(out.split()[0])
    assert address in ipaddress.ip_network("240.241.0.0/16"), out

    def served() -> str:
        _, answer = fed.in_pod("sidecar-frontend", [*CURL, f"http://{NAME}:8080/"])
        return answer if _status(answer) == 200 and _served_by(answer) == B else ""

    answer = wait_for(served, 30, "curl served by B")
    body = json.loads(answer.split("\n\n", 1)[1])  # text mode: CRLF read as LF
    assert f"URI={FRONTEND_ID}" in body["xfcc"], body
    # gRPC through B's sidecar (STRICT: it takes mTLS only); the app behind it sees no TLS
    assert _grpc(fed) == [f"{B}-echo-1 -"] * 3

    _apply(fed, DENY_FRONTEND)
    try:
        wait_for(
            lambda: (
                _status(fed.in_pod("sidecar-frontend", [*CURL, f"http://{NAME}:8080/"])[1]) == 403
            ),
            30,
            "403 for the frontend",
        )
        # a connection opened before the change keeps the old chain until it closes
        # (INBOUND_MAX_CONNECTION_MS, 20 s): wait for the gRPC one too
        wait_for(lambda: set(_grpc(fed)) == {"ERROR:PERMISSION_DENIED -"}, 40, "PERMISSION_DENIED")
    finally:
        _apply(fed, DENY_FRONTEND, delete=True)
    wait_for(
        lambda: _status(fed.in_pod("sidecar-frontend", [*CURL, f"http://{NAME}:8080/"])[1]) == 200,
        30,
        "allowed again",
    )


def test_a_plain_text_client_that_skips_the_mesh_is_refused_under_strict(fed) -> None:
    """Proof 3 (STRICT): a bare pod in B (no sidecar, no capture) that dials B's echo pod
    at the app's own port is captured on the echo's side into its sidecar, which wants mTLS:
    the connection closes without an answer; the sidecar's mTLS port refuses it as well."""
    node = fed.add_pod(B, "intruder", 40, captured=False)
    echo = fed.plan.address(B, 10)
    for port in (8080, 15006):
        rc, out = fed.in_pod(node, [*CURL, f"http://{echo}:{port}/"])
        assert rc != 0 and _status(out) == 0, (port, out)


def test_permissive_lets_a_plain_text_client_in_through_the_sidecar(fed) -> None:
    """Proof 3 (PERMISSIVE): a workload ``legacy`` in B, STRICT first: the bare pod's plain
    text to its app port is refused; its WorkloadEntry applied again with ``mtlsMode:
    PERMISSIVE`` (Istio's migration mode): the same request is answered by the app, through
    the sidecar's plain-text chain for that port (the capture rules still take it)."""
    app = [sys.executable, "-m", "federation.demo.echo_http", "--name", "legacy"]
    app += ["--cluster", B, "--port", "8080"]
    fed.add_pod(B, "legacy", 41, app=app)
    address = fed.plan.address(B, 41)
    node = f"{B}/intruder"  # the bare pod of the test before
    rc, out = fed.in_pod(node, [*CURL, f"http://{address}:8080/"])
    assert rc != 0 and _status(out) == 0, out
    entry = f"""
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {{name: {B}-legacy, namespace: demo, labels: {{app: legacy}}}}
spec:
  service: legacy
  address: {address}
  serviceAccount: legacy
  locality: {REGIONS[B]}/eu-west-1a
  tlsMode: mutual
  inboundPort: 15006
  mtlsMode: PERMISSIVE
  ports: [{{name: http, port: 8080, targetPort: 8080, protocol: http}}]
"""
    path = fed.home / "legacy.yaml"
    path.write_text(entry)
    api = f"https://{fed.plan.address(B, 2)}:15014"
    fed.meshfed("apply", "--controlplane", api, "-f", str(path))

    def answered() -> str:
        _, answer = fed.in_pod(node, [*CURL, f"http://{address}:8080/"])
        return answer if _status(answer) == 200 else ""

    body = json.loads(wait_for(answered, 30, "plain text let in").split("\n\n", 1)[1])
    assert body["name"] == "legacy" and body["xfcc"] == "", body  # no client certificate


def test_outbound_traffic_policy_passes_or_closes_what_is_not_a_service(fed) -> None:
    """Proof 4: an address outside the mesh (the controller's API, which everyone may reach)
    is reached from a pod whose sidecar says ALLOW_ANY (the frontend's: the default), and the
    connection is closed from one that says REGISTRY_ONLY."""
    url = f"https://{fed.plan.node('controller').public}:15080/healthz"
    probe = ["curl", "-sS", "-k", "--max-time", "10", url]
    rc, out = fed.in_pod("sidecar-frontend", probe)
    assert rc == 0 and '"ok"' in out, out
    fed.add_pod(A, "closed", 41, sidecar=["--outbound-traffic-policy", "REGISTRY_ONLY"])
    rc, out = fed.in_pod("sidecar-closed", probe)
    assert rc != 0, out
    rc, out = fed.in_pod("sidecar-closed", [*CURL, f"http://{NAME}:8080/"])
    assert _status(out) == 200, out  # mesh services still pass


OUTSIDE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: outside-api, namespace: demo}}
spec:
  hosts: [api.outside.test]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: 18081}}]
  resolution: STATIC
  endpoints: [{{address: {address}}}]
"""


def test_a_service_entry_is_reached_by_name_and_nothing_else_outside_under_registry_only(
    fed,
) -> None:
    """Issue #40: an HTTP server outside the mesh (no sidecar, in A's own namespace); from a
    captured pod whose sidecar says REGISTRY_ONLY, an unchanged ``curl`` cannot reach it,
    by name or by address; with a ServiceEntry for it, ``curl http://api.outside.test/``
    resolves to an address of 240.240.0.0/16 and is served through the sidecar; its real
    address stays closed; the entry deleted, the name is gone again."""
    address = fed.plan.address(A, 1)
    app = [sys.executable, "-m", "federation.demo.echo_http", "--name", "outside"]
    fed.runner().spawn("outside-api", [*app, "--host", address, "--port", "18081"], "app", A)
    wait_for(
        lambda: fed.in_pod("outside-api", [*CURL, f"http://{address}:18081/"])[0] == 0,
        20,
        "the outside server (from A's own namespace, no sidecar)",
    )
    fed.add_pod(A, "egress", 43, sidecar=["--outbound-traffic-policy", "REGISTRY_ONLY"])
    by_name = [*CURL, "http://api.outside.test/"]
    by_address = [*CURL, f"http://{address}:18081/"]
    rc, out = fed.in_pod("sidecar-egress", by_address)
    assert rc != 0 and _status(out) == 0, out  # closed: not a service
    rc, out = fed.in_pod("sidecar-egress", by_name)
    assert rc != 0 and _status(out) == 0, out  # no such name

    entry = OUTSIDE_ENTRY.format(address=address)
    _apply(fed, entry)
    try:

        def served() -> str:
            _, answer = fed.in_pod("sidecar-egress", by_name)
            return answer if _status(answer) == 200 else ""

        answer = wait_for(served, 30, "the entry served by name")
        assert json.loads(answer.split("\n\n", 1)[1])["name"] == "outside"
        rc, out = fed.in_pod("sidecar-egress", ["getent", "ahostsv4", "api.outside.test"])
        assert ipaddress.ip_address(out.split()[0]) in ipaddress.ip_network("240.240.0.0/16")
        rc, out = fed.in_pod("sidecar-egress", by_address)
        assert rc != 0 and _status(out) == 0, out  # the entry opens its name, not the address
    finally:
        _apply(fed, entry, delete=True)
    wait_for(
        lambda: fed.in_pod("sidecar-egress", by_name)[0] != 0, 30, "the name gone with the entry"
    )


def test_without_the_proxy_exemption_envoy_loops_into_itself(fed) -> None:
    """Proof 5: the capture rules exempt the sidecar's group; installed without that exemption
    (another GID), Envoy's own connection to B's gateway is captured again and the request
    never gets out; the right rules make it work again."""
    node = fed.add_pod(A, "looped", 42)
    meshfed = [str(Path(sys.executable).with_name("meshfed")), "proxy", "init"]
    fed.in_pod(node, [*meshfed, "--proxy-uid", "4242", "--proxy-gid", "4242"])
    _, out = fed.in_pod(node, [*CURL, "--max-time", "5", f"http://{NAME}:8080/"])
    assert _status(out) != 200, out
    fed.in_pod(node, meshfed)
    _, out = fed.in_pod(node, [*CURL, f"http://{NAME}:8080/"])
    assert _status(out) == 200 and _served_by(out) == B, out


TCP_CLIENT = """
import collections, socket, sys
seen = collections.Counter()
for _ in range(int(sys.argv[1])):
    with socket.create_connection(("db.demo.svc.clusterset.local", 5432), timeout=10) as s:
        s.sendall(b"ping\\n")
        seen[s.makefile().readline().split()[1]] += 1
print(dict(seen))
"""


def _db(fed: IsolatedFederation, cluster: str) -> None:
    app = [sys.executable, "-m", "federation.demo.echo_tcp", "--name", f"db-{cluster}"]
    app += ["--cluster", cluster, "--port", "5432"]
    tcp = ["--protocol", "TCP", "--app-port", "5432", "--service-port", "5432"]
    pod = {B: "db-b", C: "db-c"}[cluster]
    fed.add_pod(cluster, pod, 20, service="db", app=app, sidecar=tcp)


def test_a_tcp_client_by_name_is_routed_by_the_policy_s_weights(fed) -> None:
    """Proof 2: ``db`` (plain TCP, port 5432) runs in B and C; a TCP client in A's frontend
    pod connects to ``db.demo.svc.clusterset.local:5432`` 100 times and is served by B and C
    by the weights of the TrafficPolicy's ``tcp`` route (70/30), the sidecars carrying
    mTLS between them."""
    for cluster in (B, C):
        _db(fed, cluster)
    exports = "---\n".join(
        "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
        f"metadata: {{name: db, namespace: demo}}\nspec: {{cluster: {c}}}\n"
        for c in (B, C)
    )
    _apply(fed, exports)
    policy = (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
        "metadata: {name: db, namespace: demo}\n"
        "spec:\n  host: db.demo.svc.clusterset.local\n  tcp:\n  - route:\n"
        f"    - {{destination: {{cluster: {B}}}, weight: 70}}\n"
        f"    - {{destination: {{cluster: {C}}}, weight: 30}}\n"
    )
    _apply(fed, policy)
    client = [sys.executable, "-c", TCP_CLIENT]

    def both() -> dict[str, int]:
        rc, out = fed.in_pod("sidecar-frontend", [*client, "20"])
        seen = json.loads(out.replace("'", '"')) if rc == 0 else {}
        return seen if set(seen) == {B, C} else {}

    wait_for(both, 60, "db served from B and C by name")
    rc, out = fed.in_pod("sidecar-frontend", [*client, "100"], timeout_s=120)
    assert rc == 0, out
    seen = json.loads(out.replace("'", '"'))
    assert sum(seen.values()) == 100 and 56 <= seen[B] <= 84, seen  # 70 % +- 3 sd


def test_failover_from_a_captured_client_loses_nothing(fed) -> None:
    """Proof 6: 200 requests/s from the frontend's pod, by name and captured, while B's echo
    is killed: every request is answered, by C at the end."""
    box: dict[str, list[Result]] = {}

    def drive() -> None:
        box["results"], _ = fed.drive("sidecar-frontend", rps=200, duration_s=12, by_name=True)

    thread = threading.Thread(target=drive)
    thread.start()
    try:
        fed.meshfed("demo", "kill", f"{B}/echo")  # its sidecar drains first: seconds of load
    finally:
        thread.join(timeout=60)
    results = box["results"]
    assert len(results) == 2400
    failed = [r for r in results if r.status != 200]
    assert not failed, f"{len(failed)} failed: {failed[:5]}"
    assert results[-1].served_by == C
    fed.meshfed("demo", "revive", f"{B}/echo")


def test_an_echo_replica_from_the_image_joins_the_federation_and_serves_its_cluster(
    fed, tmp_path
) -> None:
    """Issue 39: the image's echo app and sidecar, run by podman (runc) read-only, with every
    capability dropped, as 10001 and 1337, in a pod of A that this bed made, join the
    federation of ``meshfed up --isolate``: A's captured frontend, whose own echo is stopped,
    is served by the container replica in its own cluster again, not by B or C."""
    runner = fed.runner()
    cluster = runner.desc.cluster(A)
    host, pod, name = 40, "img-echo", f"{A}-img-echo"
    run(pod_commands(fed.plan, A, pod, host))  # a bare pod: the replica is called, not calling
    address = runner.net.address(cluster, host)
    cp = runner.net.address(cluster, 2)
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o755)
    state = fed.home / "controlplanes" / A
    token = runner.workload_token(cluster, "demo", "echo", name)
    (secrets / "echo.token").write_bytes(token.read_bytes())
    (secrets / "bundle.pem").write_bytes((state / "bundle.pem").read_bytes())
    os.chown(secrets / "echo.token", rootfs.PROXY_UID, rootfs.PROXY_UID)
    bed = ForeignBed(key="capture", image=load(image_archive()))
    netns = pod_netns(fed.plan.key, A, pod)
    try:
        bed.run(netns, "app", ["-m", "federation.demo.echo_http", "--name", name,
                               "--cluster", A, "--port", "18080"],
                user=rootfs.MESHFED_UID, entrypoint=f"/usr/bin/{rootfs.PYTHON}")  # fmt: skip
        args = sidecar_args(cp, address, "echo", name, 18080, "/etc/meshfed", cluster=A)
        bed.run(
            netns, "sidecar", args, user=rootfs.PROXY_UID,
            volumes={state_dir(tmp_path / "sidecar", rootfs.PROXY_UID): STATE,
                     secrets: "/etc/meshfed:ro"},
            env={"MESHFED_TOKEN": (state / "api-token").read_text().strip()},
        )  # fmt: skip

        def served() -> str:
            _, answer = fed.in_pod("sidecar-frontend", [*CURL, f"http://{NAME}:8080/"])
            return answer if _status(answer) == 200 and _served_by(answer) == A else ""

        try:
            answer = wait_for(served, 90, "the frontend served by A's container replica")
        except AssertionError:
            logs = "\n".join(f"--- {c}\n{bed.logs(c)[-2000:]}" for c in bed.containers)
            raise AssertionError(logs) from None
        assert json.loads(answer.split("\n\n", 1)[1])["name"] == name
    finally:
        bed.close()
