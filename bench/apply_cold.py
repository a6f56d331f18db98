"""Cold apply: N agents from nothing until the command returns, against compose and docker-py.

Each run measures the three contenders in a rotated order. Before each one, every object of the
scope is removed (untimed), so each starts with no containers, volumes or network. Images stay:
"cold" means no agents, not no image (a first, untimed apply builds clawker's project image).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from bench.fleet import Fleet, container_shape
from bench.isolation import REPO, BenchError, BenchScope, clawker_argv
from bench.measuring import Ratio, Series, interleaved, time_command
from bench.reporting import ScenarioResult

__all__ = ["run"]

CLAWKER = "clawker apply"
COMPOSE = "docker-compose up -d"
DOCKER_PY = "docker-py loop"

WHAT = {
    CLAWKER: "`clawker apply -f spec -y`: validate, observe, plan, execute, wait for readiness",
    COMPOSE: "`docker-compose -p NAME -f compose.json up -d` (Debian's compose v1)",
    DOCKER_PY: "`python -m bench.dockerpy_loop`: network, 2 volumes per agent, create+start each",
}


def run(scope: BenchScope, *, runs: int, agents: int, log: Callable[[str], None]) -> ScenarioResult:
    api = docker.APIClient(version="auto")
    with tempfile.TemporaryDirectory(prefix="clawker-bench-") as tmp:
        root = Path(tmp).resolve()
        (root / "ws").mkdir()
        fleet = Fleet(f"b{scope.run_id.removeprefix('bench-')}", agents, root / "ws", scope)
        spec, compose, objects = root / "agents.yaml", root / "compose.json", root / "fleet.json"
        spec.write_text(fleet.clawker_spec())
        compose.write_text(json.dumps(fleet.compose_file(), indent=2))
        objects.write_text(json.dumps(fleet.objects(), indent=2))
        compose_project = scope.run_id.replace("-", "")
        profile = root / "profile.json"
        argv_apply = clawker_argv("apply", "-f", str(spec), "-y", "--profile", str(profile))
        commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
            CLAWKER: (argv_apply, scope.clawker_env()),
            COMPOSE: (
                ["docker-compose", "-p", compose_project, "-f", str(compose), "up", "-d"],
                None,
            ),
            DOCKER_PY: ([sys.executable, "-m", "bench.dockerpy_loop", str(objects)], None),
        }
        log("apply_cold: a first, untimed apply builds the project image, starts the CP")
        argv, env = commands[CLAWKER]
        first_apply = time_command(argv, env=env, cwd=REPO)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        shapes: dict[str, dict[str, Any]] = {}
        images: dict[str, str] = {}
        first = fleet.container_name(fleet.agents[0])
        profiles: list[tuple[float, dict[str, Any]]] = []  # (wall seconds, --profile data)
        for i in range(runs):
            for name in interleaved(list(commands), i):
                argv, env = commands[name]
                scope.remove_runtime_objects()
                samples[name].append(time_command(argv, env=env, cwd=REPO))
                if name == CLAWKER:
                    profiles.append((samples[name][-1], json.loads(profile.read_text())))
                running = scope.running_containers(api)
                if running != agents:
                    raise BenchError(f"{name} left {running} of {agents} containers running")
                if name not in shapes:
                    shapes[name] = container_shape(api, first)
                    images[name] = api.inspect_container(first)["Config"]["Image"]
            scope.remove_runtime_objects()
            log(
                f"apply_cold run {i + 1}/{runs}: "
                + "  ".join(f"{name} {samples[name][-1]:.2f}s" for name in commands)
            )

    series = {name: Series(name, WHAT[name], tuple(samples[name])) for name in commands}
    where = breakdown(profiles)
    log(
        "apply_cold: clawker's critical path (median s): "
        + ", ".join(f"{k} {v:.3f}" for k, v in where["critical_path"].items())
    )
    log(
        "apply_cold: summed over agents (median s): "
        + ", ".join(f"{k} {v:.3f}" for k, v in where["summed"].items())
    )
    differences = _differences(shapes)
    if differences:
        log(f"warning: the contenders' containers differ: {differences}")
    return ScenarioResult(
        scenario="apply_cold",
        title=f"cold apply of {agents} agents, {runs} runs (seconds)",
        command=f".venv/bin/python bench/run.py --only apply_cold --runs {runs} --agents {agents}",
        parameters={"runs": runs, "agents": agents},
        series=tuple(series.values()),
        ratios=(Ratio.of(series, CLAWKER, COMPOSE), Ratio.of(series, CLAWKER, DOCKER_PY)),
        notes={
            "first_apply_s": round(first_apply, 3),
            "images": images,
            "equivalent_containers": not differences,
            "differences": differences,
            "breakdown": where,
        },
    )


def _differences(shapes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per field, each contender's value where they do not all agree (empty: equivalent)."""
    fields = sorted({key for shape in shapes.values() for key in shape})
    return {
        key: {name: shape.get(key) for name, shape in shapes.items()}
        for key in fields
        if len({json.dumps(shape.get(key), sort_keys=True) for shape in shapes.values()}) > 1
    }


def breakdown(profiles: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    """Where clawker's apply spends its time, median over runs, from each run's `--profile`.

    `critical_path`: wall-clock seconds of each top-level phase, in order (they run one after
    the other; what is left of the command's wall time is the interpreter's start and exit).
    `summed`: seconds added up over agents (executor steps of one kind; the control plane's
    enrol, dial and session per start), which overlap each other inside `execute` and `ready`.
    """
    phases = (
        "cli start-up and imports",
        "load and validate",
        "image inputs",
        "observe",
        "observe host",
        "observe bases",
        "observe control plane",
        "plan",
        "ensure control plane",
        "execute",
        "ready",
    )
    critical: dict[str, list[float]] = {p: [] for p in (*phases, "interpreter and exit")}
    summed: dict[str, list[float]] = {}
    for wall, data in profiles:
        totals: dict[str, float] = data["totals"]
        for phase in phases:
            critical[phase].append(totals.get(phase, 0.0))
        end = max((s["end"] for s in data["spans"]), default=0.0)
        critical["interpreter and exit"].append(max(0.0, wall - end))
        for name, seconds in totals.items():
            if name.startswith("step:"):
                summed.setdefault(name, []).append(seconds)
        for key in ("enrol", "dial", "bridge", "session"):
            values = [float(t.get(key, 0.0)) for t in data.get("controlplane", {}).values()]
            summed.setdefault(f"controlplane:{key}", []).append(sum(values))
    return {
        "critical_path": {k: round(statistics.median(v), 4) for k, v in critical.items() if v},
        "summed": {k: round(statistics.median(v), 4) for k, v in sorted(summed.items())},
    }
