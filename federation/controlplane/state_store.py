"""The control plane's persisted state: its WorkloadEntry documents, one JSON file.

Written atomically after every change, read before the control plane answers any proxy, so a
restart serves exactly what was served before.
"""

from __future__ import annotations

import json
from pathlib import Path

from federation.errors import InvalidDocumentError
from federation.model.documents import validate_documents
from federation.model.workload import WorkloadEntry
from trust.files import CERT_FILE_MODE, write_atomic

SCHEMA_VERSION = 1


class WorkloadStateFile:
    """``<state_dir>/workloads.json``: ``{"schemaVersion": 1, "workloads": [documents]}``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "workloads.json"

    def load(self) -> list[WorkloadEntry]:
        """The stored workloads ([] when the file does not exist yet).

        Raises:
            InvalidDocumentError: the file is corrupt or of an unknown schema version.
        """
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text())
        except ValueError as err:
            raise InvalidDocumentError(f"{self.path}: not JSON ({err})") from err
        if data.get("schemaVersion") != SCHEMA_VERSION:
            raise InvalidDocumentError(
                f"{self.path}: schemaVersion {data.get('schemaVersion')!r} is not {SCHEMA_VERSION}"
            )
        models = validate_documents(data.get("workloads", []), source=str(self.path))
        return [m for m in models if isinstance(m, WorkloadEntry)]

    def save(self, workloads: list[WorkloadEntry]) -> None:
        """Replace the file atomically."""
        docs = [
            w.model_dump(by_alias=True, mode="json") for w in sorted(workloads, key=lambda w: w.key)
        ]
        text = json.dumps({"schemaVersion": SCHEMA_VERSION, "workloads": docs}, indent=2)
        write_atomic(self.path, text.encode(), CERT_FILE_MODE)
