"""How clawker's costs grow with the number of agents: a cost per agent at 10, 50, 100.

    .venv/bin/python bench/scaling.py --sizes 10 50 100 --runs 3

One scope; a first, untimed apply of one agent builds the project image and starts the control
plane, and its objects are removed. Then the fleet grows: an apply brings it from the previous
size to the next (timed, with `--profile`: the cost of each added agent), then at each size,
interleaved run by run:

- `clawker diff -f spec` (a no-op: it must exit 0),
- `clawker get agents -f spec -o json`,
- the floor of both: a fresh `python` that imports docker-py and makes the four label-filtered
  list calls clawker's observe makes (containers, volumes, networks, images),
- `clawker apply -f spec --watch` until it prints that it is watching: its initial pass
  re-lists and plans every agent, which is what a resync does, plus the CLI's start-up.

Printed and written to bench/results/scaling.json: medians, each divided by the size (cost per
agent), and the growth of each from one size to the next divided by the agents added (the
marginal cost per agent; flat means linear). Everything the scope made is removed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker

from bench.apply_cold import breakdown
from bench.fleet import Fleet
from bench.isolation import REPO, BenchError, BenchScope, clawker_argv
from bench.measuring import interleaved, time_command
from bench.watch import _Watch

RESULTS = Path(__file__).resolve().parent / "results"


def floor_program(label: str) -> str:
    return (
        "import docker\n"
        "c = docker.APIClient(version='auto')\n"
        f"f = {{'label': [{label!r}]}}\n"
        "c.containers(all=True, filters=f); c.volumes(filters=f); c.networks(filters=f)\n"
        "c.images(filters=f)\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    api = docker.APIClient(version="auto")
    scope = BenchScope.new()
    env = scope.clawker_env()
    sizes = sorted(args.sizes)
    figures: dict[int, dict[str, float]] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="clawker-scaling-") as tmp:
        root = Path(tmp).resolve()
        (root / "ws").mkdir()
        fleet = Fleet(f"s{scope.run_id.removeprefix('bench-')}", sizes[-1], root / "ws", scope)
        documents = fleet.clawker_spec().split("\n---\n")
        spec, profile = root / "agents.yaml", root / "profile.json"
        try:
            # Untimed: the project image's build and the control plane's start are not per agent.
            spec.write_text("\n---\n".join(documents[:2]))
            time_command(clawker_argv("apply", "-f", str(spec), "-y"), env=env, cwd=REPO)
            scope.remove_runtime_objects()
            previous = 0
            for size in sizes:
                spec.write_text("\n---\n".join(documents[: size + 1]))
                apply = clawker_argv("apply", "-f", str(spec), "-y", "--profile", str(profile))
                wall = time_command(apply, env=env, cwd=REPO)
                if scope.running_containers(api) != size:
                    raise BenchError(f"the apply did not leave {size} containers running")
                parts = breakdown([(wall, json.loads(profile.read_text()))])["critical_path"]
                figures[size] = {
                    "apply (added agents)": wall,
                    "apply: execute": parts["execute"],
                    "apply: ready": parts["ready"],
                    "added": float(size - previous),
                }
                print(f"{size}: apply of {size - previous} more agents {wall:.2f}s", flush=True)
                previous = size
                contenders = {
                    "clawker diff": (clawker_argv("diff", "-f", str(spec)), env),
                    "clawker get agents": (
                        clawker_argv("get", "agents", "-f", str(spec), "-o", "json"),
                        env,
                    ),
                    "floor: python + docker-py + 4 lists": (
                        [sys.executable, "-c", floor_program(scope.label_selector)],
                        None,
                    ),
                }
                samples: dict[str, list[float]] = {name: [] for name in [*contenders, "watch"]}
                for i in range(args.runs):
                    for name in interleaved([*contenders, "watch"], i):
                        if name == "watch":
                            samples[name].append(watch_initial_pass(spec, env))
                        else:
                            argv, run_env = contenders[name]
                            samples[name].append(time_command(argv, env=run_env, cwd=REPO))
                for name, values in samples.items():
                    figures[size][name] = statistics.median(values)
                loads.append(os.getloadavg()[0])
                print(
                    f"{size}: "
                    + ", ".join(f"{k} {statistics.median(v):.3f}s" for k, v in samples.items()),
                    flush=True,
                )
        finally:
            scope.remove_everything()
    report(figures, loads, args)


def watch_initial_pass(spec: Path, env: dict[str, str]) -> float:
    """Spawn `apply --watch` on converged agents; seconds until it says it is watching."""
    began = time.time()
    watch = _Watch(clawker_argv("apply", "-f", str(spec), "--watch", "--resync", "600"), env)
    try:
        _, at = watch.wait_for(r"watching .* and Docker events", 0, timeout=300)
    finally:
        watch.stop()
    return at - began


def report(
    figures: dict[int, dict[str, float]], loads: list[float], args: argparse.Namespace
) -> None:
    sizes = sorted(figures)
    names = [n for n in figures[sizes[0]] if n != "added"]
    print(
        f"\nload average {min(loads):.1f}–{max(loads):.1f}; `.venv/bin/python bench/scaling.py"
        f" --sizes {' '.join(map(str, sizes))} --runs {args.runs}`"
    )
    header = " | ".join(f"{s} agents: median, per agent" for s in sizes)
    print(f"| | {header} | marginal per agent |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    for name in names:
        cells = []
        for s in sizes:
            per = figures[s]["added"] if name.startswith("apply") else s
            cells.append(f"{figures[s][name]:.3f} s, {figures[s][name] / per * 1000:.1f} ms")
        marginal = []
        for lo, hi in itertools.pairwise(sizes):
            if name.startswith("apply"):
                marginal.append(f"{figures[hi][name] / figures[hi]['added'] * 1000:.1f}")
            else:
                step = (figures[hi][name] - figures[lo][name]) / (hi - lo)
                marginal.append(f"{step * 1000:.1f}")
        print(f"| {name} | {' | '.join(cells)} | {' → '.join(marginal)} ms |")
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "scaling.json").write_text(
            json.dumps({"figures": figures, "loadavg": loads, "runs": args.runs}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
