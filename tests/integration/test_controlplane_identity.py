"""The control plane drives only the container it meant to (issue 18), on the real engine.

The CP runs in this test's process (`daemon.run`: the real controller, firewall, registry,
PKI and API socket) so that a fault can sit at its Docker port's edge: a port that loses
events, or one whose view of a container stays stale after the container is gone. The CLI is
the real one, in a subprocess, talking to that CP over its socket.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from reconciler.controlplane import daemon
from reconciler.controlplane.api.client import ControlPlaneClient
from reconciler.controlplane.paths import StatePaths
from reconciler.controlplane.registry import Registry, StartStatus
from reconciler.docker.engine import ContainerEvent, DockerEngine, RuntimeInfo
from reconciler.settings import settings_from_env
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
    env: {ROUND: "ROUND_VALUE"}
    post_init: echo run >> /home/claude/.claude/post-init-count
    pre_run: echo run >> /tmp/pre-run-count
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command: [sleep, infinity]
"""

TWO_AGENTS = (
    SPEC
    + """\
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: other, project: PROJECT}
spec:
  command: [sleep, infinity]
"""
)


class FaultyEngine(DockerEngine):
    """The real engine behind a fault at the port's edge: events of the listed actions are
    lost, and a container can be frozen, so the CP keeps seeing it as it was."""

    def __init__(self, scope: Scope, lose: set[str]) -> None:
        super().__init__(scope=settings_from_env(scope.env))
        self.lose = lose
        self._frozen: dict[str, RuntimeInfo] = {}

    def freeze(self, container_id: str, network: str) -> RuntimeInfo:
        info = super().inspect_runtime(container_id, network)
        assert info is not None and info.running
        self._frozen[container_id] = info
        return info

    def thaw(self, container_id: str) -> None:
        self._frozen.pop(container_id, None)

    def inspect_runtime(self, container_id: str, network: str) -> RuntimeInfo | None:
        frozen = self._frozen.get(container_id)
        return frozen if frozen is not None else super().inspect_runtime(container_id, network)

    def container_events(self) -> Iterator[ContainerEvent]:
        return (e for e in super().container_events() if e.action not in self.lose)


@contextmanager
def controlplane_here(
    scope: Scope, monkeypatch: pytest.MonkeyPatch, port: DockerEngine, workers: int
) -> Iterator[StatePaths]:
    """This test's CP in this process, with `port` and `workers`; stopped at the end."""
    for key, value in scope.env.items():
        if key.startswith("CLAWKER_") or key in ("SSH_AUTH_SOCK", "NO_COLOR"):
            monkeypatch.setenv(key, value)
    # The CLI's settings, so the CP is one it agrees to drive; resync far away: events decide.
    settings = dataclasses.replace(settings_from_env(scope.env), resync_seconds=600)
    paths = StatePaths(settings.state_dir)
    stop = threading.Event()
    exits: list[int] = []
    thread = threading.Thread(
        target=lambda: exits.append(daemon.run(settings, stop, port=port, workers=workers)),
        name="test-controlplane",
        daemon=True,
    )
    thread.start()
    client = ControlPlaneClient(paths.socket)
    _wait(lambda: client.alive() or exits, "the control plane to answer")
    assert not exits, f"the control plane exited with {exits}"
    try:
        yield paths
    finally:
        stop.set()
        thread.join(30)


def _wait(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _status(paths: StatePaths, container_id: str) -> StartStatus | None:
    """The CP's record of a container's start, read from its registry (no trigger)."""
    registry = Registry(paths.registry)
    try:
        return registry.status(container_id)
    finally:
        registry.close()


def _ready(paths: StatePaths, info: dict[str, Any]) -> StartStatus | None:
    status = _status(paths, info["Id"])
    current = status is not None and status.started_at == info["State"]["StartedAt"]
    return status if current and status and status.phase == "ready" else None


def _lines(scope: Scope, name: str, path: str) -> int:
    code, out = scope.exec(name, "cat", path)
    assert code == 0, out
    return len(out.split())


def _ip(info: dict[str, Any], network: str) -> str:
    return str(info["NetworkSettings"]["Networks"][network]["IPAddress"])


def test_a_successor_at_the_same_address_is_driven_once_by_its_own_start(
    scope: Scope, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The old container's dial is still retrying, with a stale view of it (its death lost:
    paused, then killed), when the recreate's successor gets its IP: TLS refuses the old dial
    at the successor, and the successor is registered, initialised and released exactly once,
    by its own pass."""
    caplog.set_level(logging.INFO, logger="clawker.controlplane")
    network = scope.env["CLAWKER_NETWORK"]
    name = f"clawker.{scope.project}.dev"
    port = FaultyEngine(scope, lose={"start", "die", "destroy", "kill", "stop"})
    with controlplane_here(scope, monkeypatch, port, workers=2) as paths:
        first = scope.write_spec(SPEC.replace("ROUND_VALUE", "1"))
        scope.clawker("apply", "-f", str(first), "--no-wait", check=0)
        scope.api.pause(name)  # its clawkerd never answers: the dial retries
        old = port.freeze(scope.inspect(name)["Id"], network)
        client = ControlPlaneClient(paths.socket)
        client.start_reports([old.id])  # the trigger its lost start event was
        _wait(
            lambda: (s := _status(paths, old.id)) and s.phase == "initializing",
            "the old container's pass to be dialling",
        )
        # Dead for good (a paused container that `docker stop` unpauses could still answer as
        # itself); its pass, told nothing, keeps dialling its address.
        scope.api.kill(name)
        scope.wait_stopped(name)

        second = scope.write_spec(SPEC.replace("ROUND_VALUE", "2"))
        proc = scope.clawker("apply", "-f", str(second), "-y", check=0)
        successor = scope.inspect(name)
        assert successor["Id"] != old.id
        assert _ip(successor, network) == old.ip, "Docker did not reuse the address"
        # The old pass still thinks its container runs there, and keeps dialling it.
        assert (s := _status(paths, old.id)) is not None and s.phase == "initializing"

        status = _ready(paths, successor)
        assert status is not None, proc.stderr
        names = [s.name for s in status.steps]
        assert len(names) == len(set(names)) and {"post_init", "pre_run"} <= set(names), names
        assert _lines(scope, name, "/home/claude/.claude/post-init-count") == 1
        assert _lines(scope, name, "/tmp/pre-run-count") == 1
        # One session reached the successor's clawkerd: its own (TLS refused the old dial).
        code, log = scope.exec(name, "cat", "/var/log/clawker/clawkerd.log")
        assert code == 0 and log.count('"event": "hello"') == 1, log
        registry = Registry(paths.registry)
        try:
            assert registry.is_registered(successor["Id"])
            assert not registry.is_registered(old.id)
        finally:
            registry.close()
        assert "already used" not in caplog.text
        port.thaw(old.id)  # the old pass re-reads, finds it gone, and ends
        _wait(lambda: "work dropped" in caplog.text, "the old pass to drop its work")


def test_removing_a_container_mid_dial_frees_the_controlplanes_worker(
    scope: Scope, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One worker, held by a dial to a paused container; removing that container ends the dial
    on Docker's die/destroy event, so the other agent becomes Ready long before the removed
    one's 60 s of dial retries would have ended. The CP's view of the container is frozen, so
    only the event (not a re-read between attempts) can end that dial."""
    caplog.set_level(logging.INFO, logger="clawker.controlplane")
    stuck, other = f"clawker.{scope.project}.dev", f"clawker.{scope.project}.other"
    # Start events are lost, so this test decides which pass runs first; deaths are not.
    port = FaultyEngine(scope, lose={"start"})
    with controlplane_here(scope, monkeypatch, port, workers=1) as paths:
        spec = scope.write_spec(TWO_AGENTS.replace("ROUND_VALUE", "1"))
        scope.clawker("apply", "-f", str(spec), "--no-wait", check=0)
        scope.api.pause(stuck)
        stuck_id = port.freeze(scope.inspect(stuck)["Id"], scope.env["CLAWKER_NETWORK"]).id
        other_info = scope.inspect(other)
        client = ControlPlaneClient(paths.socket)
        client.start_reports([stuck_id])
        _wait(
            lambda: (s := _status(paths, stuck_id)) and s.phase == "initializing",
            "the paused container's pass to hold the only worker",
        )
        client.start_reports([other_info["Id"]])  # queued behind it
        assert _status(paths, other_info["Id"]) is None

        removed_at = time.monotonic()
        scope.api.remove_container(stuck, force=True)
        # Well inside the 60 s the removed container's dial would otherwise retry for.
        _wait(lambda: _ready(paths, other_info), "the other agent to be Ready", timeout=20)
        assert time.monotonic() - removed_at < 20
        # The removed container's pass ended on Docker's word (die/destroy), not a timeout.
        assert "did not answer" not in caplog.text
        assert f"{stuck_id[:12]}: work dropped" in caplog.text
        port.thaw(stuck_id)
