"""Issue #35: the controller's ``FederationSync`` gRPC service fuzzed with generated
``ClusterReport`` messages (hypothesis) from a joined member's control-plane certificate,
against a real ``meshfed controller serve`` that also has a real control plane attached.

Each generated stream sends one report and half-closes. The checks, per stream: it never ends
in UNKNOWN or INTERNAL (an unhandled error in the servicer); a refused report (any other
non-OK status) changes nothing the API shows; after an accepted one every read of the API
still answers 200. At the end: the controller is healthy, its planner never failed a round,
the attached control plane is still Ready and never refused an update (what b reported
reaches it as ServiceImports), and a well-formed report from the fuzzed cluster
still reaches the other cluster as a ServiceImport.

A bounded pass (:data:`EXAMPLES` streams) runs here; ``bench/fuzz_api.py`` runs more.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from tests.fuzzing import (
    FuzzTarget,
    fuzz_cluster_reports,
    send_report,
    sync_channel,
    sync_members,
)
from tests.integration.harness import ControllerHandle, wait_until

pytestmark = pytest.mark.integration

#: Generated streams in CI (MESHFED_FUZZ_EXAMPLES overrides, times 4).
EXAMPLES = int(os.environ.get("MESHFED_FUZZ_EXAMPLES", "20")) * 4


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """A controller with members ``a`` (running) and ``b`` (the fuzzer speaks for it):
    :func:`tests.fuzzing.sync_members`."""
    from tests.integration.conftest import make_mesh_home, owned_processes

    base = tmp_path_factory.mktemp("fuzz-sync")
    with owned_processes(base) as procs:
        controller = ControllerHandle(procs, make_mesh_home(base), lease_s=30)
        controller.start()
        yield controller, sync_members(controller)


def test_fuzz_cluster_reports(members) -> None:
    controller, a = members
    target = FuzzTarget.for_controller(controller)
    target.state_paths = (*target.state_paths, "/v1/imports")
    ended: Counter[str] = Counter()
    with sync_channel(controller, "b") as stub:
        fuzz_cluster_reports(target, stub, "b", EXAMPLES, ended)
    print(dict(ended))
    assert ended["OK"] > EXAMPLES // 10, f"too few reports accepted to reach deep: {ended}"
    assert len(ended) > 1, f"no report was refused: {ended}"

    # the other cluster's control plane is still attached and Ready
    assert controller.clusters()["a"]["state"] == "Ready"
    assert a.proc is not None and a.proc.poll() is None
    # a good report from b still reaches a as an import of echo served by b
    good = {
        "cluster": "b",
        "gateway": "127.0.0.1:15443",
        "services": [
            {
                "namespace": "demo",
                "name": "echo",
                "ports": [{"name": "http", "port": 8080, "protocol": "http"}],
                "service_accounts": ["echo"],
                "healthy_endpoints_by_zone": {"eu-west-1a": 1},
            }
        ],
        "exports": [{"namespace": "demo", "name": "echo"}],
    }
    with sync_channel(controller, "b") as stub:
        assert send_report(stub, good) == "OK"

    def imported() -> bool:
        body = controller.api("GET", "/v1/imports")
        text = json.dumps(body.get("a", body))
        return '"echo"' in text and '"b"' in text

    wait_until(imported, 10, "a to import echo from b")
    log = controller.procs.log(controller.log_name)
    assert "planning round failed" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    # nothing b reported made a's control plane refuse what the controller sent it
    a_log = a.procs.log(f"controlplane-a-{a.starts}")
    assert "sync with the controller failed" not in a_log, a_log[-3000:]
    assert "Traceback" not in a_log, a_log[-3000:]


def test_a_refused_stream_does_not_replace_the_working_one(members) -> None:
    """Found by the fuzzer: a stream whose first report was refused used to replace the
    cluster's working stream (closed as "replaced by a newer stream") before its report was
    read. Now a stream counts from its first accepted report."""
    import threading

    from google.protobuf import json_format

    from federation.sync.proto import sync_pb2

    controller, _ = members
    stop = threading.Event()
    good = json_format.ParseDict(
        {"cluster": "b", "gateway": "127.0.0.1:15443"}, sync_pb2.ClusterReport()
    )

    def reports():
        yield good
        stop.wait(30)

    with sync_channel(controller, "b") as stub:
        working = stub.Sync(reports(), timeout=40)
        try:
            next(working)  # b's whole view: the stream is attached
            assert controller.clusters()["b"]["connected"] is True
            bad = {
                "cluster": "b",
                "gateway": "127.0.0.1:15443",
                "services": [
                    {
                        "namespace": "demo",
                        "name": "echo",
                        "ports": [{"name": "http", "port": 65536}],
                    }
                ],
            }
            assert send_report(stub, bad) == "INVALID_ARGUMENT"
            assert controller.clusters()["b"]["connected"] is True
            assert working.running() or not working.done(), "the working stream was closed"
        finally:
            stop.set()
            working.cancel()
