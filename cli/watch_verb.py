"""`clawker apply --watch`: argument checks, signal handling and the text the watcher prints.

The work is reconciler.watch's; this module renders each pass (what triggered it, the plan,
its steps, one result per agent) with cli.render, as one ordered log on stdout.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from cli.render import render_event, render_outcomes, render_plan
from cli.style import Style, fail_mark, ok_mark
from reconciler.controller.sources import Trigger
from reconciler.controlplane.api.messages import StepRecord
from reconciler.controlplane.paths import StatePaths
from reconciler.docker.engine import DockerEngine
from reconciler.images import is_progress_line
from reconciler.loop.apply_lock import ApplyLock
from reconciler.loop.converge import AgentOutcome
from reconciler.loop.execute import StepEvent
from reconciler.loop.plan import Plan
from reconciler.watch import Watcher, WatchOptions
from specs import SpecError, SpecSet

__all__ = ["TextWatchReport", "apply_watch", "watch_usage_error"]

EXIT_OK, EXIT_USAGE = 0, 2


def watch_usage_error(args: argparse.Namespace) -> str | None:
    """Why these apply options cannot be combined with --watch, or None."""
    if "-" in args.filename:
        return "--watch cannot watch stdin; pass spec files or directories with -f"
    if args.dry_run:
        return "--watch and --dry-run do not mix; use `clawker diff` to preview"
    if args.output == "json":
        return "--watch prints a text log; -o json is for a single apply"
    if args.prune and not args.yes:
        return "--watch --prune removes containers without asking; add -y to allow it"
    if not args.resync > 0:  # also NaN, for a caller that did not go through argparse
        return "--resync must be a positive number of seconds"
    return None


class TextWatchReport:
    """Watch mode's log: a timestamped header per pass, then the plan, steps and results."""

    def __init__(self, style: Style, *, show_secrets: bool = False) -> None:
        self.style = style
        self.show_secrets = show_secrets
        self._lock = threading.Lock()

    def _print(self, text: str, *, stamp: bool = False) -> None:
        if stamp:
            text = f"{self.style(time.strftime('[%H:%M:%S]'), 'dim')} {text}"
        with self._lock:
            print(text, flush=True)

    def watching(self, paths: Sequence[str], resync: float) -> None:
        self._print(
            f"watching {', '.join(paths)} and Docker events (resync every {resync:g}s); "
            "Ctrl-C stops watching, agents keep running",
            stamp=True,
        )

    def pass_started(
        self, number: int, keys: Sequence[str], triggers: Sequence[Trigger], plan: Plan
    ) -> None:
        why = "; ".join(dict.fromkeys(str(t) for t in triggers)) or "requested"
        who = ", ".join(keys) if keys else "no agents"
        header = self.style(f"pass {number}: {who}", "bold") + f" ({why})"
        body = render_plan(plan, self.style, show_secrets=self.show_secrets)
        warnings = "".join(f"\n  warning: {w}" for w in plan.warnings)
        self._print(f"{header}{warnings}\n{body}", stamp=True)

    def step_event(self, event: StepEvent) -> None:
        if line := render_event(event, self.style):
            self._print(line)

    def step_record(self, container: str, record: StepRecord) -> None:
        mark = ok_mark(self.style) if record.ok else fail_mark(self.style)
        code = "" if record.ok else f" (exit {record.exit_code})"
        self._print(f"  {mark} {container}: {record.name}{code}")

    def build_line(self, line: str) -> None:
        if is_progress_line(line):
            self._print(f"    {line if len(line) <= 96 else line[:95] + '…'}")

    def pass_finished(self, number: int, outcomes: Sequence[AgentOutcome]) -> None:
        if outcomes:
            self._print(render_outcomes(outcomes, self.style))

    def pass_failed(self, number: int, keys: Sequence[str], error: str) -> None:
        detail = error.replace("\n", "\n    ")
        self._print(
            f"{fail_mark(self.style)} pass {number} ({', '.join(keys)}) failed: {detail}",
            stamp=True,
        )

    def retry_scheduled(self, key: str, failures: int, delay: float) -> None:
        self._print(
            f"agent/{key} {self.style('backing off', 'yellow')}: retry in {delay:.1f}s "
            f"({failures} failure{'s' if failures != 1 else ''} in a row)",
            stamp=True,
        )

    def specs_invalid(self, errors: Sequence[SpecError]) -> None:
        lines = [f"{fail_mark(self.style)} the specs do not validate; keeping the last good state:"]
        lines += [f"  error: {error}" for error in errors]
        self._print("\n".join(lines), stamp=True)

    def specs_reloaded(
        self,
        files: Sequence[str],
        changed: Sequence[str],
        removed: Sequence[str],
        warnings: Sequence[str],
    ) -> None:
        what = f"{len(changed)} agent(s) changed" if changed else "no agent changed"
        lines = [f"specs reloaded ({', '.join(files)}): {what}"]
        lines += [f"  warning: {w}" for w in warnings]
        lines += [
            f"  agent/{key} is no longer declared; left running (watch removes agents only "
            "with --prune)"
            for key in removed
        ]
        self._print("\n".join(lines), stamp=True)

    def notice(self, text: str) -> None:
        self._print(text, stamp=True)


def apply_watch(args: argparse.Namespace, load: Callable[[Sequence[str]], SpecSet]) -> int:
    """Run watch mode until SIGINT/SIGTERM; exit 0 and leave the agents running."""
    if problem := watch_usage_error(args):
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    specset = load(args.filename)  # an invalid spec at start is exit 2, like apply
    watcher = Watcher(
        DockerEngine(scope=args.settings),
        args.filename,
        specset,
        TextWatchReport(Style(sys.stdout), show_secrets=args.show_secrets),
        WatchOptions(
            prune=args.prune,
            wait=not args.no_wait,
            timeout=args.timeout,
            resync_interval=args.resync,
            wait_lock=not args.no_wait_lock,
            profile=args.profile or "",
        ),
        controlplane=StatePaths(args.settings.state_dir),
        settings=args.settings,
        apply_lock=ApplyLock(StatePaths(args.settings.state_dir).apply_lock),
    )
    interrupts = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:  # a second Ctrl-C does not wait for passes under way
            raise KeyboardInterrupt
        watcher.request_stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        watcher.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print("stopped watching; the agents keep running", flush=True)
    return EXIT_OK
