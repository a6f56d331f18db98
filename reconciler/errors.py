"""One base for every error a person can act on, so the CLI renders them all the same way.

A `ClawkerError` says what failed, where, and what to do next; `exit_code` is what the CLI exits
with (1: the work failed; 2: the input was wrong and nothing was changed). Anything else that
reaches the CLI is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "ClawkerError", "UsageError"]

EXIT_FAILED = 1
EXIT_USAGE = 2


class ClawkerError(Exception):
    """An error with a message meant for the person at the terminal."""

    exit_code: int = EXIT_FAILED


class UsageError(ClawkerError):
    """The input (a flag, a spec, a name) is wrong; nothing was changed."""

    exit_code = EXIT_USAGE
