"""Cancelling one container start's work the moment Docker says that container died or was
removed: a dial's backoff sleep, a pending TLS handshake and a running Session all end at once,
so a dead container never holds one of the control plane's workers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Cancellation", "StartCancelledError"]


class StartCancelledError(Exception):
    """The start this work was for is over (Docker reported the container died or was removed)."""


class Cancellation:
    """A one-way switch for one pass over one container start, with hooks that interrupt the
    blocking call in progress (a gRPC future or stream) when it flips."""

    def __init__(self) -> None:
        self._flipped = threading.Event()
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], object]] = []
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        return self._flipped.is_set()

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self._flipped.is_set():
                return
            self.reason = reason
            self._flipped.set()
            hooks = list(self._hooks)
        for hook in hooks:
            hook()

    def check(self) -> None:
        """Raise StartCancelledError once cancelled."""
        if self._flipped.is_set():
            raise StartCancelledError(self.reason)

    def sleep(self, seconds: float) -> None:
        """A backoff sleep that ends early, raising, when the start is cancelled."""
        if self._flipped.wait(seconds):
            raise StartCancelledError(self.reason)

    @contextmanager
    def interrupting(self, hook: Callable[[], object]) -> Iterator[None]:
        """Run `hook` (e.g. a gRPC call's `cancel`) if the start is cancelled inside the block."""
        with self._lock:
            already = self._flipped.is_set()
            if not already:
                self._hooks.append(hook)
        if already:
            hook()
        try:
            yield
        finally:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)
