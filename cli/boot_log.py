"""The boot log on the person's terminal: the host phases, then the control plane's steps.

Each phase (image, workspace, config, environment, container) is the plan steps that belong to
it; on a TTY the phase at work shows as an "Active" line (`… container`) that becomes `✓` or
`✗` with its duration; without one only the finished lines are written. Lines go to stderr, so
stdout stays the CMD's.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cli.style import Style, fail_mark, ok_mark
from reconciler import naming
from reconciler.controlplane.registry import StepRecord
from reconciler.loop.execute import StepEvent, StepStatus
from reconciler.loop.plan import Action, Plan, Step

__all__ = ["PHASES", "BootLog", "phase_of"]

PHASES = ("image", "workspace", "config", "environment", "container")


def phase_of(step: Step) -> str:
    """Which host phase a plan step is part of."""
    if step.action is Action.BUILD_IMAGE:
        return "image"
    if step.action is Action.COPY_WORKSPACE:
        return "workspace"
    if step.action is Action.CREATE_VOLUME:
        return "workspace" if step.labels.get(naming.VOLUME_ROLE) == "workspace" else "config"
    if step.action is Action.SEED_CONFIG:
        return "config"
    if step.action in (Action.CREATE_NETWORK, Action.UPDATE_FIREWALL):
        return "environment"
    return "container"


@dataclass
class _Phase:
    name: str
    detail: str
    steps: set[int] = field(default_factory=set)
    began: float | None = None
    ended: float | None = None
    busy: float = 0.0  # the sum of its steps' durations (steps of phases overlap)
    failed: str = ""
    shown: bool = False


class BootLog:
    """Renders executor events as phase lines, and CP step records as step lines."""

    def __init__(
        self,
        plan: Plan,
        details: dict[str, str],
        *,
        fd: int = 2,
        style: Style | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fd = fd
        self._tty = os.isatty(fd)
        self._style = style or Style(sys.stderr)
        self._clock = clock
        self._lock = threading.Lock()
        self._active = ""  # the phase whose "Active" line is on screen
        self.raw = False  # the terminal is in raw mode: lines end in \r\n
        self._phases = {name: _Phase(name, details.get(name, "")) for name in PHASES}
        for step in plan.steps:
            self._phases[phase_of(step)].steps.add(step.id)
        self._left = {name: set(p.steps) for name, p in self._phases.items()}
        self._step_began: dict[int, float] = {}
        for phase in self._phases.values():
            # Nothing to build, or a phase this verb has nothing to say about: no line.
            if not phase.steps and (phase.name == "image" or not phase.detail):
                phase.shown = True

    # -- host phases ------------------------------------------------------------------------
    def on_event(self, event: StepEvent) -> None:
        with self._lock:
            phase = self._phases[phase_of(event.step)]
            now = self._clock()
            if event.status is StepStatus.STARTED:
                phase.began = now if phase.began is None else phase.began
                self._step_began[event.step.id] = now
            elif event.status in (StepStatus.DONE, StepStatus.FAILED, StepStatus.SKIPPED):
                self._left[phase.name].discard(event.step.id)
                if event.step.id in self._step_began:
                    phase.busy += now - self._step_began.pop(event.step.id)
                if event.status is StepStatus.FAILED and not phase.failed:
                    phase.failed = event.error
                if not self._left[phase.name]:
                    phase.ended = now
            self._flush()

    def finish_phases(self) -> None:
        """Show every phase not shown yet (those that had no steps)."""
        with self._lock:
            self._flush(final=True)

    def _flush(self, final: bool = False) -> None:
        for phase in self._phases.values():
            if phase.shown:
                continue
            if not phase.steps:
                # A phase without steps is shown once any phase is under way.
                if not final and not any(p.began is not None for p in self._phases.values()):
                    break
            elif phase.ended is None:
                if self._tty and not final and phase.began is not None:
                    self._show_active(phase.name)
                break
            self._line(self._phase_line(phase))
            phase.shown = True

    def _phase_line(self, phase: _Phase) -> str:
        took = self._style(f"{phase.busy:.2f}s", "dim") if phase.steps else ""
        mark = fail_mark(self._style) if phase.failed else ok_mark(self._style)
        detail = phase.failed or phase.detail
        return " ".join(part for part in (mark, f"{phase.name:<12}", detail, took) if part)

    # -- the control plane's steps (when clawkerd cannot show them: no TTY) ------------------
    def on_cp_step(self, record: StepRecord) -> None:
        with self._lock:
            mark = ok_mark(self._style) if record.ok else fail_mark(self._style)
            code = "" if record.ok else f"exit {record.exit_code}"
            took = self._style(f"{record.seconds:.2f}s", "dim") if record.seconds else ""
            self._line(" ".join(p for p in (mark, f"{record.name:<12}", code, took) if p))
            if not record.ok and record.output_tail.strip():
                for text in record.output_tail.strip().splitlines()[-10:]:
                    self._line(f"    {text}")

    def timed(self, name: str, detail: str, seconds: float) -> None:
        """A line for host work done before the plan runs (loading, observing, planning)."""
        with self._lock:
            took = self._style(f"{seconds:.2f}s", "dim")
            self._line(f"{ok_mark(self._style)} {name:<12} {detail} {took}")

    def failed_step_output(self, record: StepRecord) -> None:
        """A failed step's output tail, under the ✗ line clawkerd drew for it."""
        with self._lock:
            lines = record.output_tail.strip().splitlines()[-10:]
            self._line(f"  {record.name} exited {record.exit_code}" + (":" if lines else ""))
            for text in lines:
                self._line(f"    {text}")

    def note(self, text: str, *, own_line: bool = False) -> None:
        """A line of the CLI's own; `own_line` first ends whatever the CMD left unfinished."""
        with self._lock:
            if own_line:
                self._write("\r\n")
            self._line(text)

    # -- writing ----------------------------------------------------------------------------
    def _show_active(self, name: str) -> None:
        if self._active == name:
            return
        self._write(f"\r\x1b[2K{self._style('…', 'cyan')} {name}")
        self._active = name

    def _line(self, text: str) -> None:
        prefix = "\r\x1b[2K" if self._active else ""
        end = "\r\n" if self.raw else "\n"
        self._write(f"{prefix}{text}{end}")
        self._active = ""

    def _write(self, text: str) -> None:
        data = text.encode()
        while data:
            try:
                written = os.write(self._fd, data)
            except InterruptedError:
                continue
            except OSError:
                return
            data = data[written:]
