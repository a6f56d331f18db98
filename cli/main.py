"""`clawker`: declare agents in YAML, converge Docker to match.

The CLI parses arguments, renders and asks; the reconciler does the work.
Exit codes: 0 success (for `diff`: no changes), 1 failure (for `diff`: changes), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from cli.firewall_verbs import add_firewall_verbs
from cli.image_verbs import add_image_verbs, build_progress
from cli.render import (
    STATUS_HEADERS,
    plan_as_data,
    render_event,
    render_outcomes,
    render_plan,
    render_table,
    status_data,
    status_rows,
)
from cli.style import Style, fail_mark, ok_mark
from cli.watch_verb import apply_watch
from reconciler import naming
from reconciler.base_image import BaseImageError, base_image_is_current, build_base_image
from reconciler.controlplane import lifecycle
from reconciler.controlplane.api import ApiError
from reconciler.controlplane.paths import state_paths
from reconciler.controlplane.registry import StepRecord
from reconciler.converge import (
    agent_statuses,
    apply_plan,
    prepare_apply,
    prepare_delete,
    readiness_conditions,
)
from reconciler.docker_port import DockerEngine, DockerError
from reconciler.executor import StepEvent
from reconciler.images import ImageError, observed_image_labels
from reconciler.observed import observe
from reconciler.planning import PlanError
from specs import SpecErrors, SpecSet, load_specs

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: reported with exit code 2 and nothing changed."""


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _load(files: Sequence[str]) -> SpecSet:
    if not files:
        raise UsageError("no spec files given; pass -f FILE, -f DIR or -f - (stdin)")
    specset = load_specs(files)
    for warning in specset.warnings:
        _err(f"warning: {warning}")
    return specset


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question} needs confirmation; re-run with -y to confirm")
    answer = input(f"{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ")
    return answer.strip() == "yes"


def _progress(style: Style, enabled: bool) -> Any:
    def on_event(event: StepEvent) -> None:
        if enabled and (line := render_event(event, style)):
            _err(line)

    return on_event


# -- verbs -------------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    specset = _load(args.filename)
    prepared = prepare_apply(DockerEngine(), specset, prune=args.prune)
    if args.output == "json":
        _out(json.dumps(plan_as_data(prepared.plan, show_secrets=args.show_secrets), indent=2))
    else:
        _out(render_plan(prepared.plan, Style(sys.stdout), show_secrets=args.show_secrets))
    return EXIT_OK if prepared.plan.empty else EXIT_FAIL


def cmd_apply(args: argparse.Namespace) -> int:
    if args.watch:
        return apply_watch(args, _load)
    specset = _load(args.filename)
    port = DockerEngine()
    prepared = prepare_apply(port, specset, prune=args.prune)
    the_plan = prepared.plan
    out_style, err_style = Style(sys.stdout), Style(sys.stderr)
    json_out = args.output == "json"
    if args.dry_run:
        if json_out:
            _out(json.dumps(plan_as_data(the_plan, show_secrets=args.show_secrets), indent=2))
        else:
            _out(render_plan(the_plan, out_style, show_secrets=args.show_secrets))
        return EXIT_OK
    changed = not the_plan.empty
    if changed and not json_out:
        _out(render_plan(the_plan, out_style, show_secrets=args.show_secrets))
        _out()
    if any(c.kind.value == "delete" for c in the_plan.changes) and not _confirm(
        "Prune removes the containers of agents no longer declared (volumes stay).", args.yes
    ):
        _err("Apply cancelled.")
        return EXIT_FAIL
    # Even with nothing to change: the CP gets the current runtime specs (pre_run, allowlist,
    # the host's sockets) and apply still waits until every agent is Ready.
    _ensure_controlplane(err_style)

    def on_step(container: str, record: StepRecord) -> None:
        if not json_out:
            mark = ok_mark(err_style) if record.ok else fail_mark(err_style)
            code = "" if record.ok else f" (exit {record.exit_code})"
            _err(f"  {mark} {container}: {record.name}{code}")

    _, outcomes = apply_plan(
        port,
        the_plan,
        agents=specset.agents,
        controlplane=state_paths(),
        wait=not args.no_wait,
        timeout=args.timeout,
        on_event=_progress(err_style, not json_out),
        on_build_line=build_progress("project image", err_style, False)
        if not json_out
        else lambda _line: None,
        on_step=on_step,
    )
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


def _ensure_controlplane(style: Style) -> None:
    pid = lifecycle.ensure_running()
    if pid is not None:
        _err(f"  {ok_mark(style)} control plane started (pid {pid}; log {state_paths().log})")


def cmd_get(args: argparse.Namespace) -> int:
    specset = _load(args.filename) if args.filename else None
    port = DockerEngine()
    observed = observe(port)
    statuses = agent_statuses(
        observed,
        specset.agents if specset else (),
        only_desired=specset is not None,
        conditions=readiness_conditions(port, observed, lifecycle.client()),
    )
    if args.output == "json":
        _out(json.dumps({"kind": "AgentList", "items": status_data(statuses)}, indent=2))
    elif statuses:
        _out(render_table(STATUS_HEADERS, status_rows(statuses)))
    else:
        _err("No agents found.")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    specset = _load(args.filename)
    port = DockerEngine()
    prepared = prepare_delete(port, [a.key for a in specset.agents], volumes=args.volumes)
    style = Style(sys.stdout)
    if prepared.plan.empty:
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
        port, prepared.plan, wait=False, on_event=_progress(Style(sys.stderr), True)
    )
    _out(render_outcomes(outcomes, style))
    if not args.volumes:
        _out("Volumes were kept; `clawker delete --volumes` removes them.")
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAIL


def cmd_controlplane(args: argparse.Namespace) -> int:
    style = Style(sys.stdout)
    if args.cp_verb == "up":
        pid = lifecycle.ensure_running()
        state = lifecycle.status()
        _out(
            f"control plane {'started' if pid else 'already running'} (pid {state.pid}; "
            f"log {state.log})"
        )
        return EXIT_OK
    if args.cp_verb == "down":
        stopped = lifecycle.stop()
        _out(
            f"control plane stopped (pid {stopped})" if stopped else "control plane was not running"
        )
        return EXIT_OK
    state = lifecycle.status()
    if args.output == "json":
        _out(
            json.dumps(
                {
                    "running": state.running,
                    "pid": state.pid,
                    "uptime": state.uptime,
                    "stateDir": state.state_dir,
                    "log": state.log,
                },
                indent=2,
            )
        )
    elif state.running:
        _out(
            f"{ok_mark(style)} control plane running (pid {state.pid}, up {state.uptime:.0f}s; "
            f"state {state.state_dir}; log {state.log})"
        )
    else:
        _out(
            f"{fail_mark(style)} control plane not running; start it with `clawker controlplane up`"
        )
    return EXIT_OK if state.running else EXIT_FAIL


def cmd_image_base(args: argparse.Namespace) -> int:
    port = DockerEngine()
    ref = args.tag or f"clawker-base:{args.suite}"
    style = Style(sys.stderr)
    existing = port.image_id(ref)
    labels = observed_image_labels(port.list_images(), ref)
    if existing and labels is not None and base_image_is_current(labels) and not args.force:
        _out(f"{ref} exists ({existing[7:19]}); --force rebuilds it")
        return EXIT_OK
    _err(f"  … building {ref} from this host's apt sources (mmdebstrap)")
    try:
        image_id = build_base_image(port, suite=args.suite, ref=ref)
    except BaseImageError as exc:
        _err(f"error: {exc}")
        return EXIT_FAIL
    _err(f"  {ok_mark(style)} imported {ref} ({image_id[7:19]})")
    return EXIT_OK


# -- parser ------------------------------------------------------------------------------------


def _add_files(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        required=required,
        metavar="PATH",
        help="spec file, directory of *.yaml/*.yml, or - for stdin (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clawker",
        description="Run AI coding agents in Docker containers that are safe to leave alone. "
        "Declare agents in YAML; clawker converges Docker to match.",
        epilog="Start with: clawker diff -f agents.yaml, then clawker apply -f agents.yaml.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "diff",
        help="preview what apply would change, and why",
        description="Preview the changes apply would make. Exit 0: none, 1: changes, 2: error.",
    )
    _add_files(p)
    p.add_argument("--prune", action="store_true", help="include pruning of undeclared agents")
    p.add_argument("--show-secrets", action="store_true", help="show env values unmasked")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "apply",
        help="converge Docker to the specs and wait until agents are Ready",
        description="Create, start or recreate what the specs declare; print one result per agent.",
    )
    _add_files(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument(
        "--prune",
        action="store_true",
        help="remove containers of agents applied from these projects that are no "
        "longer declared (volumes stay)",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before destructive steps")
    p.add_argument("--no-wait", action="store_true", help="do not wait for agents to be Ready")
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for readiness (default 120)",
    )
    p.add_argument("--show-secrets", action="store_true", help="show env values unmasked")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.add_argument(
        "--watch",
        action="store_true",
        help="converge, then keep converging on spec edits and Docker drift until Ctrl-C "
        "(agents keep running)",
    )
    p.add_argument(
        "--resync",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --watch: re-check every agent this often, events or not (default 30)",
    )
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("get", help="list agents: desired vs observed")
    p.add_argument("resource", choices=["agents"], help="what to list")
    _add_files(p, required=False)
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("delete", help="remove the declared agents' containers (volumes stay)")
    _add_files(p)
    p.add_argument(
        "--volumes",
        action="store_true",
        help="also remove the agents' config, history and workspace volumes",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("image", help="build images")
    isub = p.add_subparsers(dest="image_verb", metavar="COMMAND", required=True)
    ip = isub.add_parser("base", help="build the Debian base image from this host's apt sources")
    ip.add_argument("--suite", default="bookworm", help="Debian suite (default bookworm)")
    ip.add_argument(
        "--tag", default="", help=f"image reference (default {naming.BASE_IMAGE_DEFAULT})"
    )
    ip.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    ip.set_defaults(func=cmd_image_base)
    add_image_verbs(isub)

    p = sub.add_parser(
        "controlplane",
        help="start, stop or inspect the control plane",
        description="The control plane is a root host process that owns the PKI, "
        "the agent registry and the runtime controller. apply starts it when it "
        "is not running.",
    )
    cp = p.add_subparsers(dest="cp_verb", metavar="COMMAND", required=True)
    cp.add_parser("up", help="start it detached (pid file and log in the state dir)")
    cp.add_parser("down", help="stop it (running agents keep running)")
    sp = cp.add_parser("status", help="is it running (exit 0) or not (exit 1)")
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_controlplane)
    add_firewall_verbs(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `clawker diff | head` ends quietly
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except SpecErrors as exc:
        for error in exc.errors:
            _err(f"error: {error}")
        _err(f"{len(exc.errors)} error(s); nothing was changed.")
        return EXIT_USAGE
    except lifecycle.ControlPlaneError as exc:
        _err(f"error: {exc}")
        return EXIT_FAIL
    except (UsageError, PlanError, ImageError) as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except (DockerError, ApiError) as exc:
        _err(f"error: {exc}")
        return EXIT_FAIL
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
