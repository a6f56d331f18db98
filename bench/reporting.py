"""A scenario's outcome as a table for people and a small JSON file for the repository."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measuring import Ratio, Series

__all__ = ["ScenarioResult", "render_table", "write_json"]


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str  # also the results file's name
    title: str
    command: str  # reproduces exactly this scenario's figures
    parameters: dict[str, int]
    series: tuple[Series, ...]
    ratios: tuple[Ratio, ...]
    notes: dict[str, Any] = field(default_factory=dict)


def render_table(result: ScenarioResult) -> str:
    width = max(len(s.name) for s in result.series)
    header = f"{'':<{width}}  {'median':>8}  {'min':>8}  {'max':>8}"
    lines = [result.title, header]
    lines += [
        f"{s.name:<{width}}  {s.median:>7.3f}s  {s.min:>7.3f}s  {s.max:>7.3f}s"
        for s in result.series
    ]
    lines += [f"  {r.numerator} / {r.denominator}: {r.value:.2f}x" for r in result.ratios]
    lines.append(f"  reproduce: {result.command}")
    return "\n".join(lines)


def write_json(result: ScenarioResult, host: dict[str, Any], directory: Path) -> Path:
    """`<directory>/<scenario>.json`, replaced atomically; figures rounded to 0.1 ms."""
    data = {
        "scenario": result.scenario,
        "title": result.title,
        "command": result.command,
        "parameters": result.parameters,
        "host": host,
        "results": [
            {
                "name": s.name,
                "what": s.what,
                "median_s": round(s.median, 4),
                "min_s": round(s.min, 4),
                "max_s": round(s.max, 4),
                "samples_s": [round(x, 4) for x in s.samples],
            }
            for s in result.series
        ],
        "ratios": [
            {"numerator": r.numerator, "denominator": r.denominator, "value": round(r.value, 2)}
            for r in result.ratios
        ],
        "notes": result.notes,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.scenario}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(_one_line_number_lists(json.dumps(data, indent=2)) + "\n")
    tmp.replace(path)
    return path


def _one_line_number_lists(text: str) -> str:
    """`[\n  1.2,\n  1.3\n]` -> `[1.2, 1.3]`: samples stay one line each in a diff."""
    return re.sub(
        r"\[\s+([-+\d.eE,\s]+?)\s+\]",
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )
