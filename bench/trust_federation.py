"""What federating with another trust domain costs (issue 43, "bundle refresh cost per
cluster"): a real controller of ``b.example`` serves its SPIFFE bundle endpoint on loopback,
and this process fetches it as a federated controller does
(:func:`federation.controller.bundle_fetch.fetch_bundle`, profile ``https_spiffe``: a TLS
handshake, the SVID check, the bundle parsed), ``--fetches`` times; beside it, in the same
run, the same number of ``GET /healthz`` on fresh TLS connections to the same controller (the
floor: a handshake and a small answer). Then the bytes a foreign bundle adds to every
``ControllerUpdate`` a member receives (one and two roots, with the roots' CRLs), and one
refresh round of the leader (fetch, compare, store) against SQLite.

Run: ``.venv/bin/python bench/trust_federation.py [--fetches 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile
from federation.controller.bundle_fetch import fetch_bundle
from federation.controller.roles import SoleReplica
from federation.controller.store import SqliteStore
from federation.controller.trust_federation import BundleRefresher
from federation.model.trust_federation import federation_document
from federation.sync.convert import update_to_proto
from federation.sync.messages import ControllerUpdate
from tests.integration.harness import ControllerHandle, Processes
from trust.federation import BundleEndpoint
from trust.root_rotation import publish_next_root
from trust.spiffe import SpiffeId, TrustDomain
from trust.store import TrustDirectory

ENDPOINT_ID = SpiffeId.parse("spiffe://b.example/ns/meshfed-system/sa/controller")


def _ms(samples: list[float]) -> str:
    return (
        f"p50 {percentile(samples, 0.5) * 1000:6.1f}  p99 {percentile(samples, 0.99) * 1000:6.1f}"
        f"  mean {sum(samples) / len(samples) * 1000:6.1f}"
    )


def _healthz(ctl: ControllerHandle, context: ssl.SSLContext) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", ctl.api_port, timeout=5, context=context)
    try:
        conn.request("GET", "/healthz")
        conn.getresponse().read()
    finally:
        conn.close()


def _update_bytes(bundles: dict[str, str], root_crl: str) -> int:
    return len(
        update_to_proto(
            ControllerUpdate(federated_bundles=bundles, root_crl_pem=root_crl)
        ).SerializeToString()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        procs = Processes(base)
        ctl = ControllerHandle(procs, base / "b", extra_args=["--trust-domain", "b.example"])
        try:
            ctl.start()
            trust = TrustDirectory(ctl.home / "trust")
            held = trust.bundle()
            endpoint = BundleEndpoint(
                TrustDomain("b.example"), f"{ctl.url}/v1/spiffe-bundle", "https_spiffe", ENDPOINT_ID
            )
            fetches, floor = [], []
            context = ctl.ssl_context()
            for _ in range(args.fetches):
                start = time.perf_counter()
                asyncio.run(fetch_bundle(endpoint, held))
                fetches.append(time.perf_counter() - start)
                start = time.perf_counter()
                _healthz(ctl, context)
                floor.append(time.perf_counter() - start)
            print(f"{args.fetches} fetches of b.example's bundle (https_spiffe), ms:")
            print(f"  fetch_bundle              {_ms(fetches)}")
            print(f"  GET /healthz (baseline)   {_ms(floor)}")

            one = held.to_spiffe_json()
            crl = (trust.root_crls() or b"").decode()
            size_one = _update_bytes({"b.example": held.to_pem().decode()}, crl)
            publish_next_root(trust)
            two = trust.bundle()
            crl_two = (trust.root_crls() or b"").decode()
            size_two = _update_bytes({"b.example": two.to_pem().decode()}, crl_two)
            print(f"SPIFFE bundle JSON: 1 root {len(one)} B, 2 roots {len(two.to_spiffe_json())} B")
            print(
                f"bytes a federated domain adds to each ControllerUpdate (PEM + roots' CRLs):"
                f" 1 root {size_one} B, 2 roots {size_two} B"
            )

            store = SqliteStore(base / "a.db")
            doc = federation_document(
                "b.example", endpoint.url, "https_spiffe", str(ENDPOINT_ID), one
            ).model_dump(by_alias=True, mode="json", exclude_none=True)
            store.put_documents([(("TrustDomainFederation", "default", "b", ""), doc)], 0.0)
            now = [time.time()]
            refresher = BundleRefresher(
                store, lambda: SoleReplica("a", str), trust.bundle, lambda: None,
                clock=lambda: now[0],
            )  # fmt: skip
            rounds = []
            for _ in range(min(50, args.fetches)):
                now[0] += 86_400  # every round due
                start = time.perf_counter()
                asyncio.run(refresher.refresh_due())
                rounds.append(time.perf_counter() - start)
            print(f"leader refresh round (fetch, compare, store in SQLite), ms: {_ms(rounds)}")
            store.close()
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
