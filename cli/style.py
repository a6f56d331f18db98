"""Terminal styling that honours NO_COLOR and plain pipes."""

from __future__ import annotations

import os
import sys
from typing import TextIO

_CODES = {"green": "32", "yellow": "33", "red": "31", "bold": "1", "dim": "2", "cyan": "36"}


class Style:
    def __init__(self, stream: TextIO | None, *, color: bool | None = None) -> None:
        if color is None:
            color = stream is not None and "NO_COLOR" not in os.environ and stream.isatty()
        self.color = color

    @classmethod
    def plain(cls) -> Style:
        """No colour at all: for golden tests and JSON-adjacent text."""
        return cls(None, color=False)

    def __call__(self, text: str, *names: str) -> str:
        if not self.color or not names:
            return text
        codes = ";".join(_CODES[n] for n in names)
        return f"\033[{codes}m{text}\033[0m"


def ok_mark(style: Style) -> str:
    return style("✓", "green")


def fail_mark(style: Style) -> str:
    return style("✗", "red")


def stdout_style() -> Style:
    return Style(sys.stdout)


def stderr_style() -> Style:
    return Style(sys.stderr)
