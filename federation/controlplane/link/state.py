"""``<state_dir>/federation.json``: the join info and the last controller update.

Shape: ``{"join": JoinInfo fields, "lastUpdateProto": the update as the sync protocol's
ControllerUpdate message (binary, base64), without its trust bundle, or null}``; written
atomically, 0644 (no secret: the trust bundle and keys live in ``<state_dir>/ca``). Files
of earlier releases hold ``"lastUpdate"``, the message's JSON mapping
(:func:`federation.sync.convert.update_to_json`): still read.

The control plane writes the file before it serves each update. As JSON that write cost
~12 ms of CPU an update with 300 policies and 50 imports (``json_format`` walks every field
in Python), which 50 control planes on one host paid in turn after every change (issue 37's
fan-out); the binary message is ~1 ms.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from federation.controlplane.link.join import JoinInfo
from federation.errors import InvalidDocumentError
from federation.sync.convert import update_from_json, update_from_proto, update_to_proto
from federation.sync.messages import ControllerUpdate
from federation.sync.proto import sync_pb2
from trust.files import CERT_FILE_MODE, write_atomic


def federation_file(state_dir: Path) -> Path:
    """``<state_dir>/federation.json``."""
    return state_dir / "federation.json"


def _load(state_dir: Path) -> dict[str, Any]:
    path = federation_file(state_dir)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise InvalidDocumentError(f"{path}: not JSON ({err})") from err
    return data if isinstance(data, dict) else {}


def save(state_dir: Path, info: JoinInfo, last_update: ControllerUpdate | None) -> None:
    """Write the file (atomically)."""
    stored = None
    if last_update is not None:
        message = update_to_proto(last_update)
        message.ClearField("trust_bundle_pem")
        stored = base64.b64encode(message.SerializeToString(deterministic=True)).decode()
    data = {"join": asdict(info), "lastUpdateProto": stored}
    # no indent: json's C encoder (indenting runs the pure-Python one, ~2 ms an update)
    write_atomic(federation_file(state_dir), json.dumps(data).encode(), CERT_FILE_MODE)


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


def load_last_update(state_dir: Path) -> ControllerUpdate | None:
    """The last stored controller update, or None.

    Raises:
        InvalidDocumentError: the file or the stored update is invalid.
    """
    data = _load(state_dir)
    stored = data.get("lastUpdateProto")
    if not stored:
        legacy = data.get("lastUpdate")  # an earlier release's file
        return update_from_json(legacy) if legacy else None
    message = sync_pb2.ControllerUpdate()
    try:
        message.ParseFromString(base64.b64decode(str(stored), validate=True))
    except (binascii.Error, ValueError) as err:  # protobuf's DecodeError is a ValueError
        raise InvalidDocumentError(
            f"{federation_file(state_dir)}: lastUpdateProto: not a ControllerUpdate ({err})"
        ) from err
    return update_from_proto(message)
