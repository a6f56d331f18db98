"""Per-key exponential backoff with jitter and a cap, on a clock the caller passes in.

Nothing here sleeps or reads a clock: `RetrySchedule` is told the time, so watch mode's workers
and timer thread drive it with `time.monotonic` and the unit tests with a fake clock that jumps.
A key that fails is held back until its retry is due; the other keys never wait for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "RetrySchedule"]


@dataclass(frozen=True)
class Backoff:
    """`initial * factor**(failures-1)`, capped at `cap`, then scaled by a random factor in
    [1 - jitter, 1]: never above the cap, and keys that failed together retry apart."""

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.5

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1-based)."""
        exponent = max(0, failures - 1)
        # Capping the exponent first keeps factor**exponent finite after many failures.
        raw = self.cap if exponent > 64 else min(self.cap, self.initial * self.factor**exponent)
        return raw * (1.0 - self.jitter * rand())


@dataclass
class _Held:
    failures: int
    due: float
    released: bool = False  # its retry has been handed out; failures count on


class RetrySchedule:
    """Which keys are backing off, how often they failed, and when each may run again."""

    def __init__(
        self, backoff: Backoff = Backoff(), rand: Callable[[], float] = random.random
    ) -> None:
        self.backoff = backoff
        self._rand = rand
        self._held: dict[str, _Held] = {}

    def failed(self, key: str, now: float) -> tuple[int, float]:
        """Record a failure of `key`; return (failures in a row, seconds until it may retry)."""
        failures = self._held[key].failures + 1 if key in self._held else 1
        delay = self.backoff.delay(failures, self._rand)
        self._held[key] = _Held(failures, now + delay)
        return failures, delay

    def succeeded(self, key: str) -> None:
        self._held.pop(key, None)

    def reset(self, key: str) -> None:
        """Forget `key`'s failures: something changed that may fix it (a spec edit, a
        reconnected daemon), so it runs now and backs off from the start if it fails again."""
        self._held.pop(key, None)

    def holding(self, key: str, now: float) -> bool:
        """True while `key` waits for its retry."""
        held = self._held.get(key)
        return held is not None and not held.released and now < held.due

    def failures(self, key: str) -> int:
        held = self._held.get(key)
        return held.failures if held else 0

    def due(self, now: float) -> list[str]:
        """Keys whose retry time has come, earliest first; each is reported once."""
        ready = sorted((h.due, k) for k, h in self._held.items() if not h.released and h.due <= now)
        for _, key in ready:
            self._held[key].released = True
        return [key for _, key in ready]

    def next_due(self) -> float | None:
        """The earliest time a held key becomes due, or None when none is waiting."""
        waiting = [h.due for h in self._held.values() if not h.released]
        return min(waiting) if waiting else None
