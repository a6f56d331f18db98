"""A/B: watch mode's latencies, two clawker trees, alternated round by round.

    .venv/bin/python bench/ab_watch.py --a main --b . --rounds 3 --runs 5

Each tree (a git ref exported with `git archive`, with its own protocol modules and eBPF
objects, or `.`: this worktree) runs its own `bench/watch.py --runs N --no-write` with its
own code on PYTHONPATH, so its CLI and its control plane are that tree's; each run has a scope
of its own and removes what it made. The order alternates every round (A B, B A, A B, ...).
Prints, per round and tree, the medians of spec saved → Ready, Docker event → pass and event →
Ready, then the median over rounds of each and B / A, with the load average before and after.
On a shared host only the ratios mean something.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ab_apply import export_tree
from bench.isolation import BenchError

MEASURES = ("spec saved -> Ready", "docker event -> pass", "docker event -> Ready")
_ROW = re.compile(r"^(?P<name>.+?)\s{2,}(?P<median>[0-9.]+)s\s")


def watch_medians(tree: Path, runs: int) -> dict[str, float]:
    """One `bench/watch.py` of `tree`, in its own process: the median of each measure."""
    proc = subprocess.run(
        [sys.executable, str(tree / "bench" / "watch.py"), "--runs", str(runs), "--no-write"],
        cwd=tree,
        env=os.environ | {"PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"bench/watch.py of {tree} failed:\n{proc.stderr[-2000:]}")
    found: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        if (m := _ROW.match(line)) and m["name"].strip() in MEASURES:
            found[m["name"].strip()] = float(m["median"])
    missing = [name for name in MEASURES if name not in found]
    if missing:
        raise BenchError(f"bench/watch.py of {tree} printed no {missing}:\n{proc.stdout[-2000:]}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default="main", help="git ref of the baseline (default main)")
    parser.add_argument("--b", default=".", help="git ref of the contender (default: this tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5, help="watch runs per round and tree")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="clawker-ab-watch-") as tmp:
        trees = {label: export_tree(ref, Path(tmp) / label.lower()) for label, ref in
                 (("A", args.a), ("B", args.b))}  # fmt: skip
        try:
            for round_ in range(args.rounds):
                for label in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                    load = os.getloadavg()[0]
                    medians = watch_medians(trees[label], args.runs)
                    results[label].append(medians)
                    shown = "  ".join(f"{k} {v:.3f}s" for k, v in medians.items())
                    print(f"round {round_ + 1} {label} (load {load:.2f}): {shown}", flush=True)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"\nmedian over {args.rounds} rounds of {args.runs} runs (A {args.a}, B {args.b})")
    for name in MEASURES:
        a = statistics.median(r[name] for r in results["A"])
        b = statistics.median(r[name] for r in results["B"])
        print(f"  {name:<24} A {a:.3f}s  B {b:.3f}s  B/A {b / a:.2f}")
    print(f"  load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
