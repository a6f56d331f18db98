"""The control plane's runtime state as the planner observes it: the registry that keeps it and
the one API call that reads it, over a real unix socket (no Docker)."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.controlplane.api.channel import ApiServer
from reconciler.controlplane.api.client import ControlPlaneMismatchError
from reconciler.controlplane.api.messages import (
    AgentRuntimeSpec,
    AgentRuntimeState,
    Hello,
    Phase,
    StartStatus,
    to_wire,
)
from reconciler.controlplane.paths import StatePaths
from reconciler.controlplane.registry import Registry
from reconciler.loop.converge import observe_runtime
from reconciler.settings import Settings, code_identity

SPEC = AgentRuntimeSpec("p/a", post_init="npm ci", pre_run="echo hi", workspace="/w")


def test_the_registry_keeps_runtimes_post_init_and_each_starts_runtime(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite")
    registry.put_runtime(SPEC)
    assert registry.runtimes() == {"p/a": SPEC}
    assert registry.post_init_done() == set()
    registry.mark_post_init_done("p/a")
    assert registry.post_init_done() == {"p/a"}
    registry.forget_post_init("p/a")
    assert registry.post_init_done() == set()
    registry.put_status(StartStatus("c1", "p/a", "t0", Phase.READY, runtime=SPEC))
    status = registry.status("c1")
    assert status is not None and status.runtime == SPEC
    registry.close()


def test_a_registry_of_an_older_clawker_gains_the_runtime_column(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    db = sqlite3.connect(str(path))
    db.executescript(
        """CREATE TABLE start_status (
        container_id TEXT PRIMARY KEY, agent_key TEXT NOT NULL, started_at TEXT NOT NULL,
        phase TEXT NOT NULL, detail TEXT NOT NULL, steps TEXT NOT NULL, updated_at REAL NOT NULL);
        CREATE TABLE agent_runtime (agent_key TEXT PRIMARY KEY, spec TEXT NOT NULL);
        INSERT INTO start_status VALUES ('c0', 'p/a', 't0', 'ready', '', '[]', 0);
        INSERT INTO agent_runtime VALUES ('p/a', '{"agent_key": "p/a", "pre_run": "x",
            "allow_domains": ["old.example"]}');"""
    )
    db.close()
    registry = Registry(path)
    old = registry.status("c0")
    assert old is not None and old.runtime is None  # not known: nothing shown as pending
    assert registry.runtime("p/a") == AgentRuntimeSpec("p/a", pre_run="x")
    registry.close()


@pytest.fixture
def fake_cp(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, Any]]]:
    """A socket that answers like a control plane (only the calls `observe_runtime` makes)."""
    settings = Settings(state_dir=tmp_path)
    answers: dict[str, Any] = {
        "hello": Hello(1, 0.0, code_identity(), settings.agreement()),
        "state": {"p/a": AgentRuntimeState("p/a", SPEC, ("x.example",), True)},
    }
    server = ApiServer(
        StatePaths(tmp_path).socket,
        {
            "ping": lambda _p: to_wire(answers["hello"]),
            "runtime_state": lambda _p: to_wire(answers["state"]),
        },
    )
    server.start()
    try:
        yield settings, answers
    finally:
        server.stop()


def test_the_planner_observes_what_the_control_plane_holds(
    fake_cp: tuple[Settings, dict[str, Any]],
) -> None:
    settings, _ = fake_cp
    observed = observe_runtime(settings)
    assert observed.agents == {"p/a": AgentRuntimeState("p/a", SPEC, ("x.example",), True)}


def test_a_control_plane_of_another_clawker_is_an_error_not_a_guess(
    fake_cp: tuple[Settings, dict[str, Any]],
) -> None:
    settings, answers = fake_cp
    answers["hello"] = Hello(1, 0.0, "0.0.1 (/elsewhere)", settings.agreement())
    with pytest.raises(ControlPlaneMismatchError, match=r"runs clawker 0\.0\.1"):
        observe_runtime(settings)


def test_a_control_plane_of_other_settings_is_an_error(
    fake_cp: tuple[Settings, dict[str, Any]],
) -> None:
    settings, answers = fake_cp
    answers["hello"] = Hello(1, 0.0, code_identity(), {**settings.agreement(), "network": "x"})
    with pytest.raises(ControlPlaneMismatchError, match="other settings"):
        observe_runtime(settings)


def test_no_control_plane_is_unknown_state(tmp_path: Path) -> None:
    observed = observe_runtime(Settings(state_dir=tmp_path))
    assert observed.agents is None and observed.unknown == "control plane not running"


def test_every_message_comes_back_from_its_wire_form_as_it_was_sent() -> None:
    """to_wire and from_wire over each shape a message holds: nested dataclasses, optional
    ones (None and set), tuples of dataclasses and of strings, enums, mappings."""
    import json  # noqa: PLC0415

    from reconciler.controlplane.api.messages import (  # noqa: PLC0415
        StartReport,
        StepRecord,
        from_wire,
    )

    status = StartStatus(
        "c1",
        "p/a",
        "t0",
        Phase.FAILED,
        "boom",
        steps=(StepRecord("git-setup", True, 0, "ok", 0.25), StepRecord("post_init", False, 2)),
        timings={"dial": 0.07},
        initialized=True,
        runtime=SPEC,
    )
    messages: list[Any] = [
        AgentRuntimeState("p/a", SPEC, ("github.com", ".example.com"), True),
        AgentRuntimeState("p/b"),
        StartReport("c1", status, firewall_enrolled=True),
        StartReport("c2", None),
        Hello(1, 2.5, "v", {"network": "clawker-net"}, busy=1),
    ]
    for message in messages:
        wire = json.loads(json.dumps(to_wire(message)))
        assert from_wire(type(message), wire) == message
    assert to_wire(status)["phase"] == "failed"
    assert to_wire(status)["steps"][0] == {
        "name": "git-setup",
        "ok": True,
        "exit_code": 0,
        "output_tail": "ok",
        "seconds": 0.25,
    }


class UnreachableDocker:
    """A port whose every list fails, as with dockerd down."""

    def list_containers(self) -> list[Any]:
        from reconciler.docker.engine import DockerError  # noqa: PLC0415

        raise DockerError("cannot reach the Docker engine")

    list_volumes = list_networks = list_images = list_containers


def test_a_pass_asks_the_control_plane_beside_docker_and_its_error_still_comes_first(
    fake_cp: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    """prepare_apply asks the control plane on a thread of its own; when both it and Docker
    fail, the control plane's error is the one reported, as when it was asked first."""
    from reconciler.docker.engine import DockerError  # noqa: PLC0415
    from reconciler.loop.prepare import prepare_apply  # noqa: PLC0415
    from specs import load_specs  # noqa: PLC0415

    settings, answers = fake_cp
    settings = dataclasses.replace(settings, cache_dir=tmp_path / "cache")
    (tmp_path / "ws").mkdir()
    spec = tmp_path / "agents.yaml"
    spec.write_text(
        "apiVersion: clawker.dev/v1alpha1\nkind: Project\nmetadata: {name: p}\n"
        "spec: {workspace: {path: ./ws}}\n---\n"
        "apiVersion: clawker.dev/v1alpha1\nkind: Agent\nmetadata: {name: a, project: p}\n"
    )
    specset = load_specs([str(spec)])
    port: Any = UnreachableDocker()
    with pytest.raises(DockerError):  # the control plane answers: Docker's error
        prepare_apply(port, specset, settings=settings)
    answers["hello"] = Hello(1, 0.0, "0.0.1 (/elsewhere)", settings.agreement())
    with pytest.raises(ControlPlaneMismatchError):
        prepare_apply(port, specset, settings=settings)
