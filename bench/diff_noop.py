"""No-op diff: how long `clawker diff` takes when N agents already match their spec.

The agents are applied once, untimed. Then each run times, in a rotated order: the CLI end to
end; the CLI's start-up alone (importing `cli.main`); and, in this process, loading the spec and
`prepare_apply` (observe + plan: what `diff` does between start-up and rendering), split into the
time spent waiting on Docker and the rest; loading is timed both parsing the YAML and with the
parse cache warm, as the CLI runs it. The floors: a fresh `python` importing docker-py and
making observe's four lists (the issue's), the docker CLI listing the same containers, and
docker-py making one list call.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import docker

from bench.fleet import Fleet
from bench.isolation import REPO, BenchError, BenchScope, clawker_argv, scoped_environ
from bench.measuring import (
    Ratio,
    Series,
    interleaved,
    output_tails,
    run_command,
    time_call,
    time_command,
)
from bench.reporting import ScenarioResult
from bench.scaling import floor_program
from reconciler.docker.engine import DockerEngine, DockerPort
from reconciler.loop.converge import prepare_apply
from reconciler.settings import settings_from_env
from specs import load_specs

__all__ = ["run"]

DIFF = "clawker diff (CLI)"
STARTUP = "CLI start-up (import cli.main)"
LOAD = "load_specs (in-process)"
LOAD_CACHED = "load_specs, parse cached (as the CLI)"
PREPARE = "prepare_apply (in-process)"
WAITING = "  waiting on Docker"
OWN_WORK = "  the rest (plan)"
DOCKER_PS = "docker ps -a --filter (CLI)"
FLOOR = "floor: python + docker-py + 4 lists"
RAW_LIST = "docker-py: 1 list call"

_WHAT = {
    DIFF: "`clawker diff -f spec` in a subprocess, exit 0 (no changes)",
    STARTUP: "`python -c 'import cli.main'` in a subprocess: interpreter and imports",
    LOAD: "specs.load_specs: read, validate and merge the YAML",
    LOAD_CACHED: "the same with a warm parse cache (cache_dir), as `clawker diff` runs it",
    PREPARE: "reconciler.loop.converge.prepare_apply with a DockerEngine: observe + plan",
    WAITING: "inside prepare_apply: wall time with a Docker port call in flight",
    OWN_WORK: "inside prepare_apply: everything else (grouping, hashing, planning)",
    DOCKER_PS: "`docker ps -a -q` filtered by the same three labels, in a subprocess",
    RAW_LIST: "one label-filtered containers(all=True) call, bare docker-py",
    FLOOR: "a fresh `python` importing docker-py and making observe's 4 label-filtered lists",
}


class TimedPort:
    """Forwards to a DockerEngine and adds up the wall time during which at least one of its
    calls is in flight (observe makes its four lists side by side: their sum would count the
    overlap twice)."""

    def __init__(self, inner: DockerEngine) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._in_flight = 0
        self._since = 0.0
        self.seconds = 0.0
        self.calls: list[str] = []

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self._in_flight == 0:
                    self._since = time.perf_counter()
                self._in_flight += 1
            try:
                return method(*args, **kwargs)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    if self._in_flight == 0:
                        self.seconds += time.perf_counter() - self._since
                    self.calls.append(name)

        return timed


def _not_running(api: docker.APIClient, scope: BenchScope, shown: int = 5) -> str:
    """The scope's containers that are not running: state, exit code and the last log lines of
    the first `shown` of them."""
    every = api.containers(all=True, filters={"label": [scope.label_selector]})
    lines = [f"--- {len(every)} containers of the scope exist (running or not)"]
    others = [c for c in every if c["State"] != "running"]
    for c in others[:shown]:
        logs = api.logs(c["Id"], tail=5).decode(errors="replace").strip()
        lines.append(f"--- {c['Names'][0].lstrip('/')}: {c['Status']}\n{logs}")
    if len(others) > shown:
        lines.append(f"--- and {len(others) - shown} more not running")
    return "".join(f"{line}\n" for line in lines)


def run(scope: BenchScope, *, runs: int, agents: int, log: Callable[[str], None]) -> ScenarioResult:
    api = docker.APIClient(version="auto")
    with tempfile.TemporaryDirectory(prefix="clawker-bench-") as tmp:
        root = Path(tmp).resolve()
        (root / "ws").mkdir()
        fleet = Fleet(f"b{scope.run_id.removeprefix('bench-')}", agents, root / "ws", scope)
        spec = root / "agents.yaml"
        spec.write_text(fleet.clawker_spec())
        env = scope.clawker_env()

        log(f"diff_noop: applying {agents} agents once (untimed)")
        setup_seconds, setup = run_command(clawker_argv("apply", "-f", str(spec), "-y"), env=env)
        running = scope.running_containers(api)
        if running != agents:
            raise BenchError(
                f"the setup apply ({setup_seconds:.1f} s, exit 0) left {running} of {agents}"
                f" containers running\n{_not_running(api, scope)}{output_tails(setup)}"
            )

        filters = [f"{k}={v}" for k, v in scope.labels("container").items()]
        docker_ps = ["docker", "ps", "-a", "-q", *(f"--filter=label={f}" for f in filters)]
        samples: dict[str, list[float]] = {name: [] for name in _WHAT}
        with scoped_environ(env):
            settings = settings_from_env()
            port = TimedPort(DockerEngine(api, scope=settings))
            cache = root / "spec-cache"
            specset = load_specs([str(spec)], cache_dir=str(cache))  # warms the cache
            if not prepare_apply(cast(DockerPort, port), specset, settings=settings).plan.empty:
                raise BenchError("the plan after apply is not empty: the diff would not be a no-op")

            def prepare() -> None:
                port.reset()
                seconds, _ = time_call(
                    lambda: prepare_apply(cast(DockerPort, port), specset, settings=settings)
                )
                samples[PREPARE].append(seconds)
                samples[WAITING].append(port.seconds)
                samples[OWN_WORK].append(seconds - port.seconds)

            contenders: dict[str, Callable[[], None]] = {
                DIFF: lambda: samples[DIFF].append(
                    time_command(clawker_argv("diff", "-f", str(spec)), env=env)
                ),
                STARTUP: lambda: samples[STARTUP].append(
                    time_command([sys.executable, "-c", "import cli.main"], cwd=REPO)
                ),
                DOCKER_PS: lambda: samples[DOCKER_PS].append(time_command(docker_ps)),
                FLOOR: lambda: samples[FLOOR].append(
                    time_command([sys.executable, "-c", floor_program(scope.label_selector)])
                ),
                LOAD: lambda: samples[LOAD].append(time_call(lambda: load_specs([str(spec)]))[0]),
                LOAD_CACHED: lambda: samples[LOAD_CACHED].append(
                    time_call(lambda: load_specs([str(spec)], cache_dir=str(cache)))[0]
                ),
                PREPARE: prepare,
                RAW_LIST: lambda: samples[RAW_LIST].append(
                    time_call(lambda: api.containers(all=True, filters={"label": filters}))[0]
                ),
            }
            for i in range(runs):
                for name in interleaved(list(contenders), i):
                    contenders[name]()
                log(f"diff_noop run {i + 1}/{runs}: {DIFF} {samples[DIFF][-1]:.3f}s")

    series = {name: Series(name, what, tuple(samples[name])) for name, what in _WHAT.items()}
    return ScenarioResult(
        scenario="diff_noop",
        title=f"no-op diff of {agents} agents, {runs} runs (seconds)",
        command=f".venv/bin/python bench/run.py --only diff_noop --runs {runs} --agents {agents}",
        parameters={"runs": runs, "agents": agents},
        series=tuple(series.values()),
        ratios=(
            Ratio.of(series, DIFF, FLOOR),
            Ratio.of(series, DIFF, DOCKER_PS),
            Ratio.of(series, PREPARE, RAW_LIST),
            Ratio.of(series, STARTUP, DIFF),
        ),
        notes={"setup_apply_s": round(setup_seconds, 3), "docker_calls_per_diff": port.calls},
    )
