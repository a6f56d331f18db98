"""Watch mode latencies, against one running `clawker apply --watch` process.

    .venv/bin/python bench/watch.py                 # 10 runs of each
    .venv/bin/python bench/watch.py --runs 3 --no-write

Timed, on the real engine, with the watcher's own output as the finish line (each line is
timestamped the moment this process reads it from the watcher's pipe):
- spec saved -> agent recreated and Ready: from the atomic replace of the spec file (an env
  change of one agent, as an editor saves it) to the watcher's `agent/<key> recreated` line,
  which it prints once the control plane reports the new container Ready. Includes the file
  watcher, the debounce (watchfiles' 20 ms of quiet), re-validation, the plan, the replace and
  readiness.
- Docker event -> reconcile started: from the `die` event of a `docker kill` (Docker's own
  event timestamp) to the header of the pass it triggers, printed once that pass has re-listed
  Docker and planned the start.
- Docker event -> Ready again: from the same event to the `agent/<key> configured` line.
Everything made carries dev.clawker.test=bench-<id> and is removed at the end.

The watcher runs with `--profile`, one JSON line per pass; the breakdown (logged, and in the
results file's notes) is the median of each phase of the measured passes, from the bench's own
start (the save, Docker's event time) to the moment it read the line it waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Run as a script (`python bench/watch.py`): make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker

from bench.isolation import REPO, BenchError, BenchScope, clawker_argv
from bench.measuring import Series
from bench.reporting import ScenarioResult, render_table, write_json
from reconciler.controller.sources import Debouncer
from tests.cleanup import TEST_LABEL

__all__ = ["run"]

RESULTS = Path(__file__).resolve().parent / "results"

SPEC_TO_READY = "spec saved -> Ready"
EVENT_TO_PASS = "docker event -> pass"
EVENT_TO_READY = "docker event -> Ready"

WHAT = {
    SPEC_TO_READY: "spec file replaced (env of one agent) -> `agent/<key> recreated` (Ready)",
    EVENT_TO_PASS: "`die` event of `docker kill` (Docker's timestamp) -> pass header printed",
    EVENT_TO_READY: "`die` event of `docker kill` -> `agent/<key> configured` (Ready)",
}

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {{name: {project}}}
spec:
  workspace: {{path: ./ws, mode: bind}}
  build: {{harness: none}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {{name: edited, project: {project}}}
spec:
  command: [sleep, infinity]
  agent: {{env: {{RUN: "{run}"}}}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {{name: killed, project: {project}}}
spec:
  command: [sleep, infinity]
"""


class _Watch:
    """The watcher process and its output lines, each with the wall-clock time it was read."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append((time.time(), line.rstrip("\n")))
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait_for(self, pattern: str, after: int, timeout: float = 180.0) -> tuple[int, float]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while time.monotonic() < deadline and self.proc.poll() is None:
                for i in range(after, len(self.lines)):
                    if regex.search(self.lines[i][1]):
                        return i, self.lines[i][0]
                self._cond.wait(0.5)
            tail = "\n".join(line for _, line in self.lines[-40:])
        raise BenchError(f"the watcher printed no {pattern!r} within {timeout:.0f}s\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM by its own pid: watch stops and exits 0
            self.proc.wait(60)


def _die_event_time(api: docker.APIClient, scope: BenchScope, name: str) -> Callable[[], float]:
    """Subscribe now; the returned call blocks until `name` dies and gives Docker's timestamp."""
    events = api.events(
        decode=True,
        filters={"type": ["container"], "event": ["die"], "label": [scope.label_selector]},
    )

    def wait() -> float:
        try:
            for event in events:
                if event.get("Actor", {}).get("Attributes", {}).get("name") == name:
                    return int(event["timeNano"]) / 1e9
        finally:
            events.close()
        raise BenchError(f"the event stream ended before {name} died")

    return wait


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # what editors do on save


# The phases of a pass, in the order they run (bench/watch.py's breakdown; reconciler/watch.py
# and prepare_apply / apply_plan name them).
_PHASES = (
    "load specs",
    "event",
    "queue",
    "apply lock",
    "ensure control plane",
    "image inputs",
    "observe host",
    "observe control plane",
    "observe",
    "settle wait",  # inside "observe", before the lists
    "observe bases",  # only for an image the pass builds
    "plan",
    "pass header",
    "execute",
    "ready",
    "pass result",
)


def _phases(data: dict[str, Any], began: float, printed: float, until: str) -> dict[str, float]:
    """One pass's phases, from `began` (the bench's clock: the save, the event) to `printed`
    (when the bench read its line), which comes after the span `until` ends."""
    totals: dict[str, float] = data["totals"]
    spans = {s["name"]: s for s in data["spans"]}
    out = {"source saw it": data["origin_wall"] - began}
    for phase in _PHASES:
        if phase in totals:
            out[f"  {phase}" if phase == "settle wait" else phase] = totals[phase]
        if phase == until:
            break
    if "settle wait" in spans and "observe" in spans:  # the lists after it
        out["  the four lists (and fills)"] = spans["observe"]["end"] - spans["settle wait"]["end"]
    if until != "pass header":
        for span in sorted((s for s in data["spans"] if s["name"].startswith("step:")), key=_start):
            step = f"  {span['name']}"  # by action: each run's container has its own id
            out[step] = out.get(step, 0.0) + span["end"] - span["start"]
    end = spans[until]["end"] if until in spans else 0.0
    out["to the bench's read"] = printed - (data["origin_wall"] + end)
    return out


def _start(span: dict[str, Any]) -> float:
    return float(span["start"])


def _passes(profile: Path, key: str, cause: str) -> list[dict[str, Any]]:
    """The passes of `key` that printed a header, triggered by `cause`, in order."""
    if not profile.exists():
        return []
    found = []
    for line in profile.read_text().splitlines():
        data = json.loads(line)
        if data.get("pass") is None or data.get("keys") != [key]:
            continue
        if any(cause in t for t in data["triggers"]):
            found.append(data)
    return found


def _median_phases(rows: list[dict[str, float]]) -> dict[str, float]:
    names = list(dict.fromkeys(name for row in rows for name in row))
    return {n: round(statistics.median(r.get(n, 0.0) for r in rows), 4) for n in names}


def run(
    scope: BenchScope, *, runs: int, agents: int = 2, log: Callable[[str], None]
) -> ScenarioResult:
    """`agents` is fixed at 2 (one edited, one killed); accepted for bench/run.py's signature."""
    api = docker.APIClient(version="auto")
    project = f"w{scope.run_id.removeprefix('bench-')}"
    samples: dict[str, list[float]] = {name: [] for name in WHAT}
    with tempfile.TemporaryDirectory(prefix="clawker-bench-watch-") as tmp:
        root = Path(tmp).resolve()
        (root / "ws").mkdir()
        spec = root / "agents.yaml"
        spec.write_text(SPEC.format(project=project, run=0))
        profile = root / "profile.jsonl"
        log("watch: starting `clawker apply --watch` (first converge builds the image; untimed)")
        watch = _Watch(
            clawker_argv(
                "apply", "-f", str(spec), "--watch", "--resync", "600", "--profile", str(profile)
            ),
            scope.clawker_env(),
        )
        edits: list[tuple[float, float]] = []  # (saved, Ready line read), per run
        kills: list[tuple[float, float]] = []  # (event, header line read)
        try:
            watch.wait_for(r"watching .* and Docker events", 0, timeout=300)
            for i in range(1, runs + 1):
                mark = watch.mark()
                start = time.time()
                _write_atomically(spec, SPEC.format(project=project, run=i))
                _, done = watch.wait_for(rf"^agent/{project}/edited recreated$", mark)
                samples[SPEC_TO_READY].append(done - start)
                edits.append((start, done))

                name = f"clawker.{project}.killed"
                died_at = _die_event_time(api, scope, name)
                mark = watch.mark()
                api.kill(name)
                event_time = died_at()
                header, started = watch.wait_for(
                    rf"pass \d+: {project}/killed \(container died", mark
                )
                _, ready = watch.wait_for(rf"^agent/{project}/killed configured$", header)
                samples[EVENT_TO_PASS].append(started - event_time)
                kills.append((event_time, started))
                samples[EVENT_TO_READY].append(ready - event_time)
                log(
                    f"watch run {i}/{runs}: "
                    + "  ".join(f"{name} {samples[name][-1]:.3f}s" for name in WHAT)
                )
        finally:
            watch.stop()
        where = {
            SPEC_TO_READY: _median_phases(
                [
                    _phases(data, began, read, "pass result")
                    for data, (began, read) in zip(
                        _passes(profile, f"{project}/edited", "file changed"), edits, strict=False
                    )
                ]
            ),
            EVENT_TO_PASS: _median_phases(
                [
                    _phases(data, began, read, "pass header")
                    for data, (began, read) in zip(
                        _passes(profile, f"{project}/killed", "container died"), kills, strict=False
                    )
                ]
            ),
        }
    for name, phases in where.items():
        log(f"watch: {name}, median per phase (s):")
        for phase, seconds in phases.items():
            log(f"    {phase:<40} {seconds:.4f}")
    series = tuple(Series(name, WHAT[name], tuple(samples[name])) for name in WHAT)
    return ScenarioResult(
        scenario="watch",
        title=f"watch mode latencies, {runs} runs (seconds)",
        command=f".venv/bin/python bench/watch.py --runs {runs}",
        parameters={"runs": runs, "agents": 2},
        series=series,
        ratios=(),
        notes={"debounce_quiet_s": Debouncer().quiet, "resync_s": 600, "breakdown": where},
    )


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time watch mode's reaction to edits and drift.")
    parser.add_argument("--runs", type=int, default=10, help="runs of each (default 10)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}/")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    scope = BenchScope.new()
    _log(f"bench scope: {TEST_LABEL}={scope.run_id}")
    api = docker.APIClient(version="auto")
    host = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_engine": api.version().get("Version", "?"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    try:
        result = run(scope, runs=args.runs, log=_log)
    except BenchError as exc:
        _log(f"error: {exc}")
        return 1
    finally:
        removed = scope.remove_everything()
        _log(f"removed {len(removed)} objects labelled {TEST_LABEL}={scope.run_id}")
    print(render_table(result), flush=True)
    if not args.no_write:
        host["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
        _log(f"wrote {write_json(result, host, RESULTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
