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

    @property
    def enabled(self) -> bool:
        """True when lines are written (the fd is a TTY, or a test forced it)."""
        return self._enabled

    def step_finished(self, name: str, ok: bool, detail: str = "") -> None:
        """Render one finished step."""
        if not self._enabled:
            return
        mark = "✓" if ok else "✗"
        suffix = f" ({detail})" if detail else ""
        # Bytes, not print(): the container may have no UTF-8 locale for sys.stdout.
        line = f"{mark} {name}{suffix}\n".encode()
        try:
            os.write(self._fd, line)
        except OSError:
            self._enabled = False


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
