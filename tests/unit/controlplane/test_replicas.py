"""What control plane replicas share (federation.controlplane.kube.replicas), without an
API server: the identity files round trip between a state directory and a Secret's data
with keys kept 0600, and the controller's update round trips through the ConfigMap's
binary form; anything else in the ConfigMap is refused by name."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from federation.controlplane.config import ConfigError, kube_settings
from federation.controlplane.kube import replicas
from federation.controlplane.link import state as link_state
from federation.controlplane.link.join import JoinInfo
from federation.errors import InvalidDocumentError
from federation.sync.messages import ControllerUpdate

INFO = JoinInfo("east", "example.org", "https://c:1", "c:2", "sync.example", 9.0, ["c:2"])


def test_identity_files_round_trip_and_keys_stay_0600(tmp_path: Path) -> None:
    source = tmp_path / "leader"
    link_state.save(source, INFO, None)
    for relative in ("ca/ca-key.pem", "ca/ca.pem", "ca/bundle.pem", "webhook-tls/ca-key.pem",
                     "webhook-tls/ca.pem", "api-token"):  # fmt: skip
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(f"<{relative}>".encode())
    files = replicas.read_identity(source)
    assert set(files) == set(replicas.IDENTITY_FILES)
    assert json.loads(files["join.json"])["cluster"] == "east"

    follower = tmp_path / "follower"
    replicas.write_identity(follower, files)
    assert replicas.read_identity(follower) == files
    assert link_state.load_join_info(follower) == INFO
    for key, (relative, mode) in replicas.IDENTITY_FILES.items():
        if key != "join.json":
            assert (follower / relative).stat().st_mode & 0o777 == mode, relative
    assert (follower / "ca/ca-key.pem").stat().st_mode & 0o777 == 0o600


def test_a_join_info_that_is_not_one_is_refused_naming_the_secret(tmp_path: Path) -> None:
    with pytest.raises(InvalidDocumentError, match=r"meshfed-controlplane-identity: join\.json"):
        replicas.write_identity(tmp_path, {"join.json": b'{"cluster": "east"}'})
    assert not (tmp_path / "federation.json").exists()


def test_an_update_round_trips_through_the_configmap_form() -> None:
    update = ControllerUpdate(
        version=7,
        trust_bundle_pem=b"-----BEGIN CERTIFICATE-----\n...\n",
        cluster_crls={"west": "crl"},
        cluster_cas={"west": "ca"},
    )
    data = replicas.encode_update(update)
    assert replicas.encode_update(update) == data  # one update, one byte string
    config_map = {"binaryData": {replicas.UPDATE_KEY: base64.b64encode(data).decode()}}
    back = replicas.update_of(config_map)
    assert back is not None
    assert back.version == 7 and back.cluster_crls == {"west": "crl"}
    assert back.trust_bundle_pem == update.trust_bundle_pem
    assert replicas.update_of({"metadata": {"name": "x"}}) is None  # created empty


@pytest.mark.parametrize(
    "payload",
    # mtime=0: a payload made at collection must be the same bytes on every xdist worker
    # (gzip stamps the time; two workers a second apart collected different tests)
    [b"not gzip", b"\x1f\x8b\x08\x00garbage", gzip.compress(b"\xff\xff not an update", mtime=0)],
    ids=["not gzip", "a broken gzip", "gzip of no update"],
)
def test_a_configmap_that_holds_no_update_is_refused_by_name(payload: bytes) -> None:
    config_map = {"binaryData": {replicas.UPDATE_KEY: base64.b64encode(payload).decode()}}
    with pytest.raises(InvalidDocumentError, match="ConfigMap meshfed-controlplane-federation"):
        replicas.update_of(config_map)


def test_a_leader_lease_too_short_for_a_one_second_retry_is_refused() -> None:
    with pytest.raises(ConfigError, match="--leader-lease 5: at least 8 s"):
        kube_settings(True, None, "", ("", ""), "", (None, "img"), 5)
    settings = kube_settings(True, None, "", ("", ""), "", (None, "img"), 8)
    assert settings is not None and settings.leader_lease_s == 8


def test_the_injector_needs_the_image_it_injects_named() -> None:
    """No default image: a tag nobody published would leave injected pods in
    ImagePullBackOff."""
    with pytest.raises(ConfigError, match="--webhook-listen needs --sidecar-image"):
        kube_settings(True, None, "", ("", ""), "", ("127.0.0.1:15017", None))
