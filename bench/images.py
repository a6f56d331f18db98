"""Image builds: the base image and a project image, cold and cached.

    .venv/bin/python bench/images.py                  # 3 cold runs, 5 cached runs
    .venv/bin/python bench/images.py --runs 1 --cached-runs 2 --no-write

Timed, in this process (what `clawker image base` / `clawker image build` call):
- base, cold: mmdebstrap from this host's apt sources + `docker import` (a new tag each run);
- base, cached: `clawker image base` (the CLI) when the image exists: it only looks it up;
- project image, cold: a build without Docker's layer cache, for `harness: none` and
  `harness: claude` (the host caches of wheels and the Claude Code binary are filled first,
  untimed: their one-time fetch is network-bound and reported once in the notes);
- project image, cached: the same build again with the layer cache (every step cached);
- project image, no-op: `ensure_project_image` on an up-to-date image (input hash only).
Project images are built FROM clawker-base:bookworm (`make setup`). Everything made carries
dev.clawker.test=bench-<id> and is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

# Run as a script (`python bench/images.py`): make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker
import docker.errors

from bench.isolation import IMAGE, REPO, BenchError, BenchScope, clawker_argv, scoped_environ
from bench.measuring import Ratio, Series, time_call, time_command
from bench.reporting import ScenarioResult, render_table, write_json
from reconciler.docker.engine import DockerEngine
from reconciler.images import build_project_image, ensure_project_image, image_inputs
from reconciler.images.base import build_base_image
from reconciler.images.cache import cache_root
from reconciler.images.harness import fetch_harness, harness_version
from reconciler.images.wheelhouse import fetch_wheelhouse
from reconciler.settings import settings_from_env
from specs import BuildSpec, DesiredAgent, ResolvedWorkspace, SourceRef
from tests.cleanup import TEST_LABEL

__all__ = ["run"]

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python bench/images.py"

BASE_COLD = "base image, cold (mmdebstrap + import)"
BASE_CACHED = "base image, cached (`image base`, exists)"
NONE_COLD = "project image harness=none, cold"
NONE_CACHED = "project image harness=none, cached"
CLAUDE_COLD = "project image harness=claude, cold"
CLAUDE_CACHED = "project image harness=claude, cached"
NOOP = "project image, no-op (up to date)"


def _agent(scope: BenchScope, harness: str) -> DesiredAgent:
    return DesiredAgent(
        project=f"{scope.run_id}-{harness}",
        name="dev",
        source=SourceRef("bench/images.py", 1, 1),
        workspace=ResolvedWorkspace(path=str(REPO)),
        build=BuildSpec(base_image=IMAGE, harness=harness),
    )


def _remove_images(scope: BenchScope) -> int:
    api = docker.APIClient(version="auto")
    images = api.images(filters={"label": [scope.label_selector]})
    for image in images:
        for ref in [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_image(ref)
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_image(image["Id"])
    return len(images)


def run(
    scope: BenchScope,
    *,
    runs: int,
    agents: int = 1,
    log: Callable[[str], None],
    cached_runs: int = 5,
) -> ScenarioResult:
    """Cold figures `runs` times (medians), cached ones `cached_runs` times."""
    del agents  # one project per harness; the figure is per image
    samples: dict[str, list[float]] = {
        name: []
        for name in (
            BASE_COLD,
            BASE_CACHED,
            NONE_COLD,
            NONE_CACHED,
            CLAUDE_COLD,
            CLAUDE_CACHED,
            NOOP,
        )
    }
    with scoped_environ(scope.clawker_env()):
        # Read once, as the CLI does, and handed to every call: the host caches filled here are
        # the ones the builds below read (Settings.cache_dir, Settings.harness_version).
        settings = settings_from_env()
        version = harness_version(settings)
        cache = cache_root(settings)
        notes: dict[str, object] = {"harness_version": version, "from": IMAGE}
        port = DockerEngine(scope=settings)
        if port.image_id(IMAGE) is None:
            raise BenchError(f"{IMAGE} is missing; run `make setup`")
        fetched: dict[str, float] = {}
        seconds, _ = time_call(partial(fetch_wheelhouse, cache))
        fetched["wheelhouse_s"] = round(seconds, 2)
        seconds, _ = time_call(partial(fetch_harness, version, cache))
        fetched["harness_s"] = round(seconds, 2)
        notes["host_cache_fill_s (0 when already cached)"] = fetched

        for i in range(runs):
            ref = f"clawker-base:{scope.run_id}-{i}"
            seconds, _ = time_call(partial(build_base_image, port, ref=ref))
            samples[BASE_COLD].append(seconds)
            log(f"  base cold #{i + 1}: {seconds:.1f}s")
        for _ in range(cached_runs):
            argv = clawker_argv("image", "base", "--tag", f"clawker-base:{scope.run_id}-0")
            samples[BASE_CACHED].append(time_command(argv, env=scope.clawker_env()))

        for harness, cold, cached in (
            ("none", NONE_COLD, NONE_CACHED),
            ("claude", CLAUDE_COLD, CLAUDE_CACHED),
        ):
            inputs = image_inputs(_agent(scope, harness), settings)
            for i in range(runs):
                seconds, _ = time_call(
                    partial(build_project_image, port, inputs, settings=settings, no_cache=True)
                )
                samples[cold].append(seconds)
                log(f"  {harness} cold #{i + 1}: {seconds:.1f}s")
            for _ in range(cached_runs):
                seconds, _ = time_call(
                    partial(build_project_image, port, inputs, settings=settings)
                )
                samples[cached].append(seconds)
            for _ in range(cached_runs):
                seconds, result = time_call(
                    partial(ensure_project_image, port, inputs, settings=settings)
                )
                if result.built:
                    raise BenchError(f"{inputs.ref} was rebuilt ({result.reason}): not a no-op")
                samples[NOOP].append(seconds)
        notes["images_removed"] = _remove_images(scope)

    what = {
        BASE_COLD: "build_base_image: mmdebstrap --variant=minbase + docker import, new tag",
        BASE_CACHED: "`clawker image base --tag <existing>`: CLI start-up + one inspect",
        NONE_COLD: "build_project_image(no_cache=True), harness none",
        NONE_CACHED: "build_project_image again, every layer cached",
        CLAUDE_COLD: "build_project_image(no_cache=True), harness claude (402 MB binary)",
        CLAUDE_CACHED: "build_project_image again, every layer cached",
        NOOP: "ensure_project_image on an up-to-date image: list images + input hash",
    }
    series = tuple(Series(name, what[name], tuple(values)) for name, values in samples.items())
    by_name = {s.name: s for s in series}
    ratios = (
        Ratio.of(by_name, BASE_CACHED, BASE_COLD),
        Ratio.of(by_name, NONE_CACHED, NONE_COLD),
        Ratio.of(by_name, CLAUDE_CACHED, CLAUDE_COLD),
        Ratio.of(by_name, NOOP, NONE_COLD),
    )
    return ScenarioResult(
        scenario="images",
        title=f"Image builds (cold: {runs} runs, cached: {cached_runs} runs)",
        command=f"{COMMAND} --runs {runs} --cached-runs {cached_runs}",
        parameters={"runs": runs, "cached_runs": cached_runs},
        series=series,
        ratios=ratios,
        notes=notes,
    )


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time base and project image builds.")
    parser.add_argument("--runs", type=int, default=3, help="cold runs (default 3)")
    parser.add_argument("--cached-runs", type=int, default=5, help="cached runs (default 5)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}/")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.cached_runs < 1:
        parser.error("--runs and --cached-runs must be at least 1")
    scope = BenchScope.new()
    _log(f"bench scope: {TEST_LABEL}={scope.run_id}")
    host = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_engine": docker.APIClient(version="auto").version().get("Version", "?"),
    }
    try:
        result = run(scope, runs=args.runs, log=_log, cached_runs=args.cached_runs)
    except BenchError as exc:
        _log(f"error: {exc}")
        return 1
    finally:
        _remove_images(scope)
        scope.remove_everything()
    print(render_table(result), flush=True)
    if not args.no_write:
        _log(f"wrote {write_json(result, host, RESULTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
