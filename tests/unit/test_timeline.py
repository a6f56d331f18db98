"""The apply profile's timeline: spans on one clock, summed per name (apply --profile)."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.loop.timeline import Timeline


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_spans_are_relative_to_the_origin_and_summed_per_name(tmp_path: Path) -> None:
    clock = Clock()
    tl = Timeline(clock=clock)
    with tl.span("observe"):
        clock.now += 0.25
    tl.begin("step:CreateContainer", "a")
    tl.begin("step:CreateContainer", "b")
    clock.now += 1.0
    tl.end("step:CreateContainer", "a")
    clock.now += 0.5
    tl.end("step:CreateContainer", "b")
    tl.end("step:CreateContainer", "never-begun")  # ignored, not an error
    assert tl.totals() == {"observe": 0.25, "step:CreateContainer": 2.5}
    tl.extra["controlplane"] = {"p/a": {"dial": 0.2}}
    out = tmp_path / "profile.json"
    tl.write(out)
    data = json.loads(out.read_text())
    assert [s["name"] for s in data["spans"]] == ["observe", *["step:CreateContainer"] * 2]
    assert data["spans"][0] == {"name": "observe", "start": 0.0, "end": 0.25, "detail": ""}
    assert data["controlplane"] == {"p/a": {"dial": 0.2}}
