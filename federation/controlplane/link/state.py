"""``<state_dir>/federation.json``: the join info and the last controller update.

Shape: ``{"join": JoinInfo fields, "lastUpdate": update as stored by
federation.sync.convert.update_to_json, or null}``; written atomically, 0644 (no secret:
the trust bundle and keys live in ``<state_dir>/ca``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from federation.controlplane.link.join import JoinInfo
from federation.errors import InvalidDocumentError
from federation.sync.convert import update_from_json, update_to_json
from federation.sync.messages import ControllerUpdate
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
    data = {
        "join": asdict(info),
        "lastUpdate": update_to_json(last_update) if last_update is not None else None,
    }
    write_atomic(federation_file(state_dir), json.dumps(data, indent=2).encode(), CERT_FILE_MODE)


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
    update = _load(state_dir).get("lastUpdate")
    return update_from_json(update) if update else None
