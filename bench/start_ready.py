"""Container start → Ready: how long the control plane's per-start path adds to a `docker start`.

One agent is applied (untimed). Each run stops it (untimed), then times `docker start` until the
control plane has recorded that start as Ready (firewall enrol, dial clawkerd, Session steps,
AgentReady). The registry is read directly, not through the CP's API, because asking the API
about a container also enqueues it: the measured path is the Docker `start` event's. The CP's own
timings (enrol, dial, session) split its share. Two baselines, in the same script, interleaved
run by run: a bare `docker start` of a container of the same image whose entrypoint is `sleep`
(no clawkerd, nothing waits) on the default bridge, and the same container attached to the
agents' own network (the scope's user-defined network), which is what separates dockerd's
network setup from what clawker adds to the container (mounts, cgroup parent, capabilities).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from bench.isolation import REPO, BenchError, BenchScope, clawker_argv
from bench.measuring import Ratio, Series, time_command
from bench.reporting import ScenarioResult
from reconciler.controlplane.registry import Registry

__all__ = ["run"]

READY = "start → Ready"
DOCKER = "docker start (agent)"
BARE = "docker start (bare)"
BARE_NET = "docker start (bare, agents' network)"

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {{name: {project}}}
spec:
  workspace: {{path: {workspace}}}
  build: {{harness: none}}
  agent: {{pre_run: "true"}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {{name: dev, project: {project}}}
spec: {{command: [sleep, infinity]}}
"""


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not happen within {timeout}s")
        time.sleep(0.002)


def run(scope: BenchScope, *, runs: int, agents: int, log: Callable[[str], None]) -> ScenarioResult:
    del agents  # one agent: this measures a start, not a fleet
    api = docker.APIClient(version="auto")
    project = f"s{scope.run_id.removeprefix('bench-')}"
    name = f"clawker.{project}.dev"
    with tempfile.TemporaryDirectory(prefix="clawker-bench-") as tmp:
        spec = Path(tmp) / "agents.yaml"
        (Path(tmp) / "ws").mkdir()
        spec.write_text(SPEC.format(project=project, workspace=Path(tmp) / "ws"))
        log("start_ready: applying one agent (untimed)")
        time_command(
            clawker_argv("apply", "-f", str(spec), "-y"), env=scope.clawker_env(), cwd=REPO
        )
        image = api.inspect_container(name)["Config"]["Image"]
        networks = api.inspect_container(name)["NetworkSettings"]["Networks"]
        if scope.network not in networks:
            raise BenchError(f"{name} is not on {scope.network} (it is on {sorted(networks)})")
        bare = api.create_container(
            image,
            ["infinity"],
            entrypoint=["sleep"],
            name=f"{project}-bare",
            labels=scope.labels("container"),
        )["Id"]
        bare_net = api.create_container(
            image,
            ["infinity"],
            entrypoint=["sleep"],
            name=f"{project}-bare-net",
            labels=scope.labels("container"),
            host_config=api.create_host_config(network_mode=scope.network),
        )["Id"]
        registry = Registry(scope.state_dir / "registry.sqlite")
        series: dict[str, list[float]] = {READY: [], DOCKER: [], BARE: [], BARE_NET: []}
        shares: dict[str, list[float]] = {"enrol": [], "dial": [], "bridge": [], "session": []}
        # A restart keeps the id: the wait below reads only the registry, so the benchmark
        # puts no inspects on dockerd while the CP is driving the start it measures.
        cid = api.inspect_container(name)["Id"]
        try:
            for i in range(runs):
                api.stop(name, timeout=1)
                t0 = time.perf_counter()
                api.start(name)
                t_started = time.perf_counter()
                started_at = api.inspect_container(name)["State"]["StartedAt"]

                def ready(started_at: str = started_at) -> bool:
                    status = registry.status(cid)
                    return bool(
                        status and status.started_at == started_at and status.phase == "ready"
                    )

                _wait(ready, 60, f"Ready of {name} (run {i + 1})")
                series[READY].append(time.perf_counter() - t0)
                series[DOCKER].append(t_started - t0)
                status = registry.status(cid)
                assert status is not None
                for key, samples in shares.items():
                    samples.append(float(status.timings.get(key, 0.0)))

                # The two baselines alternate which goes first, so neither always follows
                # the agent's start.
                baselines = ((BARE, bare), (BARE_NET, bare_net))
                for key, container in baselines if i % 2 == 0 else baselines[::-1]:
                    t0 = time.perf_counter()
                    api.start(container)
                    series[key].append(time.perf_counter() - t0)
                    api.stop(container, timeout=0)
                log(f"start_ready: run {i + 1}/{runs}: {series[READY][-1]:.3f}s")
        finally:
            registry.close()
    result = {
        n: Series(n, what, tuple(series[n]))
        for n, what in (
            (READY, "docker start until the CP recorded this start Ready (event path)"),
            (DOCKER, "the `docker start` call of the agent container alone"),
            (BARE, "`docker start` of the same image with entrypoint sleep (no clawkerd)"),
            (BARE_NET, "the same bare container, on the agents' network instead of the default"),
        )
    }
    cp = {k: Series(f"CP {k}", f"CP share: {k}", tuple(v)) for k, v in shares.items()}
    return ScenarioResult(
        scenario="start_ready",
        title=f"container start → Ready, {runs} runs",
        command=f".venv/bin/python bench/run.py --only start_ready --runs {runs}",
        parameters={"runs": runs},
        series=(*result.values(), *cp.values()),
        ratios=(
            Ratio.of(result, READY, BARE),
            Ratio.of(result, DOCKER, BARE),
            Ratio.of(result, READY, BARE_NET),
            Ratio.of(result, DOCKER, BARE_NET),
            Ratio.of(result, BARE_NET, BARE),
        ),
    )
