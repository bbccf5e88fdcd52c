"""Issue 39: meshfed's OCI image, built by ``make image``, run by podman (runc) as an admin
would -- read-only root, every capability dropped, a non-root user -- in network namespaces of
the test's own (:mod:`tests.integration.containers`).

One federation serves the module: the controller, a control plane and an echo pod (the echo
app and its sidecar, two containers in one namespace) from the image; a frontend sidecar run
by the host's meshfed in a namespace of its own is the client outside the containers.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from image import build as image_build
from image import rootfs
from tests.integration.containers import ARCHIVE, Bed, load, podman, state_dir, ulimits
from tests.integration.harness import MESHFED, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATE = "/" + rootfs.STATE_DIR
ECHO_HOST = "echo.demo.svc.clusterset.local"
CLUSTER = "c1"


@pytest.fixture(scope="module")
def archive() -> Path:
    """``build/image/meshfed.oci.tar`` (``make image``; built here when missing)."""
    if not ARCHIVE.exists():
        image_build.build(ARCHIVE.parent, epoch=image_build.source_date_epoch())
    return ARCHIVE


@pytest.fixture(scope="module")
def fed(archive, tmp_path_factory):
    """The module's federation (see the module docstring); torn down even when a step fails."""
    work = tmp_path_factory.mktemp("image")
    bed = Bed(key=uuid.uuid4().hex[:6], image=load(archive))
    host_procs: list[subprocess.Popen[bytes]] = []
    try:
        bed.open()
        yield _start(bed, work, host_procs)
    finally:
        for proc in host_procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        bed.close()


def _start(bed: Bed, work: Path, host_procs: list[subprocess.Popen[bytes]]) -> dict[str, object]:
    ctl_ip, cp_ip, pod_ip, client_ip = (bed.node(n) for n in ("ctl", "cp", "pod", "client"))
    uid, proxy = rootfs.MESHFED_UID, rootfs.PROXY_UID
    ctl = bed.run(
        "ctl", "controller",
        ["controller", "serve", "--listen", f"{ctl_ip}:15080", "--sync-listen", f"{ctl_ip}:15090"],
        user=uid, volumes={state_dir(work / "ctl", uid): STATE},
    )  # fmt: skip
    wait_until(
        lambda: bed.exec(ctl, "meshfed", "cluster", "list", check=False).returncode == 0,
        60, "the controller container's API", interval_s=0.5,
    )  # fmt: skip
    joined = bed.exec(
        ctl, "meshfed", "cluster", "join", CLUSTER, "--locality", "local/zone-a/a1",
        "--gateway", f"{cp_ip}:15443", "-o", "json",
    ).stdout  # fmt: skip
    token = json.loads(joined)["token"]
    cp_state = state_dir(work / "cp", uid)
    cp = bed.run(
        "cp", "controlplane",
        ["controlplane", "serve", "--cluster", CLUSTER, "--locality", "local/zone-a/a1",
         "--xds-listen", f"{cp_ip}:15010", "--ca-listen", f"{cp_ip}:15012",
         "--api-listen", f"{cp_ip}:15014", "--controller", f"https://{ctl_ip}:15080",
         "--join-token", token, "--gateway", f"{cp_ip}:15443"],
        user=uid, volumes={cp_state: STATE},
    )  # fmt: skip
    wait_until(
        lambda: "Ready" in bed.exec(ctl, "meshfed", "cluster", "list", check=False).stdout,
        60, "the control plane container to join", interval_s=0.5,
    )  # fmt: skip
    tokens = work / "tokens"
    tokens.mkdir(mode=0o755)
    for account in ("echo", "frontend"):
        bed.exec(
            cp, "meshfed", "workload", "token", "--cluster", CLUSTER, "-n", "demo",
            "--service-account", account, "--token-out", f"{STATE}/{account}.token",
            "--bundle-out", f"{STATE}/bundle.pem",
        )  # fmt: skip
    for name in ("echo.token", "frontend.token", "bundle.pem"):
        (tokens / name).write_bytes((cp_state / name).read_bytes())
    os.chown(tokens / "echo.token", proxy, proxy)
    # registering a WorkloadEntry takes the control plane's API token (as on a VM)
    api_token = (cp_state / "controlplanes" / CLUSTER / "api-token").read_text().strip()
    pod_state = state_dir(work / "pod", proxy)
    bed.run(
        "pod", "echo-app",
        ["-m", "federation.demo.echo_http", "--name", "c1-echo-1", "--cluster", CLUSTER,
         "--port", "18080"],
        user=uid, entrypoint=f"/usr/bin/{rootfs.PYTHON}",
    )  # fmt: skip
    sidecar = bed.run(
        "pod", "sidecar",
        ["proxy", "sidecar", "--cluster", CLUSTER, "--controlplane", f"{cp_ip}:15010",
         "--api", f"https://{cp_ip}:15014", "--trust-bundle", "/etc/meshfed/bundle.pem",
         "--workload-token-file", "/etc/meshfed/echo.token", "--service", "echo", "-n", "demo",
         "--name", "c1-echo-1", "--app-port", "18080", "--service-port", "8080",
         "--address", pod_ip, "--admin-port", "15000"],
        user=proxy, volumes={pod_state: STATE, tokens: "/etc/meshfed:ro"},
        env={"MESHFED_TOKEN": api_token},
    )  # fmt: skip
    export = (
        "apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
        f"metadata: {{name: echo, namespace: demo}}\nspec: {{cluster: {CLUSTER}}}\n"
    )
    (work / "ctl" / "export.yaml").write_text(export)
    bed.exec(ctl, "meshfed", "apply", "-f", f"{STATE}/export.yaml")
    client_home = work / "client"
    client_home.mkdir()
    log = (work / "frontend.log").open("ab")
    host_procs.append(
        subprocess.Popen(
            bed.in_node(
                "client",
                [MESHFED, "proxy", "sidecar", "--cluster", CLUSTER,
                 "--controlplane", f"{cp_ip}:15010", "--api", f"https://{cp_ip}:15014",
                 "--trust-bundle", str(tokens / "bundle.pem"),
                 "--workload-token-file", str(tokens / "frontend.token"),
                 "--service", "frontend", "-n", "demo", "--app-port", "9",
                 "--address", client_ip, "--outbound-port", "15001", "--admin-port", "15000"],
            ),
            env={**os.environ, "MESHFED_HOME": str(client_home), "MESHFED_TOKEN": api_token},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    )  # fmt: skip
    log.close()
    return {"bed": bed, "ctl": ctl, "cp": cp, "sidecar": sidecar, "work": work,
            "pod_state": pod_state}  # fmt: skip


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
        with tarfile.open(tmp_path / "blobs" / "sha256" / layer["digest"].split(":")[1]) as t:
            writable += [m.name for m in t if not m.issym() and m.mode & 0o002]
    assert len(manifest["layers"]) == 2
    assert not writable, writable[:10]
    config = json.loads(_blob(tmp_path, manifest["config"]["digest"]))["config"]
    assert config["User"] == f"{rootfs.MESHFED_UID}:{rootfs.MESHFED_UID}"


def _blob(layout: Path, digest: str) -> str:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_text()
