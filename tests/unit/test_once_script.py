"""post_init's once-per-agent wrapper, run by a real `sh` (as clawkerd runs it in the image)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from reconciler.controlplane.runtime.session import once_script


def run(marker: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", once_script(str(marker), script)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_script_ending_in_exit_0_still_gets_its_marker(tmp_path: Path) -> None:
    marker, count = tmp_path / "post-initialized", tmp_path / "count"
    script = f"echo ran >> {count}\necho hello\nexit 0"
    first = run(marker, script)
    assert (first.returncode, first.stdout) == (0, "hello\n")
    assert marker.exists()
    assert run(marker, script).returncode == 0
    assert count.read_text() == "ran\n"  # the second start did not run it


def test_a_failing_script_keeps_its_code_and_writes_no_marker(tmp_path: Path) -> None:
    marker = tmp_path / "post-initialized"
    result = run(marker, "echo oops >&2\nfalse\necho never")
    assert result.returncode == 1
    assert "oops" in result.stdout and "never" not in result.stdout
    assert not marker.exists()


def test_a_killed_dispatch_lets_the_script_finish_and_the_next_one_waits(tmp_path: Path) -> None:
    """The CP vanishing kills the step's process group; the script still runs to its end
    exactly once, and the next CP's dispatch waits for it instead of starting it again."""
    marker, count, gate = tmp_path / "post-initialized", tmp_path / "count", tmp_path / "gate"
    os.mkfifo(gate)
    script = f"echo ran >> {count}\nread line < {gate}\necho finished >> {count}"
    first = subprocess.Popen(
        ["sh", "-c", once_script(str(marker), script)],
        stdout=subprocess.DEVNULL,
        process_group=0,
    )
    while not count.exists():  # the script is running (blocked on the gate)
        time.sleep(0.01)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    second = subprocess.Popen(["sh", "-c", once_script(str(marker), script)], text=True)
    with open(gate, "w") as g:  # let the first run finish
        g.write("go\n")
    assert second.wait(timeout=30) == 0
    assert count.read_text() == "ran\nfinished\n"
    assert marker.exists()
