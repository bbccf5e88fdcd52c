"""Every example of Istio's samples and of Gateway API's examples for the kinds meshfed takes
(issue #40, point 5): each is valid against the project's own CRD schema (pinned copies in
tests/data/crd), and meshfed either takes it or refuses it by field with a reason that
docs/policy.md lists -- never "unknown field" for a field the project defines, never a bare
"Field required".

Sources (tests/data/istio/README.md, tests/data/gateway-api/README.md): istio/istio at
86c9f01 (``samples/``, ``manifests/charts/base/files/crd-all.gen.yaml``) and
kubernetes-sigs/gateway-api v1.6.1 (``examples/``, ``site-src/``,
``config/crd/standard/``), both Apache-2.0.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from federation.errors import InvalidDocumentError
from federation.model.documents import in_namespace, validate_documents
from federation.model.translated import effective_traffic_policies

DATA = Path(__file__).parents[2] / "data"
KINDS = {
    "VirtualService", "DestinationRule", "PeerAuthentication", "AuthorizationPolicy",
    "ServiceEntry", "Sidecar", "HTTPRoute", "GRPCRoute",
}  # fmt: skip
#: The reasons a refusal may give (each is in docs/policy.md).
REASONS = re.compile(
    r"not supported by meshfed|is not a service of the mesh|the route attaches to nothing"
    r"|is not defined by|one parent per route|one host per VirtualService|no ReferenceGrant"
)
#: Istio's tasks apply these first; the samples' VirtualServices route to their subsets.
CONTEXT = "samples__bookinfo__networking__destination-rule-all.yaml"


def _schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in (DATA / "crd").glob("*.json.gz"):
        out.update(json.loads(gzip.decompress(f.read_bytes())))
    return out


SCHEMAS = _schemas()
FILES = sorted((DATA / "istio" / "samples").glob("*.yaml")) + sorted(
    (DATA / "gateway-api" / "examples").glob("*.yaml")
)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [
        d
        for d in yaml.safe_load_all(path.read_text())
        if isinstance(d, dict) and d.get("kind") in KINDS
    ]


def _context(raw: dict[str, Any]) -> list[Any]:
    """The DestinationRules Istio's tasks apply first (:data:`CONTEXT`), but ``raw`` itself."""
    name = (raw.get("metadata") or {}).get("name")
    return [
        m
        for r in _documents(DATA / "istio" / "samples" / CONTEXT)
        if (r["kind"], r["metadata"]["name"]) != (raw["kind"], name)
        for m in validate_documents(in_namespace([r], "default"))
    ]


def _outcome(raw: dict[str, Any]) -> tuple[str, list[str]]:
    context = _context(raw)
    namespace = (raw.get("metadata") or {}).get("namespace", "default")
    try:
        [model] = validate_documents(in_namespace([raw], namespace), source="example")
    except InvalidDocumentError as err:
        return "refused", err.problems
    problems = [str(p) for p in effective_traffic_policies([model, *context])[1]]
    return ("refused" if problems else "taken"), problems


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_each_example_is_valid_upstream_and_taken_or_refused_with_a_listed_reason(path) -> None:
    for raw in _documents(path):
        schema = SCHEMAS[f"{raw['apiVersion']}/{raw['kind']}"]
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(raw)]
        assert errors == [], f"{path.name}: not valid upstream: {errors[:3]}"
        _, problems = _outcome(raw)
        for problem in problems:
            assert REASONS.search(problem), (
                f"{path.name}: a reason docs/policy.md does not list: {problem}"
            )
            assert "unknown field" not in problem and "Field required" not in problem, problem


def test_the_share_taken_is_known() -> None:
    """The counts docs/policy.md gives, so a change that takes (or refuses) more shows."""
    seen: Counter[str] = Counter()
    for path in FILES:
        for raw in _documents(path):
            project = "istio" if "istio" in raw["apiVersion"] else "gateway-api"
            seen[f"{project} {_outcome(raw)[0]}"] += 1
    print(dict(seen))
    assert seen == Counter(
        {"istio taken": 33, "istio refused": 20, "gateway-api taken": 1, "gateway-api refused": 57}
    )
