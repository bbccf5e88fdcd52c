"""The image (issue 39): size, build time, reproducibility, and cold starts in containers
beside the same programs started without them, in one run.

1. ``make image``'s build twice (``--builds``), into two directories: build time of each, and
   whether the two digests are equal (same commit, same package versions).
2. A federation from the image (tests/integration/containers.py: controller container, then
   clusters joined one by one). For each of ``--rounds`` rounds, alternating which goes first:
   - **control plane**: ``podman run`` of ``meshfed controlplane serve`` (container) and the
     host's ``meshfed controlplane serve`` in a namespace of its own (process), each for a new
     cluster, from the start command to its API's ``/healthz`` answering 200;
   - **sidecar**: ``podman run`` of ``meshfed proxy sidecar`` (container) and the host's
     (process), each for a new workload, from the start command to Envoy's admin ``/ready``
     answering ``LIVE`` (first SVID obtained, xDS received).
   The processes run the image's wheel from a virtualenv of its runtime dependencies alone
   (:func:`runtime_meshfed`). Printed: the median and the max of each, and the ratio
   container/process of the medians.

    sudo .venv/bin/python bench/image.py [--rounds 5] [--builds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image import build as image_build
from image import rootfs
from tests.integration.containers import (
    STATE,
    Bed,
    controlplane_args,
    join,
    load,
    sidecar_args,
    state_dir,
)

MIB = 1 << 20


def _until(check, timeout_s: float = 120.0) -> float:
    """Seconds until ``check()`` is true (polled every 20 ms)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    raise TimeoutError("not ready in time")


def _curl_ok(bed: Bed, node: str, url: str, want: str) -> bool:
    out = subprocess.run(
        bed.in_node(node, ["curl", "-sk", "--max-time", "1", url]),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.returncode == 0 and want in out.stdout


def builds(n: int, work: Path) -> list[dict[str, object]]:
    epoch = image_build.source_date_epoch()
    out = []
    for i in range(n):
        result = image_build.build(work / f"build-{i}", epoch=epoch)
        out.append(json.loads((work / f"build-{i}" / "build.json").read_text()))
        print(f"build {i + 1}: {result.build_seconds:.0f} s, {result.digest}", flush=True)
    return out


def runtime_meshfed(archive: Path, work: Path) -> str:
    """``meshfed`` of a virtualenv with meshfed's wheel (the one in the image) and its runtime
    dependencies only: the development venv also holds the test tools, and one of them
    (kubernetes-validate, which kubernetes_asyncio imports when present) adds 1.7 s to every
    control plane start."""
    venv = work / "runtime-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheel = next((archive.parent / "work" / "wheels").glob("meshfed-*.whl"))
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "--only-binary=:all:", str(wheel)],
                   check=True)  # fmt: skip
    return str(venv / "bin/meshfed")


def cold_starts(archive: Path, rounds: int, work: Path) -> dict[str, list[float]]:
    meshfed = runtime_meshfed(archive, work)
    bed = Bed(key=uuid.uuid4().hex[:6], image=load(archive))
    procs: list[subprocess.Popen[bytes]] = []
    times: dict[str, list[float]] = {k: [] for k in ("cp-container", "cp-process",
                                                     "sidecar-container", "sidecar-process")}  # fmt: skip
    uid, proxy = rootfs.MESHFED_UID, rootfs.PROXY_UID
    try:
        bed.open()
        ctl_ip = bed.node("ctl")
        ctl = bed.run(
            "ctl", "controller",
            ["controller", "serve", "--listen", f"{ctl_ip}:15080", "--sync-listen", f"{ctl_ip}:15090"],
            user=uid, volumes={state_dir(work / "ctl", uid): STATE},
        )  # fmt: skip
        _until(lambda: bed.exec(ctl, "meshfed", "cluster", "list", check=False).returncode == 0)
        for r in range(rounds):
            order = ("container", "process") if r % 2 == 0 else ("process", "container")
            for how in order:
                cluster = f"c{r}{how[0]}"
                node = f"cp{r}{how[0]}"
                cp_ip = bed.node(node)
                token = join(bed, ctl, cluster, cp_ip)
                home = state_dir(work / node, uid)
                args = controlplane_args(cluster, cp_ip, ctl_ip, token)
                start = time.monotonic()
                if how == "container":
                    bed.run(node, "controlplane", args, user=uid, volumes={home: STATE})
                else:
                    log = (work / f"{node}.log").open("ab")
                    procs.append(subprocess.Popen(
                        bed.in_node(node, [meshfed, *args]), stdout=log, stderr=subprocess.STDOUT,
                        env={**os.environ, "MESHFED_HOME": str(home)},
                    ))  # fmt: skip
                url = f"https://{cp_ip}:15014/healthz"
                _until(lambda: _curl_ok(bed, node, url, "ok"))  # noqa: B023
                times[f"cp-{how}"].append(time.monotonic() - start)
                times[f"sidecar-{how}"].append(
                    _sidecar(bed, work, procs, node, cluster, cp_ip, how, home, proxy, meshfed)
                )
        return times
    except Exception:
        for cname in bed.containers:
            print(f"--- {cname}\n{bed.logs(cname)[-1500:]}")
        for log in sorted(work.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-1500:]}")
        raise
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        bed.close()


def _sidecar(bed, work, procs, cp_node, cluster, cp_ip, how, cp_home, proxy, meshfed) -> float:
    cp = f"{bed.netns(cp_node)}-controlplane"
    tokens = work / f"tokens-{cp_node}"
    tokens.mkdir(mode=0o755)
    token_cmd = ["meshfed", "workload", "token", "--cluster", cluster, "-n", "demo",
                 "--service-account", "echo", "--token-out", f"{STATE}/echo.token",
                 "--bundle-out", f"{STATE}/bundle.pem"]  # fmt: skip
    if how == "container":
        bed.exec(cp, *token_cmd)
    else:
        subprocess.run(bed.in_node(cp_node, [
                           meshfed, *token_cmd[1:-4], "--token-out", str(cp_home / "echo.token"),
                           "--bundle-out", str(cp_home / "bundle.pem")]),
                       env={**os.environ, "MESHFED_HOME": str(cp_home)}, check=True,
                       capture_output=True)  # fmt: skip
    for name in ("echo.token", "bundle.pem"):
        shutil.copy(cp_home / name, tokens / name)
    os.chown(tokens / "echo.token", proxy, proxy)
    api = (cp_home / "controlplanes" / cluster / "api-token").read_text().strip()
    pod = f"pod{cp_node}"
    address = bed.node(pod)
    home = state_dir(work / pod, proxy)
    args = sidecar_args(cp_ip, address, "echo", f"{cluster}-echo", 18080, "/etc/meshfed", cluster)
    start = time.monotonic()
    if how == "container":
        bed.run(pod, "sidecar", args, user=proxy, env={"MESHFED_TOKEN": api},
                volumes={home: STATE, tokens: "/etc/meshfed:ro"})  # fmt: skip
    else:
        args = [a.replace("/etc/meshfed", str(tokens)) for a in args]
        log = (work / f"{pod}.log").open("ab")
        procs.append(subprocess.Popen(
            bed.in_node(pod, [meshfed, *args]), stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "MESHFED_HOME": str(home), "MESHFED_TOKEN": api},
        ))  # fmt: skip
    _until(lambda: _curl_ok(bed, pod, "http://127.0.0.1:15000/ready", "LIVE"))
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--builds", type=int, default=2, help="0: use --archive, build nothing")
    ap.add_argument("--archive", type=Path, default=Path("build/image/meshfed.oci.tar"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        work = Path(tmp)
        built = builds(args.builds, work) or [
            {**json.loads((args.archive.parent / "build.json").read_text()),
             "archive": str(args.archive)}
        ]  # fmt: skip
        first = built[0]
        print(f"\nimage: {first['compressed_bytes'] / MIB:.1f} MiB compressed "
              f"({first['compressed_bytes'] / 1e6:.1f} MB), "
              f"{first['uncompressed_bytes'] / MIB:.1f} MiB uncompressed")  # fmt: skip
        print("build seconds: " + ", ".join(f"{b['build_seconds']:.0f}" for b in built))
        digests = {b["digest"] for b in built}
        print(f"digests equal over {len(built)} builds: {len(digests) == 1}")
        times = cold_starts(Path(first["archive"]), args.rounds, work)
    print(f"\ncold start, {args.rounds} rounds (s): median / max")
    for what in ("cp", "sidecar"):
        c, p = times[f"{what}-container"], times[f"{what}-process"]
        print(f"  {what:8} container {statistics.median(c):.2f} / {max(c):.2f}   "
              f"process {statistics.median(p):.2f} / {max(p):.2f}   "
              f"x{statistics.median(c) / statistics.median(p):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
