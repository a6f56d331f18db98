"""`make bench`: run the benchmarks, print medians and ratios, write bench/results/*.json.

The firewall's figures come from `bench/firewall.py` on its own (it needs its own cgroup, pins
and test hosts); see bench/README.md.

    .venv/bin/python bench/run.py                          # every scenario, default runs
    .venv/bin/python bench/run.py --only diff_noop --runs 5

Everything made carries dev.clawker.test=bench-<id> and is removed at the end, even on error.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script (`python bench/run.py`): make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker
import docker.errors

from bench import api_relay, apply_cold, cp_rest, diff_noop, images, run_rm, start_ready, watch
from bench.isolation import IMAGE, BenchError, BenchScope
from bench.reporting import ScenarioResult, render_table, write_json

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Scenario:
    run: Callable[..., ScenarioResult]
    runs: int
    agents: int


SCENARIOS = {
    "apply_cold": Scenario(apply_cold.run, runs=5, agents=20),
    "diff_noop": Scenario(diff_noop.run, runs=20, agents=100),
    "start_ready": Scenario(start_ready.run, runs=20, agents=1),
    "images": Scenario(images.run, runs=3, agents=1),
    "watch": Scenario(watch.run, runs=10, agents=2),
    "run_rm": Scenario(run_rm.run, runs=10, agents=1),
    "api_relay": Scenario(api_relay.run, runs=20, agents=1),
    "cp_rest": Scenario(cp_rest.run, runs=3, agents=100),
}


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _host(api: docker.APIClient) -> dict[str, Any]:
    def output(*argv: str) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    repo = str(RESULTS.parent.parent)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "commit": output("git", "-C", repo, "rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted_changes": bool(
            output("git", "-C", repo, "status", "--porcelain", "--untracked-files=no")
        ),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_engine": api.version().get("Version", "?"),
        "docker_compose": output("docker-compose", "version", "--short") or "missing",
        "docker_py": docker.__version__,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "containers_on_engine_at_start": len(api.containers(all=True)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(sorted(SCENARIOS))}",
    )
    parser.add_argument("--runs", type=int, help="runs per scenario (default: 5 apply, 20 diff)")
    parser.add_argument("--agents", type=int, help="agents per scenario (default: 20 / 100)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}/*.json")
    args = parser.parse_args(argv)
    if (args.runs is not None and args.runs < 1) or (args.agents is not None and args.agents < 1):
        parser.error("--runs and --agents must be at least 1")

    try:
        api = docker.APIClient(version="auto")
        if not api.images(name=IMAGE, quiet=True):
            _log(f"error: image {IMAGE} is missing; run `make setup`")
            return 2
    except docker.errors.DockerException as exc:
        _log(f"error: no Docker engine answers ({exc}); run `make setup`")
        return 2
    scope = BenchScope.new()
    _log(f"bench scope: dev.clawker.test={scope.run_id}")
    try:
        for name in args.only or sorted(SCENARIOS):
            scenario = SCENARIOS[name]
            host = _host(api)
            result = scenario.run(
                scope,
                runs=args.runs or scenario.runs,
                agents=args.agents or scenario.agents,
                log=_log,
            )
            print(render_table(result), flush=True)
            if not args.no_write:
                host["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
                _log(f"wrote {write_json(result, host, RESULTS)}")
    except BenchError as exc:
        _log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _log("interrupted; removing what this run made")
        return 130
    finally:
        removed = scope.remove_everything()
        _log(f"removed {len(removed)} objects labelled dev.clawker.test={scope.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
