"""What goes into meshfed's root filesystem, and what must not (issue 39). Pure.

The image is a Debian bookworm root filesystem made by ``mmdebstrap --variant=extract`` (no
maintainer script runs, no shell is installed: nothing in it runs ``/bin/sh``), plus meshfed and
its PyPI dependencies under ``/usr/local`` and the files below. Every rule here has its reason
beside it; :mod:`image.build` applies them and the tests check them on the built image.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Debian packages asked for (apt adds their dependencies). ``python3.11``: the interpreter and
#: its standard library (Debian's own build, not python.org's). ``nftables``: ``nft`` for
#: ``meshfed proxy init``, the capture init step (issue 38). ``libstdc++6``: grpcio's extension
#: (manylinux wheels may link it; auditwheel does not vendor it). Envoy needs only libc.
PACKAGES = ("python3.11", "nftables", "libstdc++6")

#: Packages apt pulls in that nothing in the image runs; their files are removed and the SBOM
#: does not list them. ``readline-common`` depends on ``dpkg`` (for install-info), and ``dpkg``
#: on ``tar``: a package manager and an archiver are conveniences for a shell the image has not.
PRUNED_PACKAGES = ("dpkg", "tar")

#: Paths (relative to the root) removed after extraction: documentation, manuals and
#: translations (dpkg's own ``path-exclude`` list of Debian's minimal images), apt's state and
#: sources (no package manager runs in the image), and the build host's name resolution (the
#: container runtime writes ``/etc/resolv.conf`` and ``/etc/hostname``).
REMOVED = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/cache/debconf",
    "var/cache/ldconfig",
    "var/lib/apt",
    "var/lib/dpkg",
    "var/log",
    "etc/apt",
    "etc/dpkg",
    "etc/resolv.conf",
    "etc/hostname",
)

#: The user meshfed's programs run as (the manifests' ``runAsUser``) and the proxy's user, whose
#: connections the capture rules exempt (Istio's 1337; :mod:`federation.agent.capture`).
MESHFED_UID = 10001
PROXY_UID = 1337
#: Where meshfed keeps its state in the image (``MESHFED_HOME``); a volume in every manifest.
STATE_DIR = "var/lib/meshfed"
#: Directories the image leaves for the runtime to mount writable (podman ``--read-only`` and
#: Kubernetes' ``emptyDir`` put a tmpfs there). They are 0755 in the image, not 1777: no file
#: or directory in the image is world-writable.
RUNTIME_MOUNTS = ("tmp", "var/tmp", "run")

#: The image's ``PATH``: ``/usr/local/bin`` (meshfed, envoy), then Debian's (``nft`` is in
#: ``/usr/sbin``).
PATH = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"

#: Python's version in the image (Debian bookworm's ``python3.11``); PyPI wheels are chosen
#: for it.
PYTHON = "python3.11"
SITE_PACKAGES = f"usr/local/lib/{PYTHON}/dist-packages"


#: AWS services meshfed calls (boto3 clients in ``providers/aws.py`` and ``trust/aws_pca.py``;
#: ``sts`` for credentials by role, ``pricing`` for price lists, ``s3`` for AWS Private CA's
#: CRL). botocore ships the models of all of AWS's ~460 services (29 MB); the rest are
#: removed (a unit test checks that every service the code names is kept).
BOTOCORE_SERVICES = frozenset({"acm-pca", "ec2", "eks", "elbv2", "pricing", "s3", "sts"})
#: Distributions whose wheels carry their own test suites (``tests`` directories), removed.
WITH_TESTS = frozenset({"numpy"})


def prunable(rel: str) -> bool:
    """Whether a path under site-packages (``numpy/_core/tests``, ``botocore/data/s3``) is
    removed.

    Pure: the rules of :data:`BOTOCORE_SERVICES` and :data:`WITH_TESTS`.
    """
    parts = rel.split("/")
    if parts[0] in WITH_TESTS and "tests" in parts[1:]:
        return True
    if parts[:2] == ["botocore", "data"] and len(parts) >= 3:
        name = parts[2]
        return not name.startswith("_") and "." not in name and name not in BOTOCORE_SERVICES
    return False


def passwd() -> str:
    """``/etc/passwd``: root, the meshfed user, the proxy user and nobody; no login shell."""
    rows = [
        ("root", 0, 0, "/root"),
        ("meshfed", MESHFED_UID, MESHFED_UID, "/" + STATE_DIR),
        ("meshfed-proxy", PROXY_UID, PROXY_UID, "/" + STATE_DIR),
        ("nobody", 65534, 65534, "/nonexistent"),
    ]
    return "".join(
        f"{name}:x:{uid}:{gid}:{name}:{home}:/usr/sbin/nologin\n" for name, uid, gid, home in rows
    )


def group() -> str:
    """``/etc/group`` for :func:`passwd`'s users."""
    rows = [("root", 0), ("meshfed", MESHFED_UID), ("meshfed-proxy", PROXY_UID), ("nogroup", 65534)]
    return "".join(f"{name}:x:{gid}:\n" for name, gid in rows)


def launcher(module: str, function: str) -> str:
    """A console script for the image's interpreter (what pip writes for ``[project.scripts]``,
    with the image's Python in its first line rather than the build host's)."""
    return (
        f"#!/usr/bin/{PYTHON}\n"
        "import sys\n"
        f"from {module} import {function}\n"
        f"sys.exit({function}())\n"
    )


def world_writable(root: Path) -> Iterator[str]:
    """Every file or directory under ``root`` that anyone may write (symbolic links, whose mode
    means nothing, are skipped), as paths relative to ``root``."""
    for entry in _walk(root):
        st = entry.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_mode & stat.S_IWOTH:
            yield str(entry.relative_to(root))


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in (*dirnames, *filenames):
            yield base / name


def pruned_paths(listing: Iterable[str]) -> list[str]:
    """The files (not directories) of a ``dpkg-deb --fsys-tarfile`` listing, relative to the
    root, in reverse order, for removal.

    Args:
        listing: member names as ``tar -t`` prints them (``./usr/bin/dpkg``).
    """
    out = []
    for name in listing:
        rel = name.removeprefix("./").strip()
        if rel and not rel.endswith("/"):
            out.append(rel)
    return sorted(out, reverse=True)
