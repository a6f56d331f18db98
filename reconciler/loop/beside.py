"""Work on a thread of its own while the caller goes on: for calls that mostly wait for
another process (dockerd, the control plane)."""

from __future__ import annotations

import threading
import typing
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Beside"]

T = TypeVar("T")


class Beside(Generic[T]):
    """`work()` run on a thread of its own; `result()` waits for it, and raises what it
    raised. A daemon thread: a caller that fails first does not wait for it at exit."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._outcome: tuple[T | None, BaseException | None] = (None, None)
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self._outcome = (work(), None)
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._outcome = (None, exc)

    def result(self) -> T:
        self._thread.join()
        value, error = self._outcome
        if error is not None:
            raise error
        return typing.cast(T, value)
