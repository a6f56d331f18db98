"""Filling a new volume's directory on the host: the same files Docker's archive API would
write, or nothing at all (reconciler.docker.host_fill). Runs as root, like the suite."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from reconciler.docker.host_fill import fill_directory

UID, GID = 1001, 1001


def _archive(
    *members: tuple[str, bytes | None, int], owner: tuple[int, int] = (UID, GID)
) -> io.BytesIO:
    """A tar of (name, content or None for a directory, mode) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content, mode in members:
            info = tarfile.TarInfo(name)
            info.uid, info.gid = owner
            info.mode, info.mtime = mode, 1_700_000_000
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    buf.seek(0)
    return buf


def _volume(tmp_path: Path, owner: tuple[int, int] = (UID, GID)) -> Path:
    root = tmp_path / "_data"
    root.mkdir()
    os.chown(root, *owner)
    return root


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_files_and_directories_land_with_their_owner_mode_and_mtime(tmp_path: Path) -> None:
    root = _volume(tmp_path)
    archive = _archive(
        ("agents", None, 0o755),
        ("agents/a.md", b"hello\n", 0o644),
        ("./.claude.json", b"{}", 0o4600),  # a set-uid bit is dropped
    )
    assert fill_directory(root, archive) is True
    assert _tree(root) == [".claude.json", "agents", "agents/a.md"]
    assert (root / "agents/a.md").read_bytes() == b"hello\n"
    state = (root / ".claude.json").stat()
    assert (state.st_uid, state.st_gid, state.st_mode & 0o7777) == (UID, GID, 0o600)
    assert (root / "agents").stat().st_mode & 0o777 == 0o755
    assert int((root / "agents").stat().st_mtime) == 1_700_000_000
    assert int((root / "agents/a.md").stat().st_mtime) == 1_700_000_000


def test_an_existing_file_is_overwritten_as_the_archive_api_would(tmp_path: Path) -> None:
    root = _volume(tmp_path)
    (root / "settings.json").write_bytes(b"a much longer old content")
    assert fill_directory(root, _archive(("settings.json", b"new", 0o644))) is True
    assert (root / "settings.json").read_bytes() == b"new"


@pytest.mark.parametrize(
    "member",
    [
        ("../escape", b"x", 0o644),
        ("/etc/escape", b"x", 0o644),
        ("a/../../escape", b"x", 0o644),
    ],
)
def test_a_name_that_leaves_the_directory_makes_it_ineligible(
    tmp_path: Path, member: tuple[str, bytes, int]
) -> None:
    root = _volume(tmp_path)
    assert fill_directory(root, _archive(("ok", b"1", 0o644), member)) is False
    assert _tree(root) == []  # nothing at all was written, the first member neither
    assert not (tmp_path / "escape").exists()


def test_links_and_special_files_make_it_ineligible(tmp_path: Path) -> None:
    root = _volume(tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname, link.uid, link.gid = tarfile.SYMTYPE, "/etc", UID, GID
        tar.addfile(link)
    buf.seek(0)
    assert fill_directory(root, buf) is False
    assert _tree(root) == []


def test_an_owner_other_than_the_directorys_makes_it_ineligible(tmp_path: Path) -> None:
    """The volume's directory owned by root: Docker's copy-up has not happened (or ids are
    shifted by a remapping daemon), so the archive API must do the fill."""
    root = _volume(tmp_path, owner=(0, 0))
    assert fill_directory(root, _archive(("a", b"1", 0o644))) is False
    assert _tree(root) == []


def test_a_link_already_in_the_volume_is_never_followed(tmp_path: Path) -> None:
    """The image's copied-up content could hold links; writing through one as root would
    write on the host."""
    root = _volume(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "dir").symlink_to(outside)
    (root / "file").symlink_to(outside / "target")
    with pytest.raises(OSError):
        fill_directory(root, _archive(("dir/x", b"1", 0o644)))
    with pytest.raises(OSError):
        fill_directory(root, _archive(("file", b"1", 0o644)))
    with pytest.raises(OSError):
        fill_directory(root, _archive(("dir", None, 0o755)))
    assert list(outside.iterdir()) == []


def test_no_directory_there_is_ineligible(tmp_path: Path) -> None:
    assert fill_directory(tmp_path / "absent", _archive(("a", b"1", 0o644))) is False
    (tmp_path / "file").write_bytes(b"")
    assert fill_directory(tmp_path / "file", _archive(("a", b"1", 0o644))) is False
