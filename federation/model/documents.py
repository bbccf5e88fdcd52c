"""Loading and validating YAML documents, all or nothing.

A file may hold several documents (``---``). Every document is validated before any is
returned; the first error names the document (its index, kind and name) and the field path::

    document 2 (WorkloadEntry demo/echo-2): spec.ports.0.port: Input should be less than or
    equal to 65535
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from federation.errors import InvalidDocumentError
from federation.model.authz import AuthorizationPolicy
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service import ServiceExport, ServiceImport
from federation.model.workload import WorkloadEntry

#: (apiVersion, kind) -> model. Extended by later resource kinds.
KINDS: dict[tuple[str, str], type[BaseModel]] = {
    ("meshfed.io/v1alpha1", "WorkloadEntry"): WorkloadEntry,
    ("multicluster.x-k8s.io/v1alpha1", "ServiceExport"): ServiceExport,
    ("meshfed.io/v1alpha1", "ServiceExport"): ServiceExport,
    ("meshfed.io/v1alpha1", "ServiceImport"): ServiceImport,
    ("meshfed.io/v1alpha1", "TrafficPolicy"): TrafficPolicy,
    ("meshfed.io/v1alpha1", "PriceTable"): PriceTable,
    ("security.istio.io/v1", "AuthorizationPolicy"): AuthorizationPolicy,
    ("security.istio.io/v1beta1", "AuthorizationPolicy"): AuthorizationPolicy,
    ("meshfed.io/v1alpha1", "AuthorizationPolicy"): AuthorizationPolicy,
}


def parse_yaml(text: str, *, source: str = "input") -> list[Any]:
    """Split a YAML stream into raw documents, skipping empty ones.

    Raises:
        InvalidDocumentError: the text is not YAML.
    """
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise InvalidDocumentError(f"{source}: not valid YAML: {err}") from err


def _describe(index: int, raw: Any) -> str:
    if isinstance(raw, Mapping):
        meta = raw.get("metadata") if isinstance(raw.get("metadata"), Mapping) else {}
        assert isinstance(meta, Mapping)
        name = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
        return f"document {index} ({raw.get('kind', '?')} {name})"
    return f"document {index}"


def _field_path(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc) or "(document)"


def validation_problems(err: ValidationError, where: str) -> list[str]:
    """Each of pydantic's errors as ``<where>: <field.path>: <reason>``."""
    return [f"{where}: {_field_path(e['loc'])}: {e['msg']}" for e in err.errors()]


def invalid(err: ValidationError, where: str) -> InvalidDocumentError:
    """An :class:`InvalidDocumentError` listing every problem of ``err`` (raise it ``from err``)."""
    problems = validation_problems(err, where)
    return InvalidDocumentError(problems[0], problems=problems)


def validate_documents(raws: Sequence[Any], *, source: str = "input") -> list[BaseModel]:
    """Validate every raw document; return the models only if all are valid.

    Documents are numbered from 1 in errors, as ``kubectl`` does.

    Raises:
        InvalidDocumentError: naming the document index, kind/name, field path and reason of
            the first invalid document; ``.problems`` lists every problem found.
    """
    models: list[BaseModel] = []
    problems: list[str] = []
    for i, raw in enumerate(raws, start=1):
        where = f"{source}: {_describe(i, raw)}"
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: a document must be a mapping")
            continue
        key = (str(raw.get("apiVersion", "")), str(raw.get("kind", "")))
        model = KINDS.get(key)
        if model is None:
            known = ", ".join(f"{k}/{a}" for a, k in sorted(KINDS))
            problems.append(f"{where}: apiVersion/kind {key[0]}/{key[1]} unknown (known: {known})")
            continue
        try:
            models.append(model.model_validate(raw))
        except ValidationError as err:
            problems += validation_problems(err, where)
    if problems:
        raise InvalidDocumentError(problems[0], problems=problems)
    return models


def load_documents(text: str, *, source: str = "input") -> list[BaseModel]:
    """:func:`parse_yaml` then :func:`validate_documents`."""
    return validate_documents(parse_yaml(text, source=source), source=source)
