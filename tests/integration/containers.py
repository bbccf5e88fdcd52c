"""meshfed's OCI image run by a real container runtime (issue 39): podman, with runc.

Why podman with runc and not crun: Debian bookworm's crun 1.8.1 refuses these machines'
hybrid cgroup layout ("cgroups in hybrid mode not supported, drop all controllers from
cgroupv2"); runc 1.1.5 runs them. podman asks for RLIMIT_NOFILE 1048576 and RLIMIT_NPROC
32768 by default, which the container's init may not raise here (root lacks
CAP_SYS_RESOURCE: "error setting rlimit type 6: operation not permitted"), so each run gives
limits no higher than this process has (:func:`ulimits`).

A :class:`Bed` is the test's own network: one namespace holding a bridge, and one namespace
per node (``10.213.0.N/24``) with a veth into it. Containers join a node's namespace
(``--network ns:``); host processes run in one with ``ip netns exec``. Nothing listens outside
these namespaces. :meth:`Bed.close` removes every container and namespace it made.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from federation.install.controller import TOKEN_MOUNT, TRUST_MOUNT
from image import rootfs
from tests.integration.harness import MESHFED, wait_until

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO / "build/image/meshfed.oci.tar"
SUBNET = "10.213.0"
STATE = "/" + rootfs.STATE_DIR
CLUSTER = "c1"
ECHO_HOST = "echo.demo.svc.clusterset.local"
RUNTIME = "runc"


def podman(
    *args: str, timeout_s: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``podman ARGS`` (text), failing the test with podman's message when ``check``;
    ``env`` adds to this process's environment (``--env NAME`` passes a secret without argv)."""
    result = subprocess.run(
        ["podman", "--runtime", RUNTIME, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} -> {result.returncode}: {result.stderr}")
    return result


def ulimits() -> list[str]:
    """``--ulimit`` flags no higher than this process's limits (see the module docstring)."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def load(archive: Path = ARCHIVE) -> str:
    """``podman load`` the OCI archive; the image's ID."""
    out = podman("load", "--quiet", "--input", str(archive)).stdout
    ref = out.strip().splitlines()[-1].split(": ", 1)[-1].strip()
    return podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Bed:
    """Namespaces and containers of one test module (see the module docstring)."""

    key: str
    image: str
    nodes: dict[str, int] = field(default_factory=dict)
    containers: list[str] = field(default_factory=list)

    @property
    def hub(self) -> str:
        return f"mfimg-{self.key}-hub"

    def netns(self, node: str) -> str:
        return f"mfimg-{self.key}-{node}"

    def address(self, node: str) -> str:
        return f"{SUBNET}.{self.nodes[node]}"

    def open(self) -> None:
        ip("netns", "add", self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")

    def node(self, name: str) -> str:
        """A namespace ``name`` on the bridge, with the next address; its address."""
        host = len(self.nodes) + 2
        self.nodes[name] = host
        ns = self.netns(name)
        ip("netns", "add", ns)
        veth = f"v{self.key[-6:]}{host}"
        ip("-n", self.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("-n", self.hub, "link", "set", veth, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{SUBNET}.{host}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        # a default route, as a pod has: a resolver or address outside the subnet must be
        # routable for the capture rules (nat output hook) to see the packet at all
        ip("-n", ns, "route", "add", "default", "dev", "eth0")
        return self.address(name)

    def run(
        self,
        node: str,
        name: str,
        args: list[str],
        *,
        user: int,
        volumes: dict[Path, str] | None = None,
        entrypoint: str | None = None,
        caps: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        detach: bool = True,
    ) -> str:
        """A container in ``node``'s namespace: read-only root, every capability dropped but
        ``caps``, no new privileges, user ``user``; detached (its name is returned), or run
        to its end and removed (its output is returned; a failure fails the test)."""
        cname = f"{self.netns(node)}-{name}"
        if detach:
            self.containers.append(cname)
        mounts = [f"--volume={h}:{c}" for h, c in (volumes or {}).items()]
        mounts += [f"--env={k}" for k in (env or {})]
        started = podman(
            "run", "--detach" if detach else "--rm", "--name", cname, "--network", f"ns:/run/netns/{self.netns(node)}",
            "--read-only", "--cap-drop=all", *[f"--cap-add={c}" for c in caps],
            "--security-opt=no-new-privileges", f"--user={user}:{user}", *ulimits(), *mounts,
            *([f"--entrypoint={entrypoint}"] if entrypoint else []), self.image, *args,
            env=env,
        )  # fmt: skip
        return cname if detach else started.stdout + started.stderr

    def exec(
        self, container: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``podman exec CONTAINER ARGS``."""
        return podman("exec", container, *args, check=check, timeout_s=60)

    def logs(self, container: str) -> str:
        out = podman("logs", container, check=False)
        return out.stdout + out.stderr

    def in_node(self, node: str, argv: list[str]) -> list[str]:
        """``argv`` run by the host in ``node``'s namespace."""
        return ["ip", "netns", "exec", self.netns(node), *argv]

    def close(self) -> None:
        for cname in reversed(self.containers):
            podman("rm", "--force", "--time", "5", cname, check=False, timeout_s=60)
        for ns in [*(self.netns(n) for n in self.nodes), self.hub]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def controller_secrets(base: Path, uid: int) -> tuple[Path, Path]:
    """A root of trust made by ``meshfed trust init`` and prepared by ``meshfed controller
    install`` (which adds the controller's intermediate), and an admin token file: what the
    controller's Secrets hold, owned by ``uid``; (trust directory, token directory)."""
    env = {**os.environ, "MESHFED_HOME": str(base)}
    for argv in (
        ["trust", "init", "--trust-domain", "meshfed.local"],
        ["controller", "install", "--image", "meshfed@sha256:" + "0" * 64],
    ):
        subprocess.run([MESHFED, *argv], env=env, check=True, capture_output=True, timeout=60)
    token_dir = base / "token"
    token_dir.mkdir()
    (token_dir / "token").write_text(os.urandom(24).hex())
    for path in [base / "trust", *(base / "trust").rglob("*"), token_dir, token_dir / "token"]:
        os.chown(path, uid, uid)
    return base / "trust", token_dir


def join(bed: Bed, ctl: str, cluster: str, cp_ip: str) -> str:
    """``meshfed cluster join`` in the controller's container; the join token."""
    joined = bed.exec(
        ctl, "meshfed", "cluster", "join", cluster, "--locality", "local/zone-a/a1",
        "--gateway", f"{cp_ip}:15443", "-o", "json",
    ).stdout  # fmt: skip
    return str(json.loads(joined)["token"])


def controlplane_args(cluster: str, cp_ip: str, ctl_ip: str, token: str) -> list[str]:
    """``meshfed controlplane serve`` of ``cluster`` on ``cp_ip`` joining with ``token``."""
    return [
        "controlplane", "serve", "--cluster", cluster, "--locality", "local/zone-a/a1",
        "--xds-listen", f"{cp_ip}:15010", "--ca-listen", f"{cp_ip}:15012",
        "--api-listen", f"{cp_ip}:15014", "--controller", f"https://{ctl_ip}:15080",
        "--join-token", token, "--gateway", f"{cp_ip}:15443",
    ]  # fmt: skip


def sidecar_args(
    cp_ip: str,
    address: str,
    service: str,
    name: str,
    app_port: int,
    tokens: str,
    cluster: str = CLUSTER,
) -> list[str]:
    """``meshfed proxy sidecar`` of ``service`` (namespace demo) in ``cluster``, with its
    workload token and trust bundle under ``tokens``; Envoy's admin on 15000."""
    return [
        "proxy", "sidecar", "--cluster", cluster, "--controlplane", f"{cp_ip}:15010",
        "--api", f"https://{cp_ip}:15014", "--trust-bundle", f"{tokens}/bundle.pem",
        "--workload-token-file", f"{tokens}/{service}.token", "--service", service,
        "-n", "demo", "--name", name, "--app-port", str(app_port), "--service-port", "8080",
        "--address", address, "--admin-port", "15000", "--outbound-port", "15001",
        "--metrics-listen", f"{address}:15020",
    ]  # fmt: skip


class ForeignBed(Bed):
    """Containers in network namespaces made by someone else (``node`` is the namespace's
    name, e.g. a pod of ``meshfed up --isolate``): :meth:`close` removes the containers only."""

    def netns(self, node: str) -> str:
        return node

    def close(self) -> None:
        for cname in reversed(self.containers):
            podman("rm", "--force", "--time", "5", cname, check=False, timeout_s=60)


def image_archive() -> Path:
    """``build/image/meshfed.oci.tar`` (``make image``), built here when missing or older than
    a source file, so a test never runs an image of other code."""
    from image import build as image_build

    sources = [image_build.REPO / "pyproject.toml"]
    for package in ("federation", "eastwest_gateway", "trust", "providers", "image"):
        sources += (image_build.REPO / package).rglob("*.py")
    newest = max(p.stat().st_mtime for p in sources)
    if not ARCHIVE.exists() or ARCHIVE.stat().st_mtime < newest:
        image_build.build(ARCHIVE.parent, epoch=image_build.source_date_epoch())
    return ARCHIVE


def state_dir(path: Path, uid: int) -> Path:
    """A host directory for a container's ``/var/lib/meshfed``, owned by ``uid``, 0700."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    path.chmod(0o700)
    return path


def start_federation(
    bed: Bed, work: Path, host_procs: list[subprocess.Popen[bytes]]
) -> dict[str, object]:
    """Controller, control plane and echo pod (app and sidecar) from the image; a frontend
    sidecar of the host's meshfed in node ``client`` (appended to ``host_procs``), whose
    outbound port 15001 reaches the echo by :data:`ECHO_HOST`."""
    ctl_ip, cp_ip, pod_ip, client_ip = (bed.node(n) for n in ("ctl", "cp", "pod", "client"))
    uid, proxy = rootfs.MESHFED_UID, rootfs.PROXY_UID
    # as `meshfed controller install` lays it out: the root of trust (with the controller's
    # intermediate made beforehand) and the admin token mounted read-only
    trust, token_dir = controller_secrets(work / "ctl-secrets", uid)
    ctl = bed.run(
        "ctl", "controller",
        ["controller", "serve", "--listen", f"{ctl_ip}:15080", "--sync-listen", f"{ctl_ip}:15090",
         "--trust-dir", TRUST_MOUNT, "--token-file", f"{TOKEN_MOUNT}/token"],
        user=uid,
        volumes={state_dir(work / "ctl", uid): STATE, trust: f"{TRUST_MOUNT}:ro",
                 token_dir: f"{TOKEN_MOUNT}:ro"},
    )  # fmt: skip
    wait_until(
        lambda: bed.exec(ctl, "meshfed", "cluster", "list", check=False).returncode == 0,
        60, "the controller container's API", interval_s=0.5,
    )  # fmt: skip
    token = join(bed, ctl, CLUSTER, cp_ip)
    cp_state = state_dir(work / "cp", uid)
    cp = bed.run(
        "cp", "controlplane", controlplane_args(CLUSTER, cp_ip, ctl_ip, token),
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
        "pod", "sidecar", sidecar_args(cp_ip, pod_ip, "echo", "c1-echo-1", 18080, "/etc/meshfed"),
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
                [MESHFED, *sidecar_args(cp_ip, client_ip, "frontend", "frontend", 9, str(tokens))],
            ),
            env={**os.environ, "MESHFED_HOME": str(client_home), "MESHFED_TOKEN": api_token},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    )  # fmt: skip
    log.close()
    return {"bed": bed, "ctl": ctl, "cp": cp, "sidecar": sidecar, "work": work,
            "pod_state": pod_state, "cp_state": cp_state, "tokens": tokens,
            "api_token": api_token, "cp_ip": cp_ip}  # fmt: skip
