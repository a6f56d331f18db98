"""The control plane and clawkerd on the real engine: the per-start lifecycle of DESIGN §6."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from clawkerd.bootstrap import BOOTSTRAP_FILES
from reconciler import naming
from reconciler.controlplane.api.client import ApiError, ControlPlaneClient
from tests.integration.conftest import Scope
from tests.integration.dockerexec import exec_in

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: bind}
  build: {harness: none}
  agent:
    env: {ROUND: "1"}
    post_init: echo run >> /home/claude/.claude/post-init-count
    pre_run: echo run >> /home/claude/.claude/pre-run-count; touch /tmp/pre-run-done
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command:
    - sh
    - -c
    - >-
      if [ -e /tmp/pre-run-done ]; then echo after > /tmp/order; else echo before > /tmp/order;
      fi; id -u > /tmp/uid; exec sleep infinity
"""


def _name(scope: Scope) -> str:
    return f"clawker.{scope.project}.dev"


def _count(scope: Scope, which: str) -> int:
    code, out = scope.exec(_name(scope), "cat", f"/home/claude/.claude/{which}-count")
    assert code == 0, out
    return len(out.split())


def _wait_ready(scope: Scope, timeout: float = 60.0) -> dict[str, Any]:
    """Poll `clawker get agents` (no apply involved) until the agent's current start is Ready."""
    deadline = time.monotonic() + timeout
    item: dict[str, Any] = {}
    while time.monotonic() < deadline:
        proc = scope.clawker("get", "agents", "-o", "json", check=0)
        items = json.loads(proc.stdout)["items"]
        if items:
            item = items[0]
            conditions: dict[str, dict[str, Any]] = {c["type"]: c for c in item["conditions"]}
            if conditions["Ready"]["status"]:
                return conditions["Ready"]
        time.sleep(0.2)
    raise AssertionError(f"agent not Ready after {timeout}s: {item}")


def _cp_pid(scope: Scope) -> int:
    return int((Path(scope.env["CLAWKER_STATE_DIR"]) / "controlplane.pid").read_text())


def test_the_command_runs_as_the_agent_user_only_after_agent_ready(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    proc = scope.clawker("apply", "-f", str(spec), check=0)
    assert "control plane started" in proc.stderr
    assert f"{_name(scope)}: post_init" in proc.stderr
    assert f"{_name(scope)}: pre_run" in proc.stderr
    name = _name(scope)
    deadline = time.monotonic() + 10
    while scope.exec(name, "test", "-e", "/tmp/uid")[0] != 0:
        assert time.monotonic() < deadline, "the command never ran"
        time.sleep(0.1)
    assert scope.exec(name, "cat", "/tmp/uid") == (0, "1001\n")
    assert scope.exec(name, "cat", "/tmp/order") == (0, "after\n")
    # clawkerd is PID 1 and stays root; the command is its child, as claude.
    code, out = scope.exec(name, "ps", "-o", "user=,args=", "-p", "1")
    assert code == 0 and out.startswith("root") and "clawkerd" in out


def test_bootstrap_material_is_root_only_inside_the_container(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    name = _name(scope)
    code, out = scope.exec(
        name,
        "stat",
        "-c",
        "%a %U %n",
        "/run/clawker/bootstrap",
        "/run/clawker/bootstrap/cert.pem",
        "/run/clawker/bootstrap/key.pem",
        "/run/clawker/bootstrap/register.jwt",
    )
    assert code == 0, out
    assert out.split("\n")[:4] == [
        "700 root /run/clawker/bootstrap",
        "400 root /run/clawker/bootstrap/cert.pem",
        "400 root /run/clawker/bootstrap/key.pem",
        "400 root /run/clawker/bootstrap/register.jwt",
    ]
    code, _ = exec_in(scope.api, name, ["cat", "/run/clawker/bootstrap/key.pem"], user="claude")
    assert code != 0


def test_a_new_agent_gets_identity_and_seed_without_dockers_archive_api(scope: Scope) -> None:
    """The CP writes the identity into the container's own host directory, bound read-only;
    the seed is written into the new config volume on the host: Docker unpacks no archive."""
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    name = _name(scope)
    info = scope.inspect(name)
    token = info["Config"]["Labels"][naming.HOST_DIR]
    host_dir = Path(scope.env["CLAWKER_STATE_DIR"]) / "containers" / token
    binds = [m for m in info["Mounts"] if m["Destination"] == naming.BOOTSTRAP_MOUNT]
    assert [(m["Type"], m["Source"], m["RW"]) for m in binds] == [("bind", str(host_dir), False)]
    assert sorted(p.name for p in host_dir.iterdir()) == sorted(BOOTSTRAP_FILES)
    events = scope.api.events(
        since=int(time.time()) - 120,
        until=int(time.time()) + 1,
        decode=True,
        filters={"container": info["Id"], "event": "extract-to-dir"},
    )
    assert [e["Action"] for e in events] == []
    code, out = scope.exec(name, "stat", "-c", "%U %n", "/home/claude/.claude/.claude.json")
    assert (code, out.strip()) == (0, "claude /home/claude/.claude/.claude.json")
    # The CP writes an identity only for the agent the container is
    cp = ControlPlaneClient(Path(scope.env["CLAWKER_STATE_DIR"]) / "controlplane.sock")
    with pytest.raises(ApiError, match="not 'someone/else'"):
        cp.issue_bootstrap("someone/else", name)
    scope.clawker("delete", "-f", str(spec), "-y", check=0)
    deadline = time.monotonic() + 10
    while host_dir.exists():
        assert time.monotonic() < deadline, "the host directory outlived its container"
        time.sleep(0.1)


def test_post_init_runs_once_and_pre_run_on_every_start(scope: Scope) -> None:
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    assert (_count(scope, "post-init"), _count(scope, "pre-run")) == (1, 1)

    # A restart nobody announced: the control plane sees the start and drives it to Ready.
    scope.api.restart(_name(scope), timeout=1)
    _wait_ready(scope)
    assert (_count(scope, "post-init"), _count(scope, "pre-run")) == (1, 2)
    assert scope.exec(_name(scope), "cat", "/tmp/order") == (0, "after\n")

    # A recreate (env changed) is a new container on the same volumes: post_init stays done.
    scope.write_spec(SPEC.replace('ROUND: "1"', 'ROUND: "2"'))
    proc = scope.clawker("apply", "-f", str(spec), check=0)
    assert f"agent/{scope.project}/dev recreated" in proc.stdout
    assert (_count(scope, "post-init"), _count(scope, "pre-run")) == (1, 3)


def test_a_restarted_control_plane_re_adopts_running_agents_without_rerunning_steps(
    scope: Scope,
) -> None:
    spec = scope.write_spec(SPEC)
    scope.clawker("apply", "-f", str(spec), check=0)
    container_id = scope.inspect(_name(scope))["Id"]
    os.kill(_cp_pid(scope), signal.SIGKILL)  # the CP this test started, by its pid
    assert scope.inspect(_name(scope))["State"]["Running"]

    up = scope.clawker("controlplane", "up", check=0)
    assert "started" in up.stdout
    ready = _wait_ready(scope)
    assert ready["status"] is True
    assert scope.inspect(_name(scope))["Id"] == container_id
    assert (_count(scope, "post-init"), _count(scope, "pre-run")) == (1, 1)
    again = scope.clawker("apply", "-f", str(spec), check=0)
    assert "No changes." in again.stdout
    assert (_count(scope, "post-init"), _count(scope, "pre-run")) == (1, 1)


def test_a_failing_post_init_fails_the_apply_loudly_and_stops_the_container(
    scope: Scope,
) -> None:
    spec = scope.write_spec(
        SPEC.replace(
            "post_init: echo run >> /home/claude/.claude/post-init-count",
            "post_init: \"echo 'npm ci: lockfile missing' >&2; exit 3\"",
        )
    )
    proc = scope.clawker("apply", "-f", str(spec), check=1)
    assert f"agent/{scope.project}/dev failed" in proc.stdout
    assert "step post_init failed with exit code 3" in proc.stdout
    assert "npm ci: lockfile missing" in proc.stdout
    assert f"✗ {_name(scope)}: post_init (exit 3)" in proc.stderr
    assert scope.wait_stopped(_name(scope))["ExitCode"] == 3


def test_controlplane_verbs(scope: Scope) -> None:
    down = scope.clawker("controlplane", "status", check=1)
    assert "not running" in down.stdout
    scope.clawker("controlplane", "up", check=0)
    status = json.loads(scope.clawker("controlplane", "status", "-o", "json", check=0).stdout)
    assert status["running"] is True and status["pid"] == _cp_pid(scope)
    scope.clawker("controlplane", "down", check=0)
    assert (
        json.loads(scope.clawker("controlplane", "status", "-o", "json", check=1).stdout)["running"]
        is False
    )
