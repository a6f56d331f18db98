"""Integration fixtures: a real Docker engine, one labelled scope per test.

Every object a test makes carries `dev.clawker.test=<run id>` (CLAWKER_SCOPE_LABELS makes the
CLI stamp it and filter by it), lives on the test's own network, and is force-removed at teardown.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from bpf.loader import detach_egress
from reconciler.controlplane import lifecycle
from reconciler.controlplane.paths import StatePaths
from tests.cleanup import TEST_LABEL, remove_cgroup_parent, remove_test_objects
from tests.integration.dockerexec import exec_in

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Scope:
    run_id: str
    project: str
    env: dict[str, str]
    api: docker.APIClient
    workdir: Path

    def clawker(
        self,
        *args: str,
        stdin: str | None = None,
        check: int | None = None,
        cwd: Path = REPO,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in a subprocess, inside this test's scope."""
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=300,
            check=False,
        )
        if check is not None:
            assert proc.returncode == check, (
                f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def write_spec(self, body: str, name: str = "agents.yaml") -> Path:
        path = self.workdir / name
        path.write_text(textwrap.dedent(body).replace("PROJECT", self.project))
        return path

    def containers(self) -> list[dict[str, Any]]:
        return list(
            self.api.containers(all=True, filters={"label": [f"{TEST_LABEL}={self.run_id}"]})
        )

    def volumes(self) -> set[str]:
        raw = self.api.volumes(filters={"label": [f"{TEST_LABEL}={self.run_id}"]})
        return {v["Name"] for v in raw.get("Volumes") or []}

    def inspect(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = self.api.inspect_container(name)
        return info

    def wait_stopped(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """The container's State once it is no longer running (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state: dict[str, Any] = self.inspect(name)["State"]
            if not state["Running"]:
                return state
            time.sleep(0.1)
        raise AssertionError(f"{name} still running after {timeout}s")

    def exec(self, name: str, *cmd: str) -> tuple[int, str]:
        return exec_in(self.api, name, cmd)


@pytest.fixture(scope="session")
def docker_api() -> docker.APIClient:
    try:
        api = docker.APIClient(version="auto")
        api.ping()
    except Exception as exc:  # pragma: no cover - the setup guarantees an engine
        pytest.fail(f"no Docker engine answers ({exc}); run `make setup`")
    return api


@pytest.fixture
def scope(docker_api: docker.APIClient, tmp_path: Path) -> Iterator[Scope]:
    run_id = uuid.uuid4().hex[:10]
    env = dict(os.environ)
    state = tmp_path / "state"
    host_home = tmp_path / "host-home"
    host_home.mkdir()
    cgroup_parent = f"/clawker-test-{run_id}"
    pin_dir = Path(f"/sys/fs/bpf/clawker-test-{run_id}")
    env.update(
        # Its own parent cgroup and BPF pins: the firewall of this test's CP is its own.
        CLAWKER_CGROUP_PARENT=cgroup_parent,
        CLAWKER_BPF_PIN_DIR=str(pin_dir),
        CLAWKER_SCOPE_LABELS=f"{TEST_LABEL}={run_id}",
        CLAWKER_NETWORK=f"clawker-test-{run_id}",
        CLAWKER_STATE_DIR=str(state),  # this test's own control plane, PKI and registry
        # The host user's files (~/.claude, ~/.gitconfig, the shared directory) and agents:
        # an empty home of the test's own, never the real user's.
        CLAWKER_HOST_HOME=str(host_home),
        SSH_AUTH_SOCK="",
        CLAWKER_HOST_GPG_SOCKET="",
        NO_COLOR="1",
    )
    workdir = tmp_path / "specs"
    (workdir / "ws").mkdir(parents=True)
    (workdir / "ws" / "hello.txt").write_text("hello from the host\n")
    s = Scope(run_id, f"t{run_id}", env, docker_api, workdir)
    try:
        yield s
    finally:
        try:
            lifecycle.stop(StatePaths(state))  # by its pid file: only the CP this test started
        finally:  # a CP that would not stop fails the test, and still leaves nothing behind
            remove_test_objects(run_id)
            detach_egress(pin_dir)
            remove_cgroup_parent(cgroup_parent)
