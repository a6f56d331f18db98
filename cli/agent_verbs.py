"""`clawker apply|get|delete`: the verbs that read specs and converge agents (`diff` is
cli.diff_verb's, and named here too).

cli.main imports this module only when one of them runs: it loads the spec language, docker-py
and the reconciler with its executor, which `clawker --help` and `diff` do without.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import cli
from cli.diff_verb import cmd_diff, load, print_plan, warn
from cli.image_verbs import build_progress
from cli.render import (
    STATUS_HEADERS,
    render_event,
    render_outcomes,
    render_plan,
    status_data,
    status_rows,
)
from cli.style import Style, fail_mark, ok_mark
from cli.table import render_table
from reconciler import naming
from reconciler.controlplane import lifecycle
from reconciler.controlplane.api.messages import StepRecord
from reconciler.controlplane.paths import StatePaths
from reconciler.docker.engine import DockerEngine
from reconciler.errors import UsageError
from reconciler.loop.apply_lock import ApplyLock
from reconciler.loop.converge import (
    agent_statuses,
    apply_plan,
    forget_agents,
    prepare_apply,
    prepare_delete,
    readiness_conditions,
)
from reconciler.loop.execute import StepEvent
from reconciler.loop.imperative import find_project_file
from reconciler.loop.observe import observe
from reconciler.loop.timeline import Timeline
from reconciler.settings import Settings
from specs import SpecErrors, SpecSet

__all__ = ["UsageError", "cmd_apply", "cmd_delete", "cmd_diff", "cmd_get"]

EXIT_OK, EXIT_FAIL = 0, 1


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# The diff verb's helpers: apply, get and delete load and warn as diff does.
_load = load
_warn = warn


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if sys.stdin is None or sys.stdin.closed or not sys.stdin.isatty():
        raise UsageError(f"{question} needs confirmation; re-run with -y to confirm")
    answer = input(f"{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ")
    return answer.strip() == "yes"


def _progress(style: Style, enabled: bool) -> Callable[[StepEvent], None]:
    def on_event(event: StepEvent) -> None:
        if enabled and (line := render_event(event, style)):
            _err(line)

    return on_event


def cmd_apply(args: argparse.Namespace) -> int:
    if args.watch:
        # Watch mode's modules (file watching, the event stream) load only with --watch.
        from cli.watch_verb import apply_watch  # noqa: PLC0415

        return apply_watch(args, lambda files: _load(files, args.settings))
    timeline = Timeline(origin=cli.STARTED)
    timeline.add("cli start-up and imports", 0.0, timeline.now())
    with timeline.span("load and validate"):
        specset = _load(args.filename, args.settings)
    if args.dry_run:
        port = DockerEngine(scope=args.settings)
        the_plan = prepare_apply(port, specset, settings=args.settings, prune=args.prune).plan
        print_plan(the_plan, args)
        return EXIT_OK
    with apply_lock(args):  # taken before observing: the plan is ours alone
        return _apply(args, specset, timeline)


def apply_lock(args: argparse.Namespace) -> AbstractContextManager[None]:
    """This scope's apply lock (reconciler.loop.apply_lock), saying whom it waits for."""
    return ApplyLock(StatePaths(args.settings.state_dir).apply_lock).hold(
        wait=not args.no_wait_lock,
        on_wait=lambda who: _err(
            f"waiting for another apply ({who}) to finish; --no-wait-lock exits instead"
        ),
    )


def _apply(args: argparse.Namespace, specset: SpecSet, timeline: Timeline) -> int:
    port = DockerEngine(scope=args.settings)
    out_style, err_style = Style(sys.stdout), Style(sys.stderr)
    if not args.dry_run:
        # Before planning: the plan compares with what the control plane holds, so it must
        # answer; a dry run, like diff, shows an absent one's state as unknown instead.
        with timeline.span("ensure control plane"):
            _ensure_controlplane(args.settings, err_style)
    prepared = prepare_apply(
        port,
        specset,
        settings=args.settings,
        prune=args.prune,
        restart_if_needed=args.restart_if_needed,
        timeline=timeline,
    )
    the_plan = prepared.plan
    _warn(the_plan)
    json_out = args.output == "json"
    changed = not the_plan.empty
    if changed and not json_out:
        _out(render_plan(the_plan, out_style, show_secrets=args.show_secrets))
        _out()
    if the_plan.deletions and not _confirm(
        "Prune removes the containers of agents no longer declared (volumes stay).", args.yes
    ):
        _err("Apply cancelled.")
        return EXIT_FAIL

    def on_step(container: str, record: StepRecord) -> None:
        if not json_out:
            mark = ok_mark(err_style) if record.ok else fail_mark(err_style)
            code = "" if record.ok else f" (exit {record.exit_code})"
            _err(f"  {mark} {container}: {record.name}{code}")

    _, outcomes = apply_plan(
        port,
        the_plan,
        settings=args.settings,
        agents=specset.agents,
        controlplane=StatePaths(args.settings.state_dir),
        wait=not args.no_wait,
        timeout=args.timeout,
        on_event=_progress(err_style, not json_out),
        on_build_line=build_progress("project image", err_style, False)
        if not json_out
        else lambda _line: None,
        on_step=on_step,
        timeline=timeline,
    )
    if args.profile:
        _write_profile(args, timeline, port, specset)
    if json_out:
        _out(
            json.dumps(
                {
                    "agents": [
                        {"agent": o.key, "outcome": o.outcome, "detail": o.detail} for o in outcomes
                    ],
                    "changed": changed,
                },
                indent=2,
            )
        )
    else:
        _out(render_outcomes(outcomes, out_style))
        if not changed:
            _out("No changes.")
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAIL


def _write_profile(
    args: argparse.Namespace, timeline: Timeline, port: DockerEngine, specset: SpecSet
) -> None:
    """`--profile FILE`: the timeline, plus the control plane's own share of each start."""
    names = [naming.container_name(a.project, a.name) for a in specset.agents]
    ids = [info.id for n in names if (info := port.inspect_runtime(n, args.settings.network))]
    client = lifecycle.client(StatePaths(args.settings.state_dir))
    starts = {}
    for report in client.start_reports(ids).values():
        if report.status is not None:
            starts[report.status.agent_key] = dict(report.status.timings)
    timeline.extra["controlplane"] = starts
    timeline.write(Path(args.profile))


def _ensure_controlplane(settings: Settings, style: Style) -> None:
    pid = lifecycle.ensure_running(settings)
    if pid is not None:
        log = StatePaths(settings.state_dir).log
        _err(f"  {ok_mark(style)} control plane started (pid {pid}; log {log})")


def cmd_get(args: argparse.Namespace) -> int:
    specset = _load(args.filename, args.settings) if args.filename else None
    declared = specset or _discovered_project(args.settings)
    port = DockerEngine(scope=args.settings)
    observed = observe(port)
    statuses = agent_statuses(
        observed,
        declared.agents if declared else (),
        only_desired=specset is not None,
        conditions=readiness_conditions(
            observed, lifecycle.client(StatePaths(args.settings.state_dir))
        ),
    )
    if args.output == "json":
        _out(json.dumps({"kind": "AgentList", "items": status_data(statuses)}, indent=2))
    elif statuses:
        _out(render_table(STATUS_HEADERS, status_rows(statuses)))
    else:
        _err("No agents found.")
    return EXIT_OK


def _discovered_project(settings: Settings) -> SpecSet | None:
    """Without -f, `get` lists every agent in scope and marks DECLARED those of the project
    file found here or in a parent directory (as `run` finds it); a project file that does not
    load is a warning, not a failure: listing must work while a spec is being edited."""
    found = find_project_file(os.getcwd())
    if found is None:
        return None
    try:
        return _load([found], settings)
    except SpecErrors as exc:
        for error in exc.errors:
            _err(f"warning: {error}")
        _err("warning: DECLARED is shown as no for every agent; fix the file or pass -f")
        return None


def cmd_delete(args: argparse.Namespace) -> int:
    specset = _load(args.filename, args.settings)
    with apply_lock(args):
        return _delete(args, specset)


def _delete(args: argparse.Namespace, specset: SpecSet) -> int:
    port = DockerEngine(scope=args.settings)
    prepared = prepare_delete(port, [a.key for a in specset.agents], volumes=args.volumes)
    style = Style(sys.stdout)
    if prepared.plan.empty:
        forget_agents(args.settings, [a.key for a in specset.agents])  # gone by hand
        _out("Nothing to delete.")
        return EXIT_OK
    _out(render_plan(prepared.plan, style))
    _out()
    question = "Delete these agents' containers" + (
        " AND their volumes (sessions, logins, history are lost)?" if args.volumes else "?"
    )
    if not _confirm(question, args.yes):
        _err("Delete cancelled.")
        return EXIT_FAIL
    _, outcomes = apply_plan(
        port,
        prepared.plan,
        settings=args.settings,
        wait=False,
        on_event=_progress(Style(sys.stderr), True),
    )
    _out(render_outcomes(outcomes, style))
    if not args.volumes:
        _out("Volumes were kept; `clawker delete --volumes` removes them.")
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAIL
