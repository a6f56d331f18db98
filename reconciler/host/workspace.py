"""The workspace minus what `.clawkerignore` hides: in snapshot mode a one-time copy into the
agent's workspace volume; in bind mode the ignored directories, which get empty tmpfs mounts."""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from reconciler import naming
from reconciler.host.ignore_rules import IgnoreRules

__all__ = ["ignored_directories", "snapshot_archive"]


def snapshot_archive(root: str, user: naming.AgentUser | None = None) -> IO[bytes]:
    """A tar (in a temporary file, rewound) of `root` minus `.clawkerignore` patterns.

    Entries are relative to `root` and owned by the agent user (`user`, default 1001), so the
    agent can write its copy.
    Only regular files, directories and symlinks are copied; `.git` is copied like any file.
    """
    base = Path(root)
    owner = user or naming.DEFAULT_AGENT_USER
    rules = IgnoreRules.for_directory(base)
    out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    with tarfile.open(fileobj=out, mode="w") as tar:

        def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid, info.gid = owner.uid, owner.gid
            info.uname = info.gname = ""
            return info

        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            rel_dir = os.path.relpath(dirpath, base)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            kept = []
            for d in sorted(dirnames):
                rel = f"{rel_dir}/{d}" if rel_dir else d
                full = os.path.join(dirpath, d)
                if rules.ignored(rel, is_dir=True):
                    continue
                tar.add(full, arcname=rel, recursive=False, filter=owned)
                kept.append(d)  # os.walk does not descend into symlinked directories
            dirnames[:] = kept
            for f in sorted(filenames):
                rel = f"{rel_dir}/{f}" if rel_dir else f
                full = os.path.join(dirpath, f)
                if rules.ignored(rel, is_dir=False):
                    continue
                if os.path.islink(full) or os.path.isfile(full):
                    tar.add(full, arcname=rel, recursive=False, filter=owned)
    out.seek(0)
    return out


def ignored_directories(root: str) -> tuple[str, ...]:
    """Absolute paths of the outermost directories under `root` that `.clawkerignore` excludes.

    Bind mode cannot leave a path out of a bind mount, so each of these is covered with an empty
    tmpfs instead. Ignored *files* stay visible (a tmpfs cannot cover a file). `.git` is not
    searched: patterns are about the project's files, not git's.
    """
    base = Path(root)
    rules = IgnoreRules.for_directory(base)
    if rules.empty:
        return ()
    found: list[str] = []
    for dirpath, dirnames, _ in os.walk(base, followlinks=False):
        rel_dir = os.path.relpath(dirpath, base)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        kept = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if os.path.islink(os.path.join(dirpath, d)):
                continue  # a mount on a symlink would land wherever it points
            if rules.ignored(rel, is_dir=True):
                found.append(os.path.join(dirpath, d))
            elif d != ".git":
                kept.append(d)
        dirnames[:] = kept
    return tuple(found)
