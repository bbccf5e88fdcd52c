"""Fuzzing meshfed's REST API from its OpenAPI document with schemathesis (which drives
hypothesis): shared by ``tests/integration/test_fuzz_api.py`` (a bounded pass) and
``bench/fuzz_api.py`` (a longer one).

Each generated request goes to a real controller over HTTPS (its certificate verified against
the trust bundle by the name ``controller.meshfed.internal``) with the admin token. The
checks: no 5xx; and a refused request (4xx) leaves the stored state -- clusters, policies,
exports -- as it was.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterator
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
VOLATILE = (
    "heartbeat",
    "lastHeartbeat",
    "lastSeen",
    "age",
    "since",
    "expires",
    "health",
    "version",
)


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


def _schema(document: dict[str, Any] | None = None) -> Any:
    """The schemathesis schema of ``document`` (default: the controller's)."""
    return from_dict(document or openapi_document())


def _has_input(operation: Any) -> bool:
    return bool(list(operation.iter_parameters())) or bool(list(operation.body))


def fuzz_cases(document: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(mode, "METHOD /path")`` for every operation of an OpenAPI document (default: the
    controller's): ``positive`` for each, ``negative`` for those that take parameters or a
    body (nothing can be invalid in the others)."""
    operations = [op.ok() for op in _schema(document).get_all_operations()]
    return [("positive", op.label) for op in operations] + [
        ("negative", op.label) for op in operations if _has_input(op)
    ]


@dataclass
class FuzzTarget:
    """A running meshfed API (``url``), an HTTPS session that verifies it, its token, the
    read-only paths whose answers make up its stored state, and its OpenAPI document."""

    url: str
    session: requests.Session
    token: str
    bundle: str
    state_paths: tuple[str, ...]
    controller: Any = None
    openapi: dict[str, Any] | None = None

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
        from federation.controlplane.api import openapi_document as plane_openapi

        target: FuzzTarget = cls._new(
            api_url, plane["bundle_file"], plane["server_name"], token, ("/v1/workloads",)
        )
        target.openapi = plane_openapi()
        return target

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
    operations = _schema(target.openapi).get_all_operations()
    [operation] = [op.ok() for op in operations if op.ok().label == label]
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


# --- the controller's FederationSync service ---------------------------------------------


_OPTIMIZE = """\
apiVersion: meshfed.io/v1alpha1
kind: TrafficPolicy
metadata: {name: echo, namespace: demo}
spec: {host: echo.demo.svc.clusterset.local, cost: {mode: optimize}}
"""


def sync_members(controller: Any) -> Any:
    """Make ``controller`` (a running :class:`tests.integration.harness.ControllerHandle`)
    ready for :func:`fuzz_cluster_reports`: cluster ``a`` joined with its control plane
    running (returned), cluster ``b`` joined and its control plane stopped (the fuzzer
    speaks for ``b``), and echo planned by cost (so reported traffic reaches the planner)."""
    from federation.netaddr import free_port

    a = controller.join("a", "aws/us-east-1/us-east-1a", f"127.0.0.1:{free_port()}")
    b = controller.join("b", "aws/eu-west-1/eu-west-1a", f"127.0.0.1:{free_port()}")
    b.stop()
    controller.api("POST", "/v1/apply", _OPTIMIZE)
    return a


@contextlib.contextmanager
def sync_channel(controller: Any, cluster: str) -> Iterator[Any]:
    """A ``FederationSyncStub`` on ``controller``'s sync port that speaks for ``cluster``: an
    SVID ``controlplane-<cluster>`` signed by the intermediate CA that cluster's control plane
    joined with (read from its CA directory in the controller's home), as that control plane
    presents."""
    import grpc

    from federation.sync.proto import sync_pb2_grpc
    from trust.authority import issue_svid
    from trust.cluster_ca import ClusterCaDirectory
    from trust.spiffe import SpiffeId, TrustDomain

    domain = TrustDomain("example.org")
    ca = ClusterCaDirectory(controller.home / "controlplanes" / cluster / "ca").authority(domain)
    svid = issue_svid(
        ca, SpiffeId.parse(f"spiffe://{domain}/ns/meshfed-system/sa/controlplane-{cluster}")
    )
    creds = grpc.ssl_channel_credentials(
        root_certificates=(controller.home / "trust" / "bundle.pem").read_bytes(),
        private_key=svid.private_key_pem(),
        certificate_chain=svid.chain_pem(),
    )
    options = [("grpc.ssl_target_name_override", CONTROLLER_SERVER_NAME)]
    with grpc.secure_channel(controller.sync_address, creds, options=options) as channel:
        yield sync_pb2_grpc.FederationSyncStub(channel)


def report_message(report: dict[str, Any]) -> Any:
    """The ``ClusterReport`` proto of a dict of its fields (non-finite numbers as the JSON
    mapping spells them, ``"NaN"`` / ``"Infinity"``)."""
    from google.protobuf import json_format

    from federation.sync.proto import sync_pb2

    def spelled(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, dict):
            return {k: spelled(v) for k, v in value.items()}
        if isinstance(value, list):
            return [spelled(v) for v in value]
        return value

    return json_format.ParseDict(spelled(report), sync_pb2.ClusterReport())


def send_report(stub: Any, report: dict[str, Any], timeout_s: float = 10) -> str:
    """Send one ``ClusterReport`` (a dict of the proto's fields) on a new stream and
    half-close; the status the stream ended with (``OK``: the report was accepted)."""
    import grpc

    message = report_message(report)
    try:
        for _ in stub.Sync(iter([message]), timeout=timeout_s):
            pass
    except grpc.RpcError as err:
        return str(err.code().name)
    return "OK"


def _report_fields(cluster: str, hostile: bool) -> Any:
    """The fields of a ``ClusterReport`` dict: every value valid (as a control plane of
    ``cluster`` would send), or with hostile values mixed in everywhere."""
    from hypothesis import strategies as st

    from federation.traffic import CODE_CLASSES, DURATION_BUCKETS_MS
    from providers.pricing import PATH_CLASSES

    def pick(valid: list[Any], bad: Any) -> Any:
        return st.sampled_from(valid) | bad if hostile else st.sampled_from(valid)

    text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
    bad_numbers = st.floats() | st.sampled_from([-1.0, 1e300])
    number = st.floats(0, 1e6) | bad_numbers if hostile else st.floats(0, 1e6)
    name = pick(["demo", "echo", "frontend", "default"], text)
    uint32 = (
        st.sampled_from([0, 65536, 2**32 - 1]) | st.integers(1, 65535)
        if hostile
        else st.integers(1, 65535)
    )
    uint64 = st.integers(0, 2**64 - 1)
    endpoint = st.fixed_dictionaries(
        {
            "address": pick(["10.1.0.7", "127.0.0.9", "fd00::1", "echo-1.demo.svc"], text),
            "zone": pick(["eu-west-1a", "us-east-1a", ""], text),
            "healthy": st.booleans(),
            "tls_mode": pick(["mutual", "disabled"], text),
            "ports": st.dictionaries(pick(["http", "grpc"], text), uint32, max_size=2),
            "weight": st.integers(1, 128) | uint32 if hostile else st.integers(1, 128),
            "capacity_rps": number,
        }
    )
    port = st.fixed_dictionaries(
        {
            "name": pick(["http", "grpc", "tcp-echo"], text),
            "port": uint32,
            "protocol": pick(["http", "http2", "grpc", "tcp"], st.just("HTTP") | text),
        }
    )
    service = st.fixed_dictionaries(
        {
            "namespace": name,
            "name": name,
            "ports": st.lists(port, max_size=3),
            "service_accounts": st.lists(pick(["echo", "sa.with-dots"], text), max_size=2),
            "healthy_endpoints_by_zone": st.dictionaries(
                pick(["eu-west-1a", "aws/eu-west-1"], text), st.integers(0, 100), max_size=2
            ),
            "endpoints": st.lists(endpoint, max_size=2),
        }
    )
    buckets = len(DURATION_BUCKETS_MS) + 1
    edge = st.fixed_dictionaries(
        {
            "source_locality": pick(["aws/eu-west-1/eu-west-1a"], text),
            "destination_service": pick(["echo.demo"], text),
            "destination_cluster": pick(["a", "b", "unknown", "zz"], text),
            "destination_locality": pick(["aws/us-east-1/us-east-1a", "unknown"], text),
            "path_class": pick([*PATH_CLASSES, "unknown"], text),
            "response_code_class": pick(list(CODE_CLASSES), text),
            "requests": uint64,
            "request_bytes": uint64,
            "response_bytes": uint64,
            "egress_usd": number,
            "duration_ms_sum": number,
            "duration_buckets": (
                st.lists(uint64, min_size=buckets, max_size=buckets)
                | (st.lists(uint64, max_size=3) if hostile else st.nothing())
            ),
        }
    )
    traffic = st.fixed_dictionaries(
        {
            "started_at": st.floats(1.7e9, 1.8e9) | (bad_numbers if hostile else st.nothing()),
            "duration_bounds_ms": st.just(list(DURATION_BUCKETS_MS))
            | (st.lists(number, max_size=3) if hostile else st.nothing()),
            "edges": st.lists(edge, max_size=3),
        }
    )
    crl = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
    return {
        "cluster": pick([cluster], st.sampled_from(["a", "zz", ""])),
        "services": st.lists(service, max_size=3),
        "gateway": pick(["127.0.0.1:15443", "", "gw.example.org:443", "[::1]:15443"], text),
        "rtt_ms": st.dictionaries(pick(["a", "zz"], text), number, max_size=2),
        "exports": st.lists(st.fixed_dictionaries({"namespace": name, "name": name}), max_size=2),
        "crl_pem": pick([""], st.just(crl) | text),
        "intermediate_csr_pem": pick([""], st.just(crl) | text),
        "traffic": traffic,
    }


def cluster_report_strategy(cluster: str) -> Any:
    """``ClusterReport`` dicts (proto field names) for ``cluster``, a third each: valid
    reports (to get deep: imports computed, traffic planned); valid reports with one field
    hostile (to reach each check); and reports hostile everywhere -- names that are not
    Kubernetes names, addresses and gateways that are not, odd protocols and ports, NaN /
    infinite / negative numbers, garbage PEM, traffic tables with wrong bucket counts and
    counters at the uint64 limit, another cluster's name."""
    from hypothesis import strategies as st

    def report(fields: dict[str, Any]) -> Any:
        traffic = fields.pop("traffic")
        return st.fixed_dictionaries(fields, optional={"traffic": traffic})

    valid = report(_report_fields(cluster, hostile=False))
    hostile = report(_report_fields(cluster, hostile=True))
    keys = sorted(_report_fields(cluster, hostile=False))
    one_bad = st.builds(
        lambda good, bad, key: {**good, key: bad[key]} if key in bad else good,
        valid,
        hostile,
        st.sampled_from(keys),
    )
    return st.one_of(valid, one_bad, hostile)


def fuzz_cluster_reports(
    target: FuzzTarget, stub: Any, cluster: str, examples: int, ended: Counter[str]
) -> None:
    """Send ``examples`` generated reports (:func:`cluster_report_strategy`) on streams of
    their own; count how each ended in ``ended``.

    Raises:
        AssertionError: a stream ended UNKNOWN or INTERNAL; a refused report changed what the
            API shows; or after an accepted one a read of the API answered other than 200.
    """

    @_bounded(examples)
    @given(report=cluster_report_strategy(cluster))
    def run(report: dict[str, Any]) -> None:
        before = target.state()
        code = send_report(stub, report)
        ended[code] += 1
        assert code not in ("UNKNOWN", "INTERNAL"), f"{code} for {report}"
        if code != "OK":
            after = target.state()
            assert after == before, f"refused ({code}) but changed: {report}\n{before}\n{after}"
        for path in (*target.state_paths, "/v1/traffic"):
            resp = target.session.get(
                target.url + path, headers={"Authorization": f"Bearer {target.token}"}, timeout=10
            )
            assert resp.status_code == 200, f"{path}: {resp.status_code} after {report}"

    run()
