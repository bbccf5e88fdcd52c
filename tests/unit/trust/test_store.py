"""The on-disk trust directory: modes, no silent overwrite, clear errors."""

from __future__ import annotations

import stat

import pytest

from trust.errors import KeyMaterialExistsError, TrustStoreError
from trust.spiffe import SpiffeId, TrustDomain
from trust.store import TrustDirectory


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_files_are_0600_and_key_dirs_0700(trust_dir) -> None:
    keys = list(trust_dir.path.rglob("*-key.pem"))
    assert len(keys) == 2
    for key in keys:
        assert _mode(key) == 0o600
        assert _mode(key.parent) == 0o700


def test_init_refuses_to_overwrite_without_force(trust_dir) -> None:
    before = trust_dir.config_path.read_bytes()
    with pytest.raises(KeyMaterialExistsError, match="--force"):
        trust_dir.init(TrustDomain("example.org"))
    assert trust_dir.config_path.read_bytes() == before
    trust_dir.init(TrustDomain("example.org"), force=True)
    assert trust_dir.config_path.read_bytes() != before


def test_intermediate_refuses_to_overwrite_without_force(trust_dir) -> None:
    key = trust_dir.intermediate_dir("east") / "ca-key.pem"
    before = key.read_bytes()
    with pytest.raises(KeyMaterialExistsError):
        trust_dir.create_intermediate("east")
    assert key.read_bytes() == before


def test_write_svid_modes_and_overwrite(trust_dir, tmp_path) -> None:
    svid = trust_dir.issue_svid("east", SpiffeId.parse("spiffe://example.org/a"))
    out = tmp_path / "out"
    files = TrustDirectory.write_svid(svid, trust_dir.bundle(), out)
    assert _mode(files.key) == 0o600
    before = files.key.read_bytes()
    with pytest.raises(KeyMaterialExistsError):
        TrustDirectory.write_svid(svid, trust_dir.bundle(), out)
    assert files.key.read_bytes() == before


def test_missing_directory_and_cluster_errors(tmp_path, trust_dir) -> None:
    with pytest.raises(TrustStoreError, match="meshfed trust init"):
        TrustDirectory(tmp_path / "nope").bundle()
    with pytest.raises(TrustStoreError, match="meshfed trust intermediate --cluster west"):
        trust_dir.cluster_authority("west")
    with pytest.raises(TrustStoreError, match="invalid cluster name"):
        trust_dir.create_intermediate("../escape")
