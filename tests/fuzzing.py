"""Fuzzing meshfed's REST API from its OpenAPI document with schemathesis (which drives
hypothesis): shared by ``tests/integration/test_fuzz_api.py`` (a bounded pass) and
``bench/fuzz_api.py`` (a longer one).

Each generated request goes to a real controller over HTTPS (its certificate verified against
the trust bundle by the name ``controller.meshfed.internal``) with the admin token. The
checks: no 5xx; and a refused request (4xx) leaves the stored state -- clusters, policies,
exports -- as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from hypothesis import HealthCheck, Phase, given, settings
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.openapi import from_dict

from federation.client import find_token, local_control_plane
from federation.controller.api import openapi_document
from federation.sync.identity import CONTROLLER_SERVER_NAME

#: Fields whose values change by themselves (time; a workload's probed health and the
#: registry version it bumps), left out of the state compared.
VOLATILE = ("heartbeat", "lastSeen", "age", "since", "expires", "health", "version")


class _NamedHost(HTTPAdapter):
    """Verifies the server's certificate by a fixed DNS name, whatever address is dialled."""

    def __init__(self, name: str) -> None:
        self._name = name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._name
        kwargs["assert_hostname"] = self._name
        super().init_poolmanager(*args, **kwargs)


def _bounded(examples: int) -> Any:
    """Hypothesis settings of a fuzzing pass: ``examples`` generated inputs, repeatable
    (derandomized, no example database), no deadline (each input is a network round trip)."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def _schema() -> Any:
    return from_dict(openapi_document())


def _has_input(operation: Any) -> bool:
    return bool(list(operation.iter_parameters())) or bool(list(operation.body))


def fuzz_cases() -> list[tuple[str, str]]:
    """``(mode, "METHOD /path")`` for every operation of the controller's OpenAPI document:
    ``positive`` for each, ``negative`` for those that take parameters or a body (nothing
    can be invalid in the others)."""
    operations = [op.ok() for op in _schema().get_all_operations()]
    return [("positive", op.label) for op in operations] + [
        ("negative", op.label) for op in operations if _has_input(op)
    ]


@dataclass
class FuzzTarget:
    """A running meshfed API (``url``), an HTTPS session that verifies it, its token, and the
    read-only paths whose answers make up its stored state."""

    url: str
    session: requests.Session
    token: str
    bundle: str
    state_paths: tuple[str, ...]
    controller: Any = None

    @classmethod
    def _new(cls, url: str, bundle: str, name: str, token: str, paths: tuple[str, ...]) -> Any:
        session = requests.Session()
        session.verify = bundle
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the federation's bundle
        session.mount("https://", _NamedHost(name))
        return cls(url, session, token, bundle, paths)

    @classmethod
    def for_controller(cls, controller: Any) -> FuzzTarget:
        """A target for a :class:`tests.integration.harness.ControllerHandle`."""
        bundle = str(controller.home / "trust" / "bundle.pem")
        paths = ("/v1/clusters", "/v1/policies", "/v1/exports")
        target: FuzzTarget = cls._new(
            controller.url, bundle, CONTROLLER_SERVER_NAME, controller.token(), paths
        )
        target.controller = controller
        return target

    @classmethod
    def for_control_plane(cls, api_url: str, home: Any) -> FuzzTarget:
        """A target for a control plane's API (HTTPS, as its ``endpoint.json`` says)."""
        plane = local_control_plane(api_url, home)
        assert plane is not None, f"no endpoint.json for {api_url}"
        token = find_token(api_url, home=home)
        assert token is not None
        return cls._new(  # type: ignore[no-any-return]
            api_url, plane["bundle_file"], plane["server_name"], token, ("/v1/workloads",)
        )

    def state(self) -> dict[str, Any]:
        """What the API stores, without fields that change by themselves."""
        out: dict[str, Any] = {}
        for path in self.state_paths:
            resp = self.session.get(
                self.url + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
            )
            out[path] = _stable(resp.json())
        return out


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not k.startswith(VOLATILE)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def fuzz_operation(target: FuzzTarget, label: str, mode: str, examples: int) -> None:
    """Send ``examples`` generated requests for the operation ``label`` (``positive``: valid
    by the schema; ``negative``: invalid) and check each (see the module docstring).

    Raises:
        AssertionError: a 5xx, or a refused request that changed stored state (with the
            request as a curl command).
    """
    [operation] = [op.ok() for op in _schema().get_all_operations() if op.ok().label == label]
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    headers = {"Authorization": f"Bearer {target.token}"}

    @_bounded(examples)
    @given(case=operation.as_strategy(generation_mode=generation))
    def run(case: Any) -> None:
        before = target.state()
        resp = case.call(
            base_url=target.url,
            session=target.session,
            headers=headers,
            timeout=30,
            verify=target.bundle,
        )
        request = case.as_curl_command(headers=headers)
        assert resp.status_code < 500, f"{resp.status_code} for {request}: {resp.text[:300]}"
        if resp.status_code >= 400:
            assert target.state() == before, f"refused ({resp.status_code}) but changed: {request}"

    run()


def _json_values() -> Any:
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=4)
        ),
        max_leaves=20,
    )


_META = {"name": "echo", "namespace": "demo"}
#: One valid document of each kind the fuzzer mutates.
TEMPLATES: list[dict[str, Any]] = [
    {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "WorkloadEntry",
        "metadata": _META,
        "spec": {
            "service": "echo",
            "address": "127.0.0.9",
            "locality": "aws/us-east-1/us-east-1a",
            "ports": [{"name": "http", "port": 8080}],
        },
    },
    {"apiVersion": "meshfed.io/v1alpha1", "kind": "ServiceExport", "metadata": _META, "spec": {}},
    {
        "apiVersion": "meshfed.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": _META,
        "spec": {"host": "echo.demo.svc.clusterset.local", "cost": {"mode": "optimize"}},
    },
    {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": _META,
        "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]},
    },
]


def document_strategy(kinds: list[tuple[str, str]] | None = None) -> Any:
    """Documents of every kind the controller knows (apiVersion and kind right), whose
    metadata and spec are arbitrary JSON -- sometimes with the right field names, to get past
    the first check."""
    from hypothesis import strategies as st

    from federation.model.documents import KINDS

    known = kinds or sorted(KINDS)
    fields = st.sampled_from(
        ["host", "service", "address", "ports", "locality", "cluster", "action", "rules",
         "selector", "split", "cost", "http", "tcp", "subsets", "spec", "name", "namespace"]
    )  # fmt: skip
    spec = st.dictionaries(fields | st.text(max_size=8), _json_values(), max_size=6)
    meta = (
        st.fixed_dictionaries(
            {"name": st.text(max_size=20) | st.just("echo"), "namespace": st.just("demo")}
        )
        | _json_values()
    )
    arbitrary = st.builds(
        lambda kind, m, s: {"apiVersion": kind[0], "kind": kind[1], "metadata": m, "spec": s},
        st.sampled_from(known),
        meta,
        spec,
    )
    templates = [t for t in TEMPLATES if (t["apiVersion"], t["kind"]) in known]
    if not templates:
        return arbitrary
    # a valid document with one spec field replaced (or added): reaches the deeper checks
    mutated = st.builds(
        lambda t, key, value: {**t, "spec": {**t["spec"], key: value}},
        st.sampled_from(templates),
        fields | st.text(max_size=8),
        _json_values(),
    )
    return st.one_of(arbitrary, mutated, st.sampled_from(templates))


def fuzz_documents(
    target: FuzzTarget, examples: int, kinds: list[tuple[str, str]] | None = None
) -> None:
    """POST ``examples`` streams of 1-3 generated documents to ``/v1/apply`` and
    ``/v1/delete``: never a 5xx, and a refused stream changes nothing."""
    import yaml
    from hypothesis import strategies as st

    headers = {"Authorization": f"Bearer {target.token}", "Content-Type": "application/yaml"}

    @_bounded(examples)
    @given(
        docs=st.lists(document_strategy(kinds), min_size=1, max_size=3),
        path=st.sampled_from(["/v1/apply", "/v1/delete"]),
    )
    def run(docs: list[dict[str, Any]], path: str) -> None:
        body = yaml.safe_dump_all(docs)
        before = target.state()
        resp = target.session.post(
            target.url + path, data=body.encode(), headers=headers, timeout=30
        )
        assert resp.status_code < 500, f"{resp.status_code} for {path}:\n{body}\n{resp.text[:300]}"
        if resp.status_code >= 400:
            assert target.state() == before, f"refused but changed:\n{body}"

    run()
