"""`clawker`: declare agents in YAML, converge Docker to match.

The CLI parses arguments, renders and asks; the reconciler does the work. This module builds the
parser and turns errors into exit codes; a verb imports its implementation only when it runs,
which keeps start-up cheap (bench/README.md, "CLI start-up").
Exit codes: 0 success (for `diff`: no changes), 1 failure (for `diff`: changes), 2 bad input.
"""

# Each verb imports its implementation inside its handler: start-up loads the parsers only.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
from collections.abc import Callable, Sequence

from cli.durations import seconds_flag
from cli.style import Style, fail_mark, ok_mark

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- verbs -------------------------------------------------------------------------------------
# Each verb imports its implementation when it runs, so `clawker --help` loads argparse and the
# parsers only, and the specs, docker-py and the reconciler load for the verbs that use them.


def cmd_diff(args: argparse.Namespace) -> int:
    from cli import diff_verb  # not agent_verbs: diff loads no executor

    return diff_verb.cmd_diff(args)


def cmd_apply(args: argparse.Namespace) -> int:
    from cli import agent_verbs

    return agent_verbs.cmd_apply(args)


def cmd_get(args: argparse.Namespace) -> int:
    from cli import agent_verbs

    return agent_verbs.cmd_get(args)


def cmd_delete(args: argparse.Namespace) -> int:
    from cli import agent_verbs

    return agent_verbs.cmd_delete(args)


def cmd_controlplane(args: argparse.Namespace) -> int:
    from reconciler.controlplane import lifecycle
    from reconciler.controlplane.paths import StatePaths

    style = Style(sys.stdout)
    paths = StatePaths(args.settings.state_dir)
    if args.cp_verb == "up":
        pid = lifecycle.ensure_running(args.settings)
        state = lifecycle.status(paths)
        _out(
            f"control plane {'started' if pid else 'already running'} (pid {state.pid}; "
            f"log {state.log})"
        )
        return EXIT_OK
    if args.cp_verb == "down":
        stopped = lifecycle.stop(paths)
        _out(
            f"control plane stopped (pid {stopped})" if stopped else "control plane was not running"
        )
        return EXIT_OK
    state = lifecycle.status(paths)
    if args.output == "json":
        _out(
            json.dumps(
                {
                    "running": state.running,
                    "pid": state.pid,
                    "uptime": state.uptime,
                    "stateDir": state.state_dir,
                    "log": state.log,
                    "version": state.version,
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


# -- parser ------------------------------------------------------------------------------------


Subparsers = argparse._SubParsersAction  # of argparse.ArgumentParser


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


def _add_no_wait_lock(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-wait-lock",
        action="store_true",
        help="when another apply or delete is running in this scope, exit at once (exit 1)"
        " instead of waiting for it",
    )


def _add_restart(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--restart-if-needed",
        action="store_true",
        help="restart running agents whose changes take effect at their next start "
        "(pre_run, env wiring, a post_init not yet run); without it they wait for one",
    )


def _add_diff(sub: Subparsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "diff",
        help="preview what apply would change, and why",
        description="Preview the changes apply would make, to Docker and to the control plane, "
        "and when each takes effect. Exit 0: none, 1: changes, 2: error.",
    )
    _add_files(p)
    p.add_argument("--prune", action="store_true", help="include pruning of undeclared agents")
    _add_restart(p)
    p.add_argument("--show-secrets", action="store_true", help="show env values unmasked")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_diff)


def _add_apply(sub: Subparsers[argparse.ArgumentParser]) -> None:
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
    _add_restart(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before destructive steps")
    p.add_argument("--no-wait", action="store_true", help="do not wait for agents to be Ready")
    p.add_argument(
        "--timeout",
        type=seconds_flag(0, 24 * 3600),
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for readiness (default 120, at most a day)",
    )
    p.add_argument("--show-secrets", action="store_true", help="show env values unmasked")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    _add_no_wait_lock(p)
    p.add_argument(
        "--watch",
        action="store_true",
        help="converge, then keep converging on spec edits and Docker drift until Ctrl-C "
        "(agents keep running)",
    )
    p.add_argument(
        "--resync",
        type=seconds_flag(0, 24 * 3600),
        default=30.0,
        metavar="SECONDS",
        help="with --watch: re-check every agent this often, events or not (default 30, at "
        "most a day)",
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="write where the time went (each phase, each step, the control plane's share of "
        "every start) to FILE as JSON (bench/apply_cold.py reads it); with --watch, append one "
        "JSON line per pass (bench/watch.py reads it)",
    )
    p.set_defaults(func=cmd_apply)


def _add_get(sub: Subparsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "get",
        help="list agents: desired vs observed",
        description="List agents: desired (the specs) against observed (Docker and the control "
        "plane). With -f, only the declared agents; without it, every agent in scope, DECLARED "
        "marking those of the project file (clawker.yaml, .clawker.yaml or agents.yaml) found "
        "in the current directory or a parent.",
    )
    p.add_argument("resource", choices=["agents"], help="what to list")
    _add_files(p, required=False)
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_get)


def _add_delete(sub: Subparsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("delete", help="remove the declared agents' containers (volumes stay)")
    _add_files(p)
    p.add_argument(
        "--volumes",
        action="store_true",
        help="also remove the agents' config, history and workspace volumes",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    _add_no_wait_lock(p)
    p.set_defaults(func=cmd_delete)


def _add_other_verbs(sub: Subparsers[argparse.ArgumentParser]) -> None:
    # Their parsers' modules load only for the whole CLI: not when diff runs (_OWN_VERBS).
    from cli.firewall_verbs import add_firewall_verbs
    from cli.image_verbs import add_image_verbs
    from cli.imperative_parsers import add_imperative_verbs
    from cli.verify_verb import add_verify_verb

    p = sub.add_parser("image", help="build images")
    add_image_verbs(p.add_subparsers(dest="image_verb", metavar="COMMAND", required=True))

    p = sub.add_parser(
        "controlplane",
        help="the control plane: up, down, status",
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
    add_verify_verb(sub)
    add_imperative_verbs(sub)


_OWN_VERBS: dict[str, Callable[[Subparsers[argparse.ArgumentParser]], None]] = {
    "diff": _add_diff,
    "apply": _add_apply,
    "get": _add_get,
    "delete": _add_delete,
}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI; with `verb` (one of _OWN_VERBS), only that verb's parser: the rest cost a
    diff ~10 ms to build, and a verb's own parser parses and reports errors as it does in
    the whole one (its prog is `clawker VERB` either way)."""
    parser = argparse.ArgumentParser(
        prog="clawker",
        description="Run AI coding agents in Docker containers that are safe to leave alone. "
        "Declare agents in YAML; clawker converges Docker to match.",
        epilog="Start with: clawker run -it --rm --agent dev @ (in a project with a clawker.yaml), "
        "or clawker diff -f agents.yaml, then clawker apply -f agents.yaml.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    if verb in _OWN_VERBS:
        _OWN_VERBS[verb](sub)
        return parser
    for add in (*_OWN_VERBS.values(), _add_other_verbs):
        add(sub)
    return parser


# The cyclic collector's first generation runs every GC_THRESHOLD allocations instead of 700 (the
# default): a verb allocates most of its objects once, while importing and planning, and they live
# until it exits. bench/README.md, "CLI start-up and the collector", has the figures.
GC_THRESHOLD = 100_000


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        # As the program (not called from Python): `clawker diff | head` ends quietly. A caller
        # in-process keeps its own SIGPIPE handling (a test runner would die on any broken pipe)
        # and its own collector settings.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        try:
            return _main(argv)
        finally:
            # Nothing is left to free: the exit need not walk every object the verb made (a
            # full collection at interpreter shutdown, ~40 ms for a diff of 100 agents).
            sys.stdout.flush()
            sys.stderr.flush()
            gc.freeze()
    return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words[0] if words and words[0] in _OWN_VERBS else None)
    args = parser.parse_args(words)
    from reconciler.settings import SettingsError, settings_from_env

    try:  # read once, here; every verb gets it as args.settings and passes it down
        args.settings = settings_from_env()
    except SettingsError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:
        reported = _report(exc)
        if reported is None:
            raise
        # diff's 1 means "changes": a diff that could not be made is an error (2).
        return EXIT_USAGE if args.func is cmd_diff else reported
    return code


def _report(exc: Exception) -> int | None:
    """Print an error the user can act on and return its exit code; None for a bug.

    Every such error is a `ClawkerError` (reconciler/errors.py) and carries its exit code; the
    spec language's `SpecErrors` (specs imports nothing of ours) lists each error's place.
    The types are imported here, not at start-up, so only a failing verb pays for them.
    """
    from reconciler.errors import ClawkerError

    if isinstance(exc, ClawkerError):
        _err(f"error: {exc}")
        return exc.exit_code
    if "specs" in sys.modules:
        from specs import SpecErrors

        if isinstance(exc, SpecErrors):
            for error in exc.errors:
                _err(f"error: {error}")
            _err(f"{len(exc.errors)} error(s); nothing was changed.")
            return EXIT_USAGE
    if isinstance(exc, PermissionError):
        where = f" ({exc.filename})" if exc.filename else ""
        _err(f"error: {exc.strerror}{where}; clawker's state and the control plane need root")
        return EXIT_FAIL
    return None


if __name__ == "__main__":
    sys.exit(main())
