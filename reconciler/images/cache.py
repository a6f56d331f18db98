"""Where clawker keeps what it fetched on the host for image builds (wheels, the harness).

Everything under the cache can be deleted at any time: the next build fetches it again.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.settings import Settings

DEFAULTS = Settings()  # what an unset environment means

__all__ = ["cache_root", "exclusive", "sha256_file", "spec_cache_dir"]


def cache_root(settings: Settings = DEFAULTS) -> Path:
    """Settings.cache_dir (`$CLAWKER_CACHE_DIR`, else `$XDG_CACHE_HOME/clawker`), else
    `~/.cache/clawker`."""
    return settings.cache_dir or Path.home() / ".cache" / "clawker"


def spec_cache_dir(settings: Settings = DEFAULTS) -> str:
    """Where the spec loader keeps texts it parsed (specs.documents): under the cache root."""
    return str(cache_root(settings) / "specs")


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an advisory lock so two clawker processes never fetch the same thing at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
