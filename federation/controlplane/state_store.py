"""The control plane's persisted state: its documents (workloads, exports, imports), one JSON
file, written atomically after every change and read before the control plane answers any
proxy, so a restart serves exactly what was served before."""

from __future__ import annotations

import json
from pathlib import Path

from federation.controlplane.registry import Document
from federation.errors import InvalidDocumentError
from federation.model.documents import validate_documents
from federation.model.service import ServiceExport, ServiceImport
from federation.model.workload import WorkloadEntry
from trust.files import CERT_FILE_MODE, write_atomic

SCHEMA_VERSION = 1


class StateFile:
    """``<state_dir>/state.json``: ``{"schemaVersion": 1, "documents": [...]}``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"

    def load(self) -> list[Document]:
        """The stored documents ([] when the file does not exist yet).

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
        models = validate_documents(data.get("documents", []), source=str(self.path))
        return [m for m in models if isinstance(m, WorkloadEntry | ServiceExport | ServiceImport)]

    def save(self, documents: list[Document]) -> None:
        """Replace the file atomically."""
        docs = [d.model_dump(by_alias=True, mode="json", exclude_none=True) for d in documents]
        text = json.dumps({"schemaVersion": SCHEMA_VERSION, "documents": docs}, indent=2)
        write_atomic(self.path, text.encode(), CERT_FILE_MODE)
