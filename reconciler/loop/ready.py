"""Waiting until agents are Ready: the control plane has driven their current start to
AgentReady (firewall enrolled, steps done, the user CMD forked by clawkerd).

The waiter asks the CP about each container's *current* start (matched by Docker's StartedAt),
and watches the container itself: a clawkerd that exits (a failed step is fatal) ends the wait
with the exit code, the failing step and the tail of its output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reconciler.controlplane.api.client import ApiError, ControlPlaneClient
from reconciler.controlplane.api.messages import Phase, StartStatus, StepRecord
from reconciler.docker.engine import DockerError, DockerPort, RuntimeInfo

__all__ = ["Readiness", "wait_ready"]

POLL = 0.05  # seconds between asking the CP (a local socket and its registry: cheap)
# With only a few starts left to wait for (watch mode's one recreated agent, the last of an
# apply), asking more often costs the CP little and takes ~15 ms off each wait's tail.
POLL_FEW, FEW = 0.02, 2
RECHECK = 1.0  # seconds between inspects of one container while it is not Ready yet


@dataclass(frozen=True)
class Readiness:
    container: str
    ready: bool
    detail: str = ""


def _failure_detail(status: StartStatus | None, fallback: str) -> str:
    if status is None or status.phase != "failed":
        return fallback
    detail = status.detail
    failed = [s for s in status.steps if not s.ok]
    if failed and failed[-1].output_tail.strip():
        tail = "\n".join(failed[-1].output_tail.strip().splitlines()[-10:])
        detail += f"\n{tail}"
    return detail


def wait_ready(
    port: DockerPort,
    cp: ControlPlaneClient,
    containers: Iterable[str],
    *,
    network: str,
    timeout: float = 120.0,
    on_step: Callable[[str, StepRecord], None] = lambda _c, _s: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Readiness]:
    """Poll until every container is Ready or has failed, or the timeout passes.

    Each poll is one call to the CP (which does not inspect anything for it); a container is
    inspected when first seen, at most every `RECHECK` seconds after (to notice an exit), and
    once more before a final verdict (that it is still the same start). Inspecting every
    container on every poll loaded dockerd while it was still starting the rest.
    """
    deadline = clock() + timeout
    waiting = list(dict.fromkeys(containers))
    verdicts: dict[str, Readiness] = {}
    shown: dict[str, int] = {}
    exited_at: dict[str, float] = {}
    infos: dict[str, RuntimeInfo | None] = {}
    seen_at: dict[str, float] = {}

    def inspect(name: str) -> RuntimeInfo | None:
        infos[name], seen_at[name] = port.inspect_runtime(name, network), clock()
        return infos[name]

    while waiting:
        poll_began = clock()
        for name in waiting:
            if name not in infos or clock() - seen_at[name] >= RECHECK:
                inspect(name)
        ids = [i.id for i in (infos[n] for n in waiting) if i is not None]
        try:
            reports = cp.start_reports(ids, firewall=False) if ids else {}
        except ApiError as exc:
            raise DockerError(f"cannot ask the control plane about readiness: {exc}") from exc
        still = []
        for name in waiting:
            info = infos[name]
            if info is None:
                verdicts[name] = Readiness(name, False, "the container is gone")
                continue
            report = reports.get(info.id)
            status = report.status if report else None
            if status and status.phase.final and seen_at[name] < poll_began:
                info = inspect(name)  # the verdict must be about the start running now
                if info is None:
                    verdicts[name] = Readiness(name, False, "the container is gone")
                    continue
            current = status if status and status.started_at == info.started_at else None
            if current:
                for record in current.steps[shown.get(name, 0) :]:
                    on_step(name, record)
                shown[name] = len(current.steps)
            if current and current.phase is Phase.READY:
                verdicts[name] = Readiness(name, True, current.detail)
            elif current and current.phase is Phase.FAILED:
                verdicts[name] = Readiness(name, False, _failure_detail(current, ""))
            elif not info.running and current and clock() - exited_at.setdefault(name, clock()) < 3:
                still.append(name)  # clawkerd exited on a failed step: let the CP report which
            elif not info.running:
                logs = port.logs_tail(name, 10).strip()
                fallback = f"exited with code {info.exit_code}" + (f"\n{logs}" if logs else "")
                verdicts[name] = Readiness(name, False, _failure_detail(current, fallback))
            else:
                still.append(name)
        waiting = still
        if waiting and clock() >= deadline:
            for name in waiting:
                verdicts[name] = Readiness(
                    name,
                    False,
                    f"not Ready after {timeout:.0f}s (see `clawker controlplane "
                    "status` and the container's log)",
                )
            break
        if waiting:
            sleep(POLL_FEW if len(waiting) <= FEW else POLL)
    return verdicts
