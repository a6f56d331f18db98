"""Waiting until started agents are Ready.

Until the control plane exists (issue 4), Ready means: the container is running and still
running once every other started container has been checked (a command that exits at once is
caught here, with its exit code and the tail of its log).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reconciler.docker_port import DockerError, DockerPort

__all__ = ["Readiness", "wait_ready"]


@dataclass(frozen=True)
class Readiness:
    container: str
    ready: bool
    detail: str = ""


def _check(port: DockerPort, name: str) -> Readiness | None:
    """A verdict, or None while the container is still on its way up."""
    try:
        state = port.inspect_state(name)
    except DockerError as exc:
        return Readiness(name, False, str(exc))
    if state.get("Running") and not state.get("Restarting"):
        return Readiness(name, True)
    status = state.get("Status", "")
    if status in ("exited", "dead"):
        tail = port.logs_tail(name, 10).strip()
        detail = f"exited with code {state.get('ExitCode')}"
        return Readiness(name, False, f"{detail}\n{tail}" if tail else detail)
    return None


def wait_ready(
    port: DockerPort,
    containers: Iterable[str],
    *,
    timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Readiness]:
    """Poll each container until it is running (then confirm once) or the timeout passes."""
    deadline = clock() + timeout
    waiting = list(dict.fromkeys(containers))
    verdicts: dict[str, Readiness] = {}
    while waiting:
        still: list[str] = []
        for name in waiting:
            verdict = _check(port, name)
            if verdict is None:
                still.append(name)
            else:
                verdicts[name] = verdict
        waiting = still
        if waiting and clock() >= deadline:
            for name in waiting:
                verdicts[name] = Readiness(name, False, f"not running after {timeout:.0f}s")
            break
        if waiting:
            sleep(0.1)
    # Confirm: a command that exits right after start shows up on the second look.
    for name, verdict in list(verdicts.items()):
        if verdict.ready:
            verdicts[name] = _check(port, name) or verdict
    return verdicts
