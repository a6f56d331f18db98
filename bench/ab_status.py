"""A/B of the control plane's `status` answer: the same fleet, two trees' CPs in turn.

    .venv/bin/python bench/ab_status.py --a /work/main --b . --agents 50 --rounds 2

One scope; tree B applies `--agents` agents. Then, `--rounds` times, A's CP and then B's is
started on that scope (`controlplane down`, then the tree's own `controlplane up`); once it is
idle, it times the `status` API call for every agent container (as `get agents` makes it: with
FirewallEnrolled) ten times, each followed at once by `runtime_state` (timed too: it runs
while the passes that `status` triggered do), then `clawker get agents -f spec -o json` of that
tree three times, waiting for the CP to be idle again after each (the call also triggers a pass
per container).
Each tree needs its own `make setup`. Everything the scope made is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker

from bench.fleet import Fleet
from bench.isolation import BenchError, BenchScope
from reconciler.controlplane.api.client import ApiError, ControlPlaneClient


def _cli(tree: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(tree / ".venv" / "bin" / "clawker"), *args],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(
            f"{tree}: clawker {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-2000:]}"
        )
    return proc


def _idle(client: ControlPlaneClient, timeout: float = 120.0) -> None:
    """Until the CP is not driving any pass, twice a second apart."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not client.ping().busy:
                time.sleep(1.0)
                if not client.ping().busy:
                    return
        except ApiError:
            pass
        time.sleep(0.2)
    raise BenchError(f"the control plane was still busy after {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="tree A (its own .venv)")
    parser.add_argument("--b", type=Path, required=True, help="tree B, which applies the fleet")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    api = docker.APIClient(version="auto")
    scope = BenchScope.new()
    env = scope.clawker_env()
    timings: dict[str, dict[str, list[float]]] = {
        k: {"status": [], "after": [], "get": []} for k in trees
    }
    loads = [os.getloadavg()[0]]
    try:
        with tempfile.TemporaryDirectory(prefix="clawker-ab-status-") as tmp:
            root = Path(tmp).resolve()
            (root / "ws").mkdir()
            project = f"s{scope.run_id.removeprefix('bench-')}"
            fleet = Fleet(project, args.agents, root / "ws", scope)
            spec = root / "agents.yaml"
            spec.write_text(fleet.clawker_spec())
            _cli(trees["B"], env, "apply", "-f", str(spec), "-y")
            selector = [scope.label_selector, "dev.clawker.purpose=agent"]
            ids = [c["Id"] for c in api.containers(filters={"label": selector})]
            if len(ids) != args.agents:
                raise BenchError(f"{len(ids)} agent containers running, not {args.agents}")
            client = ControlPlaneClient(scope.state_dir / "controlplane.sock", timeout=60)
            for round_ in range(args.rounds):
                for name, tree in trees.items():
                    scope.stop_controlplane()
                    _cli(tree, env, "controlplane", "up")
                    _idle(client)
                    for _ in range(10):
                        began = time.perf_counter()
                        reports = client.start_reports(ids)
                        timings[name]["status"].append(time.perf_counter() - began)
                        began = time.perf_counter()
                        client.runtime_state()  # what `get agents` asks next
                        timings[name]["after"].append(time.perf_counter() - began)
                        if sum(r.firewall_enrolled for r in reports.values()) != len(ids):
                            raise BenchError(f"{name}: not every agent FirewallEnrolled")
                        _idle(client)
                    for _ in range(3):
                        began = time.perf_counter()
                        _cli(tree, env, "get", "agents", "-f", str(spec), "-o", "json")
                        timings[name]["get"].append(time.perf_counter() - began)
                        _idle(client)
                    loads.append(os.getloadavg()[0])
                    print(f"round {round_ + 1}, {name}: load {loads[-1]:.2f}", file=sys.stderr)
    finally:
        scope.stop_controlplane()
        scope.remove_everything()
    print(f"{args.agents} agents, load average {min(loads):.1f}–{max(loads):.1f}")
    for name, tree in trees.items():
        status, get = timings[name]["status"], timings[name]["get"]
        after = timings[name]["after"]
        print(
            f"{name} ({tree}): status call median {statistics.median(status) * 1000:.1f} ms "
            f"(min {min(status) * 1000:.1f}, n={len(status)}); runtime_state right after "
            f"{statistics.median(after) * 1000:.1f} ms; get agents median "
            f"{statistics.median(get):.3f} s (min {min(get):.3f}, n={len(get)})"
        )


if __name__ == "__main__":
    main()
