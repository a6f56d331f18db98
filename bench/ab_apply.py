"""Cold apply, A/B between two clawker trees, interleaved run by run on the same engine.

    .venv/bin/python bench/ab_apply.py --a main --b . --agents 20 --runs 4

Each tree is a git ref exported with `git archive` (or `.`: this worktree as it is, uncommitted
changes included) plus this worktree's build outputs (proto/gen, bpf/build). Each tree gets a
scope of its own (labels, network, state directory, so its own control plane started from its
own code through PYTHONPATH) and a first, untimed apply that builds its project image. Then the
runs alternate A, B / B, A / ...; before each, the scope's containers, volumes and network are
removed. Then, with `--starts K`, each scope's first agent is stopped and started K times
(alternating trees), timed from `docker start` until that tree's CP recorded the start Ready
(read from its registry, as bench/start_ready.py does). It prints, per tree, the median wall
time and the median of each `--profile` phase (critical path) and summed figure, the median
start → Ready with the CP's share, the ratio B / A of each, and the load average before and
after. Everything either scope made is removed at the end. On a shared host only the ratios
mean something: the absolute seconds depend on what else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.apply_cold import breakdown
from bench.fleet import Fleet
from bench.isolation import REPO, BenchError, BenchScope, clawker_argv
from bench.measuring import time_command
from bench.start_ready import _wait
from reconciler.controlplane.registry import Registry


def export_tree(ref: str, into: Path) -> Path:
    """`ref` as a directory clawker can run from: `.` is this worktree itself."""
    if ref == ".":
        return REPO
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    # Its own protocol modules and eBPF objects, from its own sources: a copy of this tree's
    # would run one tree's code against the other's wire format or map layout.
    subprocess.run([sys.executable, str(into / "scripts" / "gen_proto.py")], check=True)
    subprocess.run(["make", "-s", "-C", str(into), "bpf"], check=True)
    return into


@dataclass(frozen=True)
class Contender:
    """One tree of an A/B run: its code, its own scope and the fleet its spec declares."""

    tree: Path
    scope: BenchScope
    fleet: Fleet
    spec: Path

    def env(self) -> dict[str, str]:
        """clawker's environment in this contender's scope, running this contender's code."""
        return self.scope.clawker_env() | {"PYTHONPATH": str(self.tree)}


def prepare_contenders(
    refs: dict[str, str], root: Path, agents: int, prefix: str
) -> dict[str, Contender]:
    """Each labelled git ref exported under `root`, with a scope and a fleet of `agents` of its
    own (project `<prefix><run id>`), its spec written."""
    made: dict[str, Contender] = {}
    for label, ref in refs.items():
        tree = export_tree(ref, root / label.lower())
        scope = BenchScope.new()
        ws = root / f"ws-{label}"
        ws.mkdir()
        fleet = Fleet(f"{prefix}{scope.run_id.removeprefix('bench-')}", agents, ws, scope)
        spec = root / f"agents-{label}.yaml"
        spec.write_text(fleet.clawker_spec())
        made[label] = Contender(tree, scope, fleet, spec)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default="main", help="git ref of the baseline (default main)")
    parser.add_argument("--b", default=".", help="git ref of the contender (default: this tree)")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--starts", type=int, default=0, help="start → Ready runs per tree")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="clawker-ab-") as tmp:
        root = Path(tmp)
        made = prepare_contenders({"A": args.a, "B": args.b}, root, args.agents, "b")
        trees = {label: c.tree for label, c in made.items()}
        scopes = {label: c.scope for label, c in made.items()}
        specs = {label: c.spec for label, c in made.items()}
        names = {label: c.fleet.container_name(c.fleet.agents[0]) for label, c in made.items()}

        def apply(label: str) -> tuple[float, dict[str, Any]]:
            profile = root / f"profile-{label}.json"
            env = made[label].env()
            argv = clawker_argv("apply", "-f", str(specs[label]), "-y", "--profile", str(profile))
            wall = time_command(argv, env=env, cwd=trees[label])
            return wall, json.loads(profile.read_text())

        profiles: dict[str, list[tuple[float, dict[str, Any]]]] = {k: [] for k in trees}
        starts: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
        try:
            for label in trees:
                print(f"{label}: first, untimed apply ({args.a if label == 'A' else args.b})")
                apply(label)
            for i in range(args.runs):
                for label in ("A", "B") if i % 2 == 0 else ("B", "A"):
                    scopes[label].remove_runtime_objects()
                    profiles[label].append(apply(label))
                    print(f"run {i + 1} {label}: {profiles[label][-1][0]:.2f}s", flush=True)
            for i in range(args.starts):
                for label in ("A", "B") if i % 2 == 0 else ("B", "A"):
                    starts[label].append(start_ready(scopes[label], names[label]))
                    print(f"start {i + 1} {label}: {starts[label][-1]['ready']:.3f}s", flush=True)
        finally:
            for scope in scopes.values():
                try:
                    scope.remove_everything()
                except BenchError as exc:
                    print(f"cleanup: {exc}", file=sys.stderr)
    load_after = os.getloadavg()
    report(args, profiles, starts, load_before, load_after)


def start_ready(scope: BenchScope, name: str) -> dict[str, float]:
    """Stop `name`, start it, wait until the scope's CP recorded this start Ready."""
    api = docker.APIClient(version="auto")
    cid = api.inspect_container(name)["Id"]
    registry = Registry(scope.state_dir / "registry.sqlite")
    try:
        api.stop(cid, timeout=1)
        t0 = time.perf_counter()
        api.start(cid)
        started = time.perf_counter() - t0
        started_at = api.inspect_container(cid)["State"]["StartedAt"]

        def ready() -> bool:
            status = registry.status(cid)
            return bool(status and status.started_at == started_at and status.phase == "ready")

        _wait(ready, 60, f"Ready of {name}")
        seconds = time.perf_counter() - t0
        status = registry.status(cid)
        assert status is not None
        timings = {k: float(v) for k, v in status.timings.items()}
        return {"ready": seconds, "docker start": started, **timings}
    finally:
        registry.close()


def report(
    args: argparse.Namespace,
    profiles: dict[str, list[tuple[float, dict[str, Any]]]],
    starts: dict[str, list[dict[str, float]]],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    walls = {k: statistics.median(w for w, _ in v) for k, v in profiles.items()}
    parts = {k: breakdown(v) for k, v in profiles.items()}
    rows: list[tuple[str, float, float]] = [("wall (command)", walls["A"], walls["B"])]
    for section in ("critical_path", "summed"):
        names = list(dict.fromkeys([*parts["A"][section], *parts["B"][section]]))
        for name in names:
            a, b = parts["A"][section].get(name, 0.0), parts["B"][section].get(name, 0.0)
            if a or b:
                rows.append((f"{section}: {name}", a, b))
    if starts["A"] and starts["B"]:
        for key in ("ready", "docker start", "enrol", "dial", "bridge", "session"):
            a = statistics.median(s.get(key, 0.0) for s in starts["A"])
            b = statistics.median(s.get(key, 0.0) for s in starts["B"])
            rows.append((f"start → Ready: {key}", a, b))
    print(
        f"\nA = {args.a}, B = {args.b}; {args.agents} agents, {args.runs} runs each, interleaved;"
        f" load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print("| median (s) | A | B | B / A |\n|---|---:|---:|---:|")
    for name, a, b in rows:
        ratio = f"{b / a:.2f}" if a > 0.0005 else ""
        print(f"| {name} | {a:.3f} | {b:.3f} | {ratio} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "a": args.a,
                    "b": args.b,
                    "agents": args.agents,
                    "runs": args.runs,
                    "loadavg_before": load_before,
                    "loadavg_after": load_after,
                    "walls": {k: [w for w, _ in v] for k, v in profiles.items()},
                    "starts": starts,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
