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


# unit -> (scale from seconds, table value width, decimals in tables, decimals in JSON, suffix)
_UNITS = {"s": (1.0, 7, 3, 4, "s"), "us": (1e6, 8, 1, 1, "µs")}


def render_table(result: ScenarioResult, unit: str = "s") -> str:
    """Median, min and max of each series, then the ratios; `unit="us"` for micro-benchmarks."""
    scale, value_width, decimals, _, suffix = _UNITS[unit]
    width = max(len(s.name) for s in result.series)
    column = value_width + len(suffix)
    header = f"{'':<{width}}  {'median':>{column}}  {'min':>{column}}  {'max':>{column}}"
    lines = [result.title, header]
    lines += [
        "  ".join(
            [f"{s.name:<{width}}"]
            + [
                f"{v * scale:>{column - len(suffix)}.{decimals}f}{suffix}"
                for v in (s.median, s.min, s.max)
            ]
        )
        for s in result.series
    ]
    lines += [f"  {r.numerator} / {r.denominator}: {r.value:.2f}x" for r in result.ratios]
    lines.append(f"  reproduce: {result.command}")
    return "\n".join(lines)


def write_json(
    result: ScenarioResult, host: dict[str, Any], directory: Path, unit: str = "s"
) -> Path:
    """`<directory>/<scenario>.json`, replaced atomically; figures rounded to 0.1 ms (or
    0.1 µs with `unit="us"`, where only the number of samples is kept: there are thousands)."""
    scale, _, _, decimals, _ = _UNITS[unit]

    def figure(value: float) -> float:
        return round(value * scale, decimals)

    data: dict[str, Any] = {
        "scenario": result.scenario,
        "title": result.title,
        "command": result.command,
        "parameters": result.parameters,
        "host": host,
    }
    if unit != "s":
        data["unit"] = unit
    data["results"] = [
        {
            "name": s.name,
            "what": s.what,
            f"median_{unit}": figure(s.median),
            f"min_{unit}": figure(s.min),
            f"max_{unit}": figure(s.max),
            **(
                {"samples_s": [figure(x) for x in s.samples]}
                if unit == "s"
                else {"samples": len(s.samples)}
            ),
        }
        for s in result.series
    ]
    data.update(
        {
            "ratios": [
                {"numerator": r.numerator, "denominator": r.denominator, "value": round(r.value, 2)}
                for r in result.ratios
            ],
            "notes": result.notes,
        }
    )
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
