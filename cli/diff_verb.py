"""`clawker diff`: load, observe, plan, render, and stop there (DESIGN §5).

cli.main imports this module only when diff runs. It loads the spec language, docker-py, the
observer and the planner, and nothing that only a verb that changes things needs (the
executor, the readiness wait, the control plane's lifecycle, the apply lock): those load with
cli.agent_verbs. tests/unit/test_cli_startup.py holds the line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from cli.render import plan_as_data, render_plan
from cli.style import Style
from reconciler.controlplane.paths import StatePaths, protected_paths
from reconciler.docker.engine import DockerEngine, engine_socket
from reconciler.errors import UsageError
from reconciler.images.cache import spec_cache_dir
from reconciler.loop.plan import Plan
from reconciler.loop.prepare import prepare_apply
from reconciler.settings import Settings
from specs import SpecSet, load_specs

__all__ = ["cmd_diff", "load", "print_plan", "warn"]

EXIT_OK, EXIT_FAIL = 0, 1


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load(files: Sequence[str], settings: Settings) -> SpecSet:
    """The spec files, validated (or from the resolved cache); their warnings on stderr."""
    if not files:
        raise UsageError("no spec files given; pass -f FILE, -f DIR or -f - (stdin)")
    protected = protected_paths(StatePaths(settings.state_dir), engine_socket())
    specset = load_specs(files, protected=protected, cache_dir=spec_cache_dir(settings))
    for warning in specset.warnings:
        _err(f"warning: {warning}")
    return specset


def warn(the_plan: Plan) -> None:
    for warning in the_plan.warnings:
        _err(f"warning: {warning}")


def print_plan(the_plan: Plan, args: argparse.Namespace) -> None:
    """The plan as `-o` asks: Terraform's text, or data."""
    if args.output == "json":
        _out(json.dumps(plan_as_data(the_plan, show_secrets=args.show_secrets), indent=2))
    else:
        _out(render_plan(the_plan, Style(sys.stdout), show_secrets=args.show_secrets))


def cmd_diff(args: argparse.Namespace) -> int:
    specset = load(args.filename, args.settings)
    prepared = prepare_apply(
        DockerEngine(scope=args.settings),
        specset,
        settings=args.settings,
        prune=args.prune,
        restart_if_needed=args.restart_if_needed,
    )
    warn(prepared.plan)
    print_plan(prepared.plan, args)
    return EXIT_OK if prepared.plan.empty else EXIT_FAIL
