"""The apply lock: a real flock between real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reconciler.loop.apply_lock import ApplyLock, ApplyLockBusyError, ApplyLockError

HOLDER = """
import sys
from pathlib import Path
from reconciler.loop.apply_lock import ApplyLock
with ApplyLock(Path(sys.argv[1])).hold():
    print("held", flush=True)
    sys.stdin.readline()
"""


def hold_in_another_process(path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_the_second_apply_exits_at_once_naming_the_first_s_pid(tmp_path: Path) -> None:
    lock = tmp_path / "state" / "apply.lock"
    holder = hold_in_another_process(lock)
    try:
        with (
            pytest.raises(ApplyLockBusyError, match=f"pid {holder.pid}"),
            ApplyLock(lock).hold(wait=False),
        ):
            pytest.fail("the lock is held by another process")
    finally:
        holder.communicate("\n", timeout=30)


def test_the_second_apply_waits_for_the_first_and_then_runs(tmp_path: Path) -> None:
    lock = tmp_path / "apply.lock"
    holder = hold_in_another_process(lock)
    told: list[str] = []

    def on_wait(who: str) -> None:
        told.append(who)
        holder.communicate("\n", timeout=30)  # the first apply finishes

    with ApplyLock(lock).hold(on_wait=on_wait):
        assert lock.read_text().strip().isdigit()
    assert told == [f"pid {holder.pid}"]


def test_a_killed_holder_never_leaves_the_lock_held(tmp_path: Path) -> None:
    lock = tmp_path / "apply.lock"
    holder = hold_in_another_process(lock)
    holder.kill()
    holder.wait(timeout=30)
    with ApplyLock(lock).hold(wait=False):
        pass


def test_threads_of_one_process_share_it_and_the_last_releases_it(tmp_path: Path) -> None:
    """Watch mode's concurrent passes: all inside at once; afterwards another process may."""
    lock = ApplyLock(tmp_path / "apply.lock")
    inside = threading.Barrier(3, timeout=30)

    def a_pass() -> None:
        with lock.hold(wait=False):
            inside.wait()

    threads = [threading.Thread(target=a_pass) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    holder = hold_in_another_process(tmp_path / "apply.lock")
    holder.communicate("\n", timeout=30)
    assert holder.returncode == 0


def test_a_state_dir_it_cannot_write_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with (
        pytest.raises(ApplyLockError, match="cannot take the apply lock"),
        ApplyLock(tmp_path / "file" / "apply.lock").hold(),
    ):
        pass
