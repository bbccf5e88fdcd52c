"""Loading and validating YAML documents, all or nothing.

A file may hold several documents (``---``). Every document is validated before any is
returned; the first error names the document (its index, kind and name) and the field path::

    document 2 (WorkloadEntry demo/echo-2): spec.ports.0.port: Input should be less than or
    equal to 65535

Input is hostile until proven otherwise (issue #35): before anything is built from it, one
pass over the parser's events (iterative, no recursion) refuses a stream of more than
:data:`MAX_DOCUMENTS` documents, nesting deeper than :data:`MAX_DEPTH`, or more than
:data:`MAX_NODES` nodes with every alias expanded ("billion laughs"), and bytes that are not
UTF-8 are refused by :func:`decode_text`; each with an :class:`InvalidDocumentError` that says
which limit and where. The APIs also cap a request body at :data:`MAX_BODY_BYTES` (the
Kubernetes API server's 3 MiB) and parse off their event loop. Our schemas nest at most
about 10 deep; Kubernetes objects rarely pass 20.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from federation.errors import ConfigError, InvalidDocumentError
from federation.model.authz import AuthorizationPolicy
from federation.model.gateway_api import GRPCRoute, HTTPRoute, ReferenceGrant
from federation.model.istio_networking import NETWORKING_VERSIONS, DestinationRule, VirtualService
from federation.model.istio_sidecar import IstioSidecar
from federation.model.peer_authentication import PeerAuthentication
from federation.model.policy import PriceTable, TrafficPolicy
from federation.model.service import ServiceExport, ServiceImport
from federation.model.service_entry import ServiceEntry
from federation.model.trust_federation import TrustDomainFederation
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
    ("security.istio.io/v1", "PeerAuthentication"): PeerAuthentication,
    ("security.istio.io/v1beta1", "PeerAuthentication"): PeerAuthentication,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTPRoute,
    ("gateway.networking.k8s.io/v1beta1", "HTTPRoute"): HTTPRoute,
    ("gateway.networking.k8s.io/v1", "GRPCRoute"): GRPCRoute,
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"): ReferenceGrant,
    ("gateway.networking.k8s.io/v1", "ReferenceGrant"): ReferenceGrant,
    **{(v, "VirtualService"): VirtualService for v in NETWORKING_VERSIONS},
    **{(v, "DestinationRule"): DestinationRule for v in NETWORKING_VERSIONS},
    **{(v, "Sidecar"): IstioSidecar for v in NETWORKING_VERSIONS},
    **{(v, "ServiceEntry"): ServiceEntry for v in NETWORKING_VERSIONS},
    ("meshfed.io/v1alpha1", "TrustDomainFederation"): TrustDomainFederation,
    ("spire.spiffe.io/v1alpha1", "ClusterFederatedTrustDomain"): TrustDomainFederation,
}


#: Most documents in one stream (one apply, one file).
MAX_DOCUMENTS = 1000
#: Deepest nesting of mappings and sequences in a document.
MAX_DEPTH = 64
#: Most YAML nodes in one stream, aliases expanded.
MAX_NODES = 1_000_000
#: Largest request body the controller's and control planes' APIs read (bytes).
MAX_BODY_BYTES = 3 * 1024 * 1024

try:  # libyaml when PyYAML was built with it: the same events, several times faster
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


def decode_text(data: bytes, *, source: str = "input") -> str:
    """``data`` as UTF-8 text (YAML 1.2 streams and Kubernetes manifests are UTF-8).

    Raises:
        InvalidDocumentError: not UTF-8, naming the offset of the first bad byte.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidDocumentError(
            f"{source}: not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r})"
        ) from err


class _PlainDumper(yaml.SafeDumper):
    """PyYAML's safe dumper without anchors and aliases: a manifest that repeats a value
    (the same verbs in two RBAC rules) repeats it, as kubectl prints, instead of ``&id001``
    / ``*id001``, which kubectl, Helm and many linters refuse or mangle."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(data: Any, *, documents: bool = False) -> str:
    """``data`` as block YAML in key order, without anchors (:class:`_PlainDumper`);
    ``documents``: ``data`` is a list of documents, written as a ``---`` stream."""
    if documents:
        return yaml.dump_all(data, Dumper=_PlainDumper, sort_keys=False)
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False)


def read_source(path: str) -> tuple[str, str]:
    """The text of ``-f PATH`` (``-`` for stdin) and how to name it in errors.

    Raises:
        ConfigError: the file cannot be read (exit 2).
        InvalidDocumentError: it is not UTF-8 (exit 2, as any bad document).
    """
    if path == "-":
        return decode_text(sys.stdin.buffer.read(), source="stdin"), "stdin"
    try:
        return decode_text(Path(path).read_bytes(), source=path), path
    except OSError as err:
        raise ConfigError(f"-f {path}: {err.strerror}") from err


def document_label(model: BaseModel) -> str:
    """``kind/namespace/name`` of a document (``workloadentry/demo/echo-1``), as the APIs
    name what they applied."""
    meta = getattr(model, "metadata", None)
    kind = str(getattr(model, "kind", "document")).lower()
    return f"{kind}/{getattr(meta, 'namespace', 'default')}/{getattr(meta, 'name', '?')}"


def not_deleted(models: Sequence[BaseModel], deleted: Sequence[str]) -> list[str]:
    """Labels (:func:`document_label`) of the ``models`` a delete named that are not among
    the ``deleted`` names an API answered (the controller's may end in ``(cluster a)``)."""
    labels = [document_label(m) for m in models]
    return [
        label
        for label in labels
        if not any(d == label or d.startswith(label + " ") for d in deleted)
    ]


#: What ``-f DIR`` reads, as kubectl does.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def read_documents(
    path: str, *, recursive: bool = False, namespace: str | None = None
) -> tuple[str, list[BaseModel]]:
    """``-f PATH`` read and validated here: a file, ``-`` (stdin), or a directory's
    :data:`MANIFEST_SUFFIXES` files in path order (with ``recursive``, its subdirectories'
    too), each checked under its own name (errors say ``FILE:LINE:COL``). Returns the text
    to send (the files joined as one YAML stream) and the documents. With ``namespace``
    (``-n``), documents without ``metadata.namespace`` are put in it
    (:func:`in_namespace`) and the text sent is theirs, re-serialized.

    Raises:
        ConfigError: a file cannot be read, or the directory holds none to read (exit 2).
        InvalidDocumentError: a document is not valid, or names another namespace than
            ``namespace`` (exit 2; nothing is sent).
    """
    root = Path(path)
    if path != "-" and root.is_dir():
        files = sorted(
            f
            for f in (root.rglob("*") if recursive else root.iterdir())
            if f.is_file() and f.suffix in MANIFEST_SUFFIXES
        )
        if not files:
            hint = "" if recursive else " (-R reads its subdirectories)"
            raise ConfigError(f"-f {path}: no .yaml, .yml or .json file in it{hint}")
        sources = [read_source(str(f)) for f in files]
    else:
        sources = [read_source(path)]
    if namespace is not None:
        raws = [
            in_namespace(parse_yaml(text, source=source), namespace, source=source)
            for text, source in sources
        ]
        models = [
            m for (_, source), r in zip(sources, raws, strict=True)
            for m in validate_documents(r, source=source)
        ]  # fmt: skip
        sources = [
            (yaml.safe_dump_all(r, sort_keys=False), s)
            for (_, s), r in zip(sources, raws, strict=True)
        ]
        return "\n---\n".join(text for text, _ in sources), models
    models = [m for text, source in sources for m in load_documents(text, source=source)]
    return "\n---\n".join(text for text, _ in sources), models


def in_namespace(raws: Sequence[Any], namespace: str, *, source: str = "input") -> list[Any]:
    """``raws`` with ``metadata.namespace`` set to ``namespace`` where it is not given, as
    ``kubectl apply -n`` does (copies; the input is not changed).

    Raises:
        InvalidDocumentError: a document names another namespace (kubectl refuses that
            too: "the namespace from the provided object does not match").
    """
    out: list[Any] = []
    for i, raw in enumerate(raws, start=1):
        meta = raw.get("metadata") if isinstance(raw, Mapping) else None
        if not isinstance(meta, Mapping):
            out.append(raw)
            continue
        given = meta.get("namespace")
        if given is not None and given != namespace:
            raise InvalidDocumentError(
                f"{source}: {_describe(i, raw)}: metadata.namespace: {given!r} does not match"
                f" -n {namespace!r}"
            )
        out.append({**raw, "metadata": {**meta, "namespace": namespace}})
    return out


def check_limits(text: str, *, source: str = "input") -> None:
    """Refuse a YAML stream beyond :data:`MAX_DOCUMENTS`, :data:`MAX_DEPTH` or
    :data:`MAX_NODES` (see the module docstring) without building any of it.

    Raises:
        InvalidDocumentError: naming the limit (and the document and line where it was
            passed), or the text is not YAML.
    """
    documents = depth = nodes = 0
    anchors: dict[str, int] = {}
    open_nodes: list[tuple[str | None, int]] = []  # anchor, node count when it opened
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > MAX_DOCUMENTS:
                    raise InvalidDocumentError(
                        f"{source}: more than {MAX_DOCUMENTS} documents in one request; split it"
                    )
            elif isinstance(event, yaml.CollectionStartEvent):
                depth, nodes = depth + 1, nodes + 1
                open_nodes.append((event.anchor, nodes - 1))
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise InvalidDocumentError(
                        f"{source}: document {documents}: nested deeper than {MAX_DEPTH}"
                        f" levels (line {line})"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, start = open_nodes.pop()
                depth -= 1
                if anchor is not None:
                    anchors[anchor] = nodes - start
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
                if event.anchor is not None:
                    anchors[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                nodes += anchors.get(event.anchor or "", 1)
            if nodes > MAX_NODES:
                raise InvalidDocumentError(
                    f"{source}: document {documents}: more than {MAX_NODES} YAML nodes"
                    " (aliases expanded)"
                )
    except yaml.YAMLError as err:
        if "nesting depth" in str(err):  # libyaml's own bound (1,000), met while scanning
            raise InvalidDocumentError(
                f"{source}: document {max(documents, 1)}: nested deeper than {MAX_DEPTH} levels"
            ) from err
        raise InvalidDocumentError(yaml_error(source, err)) from err


def yaml_error(source: str, err: yaml.YAMLError) -> str:
    """A YAML syntax error as ``FILE:LINE:COLUMN: problem (context at LINE:COLUMN)``, the
    form editors and compilers use (lines and columns from 1), rather than PyYAML's text,
    which names the file ``"<unicode string>"``."""
    if not isinstance(err, yaml.MarkedYAMLError) or err.problem_mark is None:
        return f"{source}: not valid YAML: {err}"
    mark = err.problem_mark
    text = f"{source}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {err.problem}"
    if err.context and err.context_mark is not None:
        at = err.context_mark
        text += f" ({err.context} at {at.line + 1}:{at.column + 1})"
    return text


def parse_yaml(text: str, *, source: str = "input") -> list[Any]:
    """Split a YAML stream into raw documents, skipping empty ones, after
    :func:`check_limits`.

    Raises:
        InvalidDocumentError: the text is not YAML, or passes a limit.
    """
    check_limits(text, source=source)
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as err:
        raise InvalidDocumentError(yaml_error(source, err)) from err
    except RecursionError as err:  # defence in depth: check_limits bounds the depth
        raise InvalidDocumentError(f"{source}: nested too deeply") from err


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
    """Each of pydantic's errors as ``<where>: <field.path>: <reason>``; a field the schema
    does not have as ``<where>: unknown field "<field.path>"`` (kubectl's strict decoding
    says so; pydantic's "Extra inputs are not permitted" leaves the user to guess); our
    validators' reasons without pydantic's "Value error, " in front."""
    return [
        f'{where}: unknown field "{_field_path(e["loc"])}"'
        if e["type"] == "extra_forbidden"
        else f"{where}: {_field_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
        for e in err.errors()
    ]


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


def load_document_bytes(data: bytes, *, source: str = "input") -> list[BaseModel]:
    """:func:`decode_text` then :func:`load_documents` (what an API does with a request
    body, in a worker thread)."""
    return load_documents(decode_text(data, source=source), source=source)
