"""A control plane's link state, in ``<state_dir>/federation.json`` (the join info) and
``<state_dir>/last-update.pb`` (the last controller update).

``federation.json``: ``{"join": JoinInfo fields}``, written atomically (fsync, rename) when the
join info changes, 0644. ``last-update.pb``: the update as the sync protocol's
ControllerUpdate message (binary protobuf) without its trust bundle, 0644 (no secret: the
trust bundle and keys live in ``<state_dir>/ca``). Files of earlier releases hold the update
in ``federation.json`` -- ``"lastUpdateProto"`` (the message, base64) or ``"lastUpdate"``
(its JSON mapping, :func:`federation.sync.convert.update_to_json`): still read while no
``last-update.pb`` exists.

A control plane serves each update first and persists it after, in the background
(:class:`UpdateWriter`, newest update only): with 300 policies and 50 members the write was
~2 ms of CPU (the base64-in-JSON form; ~0.9 ms as plain binary) and a journal commit, which
50 control planes on one host paid before serving every change (issue 37's fan-out). The write
waits :data:`WRITE_DELAY_S` (see :class:`UpdateWriter`). A control plane that dies in that
second restores the update before it and is brought up to date by its next sync, as after a
partition.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from federation.controlplane.link.join import JoinInfo
from federation.errors import InvalidDocumentError
from federation.sync.convert import update_from_json, update_from_proto, update_to_proto
from federation.sync.messages import ControllerUpdate
from federation.sync.proto import sync_pb2
from trust.errors import TrustStoreError
from trust.files import CERT_FILE_MODE, write_atomic

log = logging.getLogger(__name__)

#: How long :class:`UpdateWriter` waits before it writes an update (s).
WRITE_DELAY_S = 1.0


def federation_file(state_dir: Path) -> Path:
    """``<state_dir>/federation.json``: the join info."""
    return state_dir / "federation.json"


def update_file(state_dir: Path) -> Path:
    """``<state_dir>/last-update.pb``: the last controller update (binary protobuf)."""
    return state_dir / "last-update.pb"


def _load(state_dir: Path) -> dict[str, Any]:
    path = federation_file(state_dir)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise InvalidDocumentError(f"{path}: not JSON ({err})") from err
    return data if isinstance(data, dict) else {}


def save_join(state_dir: Path, info: JoinInfo) -> None:
    """Write ``federation.json`` (atomically; an earlier release's stored update in it is
    moved to ``last-update.pb`` first, so it is not lost).

    Raises:
        TrustStoreError: the file cannot be written.
        InvalidDocumentError: the earlier release's stored update is invalid.
    """
    if not update_file(state_dir).exists():
        legacy = _legacy_update(state_dir)
        if legacy is not None:
            save_update(state_dir, legacy)
    _write_join(state_dir, info)


def _write_join(state_dir: Path, info: JoinInfo) -> None:
    data = {"join": asdict(info)}
    write_atomic(federation_file(state_dir), json.dumps(data, indent=2).encode(), CERT_FILE_MODE)


def save_update(state_dir: Path, update: ControllerUpdate | None) -> None:
    """Write ``last-update.pb`` (atomically), or remove it when ``update`` is None.

    Raises:
        TrustStoreError: the file cannot be written.
    """
    path = update_file(state_dir)
    if update is None:
        path.unlink(missing_ok=True)
        return
    message = update_to_proto(update)
    message.ClearField("trust_bundle_pem")
    write_atomic(path, message.SerializeToString(deterministic=True), CERT_FILE_MODE)


def save(state_dir: Path, info: JoinInfo, last_update: ControllerUpdate | None) -> None:
    """Write both files: the join info and the last update (None: no update is kept).

    Raises:
        TrustStoreError: a file cannot be written.
    """
    save_update(state_dir, last_update)
    _write_join(state_dir, info)


def load_join_info(state_dir: Path) -> JoinInfo | None:
    """The stored join info, or None when this control plane never joined.

    Raises:
        InvalidDocumentError: the file is not JSON or its ``join`` is incomplete.
    """
    join = _load(state_dir).get("join")
    if not join:
        return None
    try:
        return JoinInfo(**join)
    except TypeError as err:
        raise InvalidDocumentError(f"{federation_file(state_dir)}: join: {err}") from err


def _parse(data: bytes, where: str) -> ControllerUpdate:
    message = sync_pb2.ControllerUpdate()
    try:
        message.ParseFromString(data)
    except DecodeError as err:
        raise InvalidDocumentError(f"{where}: not a ControllerUpdate ({err})") from err
    return update_from_proto(message)


def _legacy_update(state_dir: Path) -> ControllerUpdate | None:
    """The update an earlier release kept in ``federation.json``, or None."""
    data = _load(state_dir)
    stored = data.get("lastUpdateProto")
    if stored:
        where = f"{federation_file(state_dir)}: lastUpdateProto"
        try:
            raw = base64.b64decode(str(stored), validate=True)
        except (binascii.Error, ValueError) as err:
            raise InvalidDocumentError(f"{where}: not a ControllerUpdate ({err})") from err
        return _parse(raw, where)
    legacy = data.get("lastUpdate")
    return update_from_json(legacy) if legacy else None


def load_last_update(state_dir: Path) -> ControllerUpdate | None:
    """The last stored controller update, or None.

    Raises:
        InvalidDocumentError: the stored update is invalid (the file named).
    """
    path = update_file(state_dir)
    if path.exists():
        return _parse(path.read_bytes(), str(path))
    return _legacy_update(state_dir)


class UpdateWriter:
    """Persists controller updates in a thread of its own, newest first, ``delay_s`` after
    the first update not yet written: updates handed over meanwhile replace it (only the
    newest matters), and none is written after a newer one. A failed write is logged (the
    control plane keeps serving; the next update tries again).

    The delay keeps the write (~0.9 ms of CPU with 300 policies, plus a journal commit) out
    of the moments every control plane on a host is applying the same change: on issue 37's
    bed of 50 control planes on 2 cores, written at once it competed with the other 49's
    applies. A burst of updates within ``delay_s`` is written once.

    Call :meth:`flush` to write what is pending now and wait for it, :meth:`close` on stop
    (flushes).
    """

    def __init__(self, state_dir: Path, delay_s: float = WRITE_DELAY_S) -> None:
        self._state_dir = state_dir
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._pending: ControllerUpdate | None = None
        self._hurry = threading.Event()  # set: write without waiting out the delay
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="update-writer")

    def submit(self, update: ControllerUpdate) -> None:
        """Write ``update`` within ``delay_s`` (returns at once)."""
        with self._lock:
            queued = self._pending is not None
            self._pending = update
        if not queued:
            self._executor.submit(self._write_later)

    def _write_later(self) -> None:
        self._hurry.wait(self._delay_s)
        self._write()

    def _write(self) -> None:
        with self._lock:
            update, self._pending = self._pending, None
        if update is None:
            return
        try:
            save_update(self._state_dir, update)
        except TrustStoreError as err:
            log.error("could not persist controller update v%d: %s", update.version, err)

    def flush(self) -> None:
        """Write every update handed over so far now, and wait until it is written (or
        failed)."""
        self._hurry.set()
        try:
            self._executor.submit(lambda: None).result()
        finally:
            self._hurry.clear()

    def close(self) -> None:
        """Write what is pending now and stop the thread."""
        self._hurry.set()
        self._executor.shutdown(wait=True)
