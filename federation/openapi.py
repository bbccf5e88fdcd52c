"""OpenAPI 3.1 documents of meshfed's REST APIs (the controller's and a control plane's),
generated from each API's route table, so that the document cannot drift from the routes
it describes. Pure.

A route is ``(METHOD, path, handler, summary, body model or None)``; a path's ``{name}``
parts become path parameters; a pydantic body model becomes the request body's JSON schema
(by alias, as clients send it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from federation.errors import InvalidDocumentError

#: ``(METHOD, path, handler, summary, JSON body model or None)``.
Route = tuple[str, str, Any, str, type[BaseModel] | None]


def query_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """One optional query parameter of an operation."""
    return {"name": name, "in": "query", "description": description, "schema": schema}


#: Kubernetes' ``dryRun`` query parameter of ``/v1/apply`` (controller and control plane).
DRY_RUN = query_parameter(
    "dryRun",
    "All: validate and report what would change, store nothing (Kubernetes' dryRun)",
    {"type": "string", "enum": ["All"]},
)


def dry_run_requested(query: Mapping[str, str]) -> bool:
    """Whether a request asks for a dry run: ``dryRun=All`` (the one value Kubernetes takes).

    Raises:
        InvalidDocumentError: another value (400).
    """
    value = query.get("dryRun")
    if value not in (None, "All"):
        raise InvalidDocumentError(f"dryRun={value}: only All (validate, store nothing)")
    return value == "All"


def openapi_document(
    title: str,
    routes: Iterable[Route],
    *,
    public_paths: Sequence[str],
    query_parameters: Mapping[str, list[dict[str, Any]]],
    yaml_bodies: Sequence[str] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``.

    Args:
        title: ``info.title``.
        public_paths: paths served without the bearer token (every other one needs it).
        query_parameters: path -> its query parameters (:func:`query_parameter`).
        yaml_bodies: paths whose body is YAML documents (``application/yaml``).
    """
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for method, path, _, summary, model in routes:
        op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK"}}}
        if path not in public_paths:
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {"description": "missing or invalid bearer token"}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)
        ] + query_parameters.get(path, [])
        if parameters:
            op["parameters"] = parameters
        if "{" in path:
            op["responses"]["404"] = {"description": "no such resource"}
        if model is not None:
            schemas[model.__name__] = model.model_json_schema(by_alias=True)
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
            op["responses"]["400"] = {"description": "invalid body: every problem named"}
        elif path in yaml_bodies:
            op["requestBody"] = {
                "required": True,
                "content": {"application/yaml": {"schema": {"type": "string"}}},
            }
            op["responses"]["400"] = {"description": "invalid documents; nothing stored"}
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "v1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
