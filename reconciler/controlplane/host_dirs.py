"""Each agent container's own directory on the host, `<state>/containers/<token>/`.

It is bound read-only at /run/clawker/bootstrap (naming.BOOTSTRAP_MOUNT) and holds the
container's bootstrap material: its leaf certificate and key, the CA and the single-use
registration token. The CLI makes the directory (empty) right before the create and labels the
container with its token (`dev.clawker.host-dir`); the control plane writes the material into it
once the container exists (its identity is bound to the container's id), after checking that this
container is the one the directory is bound into. So no `put_archive` is needed for it, the key
never passes through the CLI, and `docker commit` or `docker export` of an agent carries no key.

The directory goes when its container does: on Docker's `destroy` event, and at every resync
for a directory no container of this scope names (older than a create in flight can be).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from reconciler import naming
from reconciler.docker.engine import MountSpec

__all__ = ["HostDirs"]

_TOKEN = re.compile(r"[0-9a-f]{24}")
# A directory made for a create that has not finished is not an orphan yet.
ORPHAN_AGE_SECONDS = 600.0


class HostDirs:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self) -> tuple[str, Path]:
        """A new, empty directory (0700) and its token."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_hex(12)
        path = self.root / token
        path.mkdir(mode=0o700)
        return token, path

    def path(self, token: str) -> Path | None:
        """The directory a (label's) token names; None for anything that is not a token."""
        return self.root / token if _TOKEN.fullmatch(token) else None

    def bound(self, labels: Mapping[str, str], mounts: Sequence[MountSpec]) -> Path | None:
        """The directory of a container with these labels and mounts: it must be bound
        read-only at the bootstrap mount, else the label is not believed (None)."""
        path = self.path(labels.get(naming.HOST_DIR, ""))
        if path is None:
            return None
        for m in mounts:
            if m.kind == "bind" and m.target == naming.BOOTSTRAP_MOUNT and m.read_only:
                return path if os.path.realpath(m.source) == os.path.realpath(path) else None
        return None

    def write(self, path: Path, files: Mapping[str, bytes]) -> None:
        """Write each file (0400) whole: a reader sees the old file or the new one."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        for name, content in files.items():
            temporary = path / f".{name}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o400)
            try:
                os.write(fd, content)  # a few KiB: one write
                os.fchmod(fd, 0o400)
            finally:
                os.close(fd)
            os.replace(temporary, path / name)

    def remove(self, token: str) -> None:
        path = self.path(token)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def sweep(self, live: Collection[str], now: float | None = None) -> list[str]:
        """Remove the directories no live container names; the tokens removed."""
        moment = time.time() if now is None else now
        removed = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name in live or not _TOKEN.fullmatch(entry.name):
                continue
            try:
                if moment - entry.stat(follow_symlinks=False).st_mtime < ORPHAN_AGE_SECONDS:
                    continue
            except FileNotFoundError:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
        return sorted(removed)
