"""A/B: no-op `clawker diff` and `clawker get agents` of N agents, two clawker trees, interleaved.

    .venv/bin/python bench/ab_diff.py --a main --b . --agents 100 --runs 10

Each tree (a git ref exported with `git archive`, or `.`: this worktree) gets its own scope and
its own fleet of N agents, applied once, untimed, by that tree's CLI (so each scope's control
plane runs that tree's code, which the CLI insists on). A tree is byte-compiled when its own
`make setup` would do it (its scripts/setup.sh runs compileall), so each runs as its setup
leaves it. Then each run times, in a rotated order: `diff -f spec` (must exit 0: no changes)
and `get agents -o json` of each tree, and the floor: a fresh `python` that imports docker-py
and makes the four label-filtered lists observe makes. Prints medians, each over the floor and
B over A, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Run as a script (`python bench/ab_diff.py`): make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ab_apply import prepare_contenders
from bench.isolation import BenchError, clawker_argv
from bench.measuring import interleaved, time_command
from bench.scaling import floor_program

FLOOR = "floor: python + docker-py + 4 lists"


def _byte_compile(tree: Path) -> None:
    """What the tree's own `make setup` does about bytecode (nothing, before issue 12d)."""
    setup = tree / "scripts" / "setup.sh"
    if "compileall" in setup.read_text():
        packages = [p for p in ("cli", "reconciler", "specs", "clawkerd", "proto/gen")]
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", *packages],
            cwd=tree,
            check=True,
            capture_output=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default="main", help="git ref of the baseline (default main)")
    parser.add_argument("--b", default=".", help="git ref of the contender (default: this tree)")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clawker-abdiff-") as tmp:
        root = Path(tmp)
        made = prepare_contenders({"A": args.a, "B": args.b}, root, args.agents, "d")
        trees = {label: c.tree for label, c in made.items()}
        for tree in trees.values():
            _byte_compile(tree)
        scopes = {label: c.scope for label, c in made.items()}
        envs = {label: c.env() for label, c in made.items()}
        specs = {label: c.spec for label, c in made.items()}
        samples: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        try:
            for label, tree in trees.items():
                print(f"{label}: applying {args.agents} agents (untimed)", flush=True)
                time_command(
                    clawker_argv("apply", "-f", str(specs[label]), "-y"), env=envs[label], cwd=tree
                )
            floor = [sys.executable, "-c", floor_program(scopes["A"].label_selector)]
            contenders: dict[str, tuple[list[str], dict[str, str] | None, Path | None]] = {
                FLOOR: (floor, None, None)
            }
            for label, tree in trees.items():
                contenders[f"{label} diff"] = (
                    clawker_argv("diff", "-f", str(specs[label])),
                    envs[label],
                    tree,
                )
                contenders[f"{label} get agents"] = (
                    clawker_argv("get", "agents", "-o", "json"),
                    envs[label],
                    tree,
                )
            samples = {name: [] for name in contenders}
            cpu = {name: [] for name in contenders}
            load_before = os.getloadavg()
            for i in range(args.runs):
                for name in interleaved(list(contenders), i):
                    argv, env, cwd = contenders[name]
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    samples[name].append(time_command(argv, env=env, cwd=cwd))
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu[name].append(
                        after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                    )
                print(f"run {i + 1}/{args.runs}", flush=True)
            load_after = os.getloadavg()
        finally:
            for scope in scopes.values():
                try:
                    scope.remove_everything()
                except BenchError as exc:
                    print(f"cleanup: {exc}", file=sys.stderr)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    print(f"\nA = {args.a}, B = {args.b}, {args.agents} agents, {args.runs} runs interleaved")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    print(f"{'':36}{'median':>9}{'min':>9}{'max':>9}{'/ floor':>9}")
    for name, values in samples.items():
        m = medians[name]
        print(f"{name:36}{m:9.3f}{min(values):9.3f}{max(values):9.3f}{m / medians[FLOOR]:9.2f}")
    for what in ("diff", "get agents"):
        ratio = medians[f"B {what}"] / medians[f"A {what}"]
        print(f"B / A, {what}: {ratio:.2f}")
    # CPU seconds of the process itself (user + system): what this machine's load disturbs
    # least. Waiting on dockerd and the CP is not in it.
    cpu_medians = {name: statistics.median(v) for name, v in cpu.items()}
    print(f"\nCPU (user + system) of the command{'median':>12}{'/ floor':>9}")
    for name, m in cpu_medians.items():
        print(f"{name:36}{m:9.3f}{m / cpu_medians[FLOOR]:9.2f}")
    for what in ("diff", "get agents"):
        ratio = cpu_medians[f"B {what}"] / cpu_medians[f"A {what}"]
        print(f"B / A, {what} CPU: {ratio:.2f}")


if __name__ == "__main__":
    main()
