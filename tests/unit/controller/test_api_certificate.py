"""The controller's REST API certificate names the address it listens on, so that a browser
that trusts the federation's root opens the dashboard by that address (docs/metrics.md)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from federation.controller.tls import HttpsCertificate, certificate_addresses
from federation.sync.identity import CONTROLLER_CA_NAME
from trust.spiffe import TrustDomain
from trust.store import TrustDirectory


def test_only_concrete_ip_addresses_become_sans() -> None:
    assert certificate_addresses("127.0.0.1") == ["127.0.0.1"]
    assert certificate_addresses("[::1]") == ["::1"]
    assert certificate_addresses("0.0.0.0") == []
    assert certificate_addresses("::") == []
    # a DNS name would break the intermediate's nameConstraints: left out
    assert certificate_addresses("localhost") == []


def test_the_api_certificate_names_the_server_name_and_the_listen_address(tmp_path: Path) -> None:
    trust = TrustDirectory(tmp_path / "trust")
    trust.init(TrustDomain("meshfed.local"))
    trust.create_intermediate(CONTROLLER_CA_NAME)
    svid = HttpsCertificate(trust, tmp_path / "tls", ["127.0.0.7"]).issue()
    san = svid.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "controller.meshfed.internal" in san.get_values_for_type(x509.DNSName)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.7"]
