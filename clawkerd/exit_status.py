"""The exit codes clawkerd itself chooses, and the mapping from a wait status to an exit code.

Everything else clawkerd exits with is the user CMD's (or a fatal step's) own status.
"""

import os

__all__ = [
    "EXIT_BOOT_FAILED",
    "EXIT_NOT_EXECUTABLE",
    "EXIT_NOT_FOUND",
    "EXIT_STEP_TIMED_OUT",
    "EXIT_STOPPED_BEFORE_READY",
    "exit_code_from_wait_status",
]

# Stopped (SIGTERM, SIGINT, SIGHUP, SIGQUIT) before the CP sent AgentReady.
EXIT_STOPPED_BEFORE_READY = 1
# Bootstrap material, configuration, the user or the listener is unusable.
EXIT_BOOT_FAILED = 2
# The shell conventions, so a container's exit code reads like a shell's.
EXIT_STEP_TIMED_OUT = 124
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


def exit_code_from_wait_status(status: int) -> int:
    """WEXITSTATUS for a normal exit, 128+signal for a process killed by a signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
