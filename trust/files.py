"""Safe file writes for trust material: atomic, explicit modes, no silent overwrite."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from trust.errors import KeyMaterialExistsError, TrustStoreError

log = logging.getLogger(__name__)

KEY_FILE_MODE = 0o600
CERT_FILE_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


def ensure_dir(path: Path, mode: int = PRIVATE_DIR_MODE) -> None:
    """Create ``path`` (and parents) if missing; a directory we create gets ``mode``.

    Raises:
        TrustStoreError: it cannot be created.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as err:
        raise TrustStoreError(f"cannot create directory {path}: {err.strerror}") from err


def refuse_overwrite(paths: list[Path], *, force: bool) -> None:
    """Raise if any of ``paths`` exists and ``force`` is False (checked before anything is written).

    Raises:
        KeyMaterialExistsError: naming the first existing file.
    """
    if force:
        return
    for path in paths:
        if path.exists():
            raise KeyMaterialExistsError(f"{path} already exists; pass --force to replace it")


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename) with exactly ``mode``.

    The temporary file is created with ``mode`` from the start, so a key is never readable by
    others even for a moment.

    Raises:
        TrustStoreError: the write fails (the old file, if any, is left intact).
    """
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        log.debug("wrote %s (%d bytes, mode %04o)", path, len(data), mode)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TrustStoreError(f"cannot write {path}: {err.strerror}") from err
