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
        # id(document) -> (the document, its JSON): documents are immutable and an unchanged
        # one is the same object from one state to the next, so each is serialized once
        # (11,000 documents took ~1 s to dump on every apply)
        self._texts: dict[int, tuple[Document, str]] = {}

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
        """Replace the file atomically (one document per line)."""
        texts: dict[int, tuple[Document, str]] = {}
        for d in documents:
            hit = self._texts.get(id(d))
            if hit is None or hit[0] is not d:
                body = d.model_dump(by_alias=True, mode="json", exclude_none=True)
                hit = (d, json.dumps(body, sort_keys=True))
            texts[id(d)] = hit
        self._texts = texts  # only the documents of the current state are kept
        lines = ",\n".join(text for _, text in texts.values())
        text = f'{{"schemaVersion": {SCHEMA_VERSION}, "documents": [\n{lines}\n]}}\n'
        write_atomic(self.path, text.encode(), CERT_FILE_MODE)
