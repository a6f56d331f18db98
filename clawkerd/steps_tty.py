"""The container's TTY while steps run: one ✓ or ✗ line per step, before the CMD gets it.

On a TTY a running step shows as an "Active" line (`… pre_run`) that its ✓/✗ line with the
duration replaces; without one the finished lines go plain to stderr. Either way they are the
container's output, so `clawker run`/`start -a` (attached before the start) and `clawker logs`
show them. Step output goes to the CP (and the CLI), not here: a person attached to the
container sees that each step passed or which one failed, and the CLI adds a failed step's
output from the CP.
"""

from __future__ import annotations

import os

__all__ = ["StepLineRenderer"]


class StepLineRenderer:
    """Writes `✓ name` / `✗ name (detail)` lines to a terminal; silent when it is not one."""

    def __init__(
        self, fd: int = 1, *, enabled: bool | None = None, fallback_fd: int | None = None
    ) -> None:
        self._fd = fd
        self._enabled = _isatty(fd) if enabled is None else enabled
        # Without a TTY (`clawker run -i`, `run -d`) the lines go plain to `fallback_fd`
        # (stderr): the CMD's stdout stays its own, and `docker logs` still shows the steps.
        self._fallback_fd = None if self._enabled else fallback_fd
        self._active = False

    @property
    def enabled(self) -> bool:
        """True when lines are written (the fd is a TTY, or a test forced it)."""
        return self._enabled

    def step_started(self, name: str) -> None:
        """The "Active" line of a running step (on a TTY); its finished line replaces it."""
        if self._enabled:
            self._write(f"… {name}")
            self._active = True

    def step_finished(
        self, name: str, ok: bool, detail: str = "", seconds: float | None = None
    ) -> None:
        """Render one finished step (with its duration, when given)."""
        if not self._enabled and self._fallback_fd is None:
            return
        mark = "✓" if ok else "✗"
        suffix = f" ({detail})" if detail else ""
        took = f" {seconds:.2f}s" if seconds is not None else ""
        prefix = "\r\x1b[2K" if self._active else ""
        self._active = False
        self._write(f"{prefix}{mark} {name}{suffix}{took}\n")

    def _write(self, text: str) -> None:
        # Bytes, not print(): the container may have no UTF-8 locale for sys.stdout.
        fd = self._fd if self._enabled else self._fallback_fd
        if fd is None:
            return
        try:
            os.write(fd, text.encode())
        except OSError:
            self._enabled, self._fallback_fd = False, None


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
