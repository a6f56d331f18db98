"""A keyed work queue: a key is never handled by two workers at once, and a key enqueued while
it is being handled is handled once more afterwards (level-triggered: the handler re-reads
the world, so coalescing many triggers into one pass loses nothing)."""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["KeyedQueue"]


class KeyedQueue:
    def __init__(self) -> None:
        self._pending: OrderedDict[str, None] = OrderedDict()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, key: str) -> None:
        with self._cond:
            if key in self._active:
                self._again.add(key)
            else:
                self._pending[key] = None
            self._cond.notify()

    def get(self, timeout: float | None = None) -> str | None:
        """The next key that no worker holds, or None when closed (or on timeout)."""
        with self._cond:
            while not self._closed:
                if self._pending:
                    key, _ = self._pending.popitem(last=False)
                    self._active.add(key)
                    return key
                if not self._cond.wait(timeout):
                    return None
            return None

    def done(self, key: str) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self._pending[key] = None
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._active

    def active(self) -> int:
        """How many keys workers are handling right now."""
        with self._cond:
            return len(self._active)
