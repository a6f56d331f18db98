"""The CLI ↔ control plane seam: one set of settings, and conditions that say what they claim."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bpf.loader import cgroup2_root, cgroup_id
from tests.integration.conftest import Scope

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: bind}
  build: {harness: none}
  agent:
    post_init: POST_INIT
    pre_run: PRE_RUN
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command: [sleep, infinity]
"""


def _conditions(scope: Scope) -> dict[str, Any]:
    items = json.loads(scope.clawker("get", "agents", "-o", "json", check=0).stdout)["items"]
    assert len(items) == 1, items
    return {c["type"]: c["status"] for c in items[0]["conditions"]}


def _poll(scope: Scope, want: dict[str, bool], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = _conditions(scope)
        if all(seen.get(k) == v for k, v in want.items()):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"conditions never became {want}: last {seen}")


def test_a_control_plane_with_other_settings_is_refused(scope: Scope) -> None:
    scope.clawker("controlplane", "up", check=0)
    other = {**scope.env, "CLAWKER_NETWORK": f"{scope.env['CLAWKER_NETWORK']}-other"}
    spec = scope.write_spec(SPEC.replace("POST_INIT", '""').replace("PRE_RUN", '""'))
    for argv in (["controlplane", "up"], ["apply", "-f", str(spec)], ["firewall", "status"]):
        saved, scope.env = scope.env, other
        try:
            proc = scope.clawker(*argv, check=1)
        finally:
            scope.env = saved
        assert "runs with other settings" in proc.stderr, (argv, proc.stderr)
        assert "network" in proc.stderr and "-other" in proc.stderr
    assert scope.containers() == []  # the refused apply made nothing


def test_initialized_is_false_while_post_init_runs_and_true_before_ready(scope: Scope) -> None:
    ws = scope.workdir / "ws"
    wait_for = "while [ ! -e {} ]; do sleep 0.1; done"  # the steps run in the workspace
    body = SPEC.replace("POST_INIT", json.dumps(wait_for.format("go1")))
    spec = scope.write_spec(body.replace("PRE_RUN", json.dumps(wait_for.format("go2"))))
    scope.clawker("apply", "-f", str(spec), "--no-wait", check=0)
    held = _poll(scope, {"FirewallEnrolled": True})
    assert held["Ready"] is False and held["Initialized"] is False
    time.sleep(0.5)  # post_init is held: nothing moves on its own
    assert _conditions(scope) == held
    (ws / "go1").write_text("")  # post_init ends; pre_run (every start) is held
    between = _poll(scope, {"Initialized": True})
    assert between["Ready"] is False
    (ws / "go2").write_text("")
    done = _poll(scope, {"Ready": True})
    assert done["Initialized"] is True and done["FirewallEnrolled"] is True


def test_firewall_enrolled_follows_the_real_cgroup_across_a_restart(scope: Scope) -> None:
    spec = scope.write_spec(SPEC.replace("POST_INIT", '""').replace("PRE_RUN", '""'))
    scope.clawker("apply", "-f", str(spec), check=0)
    name = f"clawker.{scope.project}.dev"

    def current_cgroup() -> int:
        pid = scope.inspect(name)["State"]["Pid"]
        line = next(
            x for x in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if x[:3] == "0::"
        )
        return cgroup_id(cgroup2_root() / line[3:].lstrip("/"))

    before = current_cgroup()
    assert _poll(scope, {"Ready": True, "FirewallEnrolled": True})
    scope.api.restart(name, timeout=1)
    after = current_cgroup()
    assert after != before  # a restart is a new cgroup: the old enrolment must not count
    assert _poll(scope, {"Ready": True, "FirewallEnrolled": True, "Initialized": True})
