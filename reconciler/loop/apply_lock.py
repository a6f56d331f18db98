"""One apply at a time per scope: a file lock in the state directory.

Two applies of one spec, run at once, would plan from the same observation and both create
the same containers (a Docker name conflict in each). The lock is taken before observing and
held until the pass has finished; the file holds its holder's pid so the one that waits can
say whom it waits for. The kernel drops the lock with its holder's last descriptor, so a
killed apply never leaves it held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler.errors import ClawkerError

__all__ = ["ApplyLock", "ApplyLockBusyError", "ApplyLockError"]


class ApplyLockError(ClawkerError):
    """The apply lock cannot be taken."""


class ApplyLockBusyError(ApplyLockError):
    """Another apply holds the lock and the caller asked not to wait."""


class ApplyLock:
    """The apply lock of one state directory, shared by the threads of one process.

    `hold()` may be entered by several threads at once (watch mode's concurrent passes): the
    first takes the file lock, the last one out releases it, so between passes another apply
    can take its turn.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._guard = threading.Condition()
        self._holders = 0
        self._taking = False
        self._fd: int | None = None

    @contextlib.contextmanager
    def hold(
        self, *, wait: bool = True, on_wait: Callable[[str], None] = lambda _who: None
    ) -> Iterator[None]:
        """Hold the lock for the body. When another process has it: with `wait`, call
        `on_wait` with a description of the holder and block; otherwise raise
        ApplyLockBusyError."""
        self._enter(wait, on_wait)
        try:
            yield
        finally:
            self._leave()

    def _enter(self, wait: bool, on_wait: Callable[[str], None]) -> None:
        with self._guard:
            while self._taking:  # another thread of ours is taking it: share its result
                self._guard.wait()
            if self._holders > 0:
                self._holders += 1
                return
            self._taking = True
        try:
            fd = self._take(wait, on_wait)
        except BaseException:
            with self._guard:
                self._taking = False
                self._guard.notify_all()
            raise
        with self._guard:
            self._fd, self._holders, self._taking = fd, 1, False
            self._guard.notify_all()

    def _leave(self) -> None:
        with self._guard:
            self._holders -= 1
            if self._holders == 0 and self._fd is not None:
                os.close(self._fd)  # closing drops the flock
                self._fd = None

    def _take(self, wait: bool, on_wait: Callable[[str], None]) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ApplyLockError(
                f"cannot take the apply lock {self.path}: {exc.strerror}; clawker's state"
                " directory belongs to root (run as root, like the control plane)"
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                if not wait:
                    raise ApplyLockBusyError(
                        f"another apply ({holder}) is running in this scope (lock {self.path});"
                        " wait for it, or leave out --no-wait-lock to wait"
                    ) from None
                on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _holder(fd: int) -> str:
        raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return f"pid {raw}" if raw.isdigit() else "pid unknown"
