"""Two control plane replicas of one Kubernetes cluster (issue #39: "the control plane runs
>= 2 replicas; say how they share state"), against the API server fake (tests/kube_fake.py),
a real controller, real Envoy sidecars and an east-west gateway.

Cluster ``a`` runs replicas ``a1`` and ``a2`` with one join token and state directories of
their own (the emptyDir each pod gets) and the shared objects ``meshfed install`` creates
empty; cluster ``b`` (one replica, creating its own) exports ``echo``. What a user sees:

- one replica joined and leads, the other took the identity from the shared Secret: both
  serve certificates from the same intermediate, the same injector CA and API token;
- a client sidecar connected to the *follower* is served by ``b``'s echo through ``b``'s
  gateway: the follower serves the imports the leader received;
- the leader is killed (SIGKILL, no goodbye): the follower takes the Lease over, syncs with
  the controller itself (the member is connected again), writes the next import into its
  cluster, and keeps serving the client throughout.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import yaml

from federation.controlplane.kube.pod import NAMESPACE
from federation.controlplane.kube.replicas import IDENTITY_SECRET, LEADER_LEASE
from federation.install.manifests import shared_state
from tests.integration.harness import (
    ControllerHandle,
    ControlPlaneHandle,
    free_port,
    get,
    plane_info,
    run_meshfed,
    start_echo,
    start_gateway,
    start_sidecar,
    wait_until,
)
from tests.integration.test_kube_federation import (
    EXPORT,
    LOCALITY,
    endpoint,
    gateway_service,
    service,
)
from tests.kube_fake import FakeKube

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The shortest lease the CLI takes (retry 1.07 s): a killed leader is replaced within ~10 s.
LEASE_S = 8


def role(cp: ControlPlaneHandle) -> str:
    return str(plane_info(cp.api_url, cp.home)["federation"]["role"])


def test_two_replicas_share_one_identity_and_a_follower_takes_over_from_a_killed_leader(
    procs, tmp_path: Path, kubes: dict[str, FakeKube]
) -> None:
    home = tmp_path / "home"
    controller = ControllerHandle(procs, home, lease_s=10)
    controller.start()
    tokens, kubeconfigs, gateways = {}, {}, {}
    for n, name in enumerate(("a", "b"), start=1):
        gateways[name] = f"127.0.{n}.1:{free_port(f'127.0.{n}.1')}"
        out = run_meshfed(
            home, "cluster", "join", name, "--locality", LOCALITY[name],
            "--network", f"net-{name}", "-o", "json",
        ).stdout  # fmt: skip
        tokens[name] = json.loads(out)["token"]
        kubeconfigs[name] = kubes[name].write_kubeconfig(tmp_path / f"kubeconfig-{name}")
        kubes[name].create(gateway_service(int(gateways[name].rsplit(":", 1)[1])))
    # a's shared objects as `meshfed install` creates them (empty; its Role may not create
    # them); b's control plane creates its own
    for obj in shared_state():
        kubes["a"].create(obj)

    def plane(cluster: str, replica: int, state_dir: Path | None = None) -> ControlPlaneHandle:
        return ControlPlaneHandle(
            procs, home, cluster, LOCALITY[cluster], starts=10 * replica,
            extra_args=["--network", f"net-{cluster}",
                        "--controller", f"127.0.0.1:{controller.api_port}",
                        "--join-token", tokens[cluster],
                        "--gateway-service", f"{NAMESPACE}/meshfed-gateway",
                        "--kubernetes", "--kubeconfig", str(kubeconfigs[cluster]),
                        "--kube-namespaces", "demo", "--leader-lease", str(LEASE_S),
                        "--webhook-listen", f"127.0.0.1:{free_port()}",
                        "--sidecar-image", "meshfed@sha256:" + "0" * 64,
                        *(["--state-dir", str(state_dir)] if state_dir else [])],
        )  # fmt: skip

    a1 = plane("a", 1)
    a2 = plane("a", 2, home / "controlplanes" / "a-replica-2")
    b = plane("b", 1)
    for cp in (a1, a2, b):
        cp.start()

    # -- one identity: joined once (the token is good once), shared through the Secret ---------
    assert role(a1) == "leader" and role(a2) == "follower"
    secret = kubes["a"].get("Secret", NAMESPACE, IDENTITY_SECRET) or {}
    assert set(secret["data"]) >= {"join.json", "ca-key.pem", "ca.pem", "webhook-ca.pem"}
    state = {"a1": home / "controlplanes" / "a", "a2": home / "controlplanes" / "a-replica-2"}
    for name in ("ca/ca-key.pem", "ca/ca.pem", "webhook-tls/ca.pem", "api-token"):
        assert (state["a1"] / name).read_bytes() == (state["a2"] / name).read_bytes(), name
    for key in ("ca/ca-key.pem", "webhook-tls/ca-key.pem", "api-token"):
        assert (state["a2"] / key).stat().st_mode & 0o777 == 0o600, key

    # -- b exports echo; a client sidecar on a's *follower* is served by it --------------------
    start_gateway(procs, home, b, gateways["b"])
    app_port = free_port()
    start_echo(procs, "echo-1", app_port, "b")
    kube_b = kubes["b"]
    for obj in [service(8080), *endpoint("b", "127.0.2.11", app_port, sidecar=True)]:
        kube_b.create(obj)
    kube_b.create(yaml.safe_load(EXPORT))
    lb = kube_b.get("Service", NAMESPACE, "meshfed-gateway") or {}
    host = gateways["b"].rsplit(":", 1)[0]
    kube_b.set_status({**lb, "status": {"loadBalancer": {"ingress": [{"ip": host}]}}})
    server = start_sidecar(procs, b, name="echo-1", workload="k8s-echo-127-0-2-11",
                           service_account="echo", locality=LOCALITY["b"])  # fmt: skip
    port = free_port()
    client = start_sidecar(procs, a2, name="client", service_account="frontend",
                           locality=LOCALITY["a"], outbound_port=port)  # fmt: skip
    server.wait_ready(30)
    client.wait_ready(30)

    def served_by_b(host: str = "echo.demo.svc.clusterset.local", p: int = port) -> bool:
        status, data, _headers = get(p, host)
        return status == 200 and data["cluster"] == "b"

    wait_until(served_by_b, 45, "a's follower's client served by b's echo")
    wait_until(lambda: kubes["a"].get("ServiceImport", "demo", "echo"), 15, "a's ServiceImport")

    # -- the leader dies without a goodbye: the follower takes over --------------------------
    assert a1.proc is not None
    a1.proc.send_signal(signal.SIGKILL)
    a1.proc.wait(10)
    killed = time.monotonic()
    wait_until(lambda: role(a2) == "leader", 3 * LEASE_S, "a2 leads after a1 was killed")
    takeover_s = time.monotonic() - killed
    print(f"takeover after SIGKILL of the leader: {takeover_s:.1f} s (lease {LEASE_S} s)")
    lease = kubes["a"].get("Lease", NAMESPACE, LEADER_LEASE) or {}
    assert lease["spec"]["holderIdentity"] != ""

    def a_connected() -> bool:
        out = run_meshfed(home, "cluster", "list", "-o", "json").stdout
        return any(c["name"] == "a" and c["connected"] for c in json.loads(out))

    wait_until(a_connected, 30, "cluster a connected again (a2's sync stream)")
    # the new leader syncs and writes: b's next export becomes a ServiceImport in a
    kube_b.create({**service(8080), "metadata": {"name": "echo2", "namespace": "demo"}})
    *_, slice_ = endpoint("b", "127.0.2.11", app_port, sidecar=True)
    kube_b.create(
        {
            **slice_,
            "metadata": {
                "name": "echo2-x1",
                "namespace": "demo",
                "labels": {"kubernetes.io/service-name": "echo2"},
            },
        }
    )
    kube_b.create(yaml.safe_load(EXPORT.replace("name: echo", "name: echo2")))
    wait_until(lambda: kubes["a"].get("ServiceImport", "demo", "echo2"), 30,
               "a's ServiceImport of echo2, written by the new leader")  # fmt: skip
    assert served_by_b(), "the client kept being served across the takeover"
    # a new workload gets its first SVID from the new leader's CA, and is served too
    port2 = free_port()
    late = start_sidecar(procs, a2, name="late", service_account="frontend",
                         locality=LOCALITY["a"], outbound_port=port2)  # fmt: skip
    late.wait_ready(30)
    wait_until(lambda: served_by_b(p=port2), 30, "a client started after the takeover")
