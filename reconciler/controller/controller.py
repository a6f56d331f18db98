"""One controller shape for watch mode and the control plane (controller-runtime's).

Sources only enqueue keys, each with the `Trigger` that says why; `PendingWork` (a keyed queue
plus per-key backoff with jitter) dedupes them and never gives one key to two workers; a pool
of workers calls `reconcile(key, triggers)`, which re-reads the world and says whether it
succeeded; a failed key is retried when its backoff is due, and a new urgent trigger (a spec
edit, a reconnected daemon) runs it at once. Watch mode's keys are agents, the control plane's
are container ids; everything else is the same code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from reconciler.controller.backoff import Backoff, RetrySchedule
from reconciler.controller.queue import KeyedQueue
from reconciler.controller.sources import Cause, Trigger

__all__ = ["Controller", "PendingWork", "Reconcile"]

log = logging.getLogger("clawker.controller")

# (key, the triggers that queued it) -> True when done, False to retry after a backoff.
Reconcile = Callable[[str, tuple[Trigger, ...]], bool]


class PendingWork:
    """The keyed work queue plus per-key backoff and the triggers waiting for each key.

    A trigger for a key that is backing off is remembered but does not run it (a crash-looping
    agent's own `die` events must not defeat its backoff); an urgent trigger (a spec edit, a
    reconnected daemon) cancels the backoff. Time comes from `clock`, so tests can fake it.
    """

    def __init__(
        self, schedule: RetrySchedule, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._queue = KeyedQueue()
        self._schedule = schedule
        self._clock = clock
        self._triggers: dict[str, list[Trigger]] = {}
        self._lock = threading.Lock()
        self.retry_added = threading.Event()  # wakes the timer when a new retry is scheduled

    def put(self, key: str, trigger: Trigger) -> bool:
        """Queue `key` because of `trigger`; False when it waits for its backoff instead."""
        with self._lock:
            waiting = self._triggers.setdefault(key, [])
            if trigger not in waiting:
                waiting.append(trigger)
            if trigger.urgent:
                self._schedule.reset(key)
            elif self._schedule.holding(key, self._clock()):
                return False
        self._queue.put(key)
        return True

    def take(self, timeout: float | None = None) -> tuple[str, tuple[Trigger, ...]] | None:
        """The next key no worker holds and no backoff holds back, with its triggers."""
        while True:
            key = self._queue.get(timeout)
            if key is None:
                return None
            with self._lock:
                if not self._schedule.holding(key, self._clock()):
                    return key, tuple(self._triggers.pop(key, ()))
            self._queue.done(key)  # queued before its failure was recorded: its retry runs it

    def finish(self, key: str, ok: bool) -> tuple[int, float] | None:
        """Release `key`; after a failure return (failures in a row, seconds until retry)."""
        retry = None
        with self._lock:
            if ok:
                self._schedule.succeeded(key)
            else:
                retry = self._schedule.failed(key, self._clock())
        self._queue.done(key)
        if retry:
            self.retry_added.set()
        return retry

    def failed_outside(self, key: str) -> tuple[int, float]:
        """Record a failure of a key no worker took (watch mode's initial pass)."""
        with self._lock:
            retry = self._schedule.failed(key, self._clock())
        self.retry_added.set()
        return retry

    def release_due(self) -> list[str]:
        """Queue every key whose retry time has come; return them."""
        with self._lock:
            due = [(k, self._schedule.failures(k)) for k in self._schedule.due(self._clock())]
        for key, failures in due:
            self.put(key, Trigger(Cause.RETRY, f"attempt {failures + 1}"))
        return [key for key, _ in due]

    def seconds_to_next_retry(self) -> float | None:
        with self._lock:
            due = self._schedule.next_due()
        return None if due is None else max(0.0, due - self._clock())

    def active(self) -> int:
        """Keys a worker is reconciling right now."""
        return self._queue.active()

    def close(self) -> None:
        self._queue.close()
        self.retry_added.set()

    def idle(self) -> bool:
        return self._queue.idle()


class Controller:
    """Sources, a `PendingWork`, a retry timer and `workers` threads calling `reconcile`."""

    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        workers: int = 4,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_retry: Callable[[str, int, float], None] = lambda _k, _n, _s: None,
    ) -> None:
        self.name = name
        self.work = PendingWork(RetrySchedule(backoff or Backoff()), clock)
        self.stopping = threading.Event()  # sources and timers watch it
        self._reconcile = reconcile
        self._workers = workers
        self._on_retry = on_retry
        self._threads: list[threading.Thread] = []

    def enqueue(self, key: str, trigger: Trigger) -> bool:
        return self.work.put(key, trigger)

    def add_source(self, name: str, run: Callable[[], None]) -> None:
        """Start `run` (a source's loop: it enqueues, decides nothing) on its own thread."""
        self._spawn(f"{self.name}-{name}", run)

    def start_workers(self) -> None:
        """The retry timer and the worker pool (sources may start earlier, to miss nothing)."""
        self._spawn(f"{self.name}-retries", self._release_retries)
        for i in range(self._workers):
            self._spawn(f"{self.name}-worker-{i}", self._work)

    def busy(self) -> int:
        return self.work.active()

    def stop(self, grace: float = 0.0) -> list[str]:
        """Stop the sources and workers; wait up to `grace` for passes under way. Returns the
        names of the workers still running after it."""
        self.stopping.set()
        self.work.close()
        deadline = time.monotonic() + grace
        workers = [t for t in self._threads if "-worker-" in t.name]
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in workers if t.is_alive()]

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _release_retries(self) -> None:
        while not self.stopping.is_set():
            self.work.release_due()
            wait = self.work.seconds_to_next_retry()
            self.work.retry_added.wait(1.0 if wait is None else min(wait, 1.0))
            self.work.retry_added.clear()

    def _work(self) -> None:
        while (item := self.work.take()) is not None:
            key, triggers = item
            if self.stopping.is_set():
                self.work.finish(key, ok=True)
                return
            ok = True
            try:
                ok = self._reconcile(key, triggers)
            except Exception:  # one broken key must not stop the worker: it is retried
                log.exception("%s: reconciling %s failed", self.name, key)
                ok = False
            finally:
                retry = self.work.finish(key, ok)
            if retry and not self.stopping.is_set():
                self._on_retry(key, *retry)
