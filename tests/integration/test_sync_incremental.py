"""Issue #37: incremental sync between a real controller and a real control plane.

The control plane ``a`` dials the controller through a TCP relay of this test (the
controller advertises the relay as its sync address), so the test can cut the stream: while
it is cut (30 s) the controller takes edits, deletions and additions of policies, and after it the
control plane must hold exactly the controller's policies again (a whole update on the new
stream, a full resync). Before the cut every update after a stream's first went as a delta.

Protocol versions are checked on the wire, speaking for cluster ``b`` with its own control
plane certificate: a control plane of a newer protocol is refused with FAILED_PRECONDITION
and a message naming the side to upgrade; one from before protocol versions gets whole
updates only; one speaking protocol 2 or 3 gets a delta after the first update, each in its
own protocol.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from federation.netaddr import free_port
from federation.sync.delta import PROTOCOL, policy_id
from federation.sync.proto import sync_pb2
from tests.fuzzing import report_message, sync_channel
from tests.integration.harness import ControllerHandle, wait_until

pytestmark = pytest.mark.integration

#: How long the stream is cut (s): issue #37's "stream cut for 30 s".
CUT_S = 30.0


class Relay:
    """A TCP relay on loopback to ``target`` that can be cut (every connection closed and
    new ones refused) and restored. Threads; at most a few connections."""

    def __init__(self) -> None:
        self.port = free_port()
        self.target: tuple[str, int] | None = None
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._closed = threading.Event()
        self.connections = 0
        self.refused = 0  # dials refused while cut
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set() or self.target is None:
                self.refused += self._cut.is_set()
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:  # the controller is not there: refuse this one, keep relaying
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._sockets.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._server.close()


def _policy(host: str, attempts: int) -> str:
    return (
        "apiVersion: meshfed.io/v1alpha1\nkind: TrafficPolicy\n"
        f"metadata: {{name: {host}, namespace: demo}}\n"
        f"spec: {{host: {host}.demo.svc.clusterset.local, retries: {{attempts: {attempts}}}}}\n"
    )


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    """A controller advertising the relay as its sync address, cluster ``a`` joined with
    its control plane running (through the relay), cluster ``b`` joined and stopped."""
    from tests.integration.conftest import make_mesh_home, owned_processes

    base = tmp_path_factory.mktemp("sync-incremental")
    relay = Relay()
    try:
        with owned_processes(base) as procs:
            controller = ControllerHandle(
                procs,
                make_mesh_home(base),
                lease_s=30,
                extra_args=["--advertise-sync", relay.address],
            )
            relay.target = ("127.0.0.1", controller.sync_port)
            controller.start()
            a = controller.join("a", "aws/us-east-1/us-east-1a", f"127.0.0.1:{free_port()}")
            b = controller.join("b", "aws/eu-west-1/eu-west-1a", f"127.0.0.1:{free_port()}")
            b.stop()
            wait_until(lambda: controller.clusters()["a"]["state"] == "Ready", 15, "a Ready")
            yield controller, a, relay
    finally:
        relay.close()


def _held_policies(home: Path, cluster: str) -> set[str]:
    """Ids of the policies the control plane persisted with its last applied update."""
    from federation.controlplane.link.state import load_last_update
    from federation.sync.convert import update_to_proto

    update = load_last_update(home / "controlplanes" / cluster)
    return {policy_id(t) for t in update_to_proto(update).policies_json} if update else set()


def _controller_policies(controller: ControllerHandle) -> set[str]:
    from federation.model.documents import validate_documents
    from federation.sync.convert import policy_json

    docs = controller.api("GET", "/v1/policies")
    items = docs["policies"] if isinstance(docs, dict) else docs
    return {policy_id(policy_json(d)) for d in validate_documents(items, source="api")}


def _sent(controller: ControllerHandle) -> dict[str, float]:
    """``meshfed_controller_update_messages_total`` by kind."""
    request = urllib.request.Request(
        f"{controller.url}/metrics", headers={"Authorization": f"Bearer {controller.token()}"}
    )
    with urllib.request.urlopen(request, timeout=5, context=controller.ssl_context()) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("meshfed_controller_update_messages_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            out[kind] = float(line.rsplit(" ", 1)[1])
    return out


def test_a_control_plane_cut_off_resyncs_to_the_controllers_state(joined) -> None:
    controller, _, relay = joined
    home = controller.home
    controller.api("POST", "/v1/apply", "---\n".join(_policy(f"p{i}", 2) for i in range(40)))
    wait_until(
        lambda: _held_policies(home, "a") == _controller_policies(controller),
        15,
        "the 40 policies at a",
    )
    for i in range(3):  # three more changes: each reaches a as a delta
        controller.api("POST", "/v1/apply", _policy(f"p{i}", 3))
    wait_until(
        lambda: _held_policies(home, "a") == _controller_policies(controller), 15, "edits at a"
    )
    before = _sent(controller)
    assert before.get("delta", 0) >= 3, before

    relay.cut()
    cut_at = time.monotonic()
    # while a is cut off: edits, deletions, additions
    controller.api("POST", "/v1/apply", "---\n".join(_policy(f"p{i}", 4) for i in range(10, 20)))
    controller.api("POST", "/v1/delete", "---\n".join(_policy(f"p{i}", 2) for i in range(20, 30)))
    controller.api("POST", "/v1/apply", "---\n".join(_policy(f"q{i}", 1) for i in range(5)))
    wanted = _controller_policies(controller)
    assert len(wanted) == 35
    assert _held_policies(home, "a") != wanted  # a missed them
    # the outage: 30 s cut off, long enough for a's redials to back off to their
    # 10 s cap (federation.controlplane.link.session) -- all refused meanwhile
    time.sleep(max(0.0, cut_at + CUT_S - time.monotonic()))
    assert relay.refused >= 2, relay.refused
    assert _held_policies(home, "a") != wanted
    relay.restore()
    wait_until(lambda: _held_policies(home, "a") == wanted, 30, "a resynced")
    after = _sent(controller)
    assert after.get("whole", 0) > before.get("whole", 0)  # the new stream began whole
    assert relay.connections >= 2


def _report(protocol: int) -> sync_pb2.ClusterReport:
    message = report_message({"cluster": "b", "gateway": "127.0.0.1:15443"})
    message.protocol = protocol
    return message


def _two_updates(controller: ControllerHandle, protocol: int) -> list[sync_pb2.ControllerUpdate]:
    """Open a stream for b speaking ``protocol``, read its first update, make a change,
    read the next."""
    got: list[sync_pb2.ControllerUpdate] = []
    done = threading.Event()

    def reports():
        yield _report(protocol)
        done.wait(30)

    with sync_channel(controller, "b") as stub:
        call = stub.Sync(reports(), timeout=30)
        try:
            for update in call:
                got.append(update)
                if len(got) == 1:
                    controller.api("POST", "/v1/apply", _policy(f"v{protocol}", 1))
                if len(got) == 2:
                    break
        finally:
            done.set()
            call.cancel()
    return got


def test_protocol_versions_are_bridged_or_refused_clearly(joined) -> None:
    controller, _, _ = joined
    with sync_channel(controller, "b") as stub:
        with pytest.raises(grpc.RpcError) as info:
            for _ in stub.Sync(iter([_report(PROTOCOL + 1)]), timeout=10):
                pass
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"speaks sync protocol {PROTOCOL + 1}" in info.value.details()
    assert "upgrade the controller" in info.value.details()

    old = _two_updates(controller, 0)  # a release before protocol versions
    assert [u.base_version for u in old] == [0, 0]
    assert len(old[1].policies_json) == len(old[0].policies_json) + 1
    new = _two_updates(controller, PROTOCOL)
    assert new[0].base_version == 0 and new[1].base_version == new[0].version
    assert len(new[1].policies_json) == 1  # only the policy just applied
    # each side is answered in its own protocol: a control plane of the release before the
    # Istio kinds (protocol 2) still gets deltas
    last = _two_updates(controller, 2)
    assert last[1].base_version == last[0].version
    assert [u.protocol for u in old + new + last] == [1, 1, PROTOCOL, PROTOCOL, 2, 2]
