"""The bundle endpoint's flags (``meshfed controller serve``) and its answer."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from federation.controller.bundle_endpoint import spiffe_bundle_body
from federation.controller.config import serve_config
from federation.errors import ConfigError
from trust import pki
from trust.bundle import TrustBundle
from trust.spiffe import TrustDomain


def _config(**overrides: object):  # type: ignore[no-untyped-def]
    flags: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "sync_listen": "127.0.0.1:0",
        "state": None,
        "store_dsn": None,
        "trust_dir": None,
        "trust_domain": "a.example",
        "lease": timedelta(seconds=30),
        "token_file": None,
        "intermediate_ttl": timedelta(days=7),
        "insecure_http": False,
        "authz_default": "allow",
        "replica_name": None,
        "advertise_sync": None,
    }
    return serve_config(**{**flags, **overrides})  # type: ignore[arg-type]


def test_bundle_endpoint_flags_are_checked_together(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cfg = _config(
        bundle_endpoint_listen="127.0.0.1:8443",
        bundle_endpoint_cert=cert,
        bundle_endpoint_key=key,
        bundle_refresh_hint=timedelta(minutes=2),
    )
    assert (cfg.bundle_endpoint_listen, cfg.bundle_refresh_hint_s) == ("127.0.0.1:8443", 120)
    with pytest.raises(ConfigError, match="go together"):
        _config(bundle_endpoint_listen="127.0.0.1:8443", bundle_endpoint_cert=cert)
    with pytest.raises(ConfigError, match="needs --bundle-endpoint-listen"):
        _config(bundle_endpoint_cert=cert, bundle_endpoint_key=key)
    with pytest.raises(ConfigError, match="--bundle-endpoint-listen"):
        _config(bundle_endpoint_listen="nowhere")
    with pytest.raises(ConfigError, match="at least 1s"):
        _config(bundle_refresh_hint=timedelta(0))


def test_the_answer_carries_the_configured_refresh_hint_and_the_sequence() -> None:
    td = TrustDomain("a.example")
    root = pki.root_certificate(pki.generate_private_key(), td, now=pki.utcnow())
    doc = json.loads(spiffe_bundle_body(TrustBundle(td, (root,), sequence=4), 42))
    assert (doc["spiffe_sequence"], doc["spiffe_refresh_hint"], len(doc["keys"])) == (4, 42, 1)
