"""Durations and seconds on the command line: parsed, finite and bounded, or a usage error
that names the flag's limit (argparse turns ArgumentTypeError into exit 2 with the message)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

__all__ = [
    "MAX_BYPASS_SECONDS",
    "bypass_duration",
    "format_duration",
    "parse_duration",
    "seconds_flag",
]

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")
# Kept equal to reconciler.firewall.state.MAX_BYPASS_SECONDS (a unit test checks): the CLI
# refuses before it asks, the control plane refuses whoever asks.
MAX_BYPASS_SECONDS = 30 * 24 * 3600


def parse_duration(text: str) -> float:
    """`90`, `90s`, `5m`, `2h`, `1h30m`, `0` -> seconds; ValueError otherwise."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"invalid duration {text!r}: write e.g. 30s, 5m, 1h or 1h30m (0 ends it)")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def format_duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def bypass_duration(text: str) -> float:
    """A `firewall bypass` DURATION: 0 (ends a bypass) up to 30 days."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if seconds > MAX_BYPASS_SECONDS:
        raise argparse.ArgumentTypeError(
            f"a bypass lasts at most 30 days (720h); {text!r} is longer. "
            "Ask for 720h or less, and again when it ends"
        )
    return seconds


def seconds_flag(minimum: float, maximum: float) -> Callable[[str], float]:
    """An argparse type for a SECONDS flag: a finite number with minimum < value <= maximum."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds")
        if not minimum < value <= maximum:
            raise argparse.ArgumentTypeError(
                f"{text} s is out of range: more than {minimum:g} and at most {maximum:g} seconds"
            )
        return value

    return parse
