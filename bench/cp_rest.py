"""The control plane at rest: how much CPU it takes while N Ready agents do nothing.

The agents are applied once, untimed. Then each run reads the CP's CPU time (user + system,
/proc/PID/stat) over a window of WINDOW seconds in which nothing is asked of it (its Docker
event stream, its resync, the veth wall's resync and each agent's open socket bridge are all
that run), and over one `clawker get agents` asked more than ASK_INTERVAL after the last, so
that every agent's start is re-checked (the worst case of a terminal polling it). The CPU of
dockerd over the rest window is the yardstick: the engine's own cost of keeping N containers.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from bench.fleet import Fleet
from bench.isolation import BenchError, BenchScope, clawker_argv
from bench.measuring import Ratio, Series, output_tails, run_command
from bench.reporting import ScenarioResult
from reconciler.controlplane.runtime.controller import ASK_INTERVAL

__all__ = ["run"]

WINDOW = 30.0  # the CP's resync and the veth wall's both run every 30 s by default

REST = "CP CPU per 30 s at rest"
GET = "CP CPU of one get agents"
DOCKERD = "dockerd CPU per 30 s (same windows)"

_WHAT = {
    REST: f"CPU seconds of the CP process over {WINDOW:.0f} s with nothing asked of it",
    GET: f"CPU seconds of the CP while answering `get agents -o json` (> {ASK_INTERVAL:.0f} s "
    "after the last ask: every agent is re-checked)",
    DOCKERD: "CPU seconds of dockerd over the same rest windows",
}

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _dockerd_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "dockerd":
                    return int(entry.name)
            except OSError:
                continue
    raise BenchError("no dockerd process found")


def run(scope: BenchScope, *, runs: int, agents: int, log: Callable[[str], None]) -> ScenarioResult:
    api = docker.APIClient(version="auto")
    with tempfile.TemporaryDirectory(prefix="clawker-bench-") as tmp:
        root = Path(tmp).resolve()
        (root / "ws").mkdir()
        fleet = Fleet(f"r{scope.run_id.removeprefix('bench-')}", agents, root / "ws", scope)
        spec = root / "agents.yaml"
        spec.write_text(fleet.clawker_spec())
        env = scope.clawker_env()
        log(f"cp_rest: applying {agents} agents once (untimed)")
        seconds, setup = run_command(clawker_argv("apply", "-f", str(spec), "-y"), env=env)
        if scope.running_containers(api) != agents:
            raise BenchError(
                f"the setup apply ({seconds:.1f} s) did not start every agent\n"
                f"{output_tails(setup)}"
            )
        cp = int((scope.state_dir / "controlplane.pid").read_text())
        dockerd = _dockerd_pid()
        time.sleep(WINDOW)  # the sessions and the first resyncs are over
        samples: dict[str, list[float]] = {name: [] for name in _WHAT}
        get = clawker_argv("get", "agents", "-o", "json")
        for i in range(runs):
            cp0, d0 = _cpu(cp), _cpu(dockerd)
            time.sleep(WINDOW)
            samples[REST].append(_cpu(cp) - cp0)
            samples[DOCKERD].append(_cpu(dockerd) - d0)
            before = _cpu(cp)
            run_command(get, env=env)
            time.sleep(2.0)  # the passes the question queued
            samples[GET].append(_cpu(cp) - before - samples[REST][-1] * 2.0 / WINDOW)
            log(f"cp_rest run {i + 1}/{runs}: {REST} {samples[REST][-1]:.2f}s")
    series = {name: Series(name, what, tuple(samples[name])) for name, what in _WHAT.items()}
    return ScenarioResult(
        scenario="cp_rest",
        title=f"the control plane at rest with {agents} Ready agents, {runs} runs (CPU seconds)",
        command=f".venv/bin/python bench/run.py --only cp_rest --runs {runs} --agents {agents}",
        parameters={"runs": runs, "agents": agents},
        series=tuple(series.values()),
        ratios=(Ratio.of(series, REST, DOCKERD),),
        notes={"window_s": WINDOW, "ask_interval_s": ASK_INTERVAL},
    )
