"""Every waitpid in clawkerd happens here.

As PID 1 (or a child subreaper) clawkerd inherits every orphan in the container and must reap
them, which means calling waitpid(-1). That would steal the exit status of the processes
clawkerd itself waits for (the CMD, steps), so there is one reaper: processes are registered with
`watch()` and their status is delivered to a future; anything else is an orphan and is reaped
and logged. Nothing else in clawkerd may call wait()/poll() on a child.
"""

from __future__ import annotations

import asyncio
import os

from clawkerd.exit_status import exit_code_from_wait_status
from clawkerd.logging_setup import EventLog

__all__ = ["ChildReaper", "become_subreaper"]

_PR_SET_CHILD_SUBREAPER = 36
# Delivered for a watched pid that someone else reaped (which is a bug): a clear failure code.
_LOST_STATUS_EXIT_CODE = 255


def become_subreaper() -> bool:
    """Make orphans of our descendants reparent to us even when we are not PID 1."""
    import ctypes  # noqa: PLC0415 (only off PID 1, as in tests: not on every container's start)

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class ChildReaper:
    """Reaps children; call `reap()` on every SIGCHLD."""

    def __init__(self, log: EventLog, *, reap_orphans: bool = True) -> None:
        self._log = log
        self._reap_orphans = reap_orphans
        self._watched: dict[int, asyncio.Future[int]] = {}

    def watch(self, pid: int) -> asyncio.Future[int]:
        """A future for `pid`'s exit code (128+signal if killed).

        Call it right after spawning, in the event loop thread, with no await in between: the
        SIGCHLD callback runs in the same thread, so it cannot reap the pid before this.
        """
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._watched[pid] = future
        return future

    def reap(self) -> None:
        """Collect every exited child without blocking: watched ones first, then orphans."""
        for pid in list(self._watched):
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                self._log.error("child_status_lost", pid=pid)
                self._deliver(pid, _LOST_STATUS_EXIT_CODE)
                continue
            if reaped:
                self._deliver(pid, exit_code_from_wait_status(status))
        if not self._reap_orphans:
            return
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = exit_code_from_wait_status(status)
            if pid in self._watched:
                self._deliver(pid, code)
            else:
                self._log.info("orphan_reaped", pid=pid, exit_code=code)

    def _deliver(self, pid: int, code: int) -> None:
        future = self._watched.pop(pid)
        if not future.done():
            future.set_result(code)
