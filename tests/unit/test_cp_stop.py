"""A control plane told to stop ends within its budget, even when a thread will not let go."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A process shaped like the CP: the signal sets `stop`, the main thread returns, and a
# non-daemon thread that never ends holds the interpreter's shutdown.
PROGRAM = """
import sys, threading
from reconciler.controlplane.daemon import stop_on_signal

stop = threading.Event()
stop_on_signal(stop, budget=float(sys.argv[1]))

def stuck_in_shutdown():
    threading.Event().wait()

threading.Thread(target=stuck_in_shutdown, name="stuck").start()
print("ready", flush=True)
stop.wait()
print("stopping", flush=True)
"""


def _start(budget: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(budget)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def test_a_stop_that_hangs_ends_at_its_budget_and_says_where() -> None:
    proc = _start(budget=1.0)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    took = time.monotonic() - signalled
    assert out == "stopping\n"
    assert proc.returncode == 1
    assert 1.0 <= took < 15.0  # `controlplane down` waits 15 s
    assert "stuck_in_shutdown" in err  # every thread's stack is in the log


def test_without_a_signal_the_watchdog_is_not_armed() -> None:
    proc = _start(budget=0.5)
    time.sleep(1.5)
    assert proc.poll() is None
    proc.kill()
    proc.communicate()
