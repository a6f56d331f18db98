"""Bad CLI input is a usage error (exit 2) or a clear error, never a traceback. Each case runs
the real `clawker` in a fresh interpreter, so closed stdin and exit codes are the real ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: myapp}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev}
"""


def clawker(
    *args: str, tmp_path: Path, stdin_closed: bool = False
) -> subprocess.CompletedProcess[str]:
    code = "import sys, cli.main; sys.exit(cli.main.main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        # `<&-`: the descriptor itself is closed, as a service manager may leave it
        preexec_fn=_close_stdin if stdin_closed else None,
        env={"PATH": "/usr/bin:/bin", "CLAWKER_STATE_DIR": str(tmp_path / "state")},
    )


def _close_stdin() -> None:
    import os  # noqa: PLC0415 - runs in the child between fork and exec

    os.close(0)


def test_apply_from_a_closed_stdin_is_an_error(tmp_path: Path) -> None:
    result = clawker("apply", "-f", "-", tmp_path=tmp_path, stdin_closed=True)
    assert result.returncode == 2, result.stderr
    assert "standard input is closed" in result.stderr and "Traceback" not in result.stderr


def test_delete_without_y_on_a_closed_stdin_says_to_pass_y(tmp_path: Path) -> None:
    """The confirmation `delete` (and `apply --prune`) asks for, with stdin closed."""
    from cli import agent_verbs  # noqa: PLC0415

    saved = sys.stdin
    closed = open(tmp_path / "closed", "w+")  # noqa: SIM115
    closed.close()
    sys.stdin = closed
    try:
        with pytest.raises(agent_verbs.UsageError, match="re-run with -y to confirm"):
            agent_verbs._confirm("Delete these agents' containers?", assume_yes=False)
    finally:
        sys.stdin = saved
