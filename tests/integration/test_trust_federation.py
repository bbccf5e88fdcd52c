"""Issue 43, SPIFFE federation: the controller as a bundle endpoint (both profiles of
SPIFFE_Federation.md section 5.2) and meshfed's client of foreign bundle endpoints, against
a real controller over real TLS; every impostor the spec names is refused."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import jsonschema
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from federation.controller.bundle_fetch import fetch_bundle
from federation.errors import BundleFetchError
from tests.integration.fake_vault import FakeVault
from tests.integration.harness import (
    ControllerHandle,
    Processes,
    RateLoop,
    free_port,
    get,
    run_meshfed,
    start_echo,
    start_gateway,
    start_sidecar_agent,
    wait_until,
)
from tests.prometheus import Samples, samples
from tests.web_pki import web_certificate
from trust import pki
from trust.authority import issue_svid
from trust.bundle import TrustBundle
from trust.federation import BundleEndpoint
from trust.spiffe import SpiffeId, TrustDomain
from trust.store import TrustDirectory

DOMAIN = TrustDomain("a.example")
CONTROLLER_ID = SpiffeId.parse("spiffe://a.example/ns/meshfed-system/sa/controller")

#: The SPIFFE bundle format as the specs define it: SPIFFE_Trust_Domain_and_Bundle.md section
#: 4 (a JWK Set: ``keys`` required, ``spiffe_sequence`` and ``spiffe_refresh_hint`` integers;
#: each JWK with ``kty`` and ``use``) and X509-SVID.md section 6 (``use: x509-svid`` keys
#: carry exactly one certificate in ``x5c``).
SPIFFE_BUNDLE_SCHEMA = {
    "type": "object",
    "required": ["keys"],
    "properties": {
        "spiffe_sequence": {"type": "integer", "minimum": 0},
        "spiffe_refresh_hint": {"type": "integer", "minimum": 0},
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kty", "use"],
                "properties": {"kty": {"type": "string"}, "use": {"type": "string"}},
                "if": {"properties": {"use": {"const": "x509-svid"}}},
                "then": {
                    "required": ["x5c"],
                    "properties": {
                        "x5c": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 1,
                            "items": {"type": "string", "contentEncoding": "base64"},
                        }
                    },
                },
            },
        },
    },
}


def _fetch(endpoint: BundleEndpoint, held: TrustBundle | None = None, **kw: str) -> TrustBundle:
    return asyncio.run(fetch_bundle(endpoint, held, timeout_s=5, **kw))


def _refused(endpoint: BundleEndpoint, held: TrustBundle | None = None, **kw: str) -> str:
    with pytest.raises(BundleFetchError) as caught:
        _fetch(endpoint, held, **kw)
    return str(caught.value)


def _check_conforming_answer(url: str, context: ssl.SSLContext, held: TrustBundle) -> None:
    """The raw answer, read without meshfed's parser: JSON of the spec's shape, every key an
    RFC 7517 JWK (PyJWT's parser) whose public key is its certificate's, and the certificates
    the trust directory's roots."""
    with urllib.request.urlopen(url, context=context, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("application/json")
        doc = json.loads(answer.read().decode("utf-8"))
    jsonschema.validate(doc, SPIFFE_BUNDLE_SCHEMA)
    assert doc["spiffe_refresh_hint"] == 7 and doc["spiffe_sequence"] == held.sequence
    jwks = jwt.PyJWKSet.from_dict(doc)
    assert len(jwks.keys) == len(doc["keys"]) == len(held.roots)
    for jwk, raw in zip(jwks.keys, doc["keys"], strict=True):
        cert = x509.load_der_x509_certificate(base64.b64decode(raw["x5c"][0]))
        assert jwk.key.public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    served = sorted(base64.b64decode(k["x5c"][0]) for k in doc["keys"])
    assert served == sorted(r.public_bytes(serialization.Encoding.DER) for r in held.roots)


def test_the_bundle_endpoint_serves_both_profiles_and_the_client_refuses_impostors(
    tmp_path: Path,
) -> None:
    web = web_certificate(tmp_path / "web", dns=["bundle.a.example"], ips=["127.0.0.1"])
    port = free_port()
    procs = Processes(tmp_path)
    ctl = ControllerHandle(
        procs,
        tmp_path / "a",
        extra_args=[
            *("--trust-domain", str(DOMAIN), "--bundle-refresh-hint", "7s"),
            *("--bundle-endpoint-listen", f"127.0.0.1:{port}"),
            *("--bundle-endpoint-cert", str(web.chain), "--bundle-endpoint-key", str(web.key)),
        ],
    )
    try:
        ctl.start()
        held = TrustDirectory(ctl.home / "trust").bundle()

        # https_spiffe on the REST API: no token needed, the controller's SVID authenticates
        spiffe = BundleEndpoint(
            DOMAIN, f"{ctl.url}/v1/spiffe-bundle", "https_spiffe", CONTROLLER_ID
        )
        got = _fetch(spiffe, held)
        assert got.fingerprints() == held.fingerprints()
        assert (got.sequence, got.refresh_hint_s) == (held.sequence, 7)
        _check_conforming_answer(spiffe.url, ctl.ssl_context(), held)

        # https_web on the dedicated listener: the operator's certificate, RFC 6125 host check
        on_web = BundleEndpoint(DOMAIN, f"https://127.0.0.1:{port}/", "https_web")
        assert _fetch(on_web, web_ca_file=str(web.ca)).fingerprints() == held.fingerprints()
        web_context = ssl.create_default_context(cafile=str(web.ca))
        _check_conforming_answer(on_web.url, web_context, held)
        with pytest.raises(urllib.error.HTTPError) as not_found:  # it serves nothing else
            urllib.request.urlopen(f"https://127.0.0.1:{port}/v1/clusters", context=web_context)
        not_found.value.close()  # its open answer holds the TLS socket
        assert not_found.value.code == 404

        # impostors
        wrong_id = BundleEndpoint(
            DOMAIN, spiffe.url, "https_spiffe", SpiffeId.parse("spiffe://a.example/ns/x/sa/bundle")
        )
        assert f"presented {CONTROLLER_ID}, not the configured" in _refused(wrong_id, held)
        forged = TrustDirectory(tmp_path / "forged").init(DOMAIN)  # same name, another root
        assert "TLS refused" in _refused(spiffe, forged)
        # a Web PKI certificate (not an SVID of the domain) does not pass for https_spiffe
        as_spiffe = BundleEndpoint(DOMAIN, on_web.url, "https_spiffe", CONTROLLER_ID)
        assert "TLS refused" in _refused(as_spiffe, held)
        # https_web: the system's CAs do not know the operator's CA; a name not in the SAN
        assert "TLS refused" in _refused(on_web)
        by_name = BundleEndpoint(DOMAIN, f"https://localhost:{port}/", "https_web")
        assert "TLS refused" in _refused(by_name, web_ca_file=str(web.ca))
    finally:
        procs.stop_all()


def test_the_dedicated_listener_without_a_certificate_serves_https_spiffe(tmp_path: Path) -> None:
    """``--bundle-endpoint-listen`` alone: the controller's SVID (with the listen IP) serves
    the bundle at ``/``, and an ``https_spiffe`` client with the bundle authenticates it."""
    port = free_port()
    procs = Processes(tmp_path)
    ctl = ControllerHandle(
        procs, tmp_path / "a",
        extra_args=["--trust-domain", str(DOMAIN), "--bundle-endpoint-listen", f"127.0.0.1:{port}"],
    )  # fmt: skip
    try:
        ctl.start()
        held = TrustDirectory(ctl.home / "trust").bundle()
        endpoint = BundleEndpoint(
            DOMAIN, f"https://127.0.0.1:{port}/", "https_spiffe", CONTROLLER_ID
        )
        assert _fetch(endpoint, held).fingerprints() == held.fingerprints()
        wrong = BundleEndpoint(
            DOMAIN, endpoint.url, "https_spiffe", SpiffeId.parse("spiffe://a.example/bundle")
        )
        assert "not the configured endpoint SPIFFE ID" in _refused(wrong, held)
    finally:
        procs.stop_all()


def _domains(ctl: ControllerHandle) -> dict[str, dict[str, object]]:
    return {r["trustDomain"]: r for r in ctl.api("GET", "/v1/trustdomains")["trustdomains"]}


def _samples(ctl: ControllerHandle) -> Samples:
    auth = {"Authorization": f"Bearer {ctl.token()}"}
    request = urllib.request.Request(f"{ctl.url}/metrics", headers=auth)
    with urllib.request.urlopen(request, context=ctl.ssl_context(), timeout=5) as answer:
        return samples(answer.read().decode())


def test_a_controller_keeps_a_foreign_bundle_fresh_and_in_force_until_removed(
    tmp_path: Path,
) -> None:
    """``meshfed trust federate`` on a.example with b.example's endpoint (https_spiffe,
    bootstrapped from b's bundle file): a holds b's roots, follows b's root rotation at b's
    refresh hint, keeps b's bundle in force (and says why) while b is down, and drops it
    when the federation is removed; a bundle for another domain is refused at apply."""
    procs = Processes(tmp_path)
    a = ControllerHandle(procs, tmp_path / "a", extra_args=["--trust-domain", "a.example"])
    b = ControllerHandle(
        procs,
        tmp_path / "b",
        extra_args=["--trust-domain", "b.example", "--bundle-refresh-hint", "2s"],
    )
    try:
        a.start()
        b.start()
        b_trust = TrustDirectory(b.home / "trust")
        endpoint = f"{b.url}/v1/spiffe-bundle"
        federate = [
            "trust", "federate", "--with", "b.example", "--bundle-endpoint", endpoint,
            "--bundle-file", str(b_trust.bundle_spiffe_path),
        ]  # fmt: skip
        # a bundle of another domain does not bootstrap b.example
        wrong = run_meshfed(
            a.home, *federate[:-1], str(a.home / "trust" / "bundle.pem"), check=False
        )
        assert wrong.returncode == 2 and "b.example" in wrong.stderr, wrong.stderr
        assert "configured" in run_meshfed(a.home, *federate).stdout

        def fetched(roots: int) -> dict[str, object] | None:
            row = _domains(a).get("b.example")
            ok = row and row["fetchedAt"] and row["roots"] == roots and not row["error"]
            return row if ok else None

        row = wait_until(lambda: fetched(1), 15, "b.example's bundle fetched by a")
        assert row["profile"] == "https_spiffe" and row["inForce"]
        got = run_meshfed(a.home, "get", "trustdomains").stdout
        assert "b.example" in got and "https_spiffe" in got, got

        # b rotates its root as documented for federated meshes: it publishes the new root
        # first, and a holds both within b's refresh hint (2 s) + a round; only then does
        # the new root sign (b's endpoint SVID too), which a can still authenticate
        run_meshfed(b.home, "trust", "rotate-root", "--publish-only")
        started = time.monotonic()
        published = wait_until(lambda: fetched(2), 15, "b's new root at a")
        print(f"b's rotation seen by a in {time.monotonic() - started:.1f} s")
        run_meshfed(b.home, "trust", "rotate-root")
        before = published["fetchedAt"]
        wait_until(
            lambda: (r := fetched(2)) and r["fetchedAt"] != before, 15, "a fetch signed anew"
        )

        # b goes away: a keeps the bundle in force and says why
        assert b.proc is not None
        b.proc.send_signal(signal.SIGTERM)
        b.proc.wait(15)
        down = wait_until(
            lambda: (r := _domains(a)["b.example"])["error"] and r, 15, "a failed refresh"
        )
        assert down["roots"] == 2 and down["inForce"] and down["failures"] >= 1
        seen = _samples(a)
        errors = (("result", "error"), ("trust_domain", "b.example"))
        assert seen[("meshfed_controller_federated_bundle_fetches_total", errors)] >= 1
        roots = (("trust_domain", "b.example"),)
        assert seen[("meshfed_controller_federated_bundle_roots", roots)] == 2

        run_meshfed(a.home, "trust", "federate", "--with", "b.example", "--remove")
        assert "b.example" not in _domains(a)
        again = run_meshfed(
            a.home, "trust", "federate", "--with", "b.example", "--remove", check=False
        )
        assert again.returncode == 2 and "no federation" in again.stderr
    finally:
        procs.stop_all()


ECHO_HOST = "echo.demo.svc.clusterset.local"
ECHO_SNI = f"outbound_.8080_._.{ECHO_HOST}"


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    fake = FakeVault().start()
    try:
        yield fake
    finally:
        fake.stop()


def _svid_files(trust: TrustDirectory, cluster: str, sid: str, out: Path) -> tuple[Path, Path]:
    """An SVID ``sid`` issued by ``cluster``'s intermediate of ``trust`` (created if
    missing): chain and key files, named after the trust directory, cluster and ID."""
    if cluster not in trust.clusters():
        trust.create_intermediate(cluster, ttl=timedelta(days=1))
    svid = issue_svid(trust.cluster_authority(cluster), SpiffeId.parse(sid), timedelta(hours=1))
    out.mkdir(parents=True, exist_ok=True)
    name = f"{trust.path.name}-{cluster}-{sid.rsplit('/', 1)[-1]}"
    chain, key = out / f"{name}.pem", out / f"{name}-key.pem"
    chain.write_bytes(svid.chain_pem())
    key.touch(mode=0o600)
    key.write_bytes(svid.private_key_pem())
    return chain, key


def _federate_with(home: Path, other: ControllerHandle, domain: str) -> TrustDirectory:
    """``meshfed trust federate`` ``home``'s federation with ``other``'s trust domain
    ``domain`` (its bundle endpoint, its bundle file); returns ``other``'s trust directory."""
    trust = TrustDirectory(other.home / "trust")
    run_meshfed(
        home, "trust", "federate", "--with", domain,
        "--bundle-endpoint", f"{other.url}/v1/spiffe-bundle",
        "--bundle-file", str(trust.bundle_spiffe_path),
    )  # fmt: skip
    return trust


def wait_validating_with(home: Path, domain: str, timeout_s: float) -> None:
    """Wait until every proxy of ``home`` validates peers with Envoy's SPIFFE validator and
    ``domain``'s bundle (its ``ROOTCA`` secret, ``rootca.json``)."""

    def validating() -> bool:
        docs = [p.read_text() for p in home.rglob("rootca.json")]
        return bool(docs) and all("cert_validator.spiffe" in d and domain in d for d in docs)

    wait_until(validating, timeout_s, f"every proxy validating with {domain}'s bundle")


def _callers_of_other_domains(b_trust: TrustDirectory, tmp_path: Path) -> list[tuple[Path, Path]]:
    """SVID files (chain, key) of: b.example's ``client`` and ``other`` (b's root), a
    c.example ``client`` (a domain nobody federates with) and a forged b.example ``client``
    (another root of that name)."""
    certs = tmp_path / "certs"
    third = TrustDirectory(tmp_path / "c-trust")
    third.init(TrustDomain("c.example"))
    forged = TrustDirectory(tmp_path / "forged-b")
    forged.init(TrustDomain("b.example"))
    return [
        _svid_files(b_trust, "west", "spiffe://b.example/ns/demo/sa/client", certs),
        _svid_files(b_trust, "west", "spiffe://b.example/ns/demo/sa/other", certs),
        _svid_files(third, "x", "spiffe://c.example/ns/demo/sa/client", certs),
        _svid_files(forged, "west", "spiffe://b.example/ns/demo/sa/client", certs),
    ]


def _call_inbound(port: int, cert: tuple[Path, Path], server_bundle: Path) -> int | str:
    """GET / on a sidecar's inbound listener (SNI of echo's port 8080) with the client SVID
    ``cert``: the HTTP status, or ``"handshake refused"``."""
    context = ssl.create_default_context(cafile=str(server_bundle))
    context.check_hostname = False
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = http.client.HTTPSConnection("127.0.1.11", port, timeout=3, context=context)
    try:  # the SNI a caller's sidecar sends (http.client would send none for an address)
        raw = socket.create_connection(("127.0.1.11", port), timeout=3)
        conn.sock = context.wrap_socket(raw, server_hostname=ECHO_SNI)
        conn.request("GET", "/", headers={"Host": ECHO_HOST})
        return conn.getresponse().status
    except (ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected):
        return "handshake refused"
    finally:
        conn.close()


def test_a_foreign_svid_is_served_only_where_a_policy_names_it_and_revocation_still_holds(
    procs: Processes,
    mesh_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vault: FakeVault,
) -> None:
    """Issue 43, proofs 1 and 2 on one mesh whose root is in (fake) Vault: with b.example
    federated, a's echo sidecar validates b's SVIDs with b's bundle only (Envoy's SPIFFE
    validator): a b.example caller is refused (403) until an AuthorizationPolicy names it,
    then served, while another b.example identity stays refused and a rule by namespace does
    not let foreign callers in; a c.example SVID (no federation) fails the handshake; a
    forged b.example SVID (another root) too. Member revocation keeps working under the
    SPIFFE validator, which needs a CRL of every root: Vault's own (``crl/pem``) is sent
    with the foreign bundles, and a removed cluster's callers are refused. (The other
    tests of this module federate local roots.)"""
    from tests.integration.test_revocation import _caller, _join, _serve_echo, _status

    monkeypatch.setenv("VAULT_TOKEN", vault.token)
    run_meshfed(
        mesh_home, "trust", "init", "--trust-domain", "example.org", "--backend", "vault",
        "--vault-address", vault.url, "--force",
    )  # fmt: skip
    controller = ControllerHandle(procs, mesh_home, lease_s=10)
    controller.start()
    foreign = ControllerHandle(
        procs,
        tmp_path / "b-home",
        name="b-controller",
        extra_args=["--trust-domain", "b.example", "--bundle-refresh-hint", "2s"],
    )
    foreign.start()
    cps = {name: _join(procs, mesh_home, controller, name) for name in ("a", "b", "c")}
    inbound = _serve_echo(procs, mesh_home, cps["a"])
    b_trust = _federate_with(mesh_home, foreign, "b.example")
    from_b, from_c = _caller(procs, mesh_home, cps["b"]), _caller(procs, mesh_home, cps["c"])
    wait_until(lambda: _status(from_b) == 200 and _status(from_c) == 200, 60, "b and c served")

    wait_validating_with(mesh_home, "b.example", 30)
    # members are still served through the SPIFFE validator (roots' CRLs included)
    assert _status(from_b) == 200 and _status(from_c) == 200

    bundle = mesh_home / "trust" / "bundle.pem"
    client, other, stranger, forged = _callers_of_other_domains(b_trust, tmp_path)

    # no policy names b.example: refused by RBAC after a valid handshake
    wait_until(lambda: _call_inbound(inbound, client, bundle) == 403, 30, "b's caller: 403")
    assert _call_inbound(inbound, stranger, bundle) == "handshake refused"
    assert _call_inbound(inbound, forged, bundle) == "handshake refused"

    policy = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["b.example/ns/demo/sa/client"]}}]
  - from: [{source: {namespaces: ["demo"]}}]
"""
    run_meshfed(mesh_home, "apply", "-f", "-", input_text=policy)
    wait_until(lambda: _call_inbound(inbound, client, bundle) == 200, 30, "b's caller served")
    assert _call_inbound(inbound, other, bundle) == 403  # same namespace name, not named
    assert _status(from_b) == 200  # local callers of namespace demo still are
    # explain tells the same: the foreign caller named is allowed, the other denied by the guard
    for who, decision in ((client, "ALLOW"), (other, "DENY")):
        sid = "spiffe://b.example/ns/demo/sa/" + who[0].stem.rsplit("-", 1)[-1]
        shown = run_meshfed(
            mesh_home, "explain", "authz", "--from", sid, "--to", "echo.demo", "--at", "a",
            "-o", "json",
        ).stdout  # fmt: skip
        [row] = json.loads(shown)["rows"]
        assert row["decision"] == decision, row
    assert "foreign-trust-domains" in row["reason"], row

    run_meshfed(mesh_home, "cluster", "remove", "c")
    wait_until(lambda: all(_status(from_c) != 200 for _ in range(10)), 30, "c refused")
    assert _status(from_b) == 200 and _call_inbound(inbound, client, bundle) == 200
    assert vault.crl_reads >= 1  # the root CRL the proxies hold is Vault's


def test_a_proxyless_grpc_server_accepts_a_federated_domain_only_where_a_policy_names_it(
    procs: Processes, mesh_home: Path, tmp_path: Path
) -> None:
    """Issue 43, proof 1 for proxyless gRPC: an xDS-enabled gRPC server (no sidecar) started
    with ``GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE=true`` verifies each caller's SVID with its own
    domain's anchors (the identity directory's SPIFFE bundle map, gRFC A87): with b.example
    federated, b's caller completes the handshake and is refused by gRPC's RBAC
    (PERMISSION_DENIED) until an AuthorizationPolicy names it, then served, while another
    b.example identity stays refused; a c.example SVID and a forged b.example SVID (another
    root) fail the handshake; the mesh's own callers are served throughout."""
    from tests.integration.test_grpc_proxyless import (
        ZONE_A,
        _call_as,
        grpc_call,
        start_xds_server,
        xds_server_identity,
    )

    controller = ControllerHandle(procs, mesh_home)
    controller.start()
    foreign = ControllerHandle(
        procs, tmp_path / "b-home", name="b-controller",
        extra_args=["--trust-domain", "b.example", "--bundle-refresh-hint", "2s"],
    )  # fmt: skip
    foreign.start()
    east = controller.join("east", ZONE_A, f"127.0.4.2:{free_port('127.0.4.2')}")
    address, port, identity = xds_server_identity(procs, mesh_home, east, tmp_path)
    b_trust = _federate_with(mesh_home, foreign, "b.example")

    def federated_anchors() -> bool:
        path = identity / "spiffe_bundles.json"
        return path.exists() and "b.example" in json.loads(path.read_text())["trust_domains"]

    wait_until(federated_anchors, 30, "b.example's bundle in the server's bundle map")
    start_xds_server(
        procs, mesh_home, east, tmp_path, address, port, identity,
        GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE="true",
    )  # fmt: skip
    local = tmp_path / "identity-frontend"
    run_meshfed(
        mesh_home, "workload", "identity", "--once", "--controlplane", east.api_url,
        "-n", "demo", "--service-account", "frontend", "--dir", str(local),
        "--workload-token", east.mint("demo", "frontend"),
    )  # fmt: skip
    wait_until(lambda: _call_as(local, address, port, "east") == "ok", 45, "local caller served")

    bundle = mesh_home / "trust" / "bundle.pem"
    client, other, stranger, forged = _callers_of_other_domains(b_trust, tmp_path)

    # b's SVID verifies with b's bundle; no policy names b.example: gRPC's RBAC refuses it
    assert grpc_call(address, port, bundle, client, "east") == "PERMISSION_DENIED"
    assert grpc_call(address, port, bundle, stranger, "east") == "UNAVAILABLE"
    assert grpc_call(address, port, bundle, forged, "east") == "UNAVAILABLE"
    policy = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-partner, namespace: demo}
spec:
  rules:
  - from: [{source: {principals: ["b.example/ns/demo/sa/client"]}}]
  - from: [{source: {namespaces: ["demo"]}}]
"""
    run_meshfed(mesh_home, "apply", "-f", "-", input_text=policy)
    wait_until(
        lambda: grpc_call(address, port, bundle, client, "east") == "ok", 30, "b's caller served"
    )
    assert grpc_call(address, port, bundle, other, "east") == "PERMISSION_DENIED"
    assert grpc_call(address, port, bundle, forged, "east") == "UNAVAILABLE"
    assert _call_as(local, address, port, "east") == "ok"


def test_a_workload_of_another_mesh_calls_an_exported_service_through_its_gateway(
    procs: Processes, mesh_home: Path, tmp_path: Path
) -> None:
    """Issue 43, proof 1 across two federations with different roots (example.org and
    b.example, on loopback): after ``trust federate`` both ways, b's frontend calls a's
    exported echo by name through a's east-west gateway (a MESH_INTERNAL ServiceEntry in b
    naming echo's SPIFFE ID): refused by a's echo (403) until an AuthorizationPolicy names
    b's frontend, then served by a. Proof 2: b rotates its root under 50 rps from b to a,
    publishing it first (``rotate-root --publish-only``); a's proxies take it at b's refresh
    hint (2 s), before b's workloads and bundle endpoint use it, and no request fails."""
    from tests.integration.test_revocation import _caller, _join, _status

    a_ctl = ControllerHandle(procs, mesh_home, lease_s=10)
    a_ctl.start()
    b_ctl = ControllerHandle(
        procs, tmp_path / "b-mesh", lease_s=10, name="b-controller",
        extra_args=["--trust-domain", "b.example", "--bundle-refresh-hint", "2s"],
    )  # fmt: skip
    b_ctl.start()
    a = _join(procs, mesh_home, a_ctl, "a")
    b = _join(procs, b_ctl.home, b_ctl, "b")
    app = free_port()
    start_echo(procs, "a-echo-1", app, "a")
    start_sidecar_agent(
        procs, mesh_home, a, service="echo", address="127.0.1.11", app_port=app,
        service_port=8080, name="a-echo-1",
    )  # fmt: skip
    start_gateway(procs, mesh_home, a, a.gateway)  # type: ignore[attr-defined]
    run_meshfed(
        mesh_home, "apply", "-f", "-",
        input_text="apiVersion: meshfed.io/v1alpha1\nkind: ServiceExport\n"
        "metadata: {name: echo, namespace: demo}\nspec: {cluster: a}\n",
    )  # fmt: skip
    for home, other, domain in (
        (mesh_home, b_ctl, "b.example"),
        (b_ctl.home, a_ctl, "example.org"),
    ):
        _federate_with(home, other, domain)
    gateway_host, _, gateway_port = a.gateway.rpartition(":")  # type: ignore[attr-defined]
    entry = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo-of-a, namespace: demo}}
spec:
  hosts: [{ECHO_HOST}]
  location: MESH_INTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {gateway_host}, ports: {{http: {gateway_port}}}}}]
  subjectAltNames: [spiffe://example.org/ns/demo/sa/echo]
"""
    run_meshfed(b_ctl.home, "apply", "-f", "-", input_text=entry)
    from_b = _caller(procs, b_ctl.home, b)
    # a's echo validates b's SVID with b's bundle, then refuses it: no policy names b
    wait_until(lambda: _status(from_b) == 403, 60, "b's frontend refused by a's echo")
    policy = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: partner, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  rules: [{from: [{source: {principals: ["b.example/ns/demo/sa/frontend"]}}]}]
"""
    assert "Warning" not in run_meshfed(mesh_home, "apply", "-f", "-", input_text=policy).stderr
    wait_until(lambda: _status(from_b) == 200, 30, "b's frontend served by a's echo")
    status, body, _ = get(from_b, ECHO_HOST)
    assert status == 200 and body["cluster"] == "a", body

    # proof 2: b rotates its root under traffic, publishing the new root first (its bundle
    # endpoint's refresh hint is 2 s); a's proxies hold it before anything of b -- its
    # workloads' SVIDs, its bundle endpoint's -- chains to it: no request fails
    with RateLoop(from_b, ECHO_HOST, rps=50, max_requests=6000, max_seconds=100) as load:
        wait_until(lambda: len(load.samples) >= 50, 15, "traffic flowing")
        published = time.monotonic()
        run_meshfed(b_ctl.home, "trust", "rotate-root", "--publish-only")
        wait_until(lambda: _b_roots_at(mesh_home) == {2}, 30, "b's new root at every a proxy")
        accepted = time.monotonic() - published
        run_meshfed(b_ctl.home, "trust", "rotate-root")
        new_root = TrustDirectory(b_ctl.home / "trust").bundle().roots[-1]

        def renewed() -> bool:
            chains = [_chain(d) for d in b_ctl.home.glob("proxies/*/identity")]
            return bool(chains) and all(pki.issued_by(c[1], new_root) for c in chains)

        wait_until(renewed, 60, "b's SVIDs renewed under its new root")
        after = len(load.samples)
        wait_until(lambda: len(load.samples) >= after + 250, 20, "5 s more of traffic")
    assert load.failures() == [], f"{len(load.failures())} failed of {len(load.samples)}"
    print(
        f"b's published root accepted at every proxy of a in {accepted:.1f} s;"
        f" 0 failed of {len(load.samples)} requests"
    )
    rows = {r["trustDomain"]: r for r in a_ctl.api("GET", "/v1/trustdomains")["trustdomains"]}
    assert rows["b.example"]["error"] == "" and rows["b.example"]["roots"] == 2


def _b_roots_at(home: Path) -> set[int]:
    """How many roots of b.example each proxy of ``home`` holds (the bundle its ROOTCA names)."""
    counts = set()
    for doc in home.glob("proxies/*/identity/rootca.json"):
        validator = json.loads(doc.read_text())["resources"][0]["validation_context"]
        domains = validator["custom_validator_config"]["typed_config"]["trust_domains"]
        [path] = [d["trust_bundle"]["filename"] for d in domains if d["name"] == "b.example"]
        counts.add(Path(path).read_text().count("BEGIN CERTIFICATE"))
    return counts


def _chain(identity: Path) -> list[x509.Certificate]:
    return pki.load_certificates((identity / "cert.pem").read_bytes(), source=str(identity))
