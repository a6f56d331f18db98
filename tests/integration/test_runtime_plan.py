"""`diff` shows everything `apply` changes, the control plane's part too, and when it takes
effect (issue 17): real engine, real control plane, real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
  agent:
    pre_run: PRE_RUN
  security: {firewall: {add_domains: DOMAINS}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec: {command: [sleep, infinity]}
"""

COUNT = "echo run >> /home/claude/.claude/pre-run-count"
SECOND = "echo run >> /home/claude/.claude/pre-run-count; touch /home/claude/.claude/second"


def _spec(scope: Scope, pre_run: str = COUNT, domains: str = "[one.example]") -> Path:
    return scope.write_spec(
        SPEC.replace("PRE_RUN", json.dumps(pre_run)).replace("DOMAINS", domains)
    )


def _name(scope: Scope) -> str:
    return f"clawker.{scope.project}.dev"


def _started_at(scope: Scope) -> str:
    return str(scope.inspect(_name(scope))["State"]["StartedAt"])


def _agent(scope: Scope) -> dict[str, Any]:
    items = json.loads(scope.clawker("get", "agents", "-o", "json", check=0).stdout)["items"]
    (item,) = items
    return dict(item)


def _wait_ready_since(scope: Scope, started_at: str, timeout: float = 60.0) -> dict[str, Any]:
    """`get agents` once the container's start after `started_at` is Ready."""
    deadline = time.monotonic() + timeout
    item: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if _started_at(scope) != started_at:
            item = _agent(scope)
            if {c["type"]: c["status"] for c in item["conditions"]}["Ready"]:
                return item
        time.sleep(0.2)
    raise AssertionError(f"no new Ready start after {timeout}s: {item}")


def _pre_run_count(scope: Scope) -> int:
    code, out = scope.exec(_name(scope), "cat", "/home/claude/.claude/pre-run-count")
    assert code == 0, out
    return len(out.split())


def test_an_edited_pre_run_is_shown_applied_as_configured_and_run_at_the_next_start(
    scope: Scope,
) -> None:
    spec = _spec(scope)
    scope.clawker("apply", "-f", str(spec), check=0)
    scope.clawker("diff", "-f", str(spec), check=0)
    first_start = _started_at(scope)

    _spec(scope, pre_run=SECOND)
    diff = scope.clawker("diff", "-f", str(spec), check=1)
    assert "pre_run" in diff.stdout and "next start" in diff.stdout, diff.stdout
    assert "update (takes effect at next start)" in diff.stdout

    applied = scope.clawker("apply", "-f", str(spec), check=0)
    assert f"agent/{scope.project}/dev configured" in applied.stdout
    assert _started_at(scope) == first_start  # nothing restarted: it waits for the next start
    assert scope.exec(_name(scope), "test", "-e", "/home/claude/.claude/second")[0] != 0
    assert _agent(scope)["pendingAtNextStart"] == ["pre_run"]
    scope.clawker("diff", "-f", str(spec), check=0)  # the control plane holds the spec now

    scope.api.restart(_name(scope), timeout=1)  # the next start, whoever makes it
    item = _wait_ready_since(scope, first_start)
    assert scope.exec(_name(scope), "test", "-e", "/home/claude/.claude/second")[0] == 0
    assert _pre_run_count(scope) == 2
    assert item["pendingAtNextStart"] == []
    again = scope.clawker("diff", "-f", str(spec), check=0)
    assert "No changes." in again.stdout


def test_restart_if_needed_restarts_an_agent_whose_change_waits_for_a_start(
    scope: Scope,
) -> None:
    spec = _spec(scope)
    scope.clawker("apply", "-f", str(spec), check=0)
    first_start = _started_at(scope)
    _spec(scope, pre_run=SECOND)
    diff = scope.clawker("diff", "-f", str(spec), "--restart-if-needed", check=1)
    assert f"~ container {_name(scope)} (restart)" in diff.stdout
    applied = scope.clawker("apply", "-f", str(spec), "--restart-if-needed", check=0)
    assert f"agent/{scope.project}/dev configured" in applied.stdout
    assert f"{_name(scope)}: pre_run" in applied.stderr  # the restart's steps, shown
    assert _started_at(scope) != first_start
    assert scope.exec(_name(scope), "test", "-e", "/home/claude/.claude/second")[0] == 0
    assert _agent(scope)["pendingAtNextStart"] == []
    scope.clawker("diff", "-f", str(spec), check=0)


def test_an_edited_allowlist_is_live_without_a_restart(scope: Scope) -> None:
    spec = _spec(scope)
    scope.clawker("apply", "-f", str(spec), check=0)
    first_start = _started_at(scope)
    _spec(scope, domains="[one.example, two.example]")
    diff = scope.clawker("diff", "-f", str(spec), check=1)
    assert "update in place (live)" in diff.stdout
    assert "firewall allowlist: + two.example" in diff.stdout
    assert "next start" not in diff.stdout

    applied = scope.clawker("apply", "-f", str(spec), check=0)
    assert f"agent/{scope.project}/dev configured" in applied.stdout
    assert _started_at(scope) == first_start
    listing = json.loads(
        scope.clawker(
            "firewall", "list", "-o", "json", "--agent", f"{scope.project}/dev", check=0
        ).stdout
    )
    assert listing[0]["domains"] == ["one.example", "two.example"]
    assert _agent(scope)["pendingAtNextStart"] == []
    scope.clawker("diff", "-f", str(spec), check=0)


def test_a_non_root_diff_with_the_control_plane_running_says_permission_denied(
    scope: Scope,
) -> None:
    scope.clawker("controlplane", "up", check=0)
    # A spec the unprivileged user can read (the test's own tmp_path is root's only); the
    # workspace is this directory itself, which exists for everyone.
    readable = Path(tempfile.mkdtemp(prefix="clawker-i17-"))
    try:
        readable.chmod(0o755)
        spec = readable / "agents.yaml"
        spec.write_text(
            SPEC.replace("PROJECT", scope.project)
            .replace("./ws", str(readable))
            .replace("PRE_RUN", json.dumps(COUNT))
            .replace("DOMAINS", "[]")
        )
        spec.chmod(0o644)
        docker_gid = Path("/var/run/docker.sock").stat().st_gid
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                f"--groups={docker_gid}",  # Docker, yes; the control plane's socket, no
                sys.executable,
                "-m",
                "cli.main",
                "diff",
                "-f",
                str(spec),
            ],
            capture_output=True,
            text=True,
            env={**scope.env, "HOME": str(readable), "CLAWKER_HOST_HOME": str(readable)},
            cwd=REPO,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(readable)
    assert proc.returncode == 2, proc
    assert "permission denied" in proc.stderr
    assert "run clawker as root (or as a member of the clawker group)" in proc.stderr
    assert "not running" not in proc.stderr + proc.stdout
