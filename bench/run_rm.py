"""`clawker run --rm -- true` against `docker run --rm IMAGE true` of the same image.

The project image is built once (untimed, by a first `clawker run`). Each run then times, in
alternating order, the whole `clawker run --rm --agent x @ -- true` command (a new agent each
time: plan, volumes on the first run only, create, bootstrap, start, the control plane's steps,
the CMD, the exit code, auto-remove) and `docker run --rm` of the same image with entrypoint
`true` (no clawkerd, no control plane). The phase shares come from the durations the boot log
itself prints (plan, host phases, clawkerd's steps), divided by the run's wall time; the rest is
start-up, the control plane's dial, the CMD, the exit and Docker's auto-remove.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from bench.isolation import REPO, BenchError, BenchScope, clawker_argv
from bench.measuring import Ratio, Series, interleaved
from bench.reporting import ScenarioResult
from reconciler.docker.engine import DockerEngine
from reconciler.settings import settings_from_env

__all__ = ["run"]

CLAWKER = "clawker run --rm -- true"
DOCKER = "docker run --rm true"

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {{name: {project}}}
spec:
  workspace: {{path: {workspace}}}
  build: {{harness: none}}
"""

# "✓ container    clawker.p.x 0.61s" / "✓ git-setup 0.02s": a name and a duration.
_TIMED_LINE = re.compile(r"^[✓✗] (\S+)\s.*?(\d+\.\d+)s\s*$")


def _phases(stderr: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in stderr.replace("\r", "\n").splitlines():
        match = _TIMED_LINE.match(line.strip())
        if match:
            found[match.group(1)] = found.get(match.group(1), 0.0) + float(match.group(2))
    return found


def run(scope: BenchScope, *, runs: int, agents: int, log: Callable[[str], None]) -> ScenarioResult:
    del agents  # one agent per run: this measures sitting down at one
    api = docker.APIClient(version="auto")
    engine = DockerEngine(api, scope=settings_from_env(scope.clawker_env()))
    project = f"r{scope.run_id.removeprefix('bench-')}"
    image = f"clawker-{project}:default"
    env = scope.clawker_env()
    series: dict[str, list[float]] = {CLAWKER: [], DOCKER: []}
    shares: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="clawker-bench-") as tmp:
        spec = Path(tmp) / "clawker.yaml"
        (Path(tmp) / "ws").mkdir()
        spec.write_text(SPEC.format(project=project, workspace=Path(tmp) / "ws"))

        def clawker_run(i: int) -> tuple[float, str]:
            argv = clawker_argv("run", "--rm", "-f", str(spec), "--agent", f"x{i}", "@")
            t0 = time.perf_counter()
            proc = subprocess.run(
                [*argv, "--", "true"],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            )
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise BenchError(f"clawker run exited {proc.returncode}\n{proc.stderr[-3000:]}")
            return seconds, proc.stderr

        log("run_rm: building the project image with a first run (untimed)")
        clawker_run(0)
        for i in range(1, runs + 1):
            for name in interleaved([CLAWKER, DOCKER], i):
                if name == CLAWKER:
                    seconds, stderr = clawker_run(i)
                    for phase, took in _phases(stderr).items():
                        shares.setdefault(phase, []).append(took / seconds)
                else:
                    t0 = time.perf_counter()
                    container = api.create_container(
                        image,
                        entrypoint=["true"],
                        labels=scope.labels("container"),
                        host_config=api.create_host_config(auto_remove=True),
                    )["Id"]
                    # As `docker run --rm`: the wait is registered before the start (a wait
                    # asked after a fast exit can miss the removal and block forever).
                    removed = engine.begin_wait(container, "removed")
                    api.start(container)
                    removed()
                    seconds = time.perf_counter() - t0
                series[name].append(seconds)
            log(f"run_rm: run {i}/{runs}: clawker {series[CLAWKER][-1]:.3f}s")
    result = {
        CLAWKER: Series(CLAWKER, "the whole `clawker run --rm --agent xN @ -- true`", ()),
        DOCKER: Series(DOCKER, "create (auto-remove), start, wait until removed: same image", ()),
    }
    result = {n: Series(n, s.what, tuple(series[n])) for n, s in result.items()}
    medians = {phase: round(100 * statistics.median(v), 1) for phase, v in sorted(shares.items())}
    medians["rest (start-up, dial, CMD, exit, auto-remove)"] = round(100 - sum(medians.values()), 1)
    return ScenarioResult(
        scenario="run_rm",
        title=f"clawker run --rm vs docker run --rm, {runs} runs",
        command=f".venv/bin/python bench/run.py --only run_rm --runs {runs}",
        parameters={"runs": runs},
        series=tuple(result.values()),
        ratios=(Ratio.of(result, CLAWKER, DOCKER),),
        notes={"phase share of a clawker run (median, % of its wall time)": medians},
    )
