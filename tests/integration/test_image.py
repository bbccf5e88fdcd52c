"""Issue 39: meshfed's OCI image, built by ``make image``, run by podman (runc) as an admin
would -- read-only root, every capability dropped, a non-root user -- in network namespaces of
the test's own (:mod:`tests.integration.containers`).

One federation serves the module: the controller, a control plane and an echo pod (the echo
app and its sidecar, two containers in one namespace) from the image; a frontend sidecar run
by the host's meshfed in a namespace of its own is the client outside the containers.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from image import build as image_build
from image import rootfs
from tests.integration.containers import (
    CLUSTER,
    ECHO_HOST,
    STATE,
    Bed,
    image_archive,
    load,
    podman,
    sidecar_args,
    start_federation,
    state_dir,
    ulimits,
)
from tests.integration.harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def archive() -> Path:
    return image_archive()


@pytest.fixture(scope="module")
def fed(archive, tmp_path_factory):
    """The module's federation (see the module docstring); torn down even when a step fails."""
    work = tmp_path_factory.mktemp("image")
    bed = Bed(key=uuid.uuid4().hex[:6], image=load(archive))
    host_procs: list[subprocess.Popen[bytes]] = []
    try:
        bed.open()
        yield start_federation(bed, work, host_procs)
    finally:
        for proc in host_procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        bed.close()


def _curl(bed: Bed, path: str = "/") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bed.in_node(
            "client",
            ["curl", "-sS", "--max-time", "5", "-H", f"Host: {ECHO_HOST}",
             f"http://127.0.0.1:15001{path}"],
        ),
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip


def test_a_client_outside_calls_the_echo_in_containers_and_the_member_is_ready(fed):
    bed: Bed = fed["bed"]

    def answered() -> dict[str, object] | None:
        out = _curl(bed)
        return (
            json.loads(out.stdout) if out.returncode == 0 and out.stdout.startswith("{") else None
        )

    try:
        body = wait_until(answered, 90, "the echo in its container to answer through the mesh", 0.5)
    except AssertionError:
        raise AssertionError(_diagnosis(fed, _curl(bed))) from None
    assert body["name"] == "c1-echo-1" and body["cluster"] == CLUSTER
    listed = json.loads(bed.exec(fed["ctl"], "meshfed", "cluster", "list", "-o", "json").stdout)
    (member,) = [m for m in listed if m["name"] == CLUSTER]
    assert member["state"] == "Ready"


def test_a_captured_pod_of_containers_reaches_the_echo_by_name_unchanged(fed):
    """A pod as the injector makes it, from the image: ``meshfed proxy init`` as root with
    NET_ADMIN and NET_RAW only (its nftables rules), the sidecar with ``--capture`` as 1337,
    and an app that knows nothing of the mesh: it dials ``echo...clusterset.local:8080``,
    resolved by the agent and carried by the sidecar."""
    bed: Bed = fed["bed"]
    address = bed.node("cap")
    init = bed.run(
        "cap", "init", ["proxy", "init"], user=0, caps=("NET_ADMIN", "NET_RAW"), detach=False
    )
    assert "inet meshfed" in init or init == "", init
    tokens: Path = fed["tokens"]
    cp_state: Path = fed["cp_state"]
    bed.exec(
        fed["cp"], "meshfed", "workload", "token", "--cluster", CLUSTER, "-n", "demo",
        "--service-account", "capclient", "--token-out", f"{STATE}/capclient.token",
    )  # fmt: skip
    (tokens / "capclient.token").write_bytes((cp_state / "capclient.token").read_bytes())
    os.chown(tokens / "capclient.token", rootfs.PROXY_UID, rootfs.PROXY_UID)
    args = sidecar_args(fed["cp_ip"], address, "capclient", "capclient", 9, "/etc/meshfed")
    sidecar = bed.run(
        "cap", "sidecar", [*args, "--capture"], user=rootfs.PROXY_UID,
        volumes={state_dir(fed["work"] / "cap", rootfs.PROXY_UID): STATE,
                 tokens: "/etc/meshfed:ro"},
        env={"MESHFED_TOKEN": fed["api_token"]},
    )  # fmt: skip
    app = (
        "import json, urllib.request\n"
        "body = urllib.request.urlopen('http://echo.demo.svc.clusterset.local:8080/', timeout=5)\n"
        "print(json.loads(body.read())['name'])\n"
    )

    def answered() -> str | None:
        try:
            out = bed.run("cap", "app", ["-c", app], user=rootfs.MESHFED_UID,
                          entrypoint=f"/usr/bin/{rootfs.PYTHON}", detach=False)  # fmt: skip
        except AssertionError:
            return None
        return out.strip()

    try:
        name = wait_until(answered, 90, "the captured app's call to land", 1.0)
    except AssertionError:
        raise AssertionError(bed.logs(sidecar)[-3000:]) from None
    assert name == "c1-echo-1"


def _diagnosis(fed: dict[str, object], last: subprocess.CompletedProcess[str]) -> str:
    bed: Bed = fed["bed"]  # type: ignore[assignment]
    work: Path = fed["work"]  # type: ignore[assignment]
    parts = [f"last call: {last.returncode} {last.stdout[-400:]} {last.stderr[-400:]}"]
    for cname in bed.containers:
        parts.append(f"--- {cname}\n{bed.logs(cname)[-2500:]}")
    parts.append(f"--- frontend\n{(work / 'frontend.log').read_text()[-2500:]}")
    return "\n".join(parts)


def test_the_sidecar_container_got_its_first_svid_and_the_controller_is_healthy(fed):
    bed: Bed = fed["bed"]
    svids = list(Path(fed["pod_state"]).glob("proxies/*/identity/*.json"))
    assert svids, "the sidecar container kept no SVID"
    health = bed.exec(
        fed["ctl"], f"/usr/bin/{rootfs.PYTHON}", "-c",
        "import urllib.request,ssl;c=ssl._create_unverified_context();"
        f"print(urllib.request.urlopen('https://{bed.address('ctl')}:15080/healthz',context=c).status)",
    )  # fmt: skip
    assert health.stdout.strip() == "200"
    # the readiness a kubelet probes, from outside the pod: Envoy's /ready through the agent
    ready = subprocess.run(
        bed.in_node("client", ["curl", "-sS", f"http://{bed.address('pod')}:15020/healthz/ready"]),
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert ready.stdout.strip() == "LIVE", ready
    version = podman(
        "run", "--rm", "--network=none", "--read-only", "--cap-drop=all", *ulimits(),
        bed.image, "version", "-o", "json",
    ).stdout  # fmt: skip
    assert json.loads(version)["meshfed"] == image_build.meshfed_version()


@pytest.mark.parametrize("role", ["ctl", "cp", "sidecar"])
def test_containers_run_unprivileged_on_a_read_only_root(fed, role):
    bed: Bed = fed["bed"]
    probe = (
        "import os\n"
        "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')]\n"
        "try:\n    open('/usr/local/bin/probe', 'w'); ro = False\n"
        "except OSError as e:\n    ro = e.errno == 30\n"
        "print(os.getuid(), os.getgid(), caps[0], ro)\n"
    )
    out = bed.exec(fed[role], f"/usr/bin/{rootfs.PYTHON}", "-c", probe).stdout.split()
    uid, gid, cap_eff, read_only = out
    assert int(uid) != 0 and int(gid) != 0
    assert int(cap_eff, 16) == 0, "a capability is left"
    assert read_only == "True", "the root filesystem is writable"


def test_no_file_in_the_image_is_world_writable(archive, tmp_path):
    with tarfile.open(archive) as oci:  # an oci-archive is a tar of an OCI layout
        oci.extractall(tmp_path, filter="data")
    index = json.loads((tmp_path / "index.json").read_text())
    manifest = json.loads(_blob(tmp_path, index["manifests"][0]["digest"]))
    writable = []
    for layer in manifest["layers"]:
        with _layer(tmp_path, layer) as t:
            writable += [m.name for m in t if not m.issym() and m.mode & 0o002]
    assert len(manifest["layers"]) == 2
    # make image's default: zstd layers (docs/image.md)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    }
    assert not writable, writable[:10]
    config = json.loads(_blob(tmp_path, manifest["config"]["digest"]))["config"]
    assert config["User"] == f"{rootfs.MESHFED_UID}:{rootfs.MESHFED_UID}"


@contextlib.contextmanager
def _layer(layout: Path, layer: dict[str, Any]) -> Iterator[tarfile.TarFile]:
    """A layer's tar, read as a stream (zstd or gzip, as its media type says)."""
    path = layout / "blobs" / "sha256" / layer["digest"].split(":")[1]
    with path.open("rb") as raw:
        if layer["mediaType"].endswith("+zstd"):
            with (
                zstandard.ZstdDecompressor().stream_reader(raw) as plain,
                tarfile.open(fileobj=plain, mode="r|") as t,
            ):
                yield t
        else:
            with tarfile.open(fileobj=raw, mode="r|gz") as t:
                yield t


def _blob(layout: Path, digest: str) -> str:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_text()
