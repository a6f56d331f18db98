"""Each agent container's host directory (reconciler.controlplane.host_dirs): the label is
believed only with the bind that matches it, files are written whole and root-only, and a
directory outlives its container only until a resync finds it old."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler import naming
from reconciler.controlplane.host_dirs import ORPHAN_AGE_SECONDS, HostDirs
from reconciler.docker.engine import MountSpec


def _bind(path: Path, *, read_only: bool = True, target: str = naming.BOOTSTRAP_MOUNT) -> MountSpec:
    return MountSpec("bind", target, str(path), read_only=read_only)


def test_a_new_directory_is_empty_root_only_and_named_by_its_token(tmp_path: Path) -> None:
    dirs = HostDirs(tmp_path / "containers")
    token, path = dirs.create()
    assert len(token) == 24 and path == tmp_path / "containers" / token
    assert list(path.iterdir()) == []
    assert path.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "containers").stat().st_mode & 0o777 == 0o700
    assert dirs.create()[0] != token


def test_the_label_is_believed_only_with_its_read_only_bind(tmp_path: Path) -> None:
    dirs = HostDirs(tmp_path)
    token, path = dirs.create()
    other_token, other = dirs.create()
    labels = {naming.HOST_DIR: token}
    assert dirs.bound(labels, [_bind(path)]) == path
    assert dirs.bound(labels, []) is None
    assert dirs.bound(labels, [_bind(other)]) is None  # another container's directory
    assert dirs.bound(labels, [_bind(path, read_only=False)]) is None
    assert dirs.bound(labels, [_bind(path, target="/elsewhere")]) is None
    assert dirs.bound({}, [_bind(path)]) is None
    # a label that is not a token never becomes a path: no way out of the directory
    for bad in ("../../etc", "/etc", other_token + "/..", token.upper(), ""):
        assert dirs.path(bad) is None
        assert dirs.bound({naming.HOST_DIR: bad}, [_bind(path)]) is None


def test_files_are_written_whole_and_root_only(tmp_path: Path) -> None:
    dirs = HostDirs(tmp_path)
    _token, path = dirs.create()
    dirs.write(path, {"cert.pem": b"one", "key.pem": b"secret"})
    dirs.write(path, {"cert.pem": b"two"})  # a second issue replaces the file
    assert sorted(p.name for p in path.iterdir()) == ["cert.pem", "key.pem"]
    assert (path / "cert.pem").read_bytes() == b"two"
    assert {(path / n).stat().st_mode & 0o777 for n in ("cert.pem", "key.pem")} == {0o400}


def test_a_write_through_a_planted_link_is_refused(tmp_path: Path) -> None:
    dirs = HostDirs(tmp_path / "containers")
    _token, path = dirs.create()
    outside = tmp_path / "outside"
    (path / ".key.pem.tmp").symlink_to(outside)
    with pytest.raises(OSError):
        dirs.write(path, {"key.pem": b"secret"})
    assert not outside.exists()


def test_a_sweep_removes_only_old_directories_no_container_names(tmp_path: Path) -> None:
    dirs = HostDirs(tmp_path)
    live, _ = dirs.create()
    orphan, orphan_path = dirs.create()
    young, _ = dirs.create()
    (tmp_path / "not-a-token").mkdir()
    old = os.stat(orphan_path).st_mtime - ORPHAN_AGE_SECONDS - 1
    for token in (live, orphan):
        os.utime(tmp_path / token, (old, old))
    now = os.stat(tmp_path / young).st_mtime + 1
    assert dirs.sweep({live}, now=now) == [orphan]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, young, "not-a-token"])
    dirs.remove(live)
    dirs.remove("../not-a-token")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([young, "not-a-token"])
