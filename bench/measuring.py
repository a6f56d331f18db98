"""Timing one thing, and summarising many timings: perf_counter, medians, ratios of medians."""

from __future__ import annotations

import shlex
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.isolation import BenchError

__all__ = ["Ratio", "Series", "interleaved", "run_command", "time_call", "time_command"]

T = TypeVar("T")


@dataclass(frozen=True)
class Series:
    """All timings of one contender, in seconds."""

    name: str
    what: str  # one line: what exactly was timed
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


@dataclass(frozen=True)
class Ratio:
    """median(numerator) / median(denominator), both named by their series."""

    numerator: str
    denominator: str
    value: float

    @classmethod
    def of(cls, series: Mapping[str, Series], numerator: str, denominator: str) -> Ratio:
        return cls(numerator, denominator, series[numerator].median / series[denominator].median)


def run_command(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Seconds from spawning `argv` until it exits, and what it printed; anything but exit 0 is
    an error (which carries the tails of stderr and stdout)."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"`{shlex.join(argv)}` exited {proc.returncode}\n{output_tails(proc)}")
    return seconds, proc


def output_tails(proc: subprocess.CompletedProcess[str]) -> str:
    """The last lines a command printed, for an error message."""
    return f"--- stderr\n{proc.stderr[-3000:]}\n--- stdout\n{proc.stdout[-1500:]}"


def time_command(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> float:
    """Seconds from spawning `argv` until it exits; anything but exit 0 is an error."""
    return run_command(argv, env=env, cwd=cwd)[0]


def time_call(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds one in-process call takes, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleaved(names: Sequence[str], run: int) -> list[str]:
    """The contenders in the order run `run` measures them: rotated, so none is always first."""
    shift = run % len(names)
    return [*names[shift:], *names[:shift]]
