"""The container's TTY while steps run: one ✓ or ✗ line per step, before the CMD gets it.

Step output goes to the CP (and the CLI), not to the TTY; a person attached to the container
sees only that each step passed or which one failed.
"""

from __future__ import annotations

import os

__all__ = ["StepLineRenderer"]


class StepLineRenderer:
    """Writes `✓ name` / `✗ name (detail)` lines to a terminal; silent when it is not one."""

    def __init__(self, fd: int = 1, *, enabled: bool | None = None) -> None:
        self._fd = fd
        self._enabled = _isatty(fd) if enabled is None else enabled
        self._active = False

    @property
    def enabled(self) -> bool:
        """True when lines are written (the fd is a TTY, or a test forced it)."""
        return self._enabled

    def step_started(self, name: str) -> None:
        """The "Active" line of a running step; its finished line replaces it."""
        if self._enabled:
            self._write(f"… {name}")
            self._active = True

    def step_finished(
        self, name: str, ok: bool, detail: str = "", seconds: float | None = None
    ) -> None:
        """Render one finished step (with its duration, when given)."""
        if not self._enabled:
            return
        mark = "✓" if ok else "✗"
        suffix = f" ({detail})" if detail else ""
        took = f" {seconds:.2f}s" if seconds is not None else ""
        prefix = "\r\x1b[2K" if self._active else ""
        self._active = False
        self._write(f"{prefix}{mark} {name}{suffix}{took}\n")

    def _write(self, text: str) -> None:
        # Bytes, not print(): the container may have no UTF-8 locale for sys.stdout.
        try:
            os.write(self._fd, text.encode())
        except OSError:
            self._enabled = False


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
