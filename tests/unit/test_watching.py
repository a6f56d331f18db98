"""Watch mode's time-dependent parts on a fake clock: backoff, the retry schedule, the keyed
work queue with backoff, the debouncer; and how triggers become queued agent keys."""

from __future__ import annotations

import argparse
import textwrap
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cli.style import Style
from cli.watch_verb import TextWatchReport, watch_usage_error
from reconciler.controller.backoff import Backoff, RetrySchedule
from reconciler.controller.sources import Cause, Debouncer, Trigger, watched_paths
from reconciler.controlplane.registry import StepRecord
from reconciler.docker.engine import ContainerEvent
from reconciler.loop.converge import AgentOutcome
from reconciler.loop.execute import StepEvent
from reconciler.loop.plan import Plan
from reconciler.settings import Settings
from reconciler.watch import PendingWork, Watcher, WatchOptions
from specs import SpecError, load_specs


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def no_jitter() -> float:
    return 0.0


def full_jitter() -> float:
    return 1.0


# -- backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_from_initial_up_to_the_cap() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, cap=10.0, jitter=0.5)
    assert [backoff.delay(n, no_jitter) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_jitter_only_shortens_a_delay_and_never_below_its_share() -> None:
    backoff = Backoff(initial=1.0, cap=60.0, jitter=0.5)
    assert backoff.delay(4, full_jitter) == 4.0
    assert backoff.delay(30, full_jitter) == 30.0  # at the cap, jitter still spreads retries
    assert backoff.delay(30, no_jitter) == 60.0


def test_backoff_survives_thousands_of_failures() -> None:
    assert Backoff(cap=60.0).delay(5000, no_jitter) == 60.0


def test_a_failed_key_is_held_until_its_delay_passes_then_released_once() -> None:
    clock = FakeClock()
    schedule = RetrySchedule(Backoff(initial=2.0, cap=60.0), rand=no_jitter)
    assert schedule.failed("p/a", clock()) == (1, 2.0)
    assert schedule.holding("p/a", clock())
    assert schedule.next_due() == clock() + 2.0
    clock.advance(1.9)
    assert schedule.due(clock()) == []
    clock.advance(0.1)
    assert schedule.due(clock()) == ["p/a"]
    assert schedule.due(clock()) == []  # reported once
    assert not schedule.holding("p/a", clock())
    assert schedule.next_due() is None
    assert schedule.failed("p/a", clock()) == (2, 4.0)  # failures count on until a success


def test_success_and_reset_forget_the_failures() -> None:
    clock = FakeClock()
    schedule = RetrySchedule(Backoff(initial=1.0), rand=no_jitter)
    schedule.failed("p/a", clock())
    schedule.failed("p/a", clock())
    schedule.succeeded("p/a")
    assert schedule.failures("p/a") == 0
    assert schedule.failed("p/a", clock()) == (1, 1.0)
    schedule.reset("p/a")
    assert not schedule.holding("p/a", clock())


# -- the keyed work queue with backoff ----------------------------------------------------------


def died(code: int = 137) -> Trigger:
    return Trigger(Cause.CONTAINER, f"container died (exit {code})")


def work_on(clock: FakeClock) -> PendingWork:
    return PendingWork(RetrySchedule(Backoff(initial=4.0, cap=60.0), rand=no_jitter), clock)


def test_a_key_is_handed_to_one_worker_at_a_time_and_coalesces_its_triggers() -> None:
    work = work_on(FakeClock())
    work.put("p/a", died())
    work.put("p/a", Trigger(Cause.RESYNC))
    assert work.take(0) == ("p/a", (died(), Trigger(Cause.RESYNC)))
    work.put("p/a", Trigger(Cause.RESYNC))  # while it is being handled
    assert work.take(0) is None  # no second worker gets it
    work.finish("p/a", ok=True)
    assert work.take(0) == ("p/a", (Trigger(Cause.RESYNC),))  # handled once more afterwards


def test_a_failing_key_backs_off_without_holding_up_the_others() -> None:
    clock = FakeClock()
    work = work_on(clock)
    work.put("p/a", died())
    assert work.take(0) is not None
    assert work.finish("p/a", ok=False) == (1, 4.0)
    assert not work.put("p/a", died())  # its own die event waits for the retry
    work.put("p/b", Trigger(Cause.RESYNC))
    assert work.take(0) == ("p/b", (Trigger(Cause.RESYNC),))
    assert work.take(0) is None
    work.finish("p/b", ok=True)
    assert work.seconds_to_next_retry() == 4.0

    clock.advance(4.0)
    assert work.release_due() == ["p/a"]
    assert work.take(0) == ("p/a", (died(), Trigger(Cause.RETRY, "attempt 2")))
    assert work.finish("p/a", ok=False) == (2, 8.0)


def test_a_trigger_queued_during_a_failing_pass_does_not_skip_the_backoff() -> None:
    clock = FakeClock()
    work = work_on(clock)
    work.put("p/a", Trigger(Cause.RESYNC))
    work.take(0)
    work.put("p/a", died())  # the failing start's own die event, before the failure is known
    work.finish("p/a", ok=False)
    assert work.take(0) is None
    clock.advance(4.0)
    work.release_due()
    key, triggers = work.take(0) or ("", ())
    assert key == "p/a"
    assert died() in triggers


def test_a_spec_edit_or_a_reconnect_cancels_the_backoff() -> None:
    clock = FakeClock()
    work = work_on(clock)
    for urgent in (Trigger(Cause.FILE_CHANGED, "agents.yaml"), Trigger(Cause.RECONNECTED)):
        work.put("p/a", died())
        work.take(0)
        work.finish("p/a", ok=False)
        assert work.put("p/a", urgent)
        assert work.take(0) == ("p/a", (urgent,))
        work.finish("p/a", ok=True)
        assert work.take(0) is None


# -- debounce -----------------------------------------------------------------------------------


def test_a_burst_of_writes_is_one_reload_after_the_quiet_period() -> None:
    clock = FakeClock()
    debouncer = Debouncer(quiet=0.5, max_wait=2.0)
    debouncer.add(["/s/a.yaml"], clock())
    clock.advance(0.25)
    debouncer.add(["/s/a.yaml", "/s/b.yaml"], clock())
    clock.advance(0.25)
    assert debouncer.due(clock()) == []
    clock.advance(0.25)
    assert debouncer.due(clock()) == ["/s/a.yaml", "/s/b.yaml"]
    assert debouncer.due(clock()) == []
    assert not debouncer.pending


def test_a_file_written_without_pause_still_reloads_after_max_wait() -> None:
    clock = FakeClock()
    debouncer = Debouncer(quiet=0.3, max_wait=2.0)
    fired = []
    for _ in range(25):
        debouncer.add(["/s/a.yaml"], clock())
        clock.advance(0.1)
        fired += debouncer.due(clock())
    assert fired == ["/s/a.yaml"]


def test_nothing_is_due_without_changes() -> None:
    clock = FakeClock()
    debouncer = Debouncer()
    debouncer.add([], clock())
    clock.advance(10)
    assert debouncer.due(clock()) == []


# -- what is watched ----------------------------------------------------------------------------


def test_files_are_watched_through_their_folder_and_folders_for_new_specs(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "dir").mkdir()
    spec = tmp_path / "one" / "agents.yaml"
    spec.write_text("")
    dirs, relevant = watched_paths([str(spec), str(tmp_path / "dir")])
    assert dirs == sorted([str(tmp_path / "dir"), str(tmp_path / "one")])
    assert relevant(str(spec))
    assert not relevant(str(tmp_path / "one" / "other.yaml"))  # a file input names one file
    assert relevant(str(tmp_path / "dir" / "new.yml"))
    assert not relevant(str(tmp_path / "dir" / ".new.yaml.swp"))
    assert not relevant(str(tmp_path / "dir" / "notes.txt"))


# -- triggers become keys -----------------------------------------------------------------------

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: demo}
spec:
  workspace: {path: WORKSPACE, mode: bind}
  agent: {env: {GREETING: hello}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: a, project: demo}
spec: {command: [sleep, infinity]}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: b, project: demo}
spec: {command: [sleep, infinity]}
"""


class InspectOnlyPort:
    """The watcher's event handling asks Docker one thing: inspect a container that died."""

    def __init__(self) -> None:
        self.inspected: list[str] = []

    def inspect_state(self, container_id: str) -> Mapping[str, Any]:
        self.inspected.append(container_id)
        return {"Running": False}


class RecordingReport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def watching(self, paths: Sequence[str], resync: float) -> None:
        self.calls.append(("watching", paths))

    def pass_started(
        self, number: int, keys: Sequence[str], triggers: Sequence[Trigger], plan: Plan
    ) -> None:
        self.calls.append(("pass_started", keys))

    def step_event(self, event: StepEvent) -> None:
        self.calls.append(("step_event", event))

    def step_record(self, container: str, record: StepRecord) -> None:
        self.calls.append(("step_record", record))

    def build_line(self, line: str) -> None:
        self.calls.append(("build_line", line))

    def pass_finished(self, number: int, outcomes: Sequence[AgentOutcome]) -> None:
        self.calls.append(("pass_finished", outcomes))

    def pass_failed(self, number: int, keys: Sequence[str], error: str) -> None:
        self.calls.append(("pass_failed", error))

    def retry_scheduled(self, key: str, failures: int, delay: float) -> None:
        self.calls.append(("retry_scheduled", key))

    def specs_invalid(self, errors: Sequence[SpecError]) -> None:
        self.calls.append(("specs_invalid", [str(e) for e in errors]))

    def specs_reloaded(
        self,
        files: Sequence[str],
        changed: Sequence[str],
        removed: Sequence[str],
        warnings: Sequence[str],
    ) -> None:
        self.calls.append(("specs_reloaded", (list(changed), list(removed), list(warnings))))

    def notice(self, text: str) -> None:
        self.calls.append(("notice", text))


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir()
    path = tmp_path / "specs" / "agents.yaml"
    path.parent.mkdir()
    path.write_text(SPEC.replace("WORKSPACE", str(tmp_path / "ws")))
    return path


def make_watcher(
    spec_file: Path, *, prune: bool = False
) -> tuple[Watcher, RecordingReport, InspectOnlyPort]:
    report, port = RecordingReport(), InspectOnlyPort()
    watcher = Watcher(
        port,  # type: ignore[arg-type]
        [str(spec_file)],
        load_specs([str(spec_file)]),
        report,
        WatchOptions(prune=prune),
        settings=Settings(),
    )
    return watcher, report, port


def drain(work: PendingWork) -> Iterator[tuple[str, tuple[Trigger, ...]]]:
    while (item := work.take(0)) is not None:
        work.finish(item[0], ok=True)
        yield item


def event(action: str, agent: str, project: str = "demo", **extra: str) -> ContainerEvent:
    labels = {
        "dev.clawker.project": project,
        "dev.clawker.agent": agent,
        "dev.clawker.purpose": "agent",
        **extra,
    }
    return ContainerEvent(id=f"id-{agent}", action=action, labels=labels)


def test_an_env_edit_queues_only_the_edited_agent(spec_file: Path) -> None:
    watcher, report, _ = make_watcher(spec_file)
    text = spec_file.read_text()
    spec_file.write_text(
        text.replace(
            "metadata: {name: a, project: demo}\nspec: {command: [sleep, infinity]}",
            "metadata: {name: a, project: demo}\n"
            "spec: {command: [sleep, infinity], agent: {env: {EXTRA: x}}}",
        )
    )
    watcher.reload_specs([str(spec_file)])
    assert list(drain(watcher.work)) == [("demo/a", (Trigger(Cause.FILE_CHANGED, "agents.yaml"),))]
    assert report.calls == [("specs_reloaded", (["demo/a"], [], []))]


def test_moving_a_document_down_a_line_changes_no_agent(spec_file: Path) -> None:
    watcher, report, _ = make_watcher(spec_file)
    spec_file.write_text("# a comment on top\n" + spec_file.read_text())
    watcher.reload_specs([str(spec_file)])
    assert list(drain(watcher.work)) == []
    assert report.calls == [("specs_reloaded", ([], [], []))]


def test_an_invalid_edit_is_reported_and_the_last_good_specs_stay(spec_file: Path) -> None:
    watcher, report, _ = make_watcher(spec_file)
    good = watcher.specset
    spec_file.write_text(spec_file.read_text().replace("hello}}\n", "hello}}\n  bogus: 1\n"))
    watcher.reload_specs([str(spec_file)])
    assert watcher.specset is good
    assert list(drain(watcher.work)) == []
    [(kind, errors)] = report.calls
    assert kind == "specs_invalid"
    assert errors[0].startswith(f"{spec_file}:7:3: spec.bogus: unknown key 'bogus'")


def test_an_agent_removed_from_the_specs_is_left_alone_without_prune(spec_file: Path) -> None:
    text = spec_file.read_text()
    for prune, queued in ((False, []), (True, ["demo/b"])):
        spec_file.write_text(text)
        watcher, report, _ = make_watcher(spec_file, prune=prune)
        spec_file.write_text(text.rsplit("---", 1)[0])
        watcher.reload_specs([str(spec_file)])
        assert [key for key, _ in drain(watcher.work)] == queued
        assert report.calls == [("specs_reloaded", ([], ["demo/b"], []))]


def test_a_spec_inside_a_writable_workspace_is_warned_about(tmp_path: Path) -> None:
    spec = tmp_path / "agents.yaml"
    spec.write_text(SPEC.replace("WORKSPACE", str(tmp_path)))
    watcher, report, _ = make_watcher(spec)
    spec.write_text(spec.read_text().replace("hello", "hi"))
    watcher.reload_specs([str(spec)])
    [(_, (changed, _, warnings))] = report.calls
    assert changed == ["demo/a", "demo/b"]
    assert len(warnings) == 1
    assert "inside the bind-mounted workspace of demo/a, demo/b" in warnings[0]
    assert "watch mode would apply it" in warnings[0]


def test_docker_events_queue_declared_agents_with_what_happened(spec_file: Path) -> None:
    watcher, _, port = make_watcher(spec_file)
    watcher._on_docker_event(event("die", "a", exitCode="137"))
    watcher._on_docker_event(event("destroy", "b"))
    watcher._on_docker_event(event("start", "a"))  # our own steps: nothing to do
    watcher._on_docker_event(event("die", "ghost"))  # not declared
    watcher._on_docker_event(event("die", "a", project="other"))
    assert list(drain(watcher.work)) == [
        ("demo/a", (Trigger(Cause.CONTAINER, "container died (exit 137)"),)),
        ("demo/b", (Trigger(Cause.CONTAINER, "container removed"),)),
    ]
    # Docker lists a container as running until it has finished recording its exit.
    for done in watcher._settling["demo/a"]:
        assert done.wait(5)
    assert port.inspected == ["id-a"]


# -- the CLI side -------------------------------------------------------------------------------


def apply_args(**overrides: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "filename": ["agents.yaml"],
        "dry_run": False,
        "output": "text",
        "prune": False,
        "yes": False,
        "resync": 30.0,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({}, None),
        ({"filename": ["-"]}, "--watch cannot watch stdin"),
        ({"dry_run": True}, "--watch and --dry-run do not mix"),
        ({"output": "json"}, "--watch prints a text log"),
        ({"prune": True}, "--watch --prune removes containers without asking; add -y"),
        ({"prune": True, "yes": True}, None),
        ({"resync": 0.0}, "--resync must be a positive"),
    ],
)
def test_watch_refuses_options_it_cannot_honour(
    overrides: dict[str, Any], problem: str | None
) -> None:
    error = watch_usage_error(apply_args(**overrides))
    assert (error is None) if problem is None else (error or "").startswith(problem)


def test_a_pass_header_names_the_agent_and_what_triggered_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = TextWatchReport(Style.plain())
    triggers = [died(), Trigger(Cause.RESYNC), died()]
    report.pass_started(7, ["demo/a"], triggers, Plan((), ()))
    out = capsys.readouterr().out
    assert out.split(" ", 1)[1] == textwrap.dedent(
        """\
        pass 7: demo/a (container died (exit 137); resync)
        No changes. Docker matches the specs.
        """
    )


def test_a_pass_that_finds_another_apply_running_fails_and_backs_off(
    spec_file: Path, tmp_path: Path
) -> None:
    """Watch mode takes the scope's apply lock per pass; with --no-wait-lock a pass that
    finds another apply holding it fails (and is retried) instead of planning beside it."""
    from reconciler.loop.apply_lock import ApplyLock  # noqa: PLC0415
    from tests.unit.test_apply_lock import hold_in_another_process  # noqa: PLC0415

    report, port = RecordingReport(), InspectOnlyPort()
    watcher = Watcher(
        port,  # type: ignore[arg-type]
        [str(spec_file)],
        load_specs([str(spec_file)]),
        report,
        WatchOptions(wait_lock=False),
        settings=Settings(),
        apply_lock=ApplyLock(tmp_path / "apply.lock"),
    )
    holder = hold_in_another_process(tmp_path / "apply.lock")
    try:
        failed = watcher.converge(None, [Trigger(Cause.RESYNC)])
    finally:
        holder.communicate("\n", timeout=30)
    assert failed == {a.key for a in watcher.specset.agents}
    (call,) = [c for c in report.calls if c[0] == "pass_failed"]
    assert f"another apply (pid {holder.pid}) is running" in str(call[1])


def test_watch_modes_debouncer_adds_no_quiet_period_of_its_own() -> None:
    """watchfiles yields a burst after 20 ms without changes; the reload follows at once."""
    clock = FakeClock()
    debouncer = Debouncer()
    debouncer.add(["/s/a.yaml"], clock())
    assert debouncer.due(clock()) == ["/s/a.yaml"]


def test_with_a_profile_each_pass_appends_where_its_time_went(
    spec_file: Path, tmp_path: Path
) -> None:
    """`--watch --profile FILE`: one JSON line per pass, counted from when its trigger was seen
    (here a `die` event: the settle inspect, the queue, then the pass itself)."""
    import json  # noqa: PLC0415

    profile = tmp_path / "profile.jsonl"
    report, port = RecordingReport(), InspectOnlyPort()
    watcher = Watcher(
        port,  # type: ignore[arg-type]
        [str(spec_file)],
        load_specs([str(spec_file)]),
        report,
        WatchOptions(profile=str(profile)),
        settings=Settings(),
    )
    watcher._on_docker_event(event("die", "a", exitCode="137"))
    item = watcher.work.take(0)
    assert item is not None
    watcher._reconcile(*item)  # fails: this port cannot list, so the pass reports a failure
    (line,) = profile.read_text().splitlines()
    data = json.loads(line)
    assert (data["pass"], data["keys"]) == (1, ["demo/a"])
    assert data["triggers"] == ["container died (exit 137)"]
    names = [s["name"] for s in data["spans"]]
    assert names[:2] == ["event", "queue"]
    assert "image inputs" in names


class SlowExitPort:
    """Docker mid-exit: an inspect of the dead container blocks until `exit_recorded` (as
    dockerd's container lock does); the lists say what they saw then."""

    def __init__(self) -> None:
        self.exit_recorded = threading.Event()
        self.calls: list[str] = []

    def inspect_state(self, container_id: str) -> Mapping[str, Any]:
        self.exit_recorded.wait(5)
        self.calls.append("inspect returned")
        return {"Running": False}

    def image_id(self, ref: str) -> str:
        self.calls.append("image")
        return "sha256:base"

    def list_volumes(self) -> list[Any]:
        self.calls.append("volumes")
        return []

    def list_images(self) -> list[Any]:
        self.calls.append("images")
        return []

    def list_networks(self) -> list[Any]:
        self.calls.append("networks")
        return []

    def list_containers(self) -> list[Any]:
        self.calls.append("containers")
        raise RuntimeError("enough: the order is what this test is about")


def test_a_die_event_settles_off_the_event_thread_and_the_pass_lists_only_after_it(
    spec_file: Path,
) -> None:
    """The event thread only queues the key; the pass asks Docker nothing while Docker finishes
    recording the exit (a base image is looked at only for a build, after the lists), and
    lists only once the inspect returns."""
    report, port = RecordingReport(), SlowExitPort()
    watcher = Watcher(
        port,  # type: ignore[arg-type]
        [str(spec_file)],
        load_specs([str(spec_file)]),
        report,
        settings=Settings(),
    )
    watcher._on_docker_event(event("die", "a", exitCode="137"))  # returns while inspect blocks
    item = watcher.work.take(0)
    assert item is not None
    done = threading.Event()

    def run_pass() -> None:
        watcher._reconcile(*item)
        done.set()

    threading.Thread(target=run_pass, daemon=True).start()
    assert not done.wait(0.2)  # the pass waits for the settle
    assert port.calls == []
    port.exit_recorded.set()
    assert done.wait(5)
    # then the four lists, made at once (here the container list fails the pass)
    assert port.calls[0] == "inspect returned"
    assert "containers" in port.calls[1:]
    assert [c[0] for c in report.calls] == ["pass_failed"]
