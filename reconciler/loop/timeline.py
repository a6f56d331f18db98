"""Where a pass spends its time: named spans on one clock, for `clawker apply --profile FILE`.

The CLI, `prepare_apply`, `apply_plan` and the executor's step events each add spans; the
control plane's own share of every start (enrol, dial, each step, AgentReady) comes from its
start records. bench/apply_cold.py reads the file to explain each figure: per phase on the
critical path, and summed over agents.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Span", "Timeline"]


@dataclass(frozen=True)
class Span:
    name: str  # "load", "observe", "plan", "step:CreateContainer", "ready", ...
    start: float  # seconds since the timeline began
    end: float
    detail: str = ""  # e.g. the step's target

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Timeline:
    """Spans recorded from any thread; `clock` is injectable so tests need no real time."""

    clock: Callable[[], float] = time.perf_counter
    origin: float = field(default=0.0)
    spans: list[Span] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the CP's per-start timings

    def __post_init__(self) -> None:
        self.origin = self.origin or self.clock()
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], float] = {}

    def now(self) -> float:
        return self.clock() - self.origin

    def add(self, name: str, start: float, end: float, detail: str = "") -> None:
        with self._lock:
            self.spans.append(Span(name, start, end, detail))

    @contextmanager
    def span(self, name: str, detail: str = "") -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self.add(name, start, self.now(), detail)

    def begin(self, name: str, detail: str) -> None:
        """Open a span another thread (or a later event) ends with `end(name, detail)`."""
        with self._lock:
            self._open[(name, detail)] = self.now()

    def end(self, name: str, detail: str) -> None:
        with self._lock:
            start = self._open.pop((name, detail), None)
        if start is not None:
            self.add(name, start, self.now(), detail)

    def totals(self) -> dict[str, float]:
        """Seconds per span name, summed (steps of one kind across agents add up)."""
        out: dict[str, float] = {}
        for s in self.spans:
            out[s.name] = out.get(s.name, 0.0) + s.seconds
        return out

    def as_data(self) -> Mapping[str, Any]:
        return {
            "spans": [asdict(s) for s in sorted(self.spans, key=lambda s: (s.start, s.name))],
            "totals": self.totals(),
            **self.extra,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_data(), indent=2) + "\n")
