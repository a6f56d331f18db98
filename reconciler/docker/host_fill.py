"""Filling a new volume on the host instead of through Docker's archive API.

`put_archive` into a container that was just created costs dockerd a mount of the container's
root filesystem and its volumes, a chrooted untar and the unmount again: about 0.15 s per call on
two cores, and a new agent used to pay it twice (config seed, bootstrap). When the target path is
the mount point of a local-driver volume whose directory this process can reach, the same files
can be written straight into that directory.

Only when doing so cannot differ from what Docker would have done (`fill_directory` says no, and
writes nothing, otherwise):

- the archive holds only regular files and directories, with relative names that stay inside
  (no `..`, no absolute names, no links, devices or fifos: nothing that could point elsewhere);
- every member has one owner, and that owner already owns the volume's directory. On this
  engine that is the proof that Docker's copy-up of the image's directory into the new volume
  has happened (it gives the volume the image directory's owner), and that no user-namespace
  remapping or rootless daemon shifts the ids (the directory would then be owned by a shifted
  id, not the archive's);
- no existing path component on the way to a member is a symbolic link (the image's copied-up
  content could hold one): every file is opened with O_NOFOLLOW under a parent whose real path
  is its own.

Set-id bits are dropped; modes and mtimes are kept, as Docker keeps them.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO

__all__ = ["fill_directory"]

_CHUNK = 1 << 20


def fill_directory(root: Path, archive: IO[bytes]) -> bool:
    """Unpack `archive` (rewound, seekable) into the directory `root`; False when it is not
    eligible (see the module docstring), in which case nothing was written."""
    try:
        top = os.lstat(root)
    except OSError:
        return False
    if not stat.S_ISDIR(top.st_mode):
        return False
    with tarfile.open(fileobj=archive, mode="r:") as tar:
        members = tar.getmembers()
        if not _eligible(members, top.st_uid, top.st_gid):
            return False
        real_root = os.path.realpath(root)
        for member in members:
            _write(tar, member, real_root)
        # A directory's mtime last: writing into it moved it again.
        for member in reversed(members):
            if member.isdir():
                times = (member.mtime, member.mtime)
                os.utime(_path(real_root, member), times, follow_symlinks=False)
    return True


def _eligible(members: list[tarfile.TarInfo], uid: int, gid: int) -> bool:
    for member in members:
        if not (member.isreg() or member.isdir()):
            return False
        if (member.uid, member.gid) != (uid, gid):
            return False
        name = member.name
        parts = _parts(member)
        if name.startswith("/") or not parts or ".." in parts or "\0" in name:
            return False
    return True


def _parts(member: tarfile.TarInfo) -> list[str]:
    return [p for p in member.name.split("/") if p not in ("", ".")]


def _path(real_root: str, member: tarfile.TarInfo) -> str:
    return os.path.join(real_root, *_parts(member))


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, real_root: str) -> None:
    target = _path(real_root, member)
    parent = os.path.dirname(target)
    # An existing link on the way (from the image's copy-up) would lead outside: refuse it.
    if os.path.realpath(parent) != parent:
        raise OSError(f"{parent} is reached through a symbolic link")
    mode = member.mode & 0o777
    if member.isdir():
        try:
            os.mkdir(target, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(target).st_mode):
                raise
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    else:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        source = tar.extractfile(member)
        assert source is not None  # a regular file always has a body
        with os.fdopen(os.dup(fd), "wb") as sink:
            shutil.copyfileobj(source, sink, _CHUNK)
    try:
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, mode)
        if not member.isdir():
            os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)
