"""argparse types: a bad number is a usage error (exit 2) naming the flag, never a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["seconds"]


def seconds(*, minimum: float, maximum: float) -> Callable[[str], float]:
    """A finite number of seconds within [minimum, maximum] (nan, inf and 1e999 refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give a number of seconds from {minimum:g} to {maximum:g}"
            )
        return value

    parse.__name__ = "seconds"  # argparse names the type in its message
    return parse
