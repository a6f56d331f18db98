"""Watch mode: converge once, then keep converging (`clawker apply --watch`).

Level-triggered, like the control plane: spec edits, Docker events and a resync timer only put
agent keys in one keyed work queue, and each pass re-lists Docker by label and plans that one
agent with the same `prepare_apply` / `apply_plan` every verb uses. A key is never handled by two
workers at once; a key that fails backs off (exponential, jitter, cap) while the others go on.

Steps that belong to no agent (the project image build, the shared network) run first, each
under a lock named by what it makes and re-planned inside the lock: two agents of one project
never build the same image at once, and the second finds it built.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from reconciler import naming
from reconciler.controller.backoff import Backoff
from reconciler.controller.controller import Controller, PendingWork
from reconciler.controller.sources import (
    Cause,
    DockerEventSource,
    ResyncTimer,
    SpecFileSource,
    Trigger,
)
from reconciler.controlplane import lifecycle
from reconciler.controlplane.api.channel import ApiError
from reconciler.controlplane.lifecycle import ControlPlaneError
from reconciler.controlplane.paths import StatePaths, protected_paths
from reconciler.controlplane.registry import StepRecord
from reconciler.docker.engine import ContainerEvent, DockerError, DockerPort, engine_socket
from reconciler.images import ImageError
from reconciler.images.cache import spec_cache_dir
from reconciler.loop.apply_lock import ApplyLock, ApplyLockError
from reconciler.loop.converge import AgentOutcome, apply_plan, prepare_apply
from reconciler.loop.execute import StepEvent
from reconciler.loop.observe import ObservedState, group_containers
from reconciler.loop.plan import Plan, PlanError
from reconciler.loop.timeline import Timeline
from reconciler.settings import Settings
from specs import SourceRef, SpecError, SpecErrors, SpecSet, load_specs

__all__ = ["AGENT_BACKOFF", "PendingWork", "WatchOptions", "WatchReport", "Watcher"]

_NOWHERE = SourceRef("", 0, 0)  # an agent's spec compared without where it was written


class WatchReport(Protocol):
    """What watch mode tells its user; the CLI renders it."""

    def watching(self, paths: Sequence[str], resync: float) -> None: ...
    def pass_started(
        self, number: int, keys: Sequence[str], triggers: Sequence[Trigger], plan: Plan
    ) -> None: ...
    def step_event(self, event: StepEvent) -> None: ...
    def step_record(self, container: str, record: StepRecord) -> None: ...
    def build_line(self, line: str) -> None: ...
    def pass_finished(self, number: int, outcomes: Sequence[AgentOutcome]) -> None: ...
    def pass_failed(self, number: int, keys: Sequence[str], error: str) -> None: ...
    def retry_scheduled(self, key: str, failures: int, delay: float) -> None: ...
    def specs_invalid(self, errors: Sequence[SpecError]) -> None: ...
    def specs_reloaded(
        self,
        files: Sequence[str],
        changed: Sequence[str],
        removed: Sequence[str],
        warnings: Sequence[str],
    ) -> None: ...
    def notice(self, text: str) -> None: ...


AGENT_BACKOFF = Backoff(initial=1.0, cap=60.0)


@dataclass(frozen=True)
class WatchOptions:
    prune: bool = False
    wait: bool = True
    timeout: float = 120.0  # readiness, per pass
    resync_interval: float = 30.0
    workers: int = 4
    backoff: Backoff = AGENT_BACKOFF
    stop_grace: float = 20.0  # how long Ctrl-C waits for Docker steps already under way
    wait_lock: bool = True  # False: a pass that finds another apply running fails (and retries)
    profile: str = ""  # a file: one JSON line per pass, where its time went (`--profile`)


class _StoppedError(Exception):
    """Raised at a safe point (a readiness poll, a build line) once the watcher is stopping."""


_EVENT_TEXT = {"die": "container died", "destroy": "container removed"}


class Watcher:
    """Runs watch mode until `request_stop()`; the agents keep running afterwards."""

    def __init__(
        self,
        port: DockerPort,
        inputs: Sequence[str],
        specset: SpecSet,
        report: WatchReport,
        options: WatchOptions = WatchOptions(),
        *,
        controlplane: StatePaths | None = None,
        settings: Settings,
        apply_lock: ApplyLock | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.apply_lock = apply_lock
        self._protected = protected_paths(StatePaths(settings.state_dir), engine_socket())
        self.inputs = list(inputs)
        self.report = report
        self.options = options
        self.controlplane = controlplane
        self.settings = settings
        # The same controller as the control plane's: sources enqueue agent keys, workers
        # converge one key at a time, failed keys back off with jitter.
        self.controller = Controller(
            "watch",
            self._reconcile,
            workers=options.workers,
            backoff=options.backoff,
            clock=clock,
            on_retry=self._on_retry,
        )
        self.work = self.controller.work
        self._specset = specset
        self._spec_lock = threading.Lock()
        self._shared_locks: dict[str, threading.Lock] = {}
        self._shared_guard = threading.Lock()
        self._controlplane_lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._stop_requested = False  # set from a signal handler: a plain flag, no locks
        self._stopping = self.controller.stopping
        self._initial_done = False
        # key -> (when its source saw the change, when it was queued, what came between), the
        # earliest since the key was last taken: a pass's profile counts from there.
        self._since: dict[str, tuple[float, float, str]] = {}
        # key -> the settle inspects started for its `die` events and not yet waited for
        self._settling: dict[str, list[threading.Event]] = {}
        self._since_lock = threading.Lock()
        self._profile_lock = threading.Lock()
        self.files = SpecFileSource(self.inputs, self.reload_specs, self._stopping)
        self.events = DockerEventSource(
            port, self._on_docker_event, self._on_connected, self._on_stream_lost, self._stopping
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop soon; safe to call from a signal handler."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested or self._stopping.is_set()

    def run(self) -> None:
        """Converge once, then watch until `request_stop()`."""
        # Subscribe to both before the first look, so nothing that happens after it is missed.
        self.controller.add_source("events", self.events.run)
        self.controller.add_source("files", self._watch_files)
        self.events.connected.wait(5.0)
        self.files.ready.wait(5.0)
        self.reload_specs([], quiet=True)  # edited between the CLI's load and the watch?
        self._initial_pass()
        self._initial_done = True
        if not self.stopping:
            resync = ResyncTimer(self.options.resync_interval, self.resync, self._stopping)
            self.controller.add_source("resync", resync.run)
            self.controller.start_workers()
            self.report.watching(self.inputs, self.options.resync_interval)
        while not self._stop_requested:
            time.sleep(0.1)
        self._shutdown()

    def _watch_files(self) -> None:
        """The file watch, set up again if it breaks (a spec folder removed and recreated)."""
        while not self._stopping.is_set():
            try:
                self.files.run()
            except Exception as exc:
                self.report.notice(f"watching the spec files failed ({exc}); retrying in 2s")
                self._stopping.wait(2.0)

    def _shutdown(self) -> None:
        busy = self.controller.stop(grace=self.options.stop_grace)
        if busy:
            self.report.notice(
                f"stopped with {len(busy)} pass(es) still running Docker steps; "
                "the next apply finishes them"
            )

    # -- triggers -------------------------------------------------------------------------------
    @property
    def specset(self) -> SpecSet:
        with self._spec_lock:
            return self._specset

    def _watched_keys(self, observed_keys: Collection[str] = ()) -> set[str]:
        """The declared agents, plus (with --prune) observed agents of declared projects."""
        specset = self.specset
        keys = {a.key for a in specset.agents}
        if self.options.prune:
            keys |= {k for k in observed_keys if k.split("/", 1)[0] in specset.projects}
        return keys

    def _is_watched(self, key: str) -> bool:
        specset = self.specset
        if any(a.key == key for a in specset.agents):
            return True
        return self.options.prune and key.split("/", 1)[0] in specset.projects

    def _put(self, key: str, trigger: Trigger, seen: float, between: str) -> None:
        """Queue `key`, noting (for the pass's profile) when its source saw the change."""
        with self._since_lock:
            self._since.setdefault(key, (seen, time.perf_counter(), between))
        self.work.put(key, trigger)

    def resync(self, cause: Cause = Cause.RESYNC) -> None:
        """Queue every watched agent (and, with --prune, every observed one of its projects)."""
        seen = time.perf_counter()
        observed: Collection[str] = ()
        if self.options.prune:
            observed = group_containers(self.port.list_containers()).keys()
        for key in sorted(self._watched_keys(observed)):
            self._put(key, Trigger(cause), seen, "list")

    def _on_docker_event(self, event: ContainerEvent) -> None:
        text = _EVENT_TEXT.get(event.action)
        project, agent = event.labels.get(naming.PROJECT), event.labels.get(naming.AGENT)
        if text is None or not project or not agent:
            return
        if event.labels.get(naming.PURPOSE) != "agent":
            return
        key = naming.agent_key(project, agent)
        if not self._is_watched(key):
            return
        code = event.labels.get("exitCode")
        detail = f"{text} (exit {code})" if event.action == "die" and code else text
        seen = time.perf_counter()
        if event.action == "die":
            self._start_settle(key, event.id)
        self._put(key, Trigger(Cause.CONTAINER, detail), seen, "event")

    def _start_settle(self, key: str, container_id: str) -> None:
        """Docker sends `die` before its container list shows the exit (it tears down the
        container's network and mounts first, ~50 ms); an inspect waits for the container's
        lock, which Docker holds until the list is updated too. The inspect runs on a thread of
        its own, so the event stream goes on and the pass does meanwhile what does not ask
        Docker's lists (the control plane, the base image); it waits for the inspect just before
        it lists."""
        done = threading.Event()
        with self._since_lock:
            self._settling.setdefault(key, []).append(done)

        def settle() -> None:
            try:
                self.port.inspect_state(container_id)
            except Exception:  # gone already, or the daemon went away: the pass will see
                pass
            finally:
                done.set()

        threading.Thread(target=settle, name="watch-settle", daemon=True).start()

    def _on_connected(self, first: bool) -> None:
        if first and not self._initial_done:
            return  # the initial pass lists everything anyway
        self.report.notice("docker event stream reconnected; re-listing every agent")
        self.resync(Cause.RECONNECTED)

    def _on_stream_lost(self, why: str, delay: float) -> None:
        self.report.notice(f"{why}; reconnecting in {delay:.1f}s")

    def reload_specs(self, files: Sequence[str], *, quiet: bool = False) -> None:
        """Re-read every input; on success queue the agents whose spec changed, otherwise
        report the errors and keep the last good specs. `quiet`: say nothing if nothing changed."""
        seen = time.perf_counter()
        try:
            new = load_specs(
                self.inputs, protected=self._protected, cache_dir=spec_cache_dir(self.settings)
            )
        except SpecErrors as exc:
            self.report.specs_invalid(exc.errors)
            return
        with self._spec_lock:
            old, self._specset = self._specset, new
        # Moving a document (its `source`) changes nothing the agent runs with.
        before = {a.key: replace(a, source=_NOWHERE) for a in old.agents}
        after = {a.key: replace(a, source=_NOWHERE) for a in new.agents}
        changed = sorted(k for k, v in after.items() if before.get(k) != v)
        removed = sorted(set(before) - set(after))
        if quiet and not changed and not removed:
            return
        self.report.specs_reloaded(files, changed, removed, new.warnings)
        names = ", ".join(sorted({_short(f) for f in files})) or "spec files"
        trigger = Trigger(Cause.FILE_CHANGED, names)
        for key in changed + (removed if self.options.prune else []):
            self._put(key, trigger, seen, "load specs")

    # -- work -----------------------------------------------------------------------------------
    def _reconcile(self, key: str, triggers: tuple[Trigger, ...]) -> bool:
        """One worker pass over one agent (the controller's reconcile): True unless it failed."""
        if self.stopping:
            return True
        taken = time.perf_counter()
        with self._since_lock:
            since = self._since.pop(key, None)
            settling = self._settling.pop(key, [])
        timeline = None
        if self.options.profile:
            seen, queued, between = since or (taken, taken, "")
            timeline = Timeline(clock=time.perf_counter, origin=seen)
            if since is not None:
                timeline.add(between, 0.0, queued - seen)
                timeline.add("queue", queued - seen, taken - seen)
        try:
            return key not in self.converge({key}, triggers, timeline, settling)
        except _StoppedError:
            return True

    def _on_retry(self, key: str, failures: int, delay: float) -> None:
        if not self.stopping:
            self.report.retry_scheduled(key, failures, delay)

    def _initial_pass(self) -> None:
        timeline = Timeline(clock=time.perf_counter) if self.options.profile else None
        try:
            failed = self.converge(None, (Trigger(Cause.INITIAL),), timeline)
        except _StoppedError:
            return
        for key in sorted(failed):
            self.report.retry_scheduled(key, *self.work.failed_outside(key))

    def converge(
        self,
        keys: set[str] | None,
        triggers: Sequence[Trigger],
        timeline: Timeline | None = None,
        settling: Sequence[threading.Event] = (),
    ) -> set[str]:
        """One pass over `keys` (None: every declared agent); return the keys that failed.
        The scope's apply lock is held for the pass (only): a concurrent `clawker apply`
        takes its turn between passes. With `timeline`, the pass's spans are written to
        `options.profile` at its end; `settling`: the settle inspects to wait for before the
        Docker lists."""
        tl = timeline or Timeline()
        try:
            return self._locked_converge(keys, triggers, tl, settling)
        finally:
            if timeline is not None:
                self._write_profile(keys, triggers, timeline)

    def _locked_converge(
        self,
        keys: set[str] | None,
        triggers: Sequence[Trigger],
        tl: Timeline,
        settling: Sequence[threading.Event],
    ) -> set[str]:
        if self.apply_lock is None:
            return self._converge(keys, triggers, tl, settling)
        scope = sorted(keys) if keys is not None else [a.key for a in self.specset.agents]
        try:
            tl.begin("apply lock", "")
            with self.apply_lock.hold(
                wait=self.options.wait_lock,
                on_wait=lambda who: self.report.notice(
                    f"waiting for another apply ({who}) to finish"
                ),
            ):
                tl.end("apply lock", "")
                return self._converge(keys, triggers, tl, settling)
        except ApplyLockError as exc:
            number = tl.extra["pass"] = next(self._numbers)
            self.report.pass_failed(number, scope, str(exc))
            return set(scope)

    def _converge(
        self,
        keys: set[str] | None,
        triggers: Sequence[Trigger],
        tl: Timeline,
        settling: Sequence[threading.Event] = (),
    ) -> set[str]:
        specset = self.specset
        number: int | None = None
        scope = sorted(keys) if keys is not None else [a.key for a in specset.agents]
        agents = [a for a in specset.agents if keys is None or a.key in keys]
        try:
            if agents:  # before planning: the plan compares with what the control plane holds
                with tl.span("ensure control plane"):
                    self._ensure_controlplane()

            def settle() -> None:
                with tl.span("settle wait"):
                    for done in settling:
                        done.wait()

            the_plan, observed = self._prepare(specset, keys, tl, settle if settling else None)
            if _being_removed(observed, scope):
                return set()  # `docker rm` under way: its destroy event comes next
            first = any(t.cause is Cause.INITIAL for t in triggers)
            if the_plan.empty and not first:
                return set()  # nothing differs: a resync, an echo of our own steps, or an edit
            number = tl.extra["pass"] = next(self._numbers)
            with tl.span("pass header"):
                self.report.pass_started(number, scope, triggers, the_plan)
            if any(s.agent is None for s in the_plan.steps):
                self._run_shared_steps(the_plan, specset, keys)
                the_plan = self._plan(specset, keys)
            if self.stopping:
                raise _StoppedError  # no Docker step starts after Ctrl-C
            _, outcomes = apply_plan(
                self.port,
                the_plan,
                settings=self.settings,
                agents=agents,
                controlplane=self.controlplane,
                wait=self.options.wait and not the_plan.empty,
                timeout=self.options.timeout,
                on_event=self.report.step_event,
                on_build_line=self._build_line,
                on_step=self.report.step_record,
                sleep=self._sleep,
                timeline=tl,
            )
        except _StoppedError:
            raise
        except Exception as exc:  # a pass that cannot finish fails its keys, which back off
            if self.stopping:
                raise _StoppedError from exc
            if number is None:
                number = tl.extra["pass"] = next(self._numbers)
            self.report.pass_failed(number, scope, _describe(exc))
            return set(scope)
        failed = {o.key for o in outcomes if not o.ok}
        if failed and self.stopping:
            raise _StoppedError  # cut short by Ctrl-C, not a failure worth reporting
        with tl.span("pass result"):
            self.report.pass_finished(number, outcomes)
        return failed

    def _write_profile(
        self, keys: set[str] | None, triggers: Sequence[Trigger], timeline: Timeline
    ) -> None:
        """One JSON line per pass (`pass` None: it found nothing to do and printed nothing).
        Spans count from the moment the first trigger's source saw the change (`origin_wall`,
        seconds since the epoch), so a bench can line them up with its own clock."""
        data: Mapping[str, Any] = {
            "pass": timeline.extra.get("pass"),
            "keys": sorted(keys) if keys is not None else None,
            "triggers": [str(t) for t in triggers],
            "origin_wall": time.time() - timeline.now(),
            **timeline.as_data(),
        }
        with self._profile_lock, Path(self.options.profile).open("a") as out:
            out.write(json.dumps(data) + "\n")

    def _prepare(
        self,
        specset: SpecSet,
        keys: set[str] | None,
        timeline: Timeline | None = None,
        settle: Callable[[], None] | None = None,
    ) -> tuple[Plan, ObservedState]:
        prepared = prepare_apply(
            self.port,
            specset,
            settings=self.settings,
            prune=self.options.prune,
            keys=keys,
            timeline=timeline,
            settle=settle,
        )
        return prepared.plan, prepared.observed

    def _plan(self, specset: SpecSet, keys: set[str] | None) -> Plan:
        return self._prepare(specset, keys)[0]

    def _run_shared_steps(self, the_plan: Plan, specset: SpecSet, keys: set[str] | None) -> None:
        """Steps that belong to no agent, one at a time per object, re-planned under its lock:
        whoever comes second finds the image built (or the network made) and skips it."""
        for step in (s for s in the_plan.steps if s.agent is None):
            with self._shared_lock(f"{step.kind}:{step.target}"):
                fresh = self._plan(specset, keys)
                same = next(
                    (
                        s
                        for s in fresh.steps
                        if s.agent is None and (s.action, s.target) == (step.action, step.target)
                    ),
                    None,
                )
                if same is None:
                    continue
                alone = Plan((replace(same, id=1, depends_on=()),), ())
                result, _ = apply_plan(
                    self.port,
                    alone,
                    settings=self.settings,
                    wait=False,
                    on_event=self.report.step_event,
                    on_build_line=self._build_line,
                )
                if not result.ok:
                    raise _SharedStepError(next(iter(result.failed.values())))

    @contextmanager
    def _shared_lock(self, name: str) -> Iterator[None]:
        with self._shared_guard:
            lock = self._shared_locks.setdefault(name, threading.Lock())
        with lock:
            yield

    def _ensure_controlplane(self) -> None:
        if self.controlplane is None:
            return
        with self._controlplane_lock:  # two workers must not start two control planes
            pid = lifecycle.ensure_running(self.settings)
        if pid is not None:
            self.report.notice(f"control plane started (pid {pid}; log {self.controlplane.log})")

    def _sleep(self, seconds: float) -> None:
        if self.stopping:
            raise _StoppedError
        time.sleep(seconds)

    def _build_line(self, line: str) -> None:
        if self.stopping:
            raise _StoppedError
        self.report.build_line(line)


class _SharedStepError(Exception):
    pass


def _being_removed(observed: ObservedState, keys: Collection[str]) -> bool:
    """A container Docker is removing cannot be started, and its name is not free yet."""
    return any(
        c.state == "removing"
        for key in keys
        if (agent := observed.agents.get(key)) is not None
        for c in (agent.container, *agent.leftovers)
        if c is not None
    )


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


_EXPLAINED = (DockerError, ApiError, ControlPlaneError, ImageError, PlanError, _SharedStepError)


def _describe(exc: BaseException) -> str:
    """Our errors explain themselves; anything else (a dropped connection) is named by type."""
    text = str(exc).strip()
    if isinstance(exc, _EXPLAINED):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
