"""`clawker controlplane up|down|status`: a detached process with a pid file and a log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.controlplane.api.client import (
    ApiError,
    ControlPlaneClient,
    ControlPlaneMismatchError,
)
from reconciler.controlplane.paths import StatePaths
from reconciler.errors import ClawkerError
from reconciler.settings import Settings, code_identity

__all__ = ["CPStatus", "ControlPlaneError", "client", "ensure_running", "status", "stop"]


class ControlPlaneError(ClawkerError):
    pass


@dataclass(frozen=True)
class CPStatus:
    running: bool
    pid: int | None
    uptime: float
    state_dir: str
    log: str
    version: str = ""


def client(paths: StatePaths) -> ControlPlaneClient:
    return ControlPlaneClient(paths.socket)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise ControlPlaneError(
            "the control plane needs root (CAP_BPF and CAP_SYS_ADMIN for the firewall); "
            "start it with `sudo clawker controlplane up`"
        )


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_controlplane(pid: int) -> bool:
    """Only a process that is really our CP may be signalled: pid files go stale."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"reconciler.controlplane" in cmdline and b"serve" in cmdline


def status(paths: StatePaths) -> CPStatus:
    try:
        hello = client(paths).ping()
    except ApiError:
        return CPStatus(False, None, 0.0, str(paths.root), str(paths.log))
    return CPStatus(True, hello.pid, hello.uptime, str(paths.root), str(paths.log), hello.version)


def ensure_running(settings: Settings, timeout: float = 20.0) -> int | None:
    """Start the CP when it does not answer; return the new pid, or None if it was running.

    A running CP of another clawker (another version, or another checkout's code) is restarted
    when no start is in flight; one with other settings is refused (ControlPlaneMismatchError)."""
    paths = StatePaths(settings.state_dir)
    cp = client(paths)
    try:
        hello = cp.ping()
    except ApiError:
        hello = None
    if hello is not None and hello.version != code_identity():
        if hello.busy:
            raise ControlPlaneMismatchError(
                f"the control plane (pid {hello.pid}) runs clawker {hello.version}, this is "
                f"{code_identity()}; it is driving {hello.busy} start(s): run again when they "
                "are done, or `clawker controlplane down` first"
            )
        stop(paths)
        hello = None
    if hello is not None:
        cp.check_agreement(settings.agreement(), hello)  # the ping above is the check's
        return None
    _require_root()
    paths.ensure()
    with open(paths.log, "ab") as log:
        proc = subprocess.Popen(
            # The CLI's own settings, so the CP never depends on what survived `sudo`.
            [sys.executable, "-m", "reconciler.controlplane", "serve", settings.to_json()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cp.alive():
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = "\n".join(paths.log.read_text(errors="replace").splitlines()[-15:])
    raise ControlPlaneError(f"the control plane did not come up; its log ({paths.log}):\n{tail}")


def stop(paths: StatePaths, timeout: float = 15.0) -> int | None:
    """Stop the CP by its pid file; return the pid that was stopped, or None."""
    try:
        pid = _read_pid(paths.pid_file)
        if pid is None or not _is_controlplane(pid):
            paths.pid_file.unlink(missing_ok=True)
            return None
        os.kill(pid, signal.SIGTERM)
    except PermissionError as exc:
        raise ControlPlaneError(
            f"cannot stop the control plane: {exc.strerror} ({exc.filename or 'its process'});"
            " it runs as root: run `sudo clawker controlplane down`"
        ) from exc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_controlplane(pid):
        time.sleep(0.05)
    if _is_controlplane(pid):
        raise ControlPlaneError(f"the control plane (pid {pid}) did not stop within {timeout}s")
    return pid
