"""A directory of marshalled values, each under a digest of what it was computed from.

The spec loader's two caches keep their entries here: parsed texts (specs.documents) and
resolved sets (specs.setcache). Any failure to read or write an entry only means computing it
again; an entry this user did not write, or that others can write to, is never read.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import tempfile
from typing import Any

__all__ = ["MarshalStore", "file_identity", "package_origin"]


def file_identity(path: str | None) -> str:
    """A file as a cache key sees it: its path, modification time and size."""
    try:
        info = os.stat(path) if path else None
    except OSError:
        info = None
    return f"{path}:{info.st_mtime_ns}:{info.st_size}" if info else ""


def package_origin(name: str) -> str | None:
    """A package's file, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec else None


class MarshalStore:
    """One entry of the store in `directory`, named `digest`."""

    KEEP = 256  # entries; past it the oldest half goes

    def __init__(self, directory: str, digest: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, digest)

    def read(self) -> object | None:
        try:
            with open(self.path, "rb") as stream:
                # Only an entry this user wrote: a cache another account can write to (a
                # user's ~/.cache under `sudo -E`) must not decide what root applies.
                info = os.fstat(stream.fileno())
                if info.st_uid != os.geteuid() or info.st_mode & 0o022:
                    return None
                loaded: object = marshal.loads(stream.read())
        except (OSError, EOFError, ValueError, TypeError):
            return None
        return loaded

    def write(self, value: Any) -> None:
        try:
            blob = marshal.dumps(value)
            if marshal.loads(blob) != value:  # a value marshal would change (nan, a subtype)
                return
        except ValueError:  # a date or a tagged scalar: not plain enough to keep
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "wb") as stream:
                stream.write(blob)
            os.replace(tmp, self.path)
            self._trim()
        except OSError:
            return

    def _trim(self) -> None:
        names = [n for n in os.listdir(self.directory) if not n.startswith(".")]
        if len(names) <= self.KEEP:
            return
        paths = [os.path.join(self.directory, n) for n in names]
        paths.sort(key=lambda p: os.stat(p).st_mtime_ns)
        for path in paths[: len(paths) // 2]:
            os.unlink(path)
