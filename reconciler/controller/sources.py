"""What makes watch mode look again: spec files, Docker events, a resync timer.

Each source is a small class with a `run()` loop for its own thread. Sources decide nothing:
they only say *that* something happened (a set of changed files, a container event, a
reconnect, a tick); the watcher turns that into agent keys in its work queue, and every pass
re-lists Docker by label, so a lost or duplicated trigger costs at most one extra pass.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from reconciler.controller.backoff import Backoff
from reconciler.docker.engine import ContainerEvent, DockerPort

__all__ = [
    "RECONNECT_BACKOFF",
    "Cause",
    "Debouncer",
    "DockerEventSource",
    "ResyncTimer",
    "SpecFileSource",
    "Trigger",
    "watched_paths",
]

log = logging.getLogger("clawker.watch")


class Cause(StrEnum):
    INITIAL = "initial converge"
    FILE_CHANGED = "file changed"
    CONTAINER = "container"
    RESYNC = "resync"
    RECONNECTED = "docker reconnected"
    RETRY = "retry"


# Causes that may fix a failing agent: they cancel its backoff and run it now.
_URGENT = frozenset({Cause.INITIAL, Cause.FILE_CHANGED, Cause.RECONNECTED})


@dataclass(frozen=True)
class Trigger:
    """Why an agent key was queued; shown in the header of the pass that handles it."""

    cause: Cause
    detail: str = ""

    @property
    def urgent(self) -> bool:
        return self.cause in _URGENT

    def __str__(self) -> str:
        if self.cause is Cause.CONTAINER:
            return self.detail
        return f"{self.cause}: {self.detail}" if self.detail else str(self.cause)


# -- spec files ---------------------------------------------------------------------------------


class Debouncer:
    """Trailing-edge debounce on a caller's clock: fires `quiet` seconds after the last change,
    and at the latest `max_wait` seconds after the first, so an editor's burst of writes
    (truncate, write, rename) is one reload and a file written non-stop still gets one.

    Watch mode's default is no quiet period of its own: watchfiles already yields a burst only
    after 20 ms without a change (`step`), which covers an editor's truncate-write-rename (they
    land within milliseconds), and every tenth of a second here was a tenth on `spec saved →
    Ready`. A due burst is seen on the watcher's next yield (`rust_timeout`, 20 ms)."""

    def __init__(self, quiet: float = 0.0, max_wait: float = 2.0) -> None:
        self.quiet, self.max_wait = quiet, max_wait
        self._items: set[str] = set()
        self._first = self._last = 0.0

    def add(self, items: Iterable[str], now: float) -> None:
        items = set(items)
        if not items:
            return
        if not self._items:
            self._first = now
        self._last = now
        self._items |= items

    def due(self, now: float) -> list[str]:
        """The collected items, sorted, once they are due (then forgotten); else []."""
        if not self._items:
            return []
        if now - self._last < self.quiet and now - self._first < self.max_wait:
            return []
        items, self._items = sorted(self._items), set()
        return items

    @property
    def pending(self) -> bool:
        return bool(self._items)


_SPEC_SUFFIXES = (".yaml", ".yml")


def watched_paths(inputs: Sequence[str]) -> tuple[list[str], Callable[[str], bool]]:
    """The directories to watch for `-f` inputs, and which paths in them are specs.

    A file input is watched through its directory (editors replace files by rename, which a
    watch on the file itself would not survive); a directory input is watched for the same
    *.yaml/*.yml files `load_specs` reads, including ones created later.
    """
    files: set[str] = set()
    spec_dirs: set[str] = set()
    for item in inputs:
        path = os.path.realpath(item)
        if os.path.isdir(path):
            spec_dirs.add(path)
        else:
            files.add(path)
    dirs = sorted(spec_dirs | {os.path.dirname(f) for f in files})

    def relevant(path: str) -> bool:
        real = os.path.realpath(path)
        if real in files:
            return True
        name = os.path.basename(real)
        return (
            os.path.dirname(real) in spec_dirs
            and name.endswith(_SPEC_SUFFIXES)
            and not name.startswith(".")
        )

    return dirs, relevant


class SpecFileSource:
    """watchfiles on the spec files' directories (not recursive), debounced."""

    def __init__(
        self,
        inputs: Sequence[str],
        on_change: Callable[[list[str]], None],
        stop: threading.Event,
        *,
        debouncer: Debouncer | None = None,
        clock: Callable[[], float] = time.monotonic,
        yield_every_ms: int = 20,
    ) -> None:
        self.dirs, self._relevant = watched_paths(inputs)
        self._yield_every_ms = yield_every_ms
        self._on_change = on_change
        self._stop = stop
        self._debouncer = debouncer or Debouncer()
        self._clock = clock
        self.ready = threading.Event()  # set once the OS watch is in place: edits count from here

    def run(self) -> None:
        import watchfiles  # noqa: PLC0415 - its native extension loads only when watching

        for changes in watchfiles.watch(
            *self.dirs,
            watch_filter=lambda _change, path: self._relevant(path),
            debounce=200,
            step=20,
            stop_event=self._stop,
            rust_timeout=self._yield_every_ms,  # a due reload waits for the next yield
            yield_on_timeout=True,
            recursive=False,
            raise_interrupt=False,
        ):
            self.ready.set()  # the first yield (a change or a 50 ms timeout) follows the setup
            now = self._clock()
            self._debouncer.add((path for _change, path in changes), now)
            if due := self._debouncer.due(now):
                self._on_change(due)


# -- docker events ------------------------------------------------------------------------------


RECONNECT_BACKOFF = Backoff(initial=0.5, cap=10.0)


class DockerEventSource:
    """The Docker event stream of managed containers, reconnected with backoff.

    docker-py's stream ends silently when the daemon restarts, and events are not replayed: after
    every (re)connect the source calls `on_connected`, whose job is to re-list everything, and
    only then passes events on. Subscribing comes first, so nothing falls between the two.
    """

    def __init__(
        self,
        port: DockerPort,
        on_event: Callable[[ContainerEvent], None],
        on_connected: Callable[[bool], None],  # True on the first connection
        on_lost: Callable[[str, float], None],  # (why, seconds until the next attempt)
        stop: threading.Event,
        *,
        backoff: Backoff = RECONNECT_BACKOFF,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._port = port
        self._on_event, self._on_connected, self._on_lost = on_event, on_connected, on_lost
        self._stop = stop
        self._backoff = backoff
        self._rand = rand
        self.connected = threading.Event()

    def run(self) -> None:
        failures = 0
        first = True
        while not self._stop.is_set():
            try:
                events = self._port.container_events()
                self._on_connected(first)
                first, failures = False, 0
                self.connected.set()
                for event in events:
                    if self._stop.is_set():
                        return
                    self._on_event(event)
                why = "docker event stream ended"
            except Exception as exc:  # any broken stream means the same thing: reconnect
                why = f"docker event stream failed: {exc}"
            self.connected.clear()
            failures += 1
            delay = self._backoff.delay(failures, self._rand)
            if self._stop.is_set():
                return
            self._on_lost(why, delay)
            self._stop.wait(delay)


# -- resync -------------------------------------------------------------------------------------


class ResyncTimer:
    """Calls `on_tick` every `interval` seconds: the safety net for whatever events missed."""

    def __init__(self, interval: float, on_tick: Callable[[], None], stop: threading.Event) -> None:
        self.interval = interval
        self._on_tick = on_tick
        self._stop = stop

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._on_tick()
            except Exception:  # the next tick tries again
                log.exception("resync failed")
