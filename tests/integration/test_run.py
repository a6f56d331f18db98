"""Sitting down at an agent: `clawker run -it` and the imperative verbs, through a real
pseudo-terminal (pexpect), against the real engine, control plane and clawkerd."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.integration.conftest import REPO, Scope

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: bind}
  build: {harness: none}
  agent: {pre_run: "echo pre-run-ok"}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: bad, project: PROJECT}
spec:
  agent: {pre_run: "echo the-pre-run-broke; exit 5"}
"""


def _spawn(scope: Scope, *args: str, cwd: Path | None = None) -> pexpect.spawn[str]:
    """The real CLI on a real pseudo-terminal of 30 rows by 100 columns."""
    return pexpect.spawn(
        sys.executable,
        ["-m", "cli.main", *args],
        cwd=str(cwd or scope.workdir / "ws"),
        env={**scope.env, "PYTHONPATH": str(REPO)},
        dimensions=(30, 100),
        timeout=60,
        encoding="utf-8",
        codec_errors="replace",
    )


def _finish(child: pexpect.spawn[str]) -> int:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return int(child.exitstatus)


def _gone(scope: Scope, name: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(f"/{name}" in c["Names"] for c in scope.containers()):
            return True
        time.sleep(0.2)
    return False


def test_run_it_shows_the_boot_log_then_hands_the_terminal_to_the_cmd(scope: Scope) -> None:
    scope.write_spec(SPEC, "clawker.yaml")
    # From the workspace, a directory below the project file: the project is found upward.
    child = _spawn(scope, "run", "-it", "--rm", "--agent", "dev", "@", "--", "bash")
    for line in ("✓ workspace", "✓ config", "✓ container", "✓ prepare-volumes", "✓ git-setup"):
        child.expect_exact(line)
    child.expect(r"\$ ")
    child.sendline("stty size")
    child.expect(r"30 100\r\n")
    child.setwinsize(40, 120)
    time.sleep(0.3)  # SIGWINCH reaches the CLI, which resizes the container's terminal
    child.sendline("stty size")
    child.expect(r"40 120\r\n")
    child.sendline("id -u; exit 7")
    assert _finish(child) == 7
    name = f"clawker.{scope.project}.dev"
    assert _gone(scope, name), "--rm left the container behind"
    assert {f"{name}-config", f"{name}-history"} <= scope.volumes()


def test_a_failing_pre_run_shows_its_output_and_exits_with_its_code(scope: Scope) -> None:
    scope.write_spec(SPEC, "clawker.yaml")
    child = _spawn(scope, "run", "-it", "--rm", "--agent", "bad", "@", "--", "bash")
    child.expect_exact("✗ pre_run")
    child.expect_exact("the-pre-run-broke")
    assert _finish(child) == 5


def test_piped_stdin_and_stdout_without_a_tty(scope: Scope) -> None:
    spec = scope.write_spec(SPEC, "clawker.yaml")
    proc = scope.clawker(
        "run", "-i", "--rm", "-f", str(spec), "--agent", "x", "@", "--", "cat", stdin="hi\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi\n"
    assert "✓ container" in proc.stderr
    assert "✓ git-setup" in proc.stderr  # clawkerd's step lines, on stderr without a TTY


def test_run_d_then_exec_logs_ps_stop_start_attached_and_rm(scope: Scope) -> None:
    spec = str(scope.write_spec(SPEC, "clawker.yaml"))
    name = f"clawker.{scope.project}.bg"
    cmd = ["--", "sh", "-c", "echo cmd-started; exec sleep infinity"]
    proc = scope.clawker("run", "-d", "-f", spec, "--agent", "bg", "@", *cmd, check=0)
    assert proc.stdout.strip() == name

    uid = scope.clawker("exec", "-f", spec, "bg", "--", "id", "-u", check=0).stdout.strip()
    assert uid.isdigit() and uid != "0"
    logs = scope.clawker("logs", "--filename", spec, "bg", check=0)
    assert "✓ git-setup" in logs.stderr and "cmd-started" in logs.stdout
    items = json.loads(scope.clawker("ps", "-o", "json", check=0).stdout)["items"]
    [item] = [i for i in items if i["container"] == name]
    assert item["madeBy"] == "run" and item["state"] == "running" and not item["applySet"]

    # An apply --prune of the project (which does not declare bg) leaves the run agent alone.
    project_only = scope.write_spec(SPEC.split("---", maxsplit=1)[0], "project-only.yaml")
    scope.clawker("apply", "-f", str(project_only), "--prune", "-y", check=0)
    assert scope.inspect(name)["State"]["Running"]

    assert "cmd_started" in scope.clawker("logs", "--clawkerd", "bg", check=0).stdout
    follower = _spawn(scope, "logs", "--clawkerd", "-f", "bg")  # what is there, then live lines
    follower.expect_exact("cmd_started")
    scope.clawker("stop", "-f", spec, "bg", check=0)
    assert not scope.inspect(name)["State"]["Running"]
    follower.expect_exact("signal_forwarded")  # written after the follow began
    follower.expect_exact("cmd_exited")
    assert _finish(follower) == 0  # the follow ends with the container
    child = _spawn(scope, "start", "-a", "bg")
    child.expect_exact("✓ container")
    child.expect_exact("✓ pre_run")  # the per-start steps again (clawkerd's lines), then the CMD
    child.expect_exact("cmd-started")
    scope.clawker("stop", "-f", spec, "bg", check=0)
    assert _finish(child) == 128 + 15  # the CMD's status: sleep ended by SIGTERM

    assert "needs confirmation" in scope.clawker("rm", "bg").stderr
    scope.clawker("rm", "-y", "bg", check=0)
    assert _gone(scope, name, timeout=5)
    assert f"{name}-config" in scope.volumes()


def test_attach_detach_with_ctrl_p_ctrl_q_and_attach_again(scope: Scope) -> None:
    spec = str(scope.write_spec(SPEC, "clawker.yaml"))
    name = f"clawker.{scope.project}.tty"
    proc = scope.clawker("run", "-dit", "-f", spec, "--agent", "tty", "@", "--", "bash", check=0)
    assert proc.stdout.strip() == name
    child = _spawn(scope, "attach", "tty")
    child.sendline("echo attached-$((6*7))")
    child.expect_exact("attached-42")
    child.send("\x10\x11")  # Docker's detach keys: the CMD keeps running
    child.expect_exact(f"detached from {name} (still running)")
    assert _finish(child) == 0
    assert scope.inspect(name)["State"]["Running"]
    again = _spawn(scope, "attach", "tty")
    again.sendline("echo back-$((6*7)); exit 3")
    again.expect_exact("back-42")
    assert _finish(again) == 3  # attach ends with the CMD, with its status
    assert not scope.inspect(name)["State"]["Running"]


def test_cp_takes_work_out_of_a_snapshot_agent_and_volume_prune_keeps_logins(
    scope: Scope,
) -> None:
    spec = str(scope.write_spec(SPEC, "clawker.yaml"))
    ws = str((scope.workdir / "ws").resolve())
    scope.clawker(
        "run", "-d", "-f", spec, "--mode", "snapshot", "--agent", "snap", "@", "--",
        "sleep", "infinity", check=0,
    )  # fmt: skip
    scope.clawker(
        "exec", "-f", spec, "snap", "--", "sh", "-c", f"echo made-inside > {ws}/out.txt", check=0
    )
    assert not (scope.workdir / "ws" / "out.txt").exists()  # a snapshot: the host is untouched
    host_copy = scope.workdir / "out-copy.txt"
    scope.clawker("cp", "-f", spec, f"snap:{ws}/out.txt", str(host_copy), check=0)
    assert host_copy.read_text() == "made-inside\n"
    (scope.workdir / "notes.txt").write_text("from the host\n")
    scope.clawker("cp", "-f", spec, str(scope.workdir / "notes.txt"), f"snap:{ws}/", check=0)
    code_out = scope.clawker("exec", "-f", spec, "snap", "--", "cat", f"{ws}/notes.txt", check=0)
    assert code_out.stdout == "from the host\n"

    name = f"clawker.{scope.project}.snap"
    vols = json.loads(scope.clawker("volume", "ls", "-o", "json", check=0).stdout)["items"]
    assert {v["name"]: v["inUse"] for v in vols}[f"{name}-workspace"] is True
    # While the agent has a container, prune keeps all of its volumes.
    scope.clawker("volume", "prune", "--all", "-y", check=0)
    assert f"{name}-workspace" in scope.volumes()

    scope.clawker("rm", "-f", "-y", "snap", check=0)
    scope.clawker("volume", "prune", "-y", check=0)
    left = scope.volumes()
    assert f"{name}-workspace" not in left
    assert {f"{name}-config", f"{name}-history"} <= left  # logins and history need --all
    prompt = scope.clawker("volume", "prune", "--all")
    assert prompt.returncode != 0 and f"{name}-config" in prompt.stderr + prompt.stdout
    scope.clawker("volume", "prune", "--all", "-y", check=0)
    assert not {f"{name}-config", f"{name}-history"} & scope.volumes()
